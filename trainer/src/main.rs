//! The `trainer` binary: the command line over the vthinker-rl crates. It is glue: it parses
//! arguments into typed configs, calls the libraries, prints results, and turns any error into
//! one line on stderr with a non-zero exit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod sandbox_cmd;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sandbox { command } => sandbox_cmd::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
