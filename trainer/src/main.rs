//! The `trainer` binary: the command line with the built-in reward parts.

fn main() -> std::process::ExitCode {
    trainer::main_with(reward::Registry::with_builtins())
}
