//! Launching the bench's cluster: N node processes of the running binary
//! on loopback (the GCS members on leased fixed ports, the last ones with
//! an HTTP proxy), their addresses read from their stdout, and every one
//! SIGKILLed and reaped when the [`Launched`] is dropped. The arguments
//! and the parsing of a node's "listening on" line are pure, tested below.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use troupe_worker::Cluster;

/// One node process.
pub(super) struct NodeProc {
    child: Child,
    pub(super) addr: String,
    /// Where its HTTP proxy listens, if it runs one.
    pub(super) http: Option<String>,
    pub(super) data_dir: PathBuf,
    /// SIGKILLed and reaped by the bench on purpose.
    pub(super) killed: bool,
}

/// The node processes of a run. Dropping it SIGKILLs and reaps every one;
/// their directory is removed only after a clean run (else kept for its
/// logs).
pub(super) struct Launched {
    pub(super) nodes: Vec<NodeProc>,
    /// The GCS members' fixed ports, held while the cluster runs.
    ports: troupe_chaos::cluster::ports::PortLease,
    pub(super) token: String,
    dir: PathBuf,
    pub(super) clean: bool,
}

impl Drop for Launched {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
        }
        for node in &mut self.nodes {
            let _ = node.child.wait();
        }
        if self.clean {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("bench: node logs kept in {}", self.dir.display());
        }
    }
}

impl Launched {
    /// Starts the head, then the other GCS members one at a time, then the
    /// rest all at once (the last `http_nodes` with an HTTP proxy); returns
    /// once every process printed its address.
    pub(super) async fn start(
        n: usize,
        gcs_members: usize,
        http_nodes: usize,
        timeout: Duration,
    ) -> anyhow::Result<Launched> {
        let binary = std::env::current_exe().context("finding the running executable")?;
        let dir = std::env::temp_dir().join(format!("troupe-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let token: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut launched = Launched {
            nodes: Vec::with_capacity(n),
            ports: troupe_chaos::cluster::ports::PortLease::take(gcs_members)?,
            token,
            dir,
            clean: false,
        };
        let deadline = Instant::now() + timeout;
        for k in 0..n {
            let join = (k > 0).then(|| launched.nodes[0].addr.clone());
            let listen = match k < gcs_members {
                // GCS members are named by address: a fixed port each.
                true => format!("127.0.0.1:{}", launched.ports.ports()[k]),
                false => "127.0.0.1:0".into(),
            };
            let role = NodeRole {
                gcs: k < gcs_members,
                http: k + http_nodes >= n,
            };
            let node = launched.spawn(&binary, k, join.as_deref(), role, &listen)?;
            launched.nodes.push(node);
            if k < gcs_members {
                launched.await_address(k, deadline).await?;
            }
        }
        for k in gcs_members..n {
            launched.await_address(k, deadline).await?;
        }
        Ok(launched)
    }

    fn spawn(
        &self,
        binary: &Path,
        k: usize,
        join: Option<&str>,
        role: NodeRole,
        listen: &str,
    ) -> anyhow::Result<NodeProc> {
        let data_dir = self.dir.join(format!("node-{k}"));
        let out = File::create(self.dir.join(format!("node-{k}.out")))?;
        let log = File::create(self.dir.join(format!("node-{k}.log")))?;
        let mut command = Command::new(binary);
        command.args(node_args(join, role, listen, &data_dir, &self.token));
        command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting node {k} ({})", binary.display()))?;
        Ok(NodeProc {
            child,
            addr: String::new(),
            http: None,
            data_dir,
            killed: false,
        })
    }

    /// Waits for node `k`'s "listening on" line (its stdout is a file).
    async fn await_address(&mut self, k: usize, deadline: Instant) -> anyhow::Result<()> {
        let out = self.dir.join(format!("node-{k}.out"));
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(addr) = listening_addr(&text) {
                self.nodes[k].addr = addr;
                self.nodes[k].http = http_addr(&text);
                return Ok(());
            }
            if let Some(status) = self.nodes[k].child.try_wait()? {
                bail!(
                    "node {k} exited ({status}) before listening; see {}",
                    self.dir.join(format!("node-{k}.log")).display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "node {k} did not print its address in time ({} of {} nodes up)",
                    k,
                    self.nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.child.id()).collect()
    }

    /// SIGKILLs node `k` and reaps it.
    pub(super) fn kill(&mut self, k: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[k];
        node.child
            .kill()
            .with_context(|| format!("SIGKILL of node {k}"))?;
        node.child.wait()?;
        node.killed = true;
        Ok(())
    }
}

/// What a launched node runs besides its worker.
#[derive(Debug, Clone, Copy)]
struct NodeRole {
    /// A GCS member.
    gcs: bool,
    /// An HTTP proxy (on a free port).
    http: bool,
}

/// The `start` arguments of a bench node: no admin API, an HTTP proxy on
/// a free port only if its role says so (the control plane is measured),
/// one actor thread, CPUs enough that placement is never the limit.
fn node_args(
    join: Option<&str>,
    role: NodeRole,
    listen: &str,
    data_dir: &Path,
    token: &str,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["start".into()];
    match join {
        None => args.push("--head".into()),
        Some(addr) => {
            args.extend(["--join".into(), addr.into()]);
            if role.gcs {
                args.push("--gcs".into());
            }
        }
    }
    args.extend(
        [
            "--listen",
            listen,
            "--data-dir",
            &data_dir.display().to_string(),
            "--token",
            token,
            "--num-cpus",
            "100",
            "--actor-threads",
            "1",
            "--no-dashboard",
        ]
        .map(String::from),
    );
    match role.http {
        true => args.extend(["--http-listen".into(), "127.0.0.1:0".into()]),
        false => args.push("--no-http".into()),
    }
    args
}

/// The address in a node's "node ID listening on ADDR ..." line.
fn listening_addr(stdout: &str) -> Option<String> {
    let rest = stdout.split("listening on ").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    Some(addr.to_owned())
}

/// The proxy's address in a node's "... listening on ADDR http HTTP ..."
/// line, if it runs one.
fn http_addr(stdout: &str) -> Option<String> {
    let line = stdout.lines().find(|l| l.contains("listening on "))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "http")?;
    words.next().map(str::to_owned)
}

pub(super) async fn wait_registered(
    driver: &Cluster,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let registered = driver.state().await.map(|s| s.nodes.len()).unwrap_or(0);
        if registered >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {registered} of {n} nodes registered in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let line = "node node-ab12 listening on 127.0.0.1:4567 admin 127.0.0.1:9\n";
        assert_eq!(listening_addr(line).as_deref(), Some("127.0.0.1:4567"));
        assert_eq!(listening_addr("starting\n"), None);
    }

