//! `troupe-ensemble`: the ensemble composition pattern as a Troupe program — the
//! `troupe` CLI with the serve examples' types and applications. Run it
//! with `troupe-ensemble serve run ensemble` (see README.md next to this file).

fn main() -> std::process::ExitCode {
    troupe::cli::run(troupe_examples::patterns::catalog())
}
