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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
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
            runtime.block_on(bench::run(Duration::from_secs_f64(seconds), rounds))
        }
        other => bail!("unknown command {other:?}; use serve, raw-echo or bench"),
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
