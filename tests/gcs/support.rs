//! Member processes on loopback, each in its own data directory, killed by
//! pid when the test ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use troupe_core::rpc::{CallOptions, ClusterToken, RpcClient, RpcConfig};
use troupe_gcs::api::{Admin, AdminReply, AdminRequest, MemberStatus};
use troupe_gcs::client::{ClientConfig, GcsClient};

pub const TOKEN: &str = "gcs-process-test";

pub fn rpc_config() -> RpcConfig {
    RpcConfig::new(ClusterToken::new(TOKEN).unwrap())
}

pub fn rpc() -> RpcClient {
    RpcClient::new(rpc_config())
}

pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Member {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// Starts `troupe gcs serve` and waits for its "listening on" line.
    fn spawn(id: u64, dir: PathBuf, listen: &str, bootstrap: bool) -> Member {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
        cmd.args([
            "gcs",
            "serve",
            "--id",
            &id.to_string(),
            "--listen",
            listen,
            "--token",
            TOKEN,
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        let mut child = cmd.spawn().expect("spawn troupe gcs serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the member's first line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|_| line.contains("listening on"))
            .unwrap_or_else(|| panic!("member {id} did not start: {line:?}"))
            .to_string();
        Member {
            id,
            addr,
            dir,
            child: Some(child),
        }
    }

    /// SIGKILL: no shutdown, no flush beyond what was acknowledged.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the member again on its data directory and address.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a killed member only");
        let again = Member::spawn(self.id, self.dir.clone(), &self.addr, false);
        assert_eq!(again.addr, self.addr);
        *self = again;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// This member's own view (not the leader's).
    pub async fn status(&self, rpc: &RpcClient) -> Option<MemberStatus> {
        let options = CallOptions {
            timeout: Some(Duration::from_secs(2)),
            fail_fast: true,
        };
        match rpc
            .channel(&self.addr)
            .call_with::<Admin>(&AdminRequest::Status, options)
            .await
        {
            Ok(Ok(AdminReply::Status(s))) => Some(s),
            _ => None,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub rpc: RpcClient,
    _tmp: TempDir,
}

impl Cluster {
    /// `n` member processes: the first bootstraps, the rest are added.
    pub async fn start(n: usize) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut members = Vec::new();
        for i in 0..n {
            let id = i as u64 + 1;
            members.push(Member::spawn(
                id,
                tmp.path().join(format!("m{id}")),
                "127.0.0.1:0",
                i == 0,
            ));
        }
        let cluster = Cluster {
            members,
            rpc: rpc(),
            _tmp: tmp,
        };
        let client = cluster.client();
        for m in &cluster.members[1..] {
            client
                .admin(AdminRequest::AddLearner {
                    id: m.id,
                    addr: m.addr.clone(),
                })
                .await
                .unwrap();
            client
                .admin(AdminRequest::Promote { id: m.id })
                .await
                .unwrap();
        }
        cluster
    }

    pub fn client(&self) -> GcsClient {
        let addrs = self.members.iter().map(|m| m.addr.clone()).collect();
        GcsClient::new(self.rpc.clone(), ClientConfig::new(addrs)).unwrap()
    }

    /// The index of the member that leads, as a running member reports it.
    pub async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            for (i, m) in self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.is_running())
            {
                if m.status(&self.rpc)
                    .await
                    .is_some_and(|s| s.role == "Leader")
                {
                    return i;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no running member became leader"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Member {
    /// A new member (without --bootstrap) on `dir`, on a free port; add it
    /// with `troupe gcs add`.
    pub fn start_new(id: u64, dir: PathBuf) -> Member {
        Member::spawn(id, dir, "127.0.0.1:0", false)
    }

    /// Starts this killed member again on its data directory and address,
    /// expecting it to refuse to start: its exit status and stderr. Killed
    /// (and the test failed) if it is still running after `within`.
    pub async fn restart_expecting_exit(
        &self,
        within: Duration,
    ) -> (std::process::ExitStatus, String) {
        assert!(self.child.is_none(), "restart a killed member only");
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_troupe"))
            .args(["gcs", "serve", "--id", &self.id.to_string()])
            .args(["--listen", &self.addr, "--token", TOKEN])
            .arg("--data-dir")
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(within, run)
            .await
            .unwrap_or_else(|_| panic!("member {} still running after {within:?}", self.id))
            .expect("run troupe gcs serve");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !stdout.contains("listening on"),
            "member {} started: {stdout}",
            self.id
        );
        (out.status, String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// Runs `troupe gcs ARGS... --token TOKEN` (a membership command) to its
/// end: its exit status, stdout and stderr. Killed after `within`.
pub async fn troupe_gcs(args: &[&str], within: Duration) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_troupe"))
        .arg("gcs")
        .args(args)
        .args(["--token", TOKEN])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(within, run)
        .await
        .unwrap_or_else(|_| panic!("troupe gcs {args:?} still running after {within:?}"))
        .expect("run troupe gcs")
}
