//! The training loop of one recipe.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use burn::module::AutodiffModule as _;
use burn::tensor::backend::Backend;
use policy::{Checkpoint, Qwen25VL};
use rollout::{Context, Finish, Overlap, StopStrings};
use sandbox::Sandbox;

use super::checkpoint::{self, Contents, TrainerState};
use super::data::{Cursor, Prompts};
use super::learner::{Item, Learner, LearnerConfig, Train};
use super::log::{RunLog, strip};
use super::metrics::{Times, scalars};
use super::progress::Progress;
use super::sampler::{Batch, Sampler};
use super::sft;
use super::validation::Validation;
use super::{Options, shown};
use crate::grpo::{LossConfig, advantages};
use crate::optim::{AdamW, AdamWConfig};
use crate::recipe::Loaded;
use crate::recipe::run::Stage;
use tasks::generate::Split;

/// Train `loaded` from `start_model` (or from its newest checkpoint with `resume`); the final
/// checkpoint's directory.
pub fn train<B: Backend>(
    loaded: &Loaded,
    start_model: &str,
    options: Options,
    registry: &reward::Registry,
    device: &B::Device,
) -> Result<PathBuf>
where
    Qwen25VL<B>: Sync,
{
    let r = &loaded.recipe;
    let root = r.checkpoints.dir.join(&r.name);
    let resumed = if options.resume {
        checkpoint::latest(&root, &mut |w| eprintln!("warning: {w}"))
    } else {
        if let Some((dir, _)) = checkpoint::latest(&root, &mut |_| {}) {
            return Err(anyhow!(
                "{} holds a checkpoint of an earlier run ({}); add --resume to continue it, or \
                 remove the directory to start over",
                shown(&root),
                shown(&dir)
            ));
        }
        None
    };
    let max_steps = r.max_steps();
    if let Some((dir, state)) = &resumed {
        if state.is_final(max_steps) {
            eprintln!("{}: already trained ({} steps)", shown(dir), state.step);
            return Ok(checkpoint::final_in(&root, max_steps).unwrap_or_else(|| dir.clone()));
        }
        eprintln!("resuming from {} (step {})", shown(dir), state.step);
    }
    let ckpt = match &resumed {
        Some((dir, _)) => Checkpoint::load_dir(dir)?,
        None => Checkpoint::load(start_model).with_context(|| format!("policy {start_model}"))?,
    };
    let config_json = ckpt.config_json.clone();
    let tokenizer_json = ckpt.tokenizer_json.clone();
    let processor = ckpt.processor.clone();
    let eos = ckpt.config.tokens.eos.clone();
    let (model, tokenizer, _) = ckpt.build::<Train<B>>(device)?;
    // The KL reference is the starting policy: on a fresh run the weights just loaded (the
    // inference view shares their tensors, which the optimizer replaces rather than mutates,
    // so it stays frozen without a copy); on a resumed run it is loaded again.
    // SFT has no KL term, so no reference.
    let beta = if r.stage == Stage::Sft {
        0.0
    } else {
        r.grpo.beta
    };
    let reference = match (&resumed, beta > 0.0) {
        (_, false) => None,
        (None, true) => Some(model.valid()),
        (Some(_), true) => Some(
            Checkpoint::load(start_model)
                .with_context(|| format!("the reference policy {start_model}"))?
                .build::<B>(device)?
                .0,
        ),
    };
    let model = if r.policy.freeze_vision {
        model.freeze_vision_encoder()
    } else {
        model
    };
    let o = &r.optimizer;
    let mut optim = AdamW::new(AdamWConfig {
        beta1: o.adam_beta1,
        beta2: o.adam_beta2,
        epsilon: o.adam_epsilon,
        weight_decay: o.weight_decay,
    });
    if let Some((dir, state)) = &resumed {
        let tensors = checkpoint::read_tensors(&dir.join(checkpoint::OPTIMIZER))?;
        optim
            .restore(&model, state.optimizer_steps, tensors, device)
            .map_err(|e| anyhow!("{}: {e}", shown(&dir.join(checkpoint::OPTIMIZER))))?;
    }
    let g = &r.grpo;
    let mut learner = Learner::new(
        model,
        reference,
        optim,
        LearnerConfig {
            loss: LossConfig {
                epsilon: g.epsilon,
                epsilon_high: g.epsilon_high.unwrap_or(g.epsilon),
                beta,
                loss_type: g.loss_type,
                max_completion_length: r.rollout.max_completion_length,
                batch_tokens: None,
            },
            micro_batch: match r.stage {
                Stage::Sft => r.sft.per_device_train_batch_size,
                Stage::Grpo => g.per_device_train_batch_size,
            },
            max_micro_batch_tokens: match r.stage {
                Stage::Sft => 0,
                Stage::Grpo => g.max_tokens_per_micro_batch,
            },
            iterations: if r.stage == Stage::Sft {
                1
            } else {
                g.num_iterations
            },
            max_grad_norm: o.max_grad_norm,
            schedule: o.schedule(),
            max_steps,
            sft: r.stage == Stage::Sft,
        },
    )?;

    let mut files: Vec<PathBuf> = r.data.train.iter().map(|f| loaded.resolve(f)).collect();
    if let Some(t) = &r.data.tasks {
        files.push(sft::generated(
            loaded,
            t,
            Split::Train,
            &t.families,
            t.count,
        )?);
    }
    let mut prompts = Prompts::load(&files, r.seed, r.data.shuffle)?;
    if let Some(mix) = &r.data.mix {
        prompts = prompts
            .mixed(&mix.column, &mix.shares)
            .map_err(|e| anyhow!("{}: {e}", shown(&loaded.path)))?;
        if prompts.undrawn() > 0 {
            eprintln!(
                "note: data.mix: {} row(s) whose {} has no share are not drawn",
                prompts.undrawn(),
                mix.column
            );
        }
    }
    let skipped = prompts.dataset.skipped.len();
    for s in prompts.dataset.skipped.iter().take(5) {
        eprintln!("warning: skipped {}: {}", s.source, s.reason);
    }
    if skipped > 5 {
        eprintln!("warning: … {} more bad rows skipped", skipped - 5);
    }
    let sft = r.stage == Stage::Sft;
    let rewards = match r.stage {
        Stage::Sft => None,
        Stage::Grpo => Some(
            registry
                .build(&r.rewards, &loaded.base_dir)
                .map_err(|e| anyhow!("{}: {e}", shown(&loaded.path)))?,
        ),
    };
    let sandbox = if r.rollout.sandbox {
        Some(Sandbox::new(r.sandbox.clone())?)
    } else {
        None
    };
    let rollout_config = r.rollout.config();
    let stops = StopStrings::thyme();
    let sampler = Sampler {
        prompts: &prompts,
        ctx: Context {
            tokenizer: &tokenizer,
            processor: &processor,
            config: &rollout_config,
            stops: &stops,
            eos: &eos,
        },
        sandbox: sandbox.as_ref(),
        seed: r.seed,
        group: g.num_generations,
        prompts_per_step: g.prompts_per_step(),
        overlap: Overlap::new(r.rollout.sandbox_workers, r.policy.device),
    };
    let gold = if sft {
        let t = Instant::now();
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let set = sft::gold_set(&prompts, &sampler.ctx, sandbox.as_ref(), threads)?;
        let kept = set.trajectories.iter().flatten().count();
        eprintln!(
            "gold trajectories: {kept} replayed with the sandbox in {:.1}s, {} rows skipped",
            t.elapsed().as_secs_f64(),
            set.skipped.len()
        );
        for s in set.skipped.iter().take(5) {
            eprintln!("warning: skipped {s}");
        }
        Some(set)
    } else {
        None
    };

    let validation = Validation::new(loaded)?;
    // Validation runs code like eval does, also in a run that samples without the sandbox.
    let validation_sandbox = match (&validation, &sandbox) {
        (Some(_), None) => Some(Sandbox::new(r.sandbox.clone())?),
        _ => None,
    };
    if let Some(v) = &validation {
        eprintln!(
            "validation: {} tasks every {} steps from step {}{}",
            v.tasks(),
            r.eval.steps,
            r.eval.from_step,
            if v.has_targets() {
                format!("; stops at {}", v.describe_targets())
            } else {
                String::new()
            }
        );
    }

    let first = resumed.as_ref().map_or(0, |(_, s)| s.step);
    let mut cursor = resumed
        .as_ref()
        .map_or(Cursor::default(), |(_, s)| s.cursor);
    let run_dir = r.logging.dir.join(&r.name);
    let mut log = RunLog::open(&run_dir, first, r.logging.histogram_bins)?;
    let mut progress = Progress::new(&r.name, first, max_steps, r.logging.progress_bar);
    let started = Instant::now();
    // The rollout copy: the learner's weights, or a bf16 copy of its language model.
    let rollout_dtype = r.rollout.dtype.float_dtype();
    let mut policy = learner.policy().with_text_dtype(rollout_dtype);
    let mut pending: Option<Batch> = None;
    let mut last_checkpoint = resumed.as_ref().map(|(d, _)| d.clone());
    let mut checkpoint_s = 0.0;
    let mut last_metrics = BTreeMap::new();
    let mut bad_rows = 0;
    let mut last_step = first;
    let mut stopped_on_target = false;
    let mut best = resumed.as_ref().and_then(|(_, s)| s.best);
    for step in first..max_steps {
        let step_started = Instant::now();
        let done = step + 1;
        let mut m = if let Some(gold) = &gold {
            let n = r.sft.per_device_train_batch_size * r.sft.gradient_accumulation_steps;
            let rows = prompts.take(&mut cursor, n);
            let items: Vec<Item<'_>> = rows
                .iter()
                .filter_map(|&i| gold.trajectories[i].as_ref())
                .map(|t| Item {
                    trajectory: t,
                    advantage: 1.0,
                })
                .collect();
            let stats = learner.step(&items, step)?;
            policy = learner.policy().with_text_dtype(rollout_dtype);
            sft::scalars(&stats, step_started.elapsed().as_secs_f64())
        } else {
            let batch = match pending.take() {
                Some(b) => b,
                None => sampler.sample(&policy, step, step, cursor)?,
            };
            cursor = batch.cursor;
            for b in &batch.bad_rows {
                progress.note(&format!("warning: skipped a row: {b}"));
            }
            bad_rows += batch.bad_rows.len();
            let reward_started = Instant::now();
            let inputs: Vec<_> = (0..batch.trajectories.len())
                .map(|k| sampler.reward_input(&batch, k))
                .collect();
            let scored = rewards
                .as_ref()
                .ok_or_else(|| anyhow!("a GRPO run without rewards"))?
                .score(&inputs);
            let reward_s = reward_started.elapsed().as_secs_f64();
            let adv = advantages(
                &scored.totals,
                g.num_generations,
                g.scale_rewards,
                g.drop_zero_variance_groups,
            )
            .map_err(|e| anyhow!("advantages: {e}"))?;
            let items: Vec<Item<'_>> = batch
                .trajectories
                .iter()
                .zip(&adv.values)
                .zip(&adv.kept)
                .filter(|((t, _), kept)| **kept && t.finish != Finish::Error)
                .map(|((t, &a), _)| Item {
                    trajectory: t,
                    advantage: a,
                })
                .collect();
            // Train; with overlap, sample the next step meanwhile with the policy as it is now.
            let overlap = r.rollout.overlap && step + 1 < max_steps;
            let (stats, next) = if overlap {
                std::thread::scope(|s| {
                    let handle = s.spawn(|| sampler.sample(&policy, step + 1, step, cursor));
                    let stats = learner.step(&items, step);
                    let next = handle
                        .join()
                        .map_err(|_| anyhow!("the rollout thread panicked"))
                        .and_then(|b| b);
                    (stats, Some(next))
                })
            } else {
                (learner.step(&items, step), None)
            };
            let stats = stats?;
            pending = next.transpose()?;
            policy = learner.policy().with_text_dtype(rollout_dtype);

            let sandbox_s: f64 = batch
                .trajectories
                .iter()
                .flat_map(|t| &t.blocks)
                .map(|b| b.elapsed_ms / 1e3)
                .sum();
            let times = Times {
                rollout: batch.seconds,
                sandbox: sandbox_s,
                reward: reward_s,
                checkpoint: checkpoint_s,
                step: step_started.elapsed().as_secs_f64(),
            };
            let m = scalars(
                &batch.trajectories,
                &scored,
                &adv,
                &stats,
                &times,
                step - batch.policy_step,
            );
            log.histogram("reward/total", &scored.totals, done);
            log.histogram("grpo/advantages", &adv.values, done);
            let every = r.logging.completions_steps;
            if every > 0 && (done % every == 0 || done == 1) {
                write_completions(
                    &mut log,
                    &sampler,
                    &batch,
                    &scored,
                    &adv.values,
                    done,
                    r.logging.completions_count,
                )?;
            }
            m
        };
        let mut new_best = None;
        if let Some(v) = validation.as_ref().filter(|v| v.due(done)) {
            let sandbox = sandbox
                .as_ref()
                .or(validation_sandbox.as_ref())
                .ok_or_else(|| anyhow!("validation without a sandbox"))?;
            let scored = v.score(&policy, &sampler.ctx, sandbox)?;
            progress.note(&format!("validation at step {done}: {}", scored.summary()));
            m.extend(scored.scalars());
            stopped_on_target = scored.reached;
            new_best = v.improves(&scored, done, best);
            if let Some(b) = new_best {
                progress.note(&format!("best validation so far: {}", v.describe_best(b)));
                best = new_best;
            }
        }
        last_step = done;
        log.scalars(done, &m)?;
        log.flush();
        progress.step(done, &m);
        last_metrics = m;

        checkpoint_s = 0.0;
        let save_every = r.checkpoints.save_steps;
        let stop = options.stop_at == Some(done);
        if stop
            || stopped_on_target
            || new_best.is_some()
            || done == max_steps
            || (save_every > 0 && done % save_every == 0)
        {
            let t = Instant::now();
            let state = TrainerState {
                run: r.name.clone(),
                step: done,
                max_steps,
                stopped_on_target,
                best,
                seed: r.seed,
                schedule: o.schedule(),
                optimizer_steps: learner.optimizer().steps(),
                cursor,
                start_model: start_model.to_string(),
                metrics: last_metrics.clone(),
                files: BTreeMap::new(),
            };
            let contents = Contents {
                model: &policy,
                config_json: &config_json,
                tokenizer_json: &tokenizer_json,
                processor: &processor,
                optimizer: learner.optimizer().state(learner.model()),
                recipe: &loaded.text,
            };
            let dir = checkpoint::save(&root, &contents, state)?;
            checkpoint::prune(&root, r.checkpoints.save_total_limit, best.map(|b| b.step))?;
            checkpoint_s = t.elapsed().as_secs_f64();
            progress.note(&format!("checkpoint {}", shown(&dir)));
            last_checkpoint = Some(dir);
        }
        if stopped_on_target {
            progress.note(&format!(
                "stopped at step {done}: validation reached {}",
                validation
                    .as_ref()
                    .map_or_else(String::new, Validation::describe_targets)
            ));
            break;
        }
        if stop {
            progress.note(&format!("stopped at step {done} (--stop-at)"));
            break;
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    let mut rows = vec![
        ("steps", format!("{first} → {last_step} (of {max_steps})")),
        ("time", format!("{total_s:.1}s")),
    ];
    if let Some((a, b)) = progress.reward_ends(10).filter(|_| !sft) {
        rows.push(("reward (first → last 10 steps)", format!("{a:.3} → {b:.3}")));
    }
    for (k, label) in [
        ("reward/accuracy", "accuracy (last step)"),
        ("reward/format_rate", "format rate (last step)"),
        ("rollout/executions_mean", "executions / trajectory"),
        ("grpo/kl", "KL to the reference"),
        ("rollout/tokens_per_s", "sampled tokens/s"),
    ] {
        if let Some(v) = last_metrics.get(k) {
            rows.push((label, format!("{v:.4}")));
        }
    }
    if let Some(v) = validation.as_ref().filter(|v| v.has_targets()) {
        let outcome = if stopped_on_target {
            format!("reached at step {last_step}")
        } else {
            format!("not reached by step {last_step}")
        };
        rows.push((
            "validation target",
            format!("{} — {outcome}", v.describe_targets()),
        ));
    }
    rows.push(("bad data rows skipped", format!("{}", skipped + bad_rows)));
    rows.push(("TensorBoard", shown(log.dir())));
    let mut done = last_checkpoint.ok_or_else(|| anyhow!("no checkpoint was written"))?;
    if let Some((v, b)) = validation.as_ref().zip(best) {
        rows.push(("best validation", v.describe_best(b)));
    }
    // The run's end (not a --stop-at) hands on its final checkpoint: the best one, if kept.
    if stopped_on_target || last_step == max_steps {
        done = checkpoint::final_in(&root, max_steps).unwrap_or(done);
    }
    rows.push(("checkpoint", shown(&done)));
    progress.finish(&rows);
    Ok(done)
}

/// A few trajectories of the step: their text to `completions.jsonl`, their images (the input
/// beside what the sandbox returned) to `completions/` and TensorBoard.
fn write_completions(
    log: &mut RunLog,
    sampler: &Sampler<'_>,
    batch: &Batch,
    scored: &reward::BatchRewards,
    adv: &[f64],
    step: u64,
    count: usize,
) -> Result<()> {
    let dir = log.dir().join("completions");
    std::fs::create_dir_all(&dir)?;
    for (k, t) in batch.trajectories.iter().enumerate().take(count) {
        let row = batch.rows[k / sampler.group];
        let sample = sampler.prompts.sample(row);
        let mut images = Vec::new();
        for p in &sample.images {
            if let Ok(i) = image::open(p) {
                images.push(i.to_rgb8());
            }
        }
        for kept in &t.kept_images {
            if let Ok(i) = image::load_from_memory(&kept.bytes) {
                images.push(i.to_rgb8());
            }
        }
        let mut files = Vec::new();
        if let Some(s) = strip(&images, 224) {
            let name = format!("step-{step}-{k}.png");
            s.save(dir.join(&name))?;
            files.push(format!("completions/{name}"));
            log.image(&format!("completions/{k}"), &s, step)?;
        }
        let parts: serde_json::Map<String, serde_json::Value> = scored
            .parts
            .iter()
            .map(|p| (p.label.clone(), serde_json::json!(p.values[k])))
            .collect();
        log.completion(&serde_json::json!({
            "step": step,
            "row": sample.source,
            "path": k % sampler.group,
            "reward": scored.totals[k],
            "parts": parts,
            "advantage": adv[k],
            "finish": t.finish,
            "rounds": t.rounds,
            "executions": t.blocks.len(),
            "question": sample.question,
            "solution": sample.solution,
            "completion": t.text,
            "image": files.first(),
        }))?;
    }
    Ok(())
}
