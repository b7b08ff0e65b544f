//! AdamW as torch writes it (decoupled weight decay, bias-corrected moments), over a burn
//! module, with the pieces a trainer needs around it: gradients accumulated over micro-batches,
//! their global norm and clipping, and the state saved and restored by parameter name so that a
//! resumed run continues bit for bit.
//!
//! ```text
//! p ← p − lr·wd·p                  (not for biases and norm scales: 1-d parameters)
//! m ← β1·m + (1 − β1)·g            v ← β2·v + (1 − β2)·g²
//! p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use policy::HostTensor;
use policy::model::layers::host;

/// AdamW's settings (the learning rate comes with each step, from the schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub epsilon: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// Gradients of a module's parameters, summed over micro-batches, flattened, in the module's
/// parameter order (so that sums over them are the same in every run).
#[derive(Debug)]
pub struct Gradients<B: Backend> {
    order: Vec<ParamId>,
    grads: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> Default for Gradients<B> {
    fn default() -> Self {
        Gradients {
            order: Vec::new(),
            grads: HashMap::new(),
        }
    }
}

impl<B: Backend> Gradients<B> {
    /// Add the gradients of `model`'s parameters held in `grads` (one backward pass).
    pub fn accumulate<AB, M>(&mut self, model: &M, grads: &AB::Gradients)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: Module<AB>,
    {
        struct Collect<'a, AB: AutodiffBackend> {
            grads: &'a AB::Gradients,
            into: &'a mut Gradients<AB::InnerBackend>,
        }
        impl<AB: AutodiffBackend> ModuleVisitor<AB> for Collect<'_, AB> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                let Some(g) = param.val().grad(self.grads) else {
                    return;
                };
                let n = g.shape().num_elements();
                let g = g.reshape([n]);
                let into = &mut *self.into;
                match into.grads.remove(&param.id) {
                    Some(sum) => {
                        into.grads.insert(param.id, sum + g);
                    }
                    None => {
                        into.order.push(param.id);
                        into.grads.insert(param.id, g);
                    }
                }
            }
        }
        model.visit(&mut Collect::<AB> { grads, into: self });
    }

    /// Whether no gradient was collected.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// The global L2 norm over all parameters.
    pub fn norm(&self) -> f64 {
        let mut total: Option<Tensor<B, 1>> = None;
        for id in &self.order {
            let g = &self.grads[id];
            let sq = (g.clone() * g.clone()).sum();
            total = Some(match total {
                Some(t) => t + sq,
                None => sq,
            });
        }
        total.map_or(0.0, |t| f64::from(t.into_scalar().elem::<f32>()).sqrt())
    }

    /// Multiply every gradient by `factor`.
    pub fn scale(&mut self, factor: f64) {
        for g in self.grads.values_mut() {
            *g = g.clone() * factor;
        }
    }

    /// Clip to a global norm of `max_norm` (torch's `clip_grad_norm_`: scale by
    /// max / (norm + 1e-6) when that is below 1). Returns the norm before clipping.
    pub fn clip(&mut self, max_norm: f64) -> f64 {
        let norm = self.norm();
        if max_norm > 0.0 {
            let coef = max_norm / (norm + 1e-6);
            if coef < 1.0 {
                self.scale(coef);
            }
        }
        norm
    }
}

use burn::tensor::ElementConversion as _;

/// The first and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
struct Moments<B: Backend> {
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
}

/// The optimizer: settings, the step count and the moments of every parameter it has updated.
#[derive(Debug)]
pub struct AdamW<B: Backend> {
    config: AdamWConfig,
    steps: u64,
    moments: HashMap<ParamId, Moments<B>>,
}

