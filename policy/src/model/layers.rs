//! The building blocks both towers share, each loaded from and exported to HF names.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorData};

use crate::weights::{HostTensor, Weights, WeightsError};

/// A tensor on `device` from host values.
pub fn tensor<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// Host values of a tensor (f32).
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default();
    HostTensor { shape, data }
}

/// A linear layer from `{prefix}.weight` ([out, in] in HF, transposed here) and `{prefix}.bias`.
pub fn load_linear<B: Backend>(
    w: &mut Weights,
    prefix: &str,
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, WeightsError> {
    let weight = w.take(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
    let weight: Tensor<B, 2> = tensor(weight, device);
    let bias = if bias {
        let b = w.take(&format!("{prefix}.bias"), &[out_dim])?;
        Some(Param::from_tensor(tensor(b, device)))
    } else {
        None
    };
    Ok(Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias,
    })
}

/// Export a linear layer under HF names.
pub fn export_linear<B: Backend>(layer: &Linear<B>, prefix: &str, out: &mut Weights) {
    out.insert(
        format!("{prefix}.weight"),
        host(layer.weight.val().transpose()),
    );
    if let Some(b) = &layer.bias {
        out.insert(format!("{prefix}.bias"), host(b.val()));
    }
}

/// Root-mean-square normalisation with a learned scale (`weight` in HF).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// The scale.
    pub weight: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Load `{name}` (a full tensor name).
    pub fn load(
        w: &mut Weights,
        name: &str,
        dim: usize,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        let weight = tensor(w.take(name, &[dim])?, device);
        Ok(RmsNorm {
            weight: Param::from_tensor(weight),
            eps,
        })
    }

    /// Export under `name`.
    pub fn export(&self, name: &str, out: &mut Weights) {
        out.insert(name.to_string(), host(self.weight.val()));
    }

    /// x / sqrt(mean(x²) + eps) · weight over the last dimension, computed in f32 and cast
    /// back to x's dtype before the scale (as transformers does for bf16).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x = x.cast(FloatDType::F32);
        let variance = x.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = (x * variance.add_scalar(self.eps).sqrt().recip()).cast(dtype);
        let shape = {
            let mut s = [1usize; D];
            s[D - 1] = self.weight.dims()[0];
            s
        };
        normed * self.weight.val().reshape(shape)
    }
}

/// The SwiGLU feed-forward block: down(silu(gate(x)) · up(x)).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate projection.
    pub gate_proj: Linear<B>,
    /// Up projection.
    pub up_proj: Linear<B>,
    /// Down projection.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Load `{prefix}.{gate,up,down}_proj`.
    pub fn load(
        w: &mut Weights,
        prefix: &str,
        dim: usize,
        inner: usize,
        bias: bool,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        Ok(Mlp {
            gate_proj: load_linear(w, &format!("{prefix}.gate_proj"), dim, inner, bias, device)?,
            up_proj: load_linear(w, &format!("{prefix}.up_proj"), dim, inner, bias, device)?,
            down_proj: load_linear(w, &format!("{prefix}.down_proj"), inner, dim, bias, device)?,
        })
    }

    /// Export under `{prefix}.…`.
    pub fn export(&self, prefix: &str, out: &mut Weights) {
        export_linear(&self.gate_proj, &format!("{prefix}.gate_proj"), out);
        export_linear(&self.up_proj, &format!("{prefix}.up_proj"), out);
        export_linear(&self.down_proj, &format!("{prefix}.down_proj"), out);
    }

    /// The block.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// HF's rotate-half rotary embedding: x·cos + rotate_half(x)·sin, where rotate_half(x) =
/// [-x₂, x₁] over the last dimension's halves. `cos`/`sin` broadcast against `x`.
pub fn apply_rotary<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [a, b, c, d] = x.dims();
    let half = d / 2;
    let x1 = x.clone().slice([0..a, 0..b, 0..c, 0..half]);
    let x2 = x.clone().slice([0..a, 0..b, 0..c, half..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}
