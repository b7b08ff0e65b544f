//! The `trainer` command line as a library, so that a program of your own can run it with
//! reward parts of your own registered: `trainer::main_with(registry)` (see
//! `trainer/examples/custom_reward.rs`). The binary is `main_with(Registry::with_builtins())`.
//!
//! It is glue: it parses arguments and recipe files into typed configs, calls the libraries,
//! prints results, and turns any error into one line on stderr with a non-zero exit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod eval;
mod generate_cmd;
pub mod grpo;
pub mod optim;
pub mod recipe;
mod reward_cmd;
mod rollout_cmd;
pub mod run;
mod sandbox_cmd;
pub mod schedule;
mod tasks_cmd;

/// vthinker-rl: GRPO training of vision-language models that think with images.
#[derive(Debug, Parser)]
#[command(name = "trainer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The Python sandbox the policy's code runs in.
    Sandbox {
        #[command(subcommand)]
        command: sandbox_cmd::SandboxCommand,
    },
    /// Score one completion with a recipe's reward parts and print each part as JSON.
    Reward(reward_cmd::RewardArgs),
    /// Greedy generation from a checkpoint: prints the text; optionally writes the prompt's
    /// logits to a safetensors file.
    Generate(generate_cmd::GenerateArgs),
    /// Write a checkpoint (e.g. the embedded default with random weights) as an HF directory.
    Export(generate_cmd::ExportArgs),
    /// Sample a group of trajectories (policy + sandbox) for one question and write a readable
    /// trace.
    Rollout(rollout_cmd::RolloutArgs),
    /// Train: GRPO as the recipe says, with checkpoints, resume and TensorBoard.
    Run(run::RunArgs),
    /// Validate a recipe (and those it starts from) without running it.
    Check(run::CheckArgs),
    /// Score a recipe's final checkpoint (or a checkpoint directory) on the held-out tasks,
    /// per family: greedy, at most 5 rounds; a table, a JSON file and TensorBoard scalars.
    Eval(eval::EvalArgs),
    /// Write generated tasks (with gold trajectories) as jsonl + images.
    Tasks(tasks_cmd::TasksArgs),
}

/// Run the command line with `registry`'s reward parts; the process's exit code.
pub fn main_with(registry: reward::Registry) -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sandbox { command } => sandbox_cmd::run(command),
        Command::Reward(args) => reward_cmd::run(&args, &registry),
        Command::Generate(args) => generate_cmd::run(&args),
        Command::Export(args) => generate_cmd::export(&args),
        Command::Rollout(args) => rollout_cmd::run(&args),
        Command::Run(args) => run::run(&args, &registry),
        Command::Check(args) => run::check(&args, &registry),
        Command::Eval(args) => eval::run(&args),
        Command::Tasks(args) => tasks_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain joined, without a backtrace.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
