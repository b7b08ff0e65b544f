//! Groups on the real tiny policy: one decode batch, paths leaving it for their sandbox calls
//! and rejoining. The tiny random policy never writes code on its own, so some paths are made
//! to (forced decoding: the scripted tokens are emitted in place of samples and recorded with
//! the policy's own log-probs); everything after a splice is sampled.

mod common;

use burn::backend::Flex;
use burn::tensor::FloatDType;
use common::{SANDBOX, TINY, logprob_gap, prompt, tiny_ctx};
use policy::rng::Rng;
use policy::{QueryGrouping, Qwen25VL};
use rollout::trajectory;
use rollout::{
    Context, Finish, GroupId, Overlap, Path, PolicyDecoder, RolloutConfig, StopStrings, Tools,
    Trajectory, run_group, run_paths,
};
use sandbox::SandboxOutput;

const ID: GroupId = GroupId {
    run_seed: 3,
    step: 2,
    prompt: 17,
};

/// What each path is made to write first ("" = nothing: it samples from the start).
const OPENINGS: [&str; 5] = [
    "I draw it. <code>\n```python\nfrom PIL import Image\n\
     Image.new('RGB', (64, 48), 'red').save(os.path.join(output_dir, 'a.png'))\n```\n</code>",
    "<code>\n```python\nprint(6 * 7)\n```\n</code>",
    "",
    "<code>\n```python\n1/0\n```\n</code>",
    "<answer>42</answer>",
];

fn paths<'c>(ctx: &'c Context<'c>) -> Vec<Path<'c>> {
    let (_, tok, _, _) = &*TINY;
    let mut paths = ID.paths(ctx, &prompt(tok), OPENINGS.len());
    for (path, opening) in paths.iter_mut().zip(OPENINGS) {
        path.force(&tok.encode(opening).expect("opening"));
    }
    paths
}

fn config() -> RolloutConfig {
    RolloutConfig {
        max_total_tokens: 96,
        ..Default::default()
    }
}

fn tools() -> Tools<'static> {
    Tools {
        sandbox: Some(&*SANDBOX),
        inputs: &[],
    }
}

fn group(ctx: &Context<'_>, overlap: Overlap) -> Vec<Trajectory> {
    let (model, tok, _, _) = &*TINY;
    run_paths(model, &prompt(tok), tools(), ID, paths(ctx), overlap)
}

/// The same group decoded in one batch with sandbox calls overlapped on workers, in one batch
/// serially, and path by path alone: identical trajectories (the padded batch computes each row
/// as it is computed alone, so a path's samples do not depend on who shares its batch).
#[test]
fn overlapped_serial_and_alone_give_the_same_trajectories() {
    let (model, _, _, _) = &*TINY;
    let config = config();
    let stops = StopStrings::thyme();
    let ctx = tiny_ctx(&config, &stops);
    let overlapped = group(&ctx, Overlap::Workers(2));
    let serial = group(&ctx, Overlap::Serial);
    assert_eq!(overlapped.len(), OPENINGS.len());
    for (g, path) in paths(&ctx).into_iter().enumerate() {
        let mut session = SANDBOX.session(&ID.session_name(g), &[]).expect("session");
        let alone = trajectory::run(&mut PolicyDecoder::new(model), path, Some(&mut session));
        for (how, t) in [("serial", &serial[g]), ("alone", &alone)] {
            assert_eq!(
                overlapped[g].tokens, t.tokens,
                "path {g}: overlapped vs {how}"
            );
            assert_eq!(
                overlapped[g].logprobs, t.logprobs,
                "path {g}: overlapped vs {how}"
            );
            assert_eq!(overlapped[g].finish, t.finish);
        }
    }
}

/// Real trajectories: the sandbox results are in (an image, printed text, an error), every
/// mask-0 completion token is a splice that decodes to exactly what the sandbox returned, and
/// the recorded log-probs — through the cache, the batch, the rejoins and the spliced image —
/// equal one fresh full forward over the final sequence.
#[test]
fn splices_are_exact_and_logprobs_match_a_fresh_forward() {
    let (model, _, _, _) = &*TINY;
    splices_exact(model, Overlap::Workers(2), 1e-5);
}

/// The same on the GPU's arrangement, run on the CPU: sandbox calls on workers, every forward
/// on the decoding thread, query heads grouped against shared K/V heads in cached attention;
/// in f32 and with the language model in bf16 (the rollout copy's dtype on a GPU), where the
/// recorded log-probs must match a fresh bf16 forward within bf16's rounding.
#[test]
fn the_gpu_arrangement_splices_exactly_with_logprobs_matching_a_fresh_forward() {
    let (model, _, _, _) = &*TINY;
    let model = model.clone().with_query_grouping(QueryGrouping::SharedKv);
    splices_exact(&model, Overlap::SandboxWorkers(2), 1e-5);
    let bf16 = model.with_text_dtype(FloatDType::BF16);
    splices_exact(&bf16, Overlap::SandboxWorkers(2), BF16_LOGPROB_TOL);
}