impl<B: Backend> AdamW<B> {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            steps: 0,
            moments: HashMap::new(),
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of `model` with `grads` at learning rate `lr`. Parameters without a gradient
    /// (frozen ones) are left as they are.
    pub fn step<AB, M>(&mut self, model: M, mut grads: Gradients<B>, lr: f64) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: Module<AB>,
    {
        self.steps += 1;
        let t = self.steps as i32;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        struct Update<'a, B: Backend> {
            opt: &'a mut AdamW<B>,
            grads: &'a mut Gradients<B>,
            lr: f64,
            bias1: f64,
            bias2: f64,
        }
        impl<AB: AutodiffBackend> ModuleMapper<AB> for Update<'_, AB::InnerBackend> {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<AB, D>>,
            ) -> Param<Tensor<AB, D>> {
                let Some(g) = self.grads.grads.remove(&param.id) else {
                    return param;
                };
                let c = self.opt.config;
                let id = param.id;
                let (lr, bias1, bias2) = (self.lr, self.bias1, self.bias2);
                let moments = &mut self.opt.moments;
                param.map(|tensor| {
                    let shape = tensor.shape();
                    let mut p = tensor.inner().reshape([shape.num_elements()]);
                    if D > 1 && c.weight_decay > 0.0 {
                        p = p.clone() - p * (lr * c.weight_decay);
                    }
                    let (m, v) = match moments.remove(&id) {
                        Some(s) => (
                            s.m * c.beta1 + g.clone() * (1.0 - c.beta1),
                            s.v * c.beta2 + g.clone() * g * (1.0 - c.beta2),
                        ),
                        None => (g.clone() * (1.0 - c.beta1), g.clone() * g * (1.0 - c.beta2)),
                    };
                    let denom = v.clone().sqrt() / bias2.sqrt() + c.epsilon;
                    let p = p - m.clone() / denom * (lr / bias1);
                    moments.insert(id, Moments { m, v });
                    Tensor::from_inner(p.reshape(shape)).require_grad()
                })
            }
        }
        model.map(&mut Update {
            opt: self,
            grads: &mut grads,
            lr,
            bias1,
            bias2,
        })
    }

    /// The state under the parameters' module paths: `{path}.exp_avg`, `{path}.exp_avg_sq`
    /// (host f32, in the module's order).
    pub fn state<AB, M>(&self, model: &M) -> Vec<(String, HostTensor)>
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: Module<AB>,
    {
        let mut out = Vec::new();
        for (id, name) in param_paths(model) {
            if let Some(s) = self.moments.get(&id) {
                out.push((format!("{name}.exp_avg"), host(s.m.clone())));
                out.push((format!("{name}.exp_avg_sq"), host(s.v.clone())));
            }
        }
        out
    }

    /// Restore a state written by [`AdamW::state`] for `model` (whose parameters may have new
    /// ids: they are matched by path) after `steps` steps.
    ///
    /// # Errors
    /// A tensor for a parameter the model does not have, or of the wrong size.
    pub fn restore<AB, M>(
        &mut self,
        model: &M,
        steps: u64,
        mut state: HashMap<String, HostTensor>,
        device: &B::Device,
    ) -> Result<(), String>
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: Module<AB>,
    {
        let sizes = param_sizes(model);
        self.moments.clear();
        for (id, name) in param_paths(model) {
            let m = state.remove(&format!("{name}.exp_avg"));
            let v = state.remove(&format!("{name}.exp_avg_sq"));
            let (m, v) = match (m, v) {
                (Some(m), Some(v)) => (m, v),
                (None, None) => continue,
                _ => return Err(format!("{name}: one of its two moments is missing")),
            };
            let n = sizes[&id];
            if m.data.len() != n || v.data.len() != n {
                return Err(format!(
                    "{name}: moments of {} values, the parameter has {n}",
                    m.data.len()
                ));
            }
            let t = |h: HostTensor| Tensor::from_data(TensorData::new(h.data, [n]), device);
            self.moments.insert(id, Moments { m: t(m), v: t(v) });
        }
        if let Some(extra) = state.keys().next() {
            return Err(format!("{extra}: no such parameter in the model"));
        }
        self.steps = steps;
        Ok(())
    }
}

/// Every float parameter's id and module path (`text.layers.0.self_attn.q_proj.weight`), in
/// the module's order.
pub fn param_paths<B: Backend, M: Module<B>>(model: &M) -> Vec<(ParamId, String)> {
    struct Paths {
        stack: Vec<String>,
        out: Vec<(ParamId, String)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.push((param.id, self.stack.join(".")));
        }
    }
    let mut v = Paths {
        stack: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

/// Every float parameter's element count.
fn param_sizes<B: Backend, M: Module<B>>(model: &M) -> HashMap<ParamId, usize> {
    struct Sizes(HashMap<ParamId, usize>);
    impl<B: Backend> ModuleVisitor<B> for Sizes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.insert(param.id, param.shape().num_elements());
        }
    }
    let mut s = Sizes(HashMap::new());
    model.visit(&mut s);
    s.0
}
