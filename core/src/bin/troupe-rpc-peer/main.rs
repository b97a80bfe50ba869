//! A standalone RPC peer, for tests that need a real process to kill and
//! for the transport benchmark.
//!
//! ```text
//! troupe-rpc-peer serve --listen ADDR --token TOKEN [--keepalive-ms N]
//!     serves the diagnostic services; prints `listening ADDR`, and
//!     `sleep MS` as each sleep call starts
//! troupe-rpc-peer raw-echo --listen ADDR
//!     the plain-TCP reference: echoes length-prefixed frames
//! troupe-rpc-peer bench [--seconds S] [--rounds N]
//!     runs both of the above as child processes and prints the comparison
//! troupe-rpc-peer load --addr ADDR --token TOKEN [--payload B] [--depth D] [--seconds S]
//!     drives echo calls at a running `serve` peer (for profiling one side)
//! ```

mod bench;
mod raw;

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use troupe_core::rpc::diag::DiagService;
use troupe_core::rpc::{ClusterToken, RpcConfig, RpcServer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        bail!("usage: troupe-rpc-peer serve|raw-echo|bench [options]");
    };
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    // TROUPE_RPC_PEER_THREADS=1 runs on a single-threaded runtime, like an
    // actix worker; the default is tokio's multi-threaded scheduler.
    let threads: usize = std::env::var("TROUPE_RPC_PEER_THREADS")
        .ok()
        .map(|s| s.parse())
        .transpose()
        .context("TROUPE_RPC_PEER_THREADS must be a number")?
        .unwrap_or(0);
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    match command.as_str() {
        "serve" => {
            let listen = flag("--listen").context("serve needs --listen ADDR")?;
            let token = flag("--token").context("serve needs --token TOKEN")?;
            let mut config = RpcConfig::new(ClusterToken::new(token)?);
            if let Some(ms) = flag("--keepalive-ms") {
                config.keepalive_interval = Duration::from_millis(ms.parse()?);
                config.keepalive_timeout = config.keepalive_interval * 5;
            }
            runtime.block_on(serve(&listen, config))
        }
        "raw-echo" => {
            let listen = flag("--listen").context("raw-echo needs --listen ADDR")?;
            runtime.block_on(raw::serve_echo(&listen))
        }
        "bench" => {
            let seconds: f64 = flag("--seconds")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(3.0);
            let rounds: usize = flag("--rounds")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(3);
            drop(runtime);
            bench::run(Duration::from_secs_f64(seconds), rounds)
        }
        "load" => {
            let addr = flag("--addr").context("load needs --addr ADDR")?;
            let token = flag("--token").context("load needs --token TOKEN")?;
            let payload: usize = flag("--payload")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(64);
            let depth: usize = flag("--depth")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(64);
            let seconds: f64 = flag("--seconds")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(5.0);
            runtime.block_on(bench::load(
                &addr,
                &token,
                payload,
                depth,
                Duration::from_secs_f64(seconds),
            ))
        }
        other => bail!("unknown command {other:?}; use serve, raw-echo, bench or load"),
    }
}

/// Prints one line to stdout and flushes it, so a parent reading our
/// output sees it at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Binds `listen`, retrying briefly: a test that restarts a peer on the
/// port its predecessor held may race the kernel releasing it.
async fn bind_retrying(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.expect("tried at least once")).with_context(|| format!("binding {listen}"))
}

async fn serve(listen: &str, config: RpcConfig) -> anyhow::Result<()> {
    let listener = bind_retrying(listen).await?;
    let diag = DiagService::new().on_sleep(|ms| say(&format!("sleep {ms}")));
    let server = diag.register(RpcServer::new(config)).serve(listener);
    say(&format!("listening {}", server.local_addr()));
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
