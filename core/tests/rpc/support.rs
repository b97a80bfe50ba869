//! Shared fixtures: configs, in-process servers, peer processes, waiting.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use troupe_core::rpc::diag::{DiagService, DiagState};
use troupe_core::rpc::{ClusterToken, RpcClient, RpcConfig, RpcServer, ServerHandle};

pub const TOKEN: &str = "test-cluster-token";

pub fn config() -> RpcConfig {
    RpcConfig::new(ClusterToken::new(TOKEN).unwrap())
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A diag server on a free loopback port.
pub async fn diag_server(config: RpcConfig) -> (ServerHandle, Arc<DiagState>) {
    let diag = DiagService::new();
    let state = diag.state();
    let server = diag
        .register(RpcServer::new(config))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, state)
}

pub fn client() -> RpcClient {
    RpcClient::new(config())
}

/// A `troupe-rpc-peer serve` child process. Killed (SIGKILL) when dropped.
pub struct Peer {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub addr: String,
}

impl Peer {
    /// Starts a peer on `listen` (`127.0.0.1:0` for any port) and waits
    /// until it listens.
    pub async fn start(listen: &str) -> Peer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_troupe-rpc-peer"))
            .args(["serve", "--listen", listen, "--token", TOKEN])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn troupe-rpc-peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut peer = Peer {
            child,
            lines,
            addr: String::new(),
        };
        let first = peer.wait_line("listening ", Duration::from_secs(20)).await;
        peer.addr = first.trim_start_matches("listening ").to_string();
        peer
    }

    /// Waits until the peer prints a line starting with `prefix`.
    pub async fn wait_line(&mut self, prefix: &str, within: Duration) -> String {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("peer exited before printing {prefix:?}");
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("peer did not print {prefix:?} within {within:?}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`) to the peer.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Freezes the peer (SIGSTOP) and waits until the kernel reports it
    /// stopped: the signal is delivered asynchronously, and a peer that
    /// still runs for a moment could answer a request sent right after.
    pub async fn freeze(&self) {
        self.signal("STOP");
        let stat = format!("/proc/{}/stat", self.pid());
        let stopped = || {
            std::fs::read_to_string(&stat)
                .ok()
                // The state follows the parenthesised command name.
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
                .unwrap_or(false)
        };
        wait_until("the peer is stopped", Duration::from_secs(10), stopped).await;
    }

    /// SIGKILLs the peer and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A stopped process still dies of SIGKILL; make sure of both.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        self.kill();
    }
}
