//! The `troupe` binary.

fn main() -> std::process::ExitCode {
    troupe::cli::run(troupe::Registry::new())
}
