//! The chaos harness on real processes: `troupe-chain chaos run` as a
//! user runs it, and the harness's network and cleanup guarantees.
//!
//! Namespace tests need root (CI runs as root); elsewhere they say they
//! were skipped, except under `CI=true`, where a missing capability fails.

mod bench;
mod cleanup;
mod cli;
mod network;
mod serving;

use std::path::Path;
use std::time::Duration;

/// The serve examples' binary: a node with the `chain` app registered.
pub const SERVE_BIN: &str = env!("CARGO_BIN_EXE_troupe-chain");

/// True when network namespaces can be made here; otherwise prints why
/// the test is skipped (and fails under CI, which runs as root).
pub fn namespaces_or_skip(test: &str) -> bool {
    match troupe::chaos::cluster::network::unavailable_reason() {
        None => true,
        Some(why) => {
            assert!(
                std::env::var("CI").is_err(),
                "{test}: CI runs as root, yet {why}"
            );
            eprintln!("{test}: skipped: {why}");
            false
        }
    }
}

/// Polls `cond` every 50 ms until it holds; false after `within`.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True while `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| !r.trim().starts_with('Z')))
        .unwrap_or(false)
}

/// The state letter of `pid` (`T` when stopped), if it exists.
pub fn state(pid: u32) -> Option<char> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()))
}

/// Writes a scenario file into `dir`.
pub fn scenario(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Whether the bridge or namespace named `name` still exists.
pub fn ip_object_exists(name: &str) -> bool {
    let listed = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    listed(&["link"]).contains(name) || listed(&["netns", "list"]).contains(name)
}

/// Whether the proxy at `addr` answers `/-/healthz` within `within`.
pub async fn healthy(addr: &str, within: Duration) -> bool {
    troupe::chaos::workload::client::get(addr, "/-/healthz", within)
        .await
        .is_some_and(|(status, _)| status == 200)
}