/// |recorded − fresh| log-prob in bf16. The group decodes after a prompt kept once, whose
/// attention rounds the softmax weights to bf16 before the value product (as flash kernels
/// do); the fresh forward's fused attention keeps them in f32. Measured on flex: 3.9e-3 (with
/// the prompt copied per row instead: 4.8e-7); bf16 itself moves a logit by 4e-3 here.
const BF16_LOGPROB_TOL: f32 = 1e-2;

/// Sandbox calls on workers with the forwards after them on the decoding thread give the
/// trajectories the serial batch gives, bit for bit.
#[test]
fn forwards_kept_on_the_decoding_thread_give_the_serial_trajectories() {
    let config = config();
    let stops = StopStrings::thyme();
    let ctx = tiny_ctx(&config, &stops);
    let split = group(&ctx, Overlap::SandboxWorkers(2));
    let serial = group(&ctx, Overlap::Serial);
    for (g, (a, b)) in split.iter().zip(&serial).enumerate() {
        assert_eq!(
            (&a.tokens, &a.logprobs),
            (&b.tokens, &b.logprobs),
            "path {g}"
        );
        assert_eq!(a.finish, b.finish);
    }
}

fn splices_exact(model: &Qwen25VL<Flex>, overlap: Overlap, tolerance: f32) {
    let (_, tok, _, _) = &*TINY;
    let config = config();
    let stops = StopStrings::thyme();
    let ctx = tiny_ctx(&config, &stops);
    let group = run_paths(model, &prompt(tok), tools(), ID, paths(&ctx), overlap);
    assert!(matches!(&group[0].blocks[0].output, SandboxOutput::Images(v) if v.len() == 1));
    assert_eq!(group[0].images.len(), 1);
    assert_eq!(group[1].blocks[0].output, SandboxOutput::Text("42".into()));
    assert!(
        matches!(&group[3].blocks[0].output, SandboxOutput::Error(e) if e.contains("ZeroDivisionError"))
    );
    assert_eq!((group[4].finish, group[4].rounds), (Finish::Answer, 1));
    let mut worst = 0.0f32;
    for (g, t) in group.iter().enumerate() {
        assert_ne!(t.finish, Finish::Error, "path {g}: {:?}", t.error);
        // The completion's mask-0 runs, in order, are the blocks' outputs as the turn shows them.
        let mut runs: Vec<Vec<u32>> = Vec::new();
        for i in t.prompt_len..t.tokens.len() {
            if t.mask[i] == 1 {
                assert!(t.logprobs[i] <= 0.0);
                continue;
            }
            if t.mask[i - 1] == 1 || i == t.prompt_len {
                runs.push(Vec::new());
            }
            runs.last_mut().expect("run").push(t.tokens[i]);
        }
        assert_eq!(runs.len(), t.blocks.len(), "path {g}");
        for (run, block) in runs.iter().zip(&t.blocks) {
            let text = tok.decode(run, false).expect("decode");
            let inner = match &block.output {
                SandboxOutput::Text(s) | SandboxOutput::Error(s) => s.clone(),
                SandboxOutput::Images(_) => tok.image_placeholder(t.images[0].grid_thw),
            };
            assert_eq!(text, format!("<sandbox_output>{inner}</sandbox_output>"));
        }
        let gap = logprob_gap(model, t);
        println!(
            "path {g}: {:?}, {} tokens, old vs fresh log-probs {gap:e}",
            t.finish,
            t.tokens.len()
        );
        worst = worst.max(gap);
    }
    assert!(worst <= tolerance, "old vs fresh log-probs: {worst:e}");
}

/// A group of unforced paths: each equals the same trajectory run alone with its seed; the
/// trace has a line per path.
#[test]
fn group_paths_replay_alone_and_the_trace_has_a_line_per_path() {
    let (model, tok, _, _) = &*TINY;
    let config = RolloutConfig {
        max_total_tokens: 24,
        ..Default::default()
    };
    let stops = StopStrings::thyme();
    let ctx = tiny_ctx(&config, &stops);
    let p = prompt(tok);
    let group = run_group(model, &ctx, &p, tools(), ID, 4, Overlap::Workers(2));
    assert_eq!(group.len(), 4);
    let path = Path::new(&ctx, p.clone(), Rng::new(ID.seed(1)));
    let alone = trajectory::run(&mut PolicyDecoder::new(model), path, None);
    assert_eq!(alone.tokens, group[1].tokens);
    assert_ne!(group[0].tokens, group[1].tokens);

    let dir = tempfile::tempdir().expect("tmp");
    let trace = rollout::trace::append_group(dir.path(), ID, &group, tok).expect("trace");
    let text = std::fs::read_to_string(trace).expect("read");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["path"], 1);
    assert_eq!(lines[1]["completion_tokens"], 24);
    assert!(
        lines[1]["prompt"]
            .as_str()
            .expect("prompt")
            .contains("six times seven")
    );
}
