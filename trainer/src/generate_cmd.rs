//! `trainer generate`: greedy generation from a checkpoint — how a user sanity-checks one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use policy::generate::greedy;
use policy::{Checkpoint, Message, Part, Role, Row};

/// Arguments of `trainer generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A checkpoint directory, an hf-hub repo id (org/name; the local HF cache first), or
    /// `tiny` / `tiny:SEED` for the embedded default with random weights.
    #[arg(long)]
    model: String,
    /// The user's message.
    #[arg(long)]
    prompt: String,
    /// Images placed before the text, in order.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// Stop after this many new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Write the prompt positions' logits (and the prompt ids) to this safetensors file.
    #[arg(long)]
    dump_logits: Option<PathBuf>,
    /// Use the prompt as the whole input, without the chat template.
    #[arg(long)]
    raw: bool,
    /// `cpu` (burn's flex backend) or `cuda` (a build with `--features cuda` and an NVIDIA
    /// driver).
    #[arg(long, default_value = "cpu")]
    device: policy::Device,
}

/// Arguments of `trainer export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to load: a directory, an hf-hub repo id, or `tiny` / `tiny:SEED`.
    #[arg(long)]
    model: String,
    /// The directory to write (HF layout: config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json); replaced only once the new one is complete.
    #[arg(long)]
    out: PathBuf,
}

/// Load a checkpoint through the burn model and write it back in the HF layout.
pub fn export(args: &ExportArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&args.model)?;
    let (config_json, tokenizer_json, processor) = (
        ckpt.config_json.clone(),
        ckpt.tokenizer_json.clone(),
        ckpt.processor.clone(),
    );
    let (model, _, _) = ckpt.build::<burn::backend::Flex>(&Default::default())?;
    policy::checkpoint::save(&model, &config_json, &tokenizer_json, &processor, &args.out)?;
    println!("{}", args.out.display());
    Ok(())
}

/// Open an image file and preprocess it for the policy; also its size in pixels.
pub(crate) fn open_image(
    path: &Path,
    processor: &policy::ProcessorConfig,
) -> Result<(policy::PreparedImage, (u32, u32))> {
    let rgb = image::open(path)
        .with_context(|| format!("{}", path.display()))?
        .to_rgb8();
    let (w, h) = rgb.dimensions();
    let prepared = policy::prepare(rgb.as_raw(), h as usize, w as usize, processor)
        .with_context(|| format!("{}", path.display()))?;
    Ok((prepared, (w, h)))
}

/// Run it on the backend `--device` names.
pub fn run(args: &GenerateArgs) -> Result<()> {
    args.device.run(Generate(args))?
}

/// [`generate`] as work for a [`policy::Device`].
#[derive(Debug)]
struct Generate<'a>(&'a GenerateArgs);

impl policy::OnBackend for Generate<'_> {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: &B::Device) -> Result<()>
    where
        policy::Qwen25VL<B>: Sync,
    {
        generate::<B>(self.0, device)
    }
}

fn generate<B: Backend>(args: &GenerateArgs, device: &B::Device) -> Result<()> {
    let ckpt = Checkpoint::load(&args.model)?;
    let processor = ckpt.processor.clone();
    let stop: Vec<u32> = ckpt.config.tokens.eos.clone();
    let (model, tokenizer, unused) = ckpt.build::<B>(device)?;
    if !unused.is_empty() {
        eprintln!(
            "note: {} checkpoint tensors unused: {}",
            unused.len(),
            unused.join(", ")
        );
    }
    let mut images = Vec::new();
    let mut parts = Vec::new();
    for path in &args.images {
        let (prepared, _) = open_image(path, &processor)?;
        parts.push(Part::Image(prepared.grid_thw));
        images.push(model.encode_image(&prepared));
    }
    parts.push(Part::Text(args.prompt.clone()));
    let tokens = if args.raw {
        anyhow::ensure!(images.is_empty(), "--raw takes no --image");
        tokenizer.encode(&args.prompt)?
    } else {
        tokenizer.chat(
            &[Message {
                role: Role::User,
                parts,
            }],
            true,
        )?
    };
    anyhow::ensure!(!tokens.is_empty(), "the prompt has no tokens");
    let prompt_len = tokens.len();
    let mut stop = stop;
    stop.push(tokenizer.special().im_end);
    let started = Instant::now();
    let out = greedy(
        &model,
        Row {
            tokens: tokens.clone(),
            images,
        },
        args.max_new_tokens,
        &stop,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.dump_logits {
        dump(path, &tokens, out.prompt_logits.clone())?;
        eprintln!("wrote {} ({prompt_len} prompt positions)", path.display());
    }
    let text = tokenizer.decode(&out.tokens, true)?;
    println!("{text}");
    eprintln!(
        "{prompt_len} prompt tokens, {} generated ({}) in {seconds:.2}s",
        out.tokens.len(),
        if out.stopped {
            "stop token"
        } else {
            "length limit"
        },
    );
    Ok(())
}

/// `logits` `[prompt, vocab]` f32 and `input_ids` `[prompt]` i64, written through a temporary
/// file renamed into place.
fn dump<B: Backend>(path: &Path, ids: &[u32], logits: burn::tensor::Tensor<B, 3>) -> Result<()> {
    use safetensors::{Dtype, tensor::TensorView};
    let [_, seq, vocab] = logits.dims();
    let values = logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
    let logit_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let id_bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&i| i64::from(i).to_le_bytes())
        .collect();
    let tensors = vec![
        (
            "logits",
            TensorView::new(Dtype::F32, vec![seq, vocab], &logit_bytes)?,
        ),
        (
            "input_ids",
            TensorView::new(Dtype::I64, vec![seq], &id_bytes)?,
        ),
    ];
    let tmp = path.with_extension("partial");
    safetensors::serialize_to_file(tensors, None, &tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}
