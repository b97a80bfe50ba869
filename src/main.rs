//! The `troupe` binary.

/// mimalloc rather than glibc's malloc: the GCS and the serve path allocate
/// many small short-lived buffers, where glibc spent a fifth of a member's
/// CPU under write load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    troupe::cli::run(troupe::Registry::new())
}
