//! The `trainer` binary: the command line with the built-in reward parts.

/// mimalloc reuses freed pages; with glibc every large tensor is a fresh mapping that the kernel
/// zeroes (≈ 10 % of a CPU training step on the tiny policy, see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    trainer::main_with(reward::Registry::with_builtins())
}