    #[test]
    fn the_first_node_is_the_head_and_members_join_with_gcs() {
        let role = |gcs, http| NodeRole { gcs, http };
        let args = |join, role, listen| node_args(join, role, listen, Path::new("/d"), "t");
        let head = args(None, role(true, false), "127.0.0.1:1");
        assert_eq!(&head[..2], ["start", "--head"]);
        assert!(head.contains(&"--no-http".to_string()));
        let member = args(Some("127.0.0.1:1"), role(true, false), "127.0.0.1:2");
        assert_eq!(&member[..4], ["start", "--join", "127.0.0.1:1", "--gcs"]);
        let plain = args(Some("127.0.0.1:1"), role(false, false), "127.0.0.1:0");
        assert!(!plain.contains(&"--gcs".to_string()));
        assert!(plain.windows(2).any(|w| w == ["--token", "t"]));
        let proxy = args(Some("127.0.0.1:1"), role(false, true), "127.0.0.1:0");
        assert!(proxy
            .windows(2)
            .any(|w| w == ["--http-listen", "127.0.0.1:0"]));
        assert!(!proxy.contains(&"--no-http".to_string()));
    }

    #[test]
    fn the_proxy_address_is_read_from_the_listening_line() {
        let line =
            "node node-ab12 listening on 127.0.0.1:4567 http 127.0.0.1:8123 admin 127.0.0.1:9\n";
        assert_eq!(http_addr(line).as_deref(), Some("127.0.0.1:8123"));
        let without = "node node-ab12 listening on 127.0.0.1:4567\n";
        assert_eq!(http_addr(without), None);
        assert_eq!(http_addr(""), None);
    }
}
