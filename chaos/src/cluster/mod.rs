//! The cluster under test: node processes (each in its own network
//! namespace when it can be), their logs, and the guard that leaves
//! nothing behind.
//!
//! Everything a run starts it stops by pid: on success, on failure, on
//! Ctrl-C (the run returns early) and on panic ([`Cluster`]'s `Drop`:
//! paused nodes get SIGCONT, every node SIGKILL, then namespaces and the
//! bridge are deleted). Data directories live in a temp dir removed with
//! the cluster; logs go to the run's output folder.

pub mod network;
pub mod ports;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use crate::record::ProcessLife;
use crate::scenario::{ClusterSpec, NetworkMode};
use network::Namespaces;
use ports::PortLease;

/// Ports every node uses inside its own namespace.
const RPC_PORT: u16 = 6380;
const HTTP_PORT: u16 = 8000;
const ADMIN_PORT: u16 = 8265;

/// How long a node may take to print its "listening on" line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The log filter of every node: warnings, plus the instance lifecycle
/// lines the placement check reads.
pub const NODE_LOG_FILTER: &str = "warn,troupe_worker::instance=info";

/// A node's addresses (fixed across restarts: GCS membership names them).
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    /// RPC (the node and its GCS member).
    pub rpc: String,
    /// The HTTP proxy.
    pub http: String,
    /// The admin API and /metrics.
    pub admin: String,
}

/// What the harness knows of one node.
#[derive(Clone, Debug)]
pub struct NodeState {
    /// Its process, while one runs.
    pub pid: Option<u32>,
    /// SIGSTOPped and not yet resumed.
    pub paused: bool,
    /// The node id it printed (`node-…`); a wiped node gets a new one.
    pub node_id: String,
    /// Its data directory was wiped and it has not yet rejoined.
    pub wiped: bool,
}

/// How a node (re)starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartRole {
    /// Bootstraps the cluster (node 0's first start) or restarts the head
    /// on its data directory.
    Head,
    /// Joins through `addr`, as a GCS member or not.
    Join {
        /// Any live node's RPC address.
        addr: String,
        /// Also a GCS member.
        gcs: bool,
    },
}

/// The `start` arguments of a node: pure, so they can be tested.
pub fn start_args(
    spec: &ClusterSpec,
    role: &StartRole,
    addrs: &NodeAddrs,
    data_dir: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["start".into()];
    match role {
        StartRole::Head => args.push("--head".into()),
        StartRole::Join { addr, gcs } => {
            args.extend(["--join".into(), addr.clone()]);
            if *gcs {
                args.push("--gcs".into());
            }
        }
    }
    args.extend([
        "--listen".into(),
        addrs.rpc.clone(),
        "--http-listen".into(),
        addrs.http.clone(),
        "--dashboard-listen".into(),
        addrs.admin.clone(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--num-cpus".into(),
        spec.num_cpus.to_string(),
        "--node-ttl".into(),
        spec.node_ttl_s.to_string(),
        "--actor-threads".into(),
        spec.actor_threads.to_string(),
    ]);
    args.extend(spec.extra_args.iter().cloned());
    args
}

/// Runs of this process (names of namespaces and bridges).
static RUNS: AtomicU32 = AtomicU32::new(0);

/// The cluster of a run.
pub struct Cluster {
    spec: ClusterSpec,
    binary: PathBuf,
    token: String,
    network: Mutex<Option<Arc<Namespaces>>>,
    addrs: Vec<NodeAddrs>,
    /// Loopback runs: the nodes' ports, held until the cluster is gone.
    _ports: Option<PortLease>,
    states: Arc<Mutex<Vec<NodeState>>>,
    lives: Arc<Mutex<Vec<ProcessLife>>>,
    data: tempfile::TempDir,
    logs: PathBuf,
    origin: Instant,
}

/// Resolves the scenario's `binary`: a path, a name next to the running
/// executable or on PATH, or the running executable itself.
pub fn resolve_binary(binary: Option<&str>) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running executable")?;
    let Some(name) = binary else {
        return Ok(exe);
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        if path.is_file() {
            return Ok(path);
        }
        bail!("cluster.binary {name:?} is not a file");
    }
    if let Some(sibling) = exe.parent().map(|d| d.join(name)) {
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    bail!(
        "cluster.binary {name:?} was found neither next to {} nor on PATH; build it (e.g. \
         `cargo build --release -p troupe-examples`) or give its path",
        exe.display()
    )
}

impl Cluster {
    /// Sets up the network (namespaces unless the spec or the machine says
    /// loopback) without starting any node; `unavailable` gets why
    /// namespaces were not used.
    pub fn prepare(
        spec: &ClusterSpec,
        token: &str,
        logs: &Path,
        origin: Instant,
        unavailable: &mut Vec<String>,
    ) -> anyhow::Result<Cluster> {
        let binary = resolve_binary(spec.binary.as_deref())?;
        let use_ns = match spec.network {
            NetworkMode::Loopback => false,
            NetworkMode::Namespaces => {
                if let Some(why) = network::unavailable_reason() {
                    bail!("cluster.network is `namespaces` but {why}; run as root or use `network: loopback`");
                }
                true
            }
            NetworkMode::Auto => match network::unavailable_reason() {
                Some(why) => {
                    unavailable.push(format!(
                        "partitions and link degradation: {why} (this run is on loopback)"
                    ));
                    false
                }
                None => true,
            },
        };
        let run = RUNS.fetch_add(1, Ordering::SeqCst);
        let (network, addrs, ports) = if use_ns {
            network::sweep_stale();
            let ns = Namespaces::create(spec.nodes, run)?;
            tracing::info!(bridge = %ns.bridge(), netns = %ns.slot(0).netns, "network namespaces made");
            let addrs = (0..spec.nodes)
                .map(|i| {
                    let ip = &ns.slot(i).ip;
                    NodeAddrs {
                        rpc: format!("{ip}:{RPC_PORT}"),
                        http: format!("{ip}:{HTTP_PORT}"),
                        admin: format!("{ip}:{ADMIN_PORT}"),
                    }
                })
                .collect();
            (Some(Arc::new(ns)), addrs, None)
        } else {
            let lease = PortLease::take(3 * spec.nodes)?;
            let addrs = lease
                .ports()
                .chunks(3)
                .map(|p| NodeAddrs {
                    rpc: format!("127.0.0.1:{}", p[0]),
                    http: format!("127.0.0.1:{}", p[1]),
                    admin: format!("127.0.0.1:{}", p[2]),
                })
                .collect();
            (None, addrs, Some(lease))
        };
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Cluster {
            spec: spec.clone(),
            binary,
            token: token.to_owned(),
            network: Mutex::new(network),
            addrs,
            _ports: ports,
            states: Arc::new(Mutex::new(
                (0..spec.nodes)
                    .map(|_| NodeState {
                        pid: None,
                        paused: false,
                        node_id: String::new(),
                        wiped: false,
                    })
                    .collect(),
            )),
            lives: Arc::new(Mutex::new(Vec::new())),
            data: {
                let data = tempfile::Builder::new().prefix("troupe-chaos-").tempdir()?;
                tracing::info!(dir = %data.path().display(), "data directories");
                data
            },
            logs: logs.to_owned(),
            origin,
        })
    }

    /// The namespaces, when the run has them.
    pub fn network(&self) -> Option<Arc<Namespaces>> {
        self.network
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Node `i`'s addresses.
    pub fn addrs(&self, i: usize) -> &NodeAddrs {
        &self.addrs[i]
    }

    /// The binary the nodes run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The spec it was made from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The GCS members' RPC addresses.
    pub fn gcs_addrs(&self) -> Vec<String> {
        (0..self.spec.gcs_members)
            .map(|i| self.addrs[i].rpc.clone())
            .collect()
    }

    /// A copy of every node's state.
    pub fn states(&self) -> Vec<NodeState> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Node indexes with a running (maybe paused) process.
    pub fn up(&self) -> Vec<usize> {
        self.states()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pid.is_some())
            .map(|(i, _)| i)
            .collect()
    }

    /// Every process life so far.
    pub fn lives(&self) -> Vec<ProcessLife> {
        self.lives.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.logs.join(format!("node-{i}.log"))
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.data.path().join(format!("n{i}"))
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Starts node `i` in `role` and waits for its "listening on" line.
    pub async fn start(&self, i: usize, role: StartRole) -> anyhow::Result<()> {
        let args = start_args(&self.spec, &role, &self.addrs[i], &self.data_dir(i));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .with_context(|| format!("opening {}", self.log_path(i).display()))?;
        let mut command = match &self.network() {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.slot(i).netns])
                    .arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        command
            .args(&args)
            .env("TROUPE_CLUSTER_TOKEN", &self.token)
            .env("RUST_LOG", NODE_LOG_FILTER)
            .env("TROUPE_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting node {i} ({})", self.binary.display()))?;
        let pid = child.id().context("the node exited at once")?;
        let start_ms = self.now_ms();
        self.lives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ProcessLife {
                node: i,
                start_ms,
                end_ms: None,
            });
        {
            let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            states[i].pid = Some(pid);
            states[i].paused = false;
        }
        let stdout = child.stdout.take().context("the node's stdout")?;
        // The reaper records the end of this life whenever it comes.
        let (lives, states, origin) = (self.lives.clone(), self.states.clone(), self.origin);
        tokio::spawn(async move {
            let _ = child.wait().await;
            let end = origin.elapsed().as_millis() as u64;
            {
                // Never signal a pid that may have been reused.
                let mut states = states.lock().unwrap_or_else(|p| p.into_inner());
                if states[i].pid == Some(pid) {
                    states[i].pid = None;
                    states[i].paused = false;
                }
            }
            let mut lives = lives.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(life) = lives
                .iter_mut()
                .rev()
                .find(|l| l.node == i && l.start_ms == start_ms && l.end_ms.is_none())
            {
                life.end_ms = Some(end);
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on") {
                    return Some(line);
                }
            }
            None
        })
        .await;
        let Ok(Some(line)) = first else {
            self.signal(i, Signal::SIGKILL);
            bail!(
                "node {i} did not start (no \"listening on\" line within {START_TIMEOUT:?}); \
                 its log, {}, ends with:\n{}",
                self.log_path(i).display(),
                tail(&self.log_path(i), 15)
            );
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let node_id = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        tracing::info!(node = i, pid, id = %node_id, rpc = %self.addrs[i].rpc, "node started");
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states[i].node_id = node_id;
        states[i].wiped = false;
        Ok(())
    }

    fn signal(&self, i: usize, signal: Signal) -> bool {
        let pid = self.states.lock().unwrap_or_else(|p| p.into_inner())[i].pid;
        let sent = pid.is_some_and(|pid| kill(Pid::from_raw(pid as i32), signal).is_ok());
        if sent {
            tracing::info!(node = i, pid, %signal, "signal sent");
        }
        sent
    }

    /// SIGKILL node `i` (resuming it first if paused, so it dies now).
    pub fn kill(&self, i: usize) -> bool {
        let killed = self.signal(i, Signal::SIGKILL);
        self.signal(i, Signal::SIGCONT);
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states[i].pid = None;
        states[i].paused = false;
        killed
    }

    /// SIGSTOP node `i`.
    pub fn pause(&self, i: usize) -> bool {
        let done = self.signal(i, Signal::SIGSTOP);
        if done {
            self.states.lock().unwrap_or_else(|p| p.into_inner())[i].paused = true;
        }
        done
    }

    /// SIGCONT node `i`.
    pub fn resume(&self, i: usize) -> bool {
        let done = self.signal(i, Signal::SIGCONT);
        self.states.lock().unwrap_or_else(|p| p.into_inner())[i].paused = false;
        done
    }

    /// Kills node `i` and deletes its data directory.
    pub fn wipe(&self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let dir = self.data_dir(i);
        if dir.exists() {
            // The process may still be dying: retry a removal that races it.
            let mut tries = 0;
            while let Err(e) = std::fs::remove_dir_all(&dir) {
                tries += 1;
                if tries > 50 {
                    return Err(e).with_context(|| format!("wiping {}", dir.display()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.states.lock().unwrap_or_else(|p| p.into_inner())[i].wiped = true;
        Ok(())
    }

    /// How node `i` restarts: the head on its own data directory restarts
    /// as head; any other node (or a wiped head) joins through a running
    /// node, preferring `prefer`.
    pub fn restart_role(&self, i: usize, prefer: Option<usize>) -> anyhow::Result<StartRole> {
        let states = self.states();
        if i == 0 && !states[0].wiped {
            return Ok(StartRole::Head);
        }
        let through = prefer
            .filter(|p| *p != i && states[*p].pid.is_some() && !states[*p].paused)
            .or_else(|| {
                (0..states.len())
                    .find(|j| *j != i && states[*j].pid.is_some() && !states[*j].paused)
            })
            .context("no running node to join through")?;
        Ok(StartRole::Join {
            addr: self.addrs[through].rpc.clone(),
            gcs: i < self.spec.gcs_members,
        })
    }

    /// Stops everything: resumes paused nodes, kills every node, removes the
    /// namespaces. Safe to call twice; also run by `Drop`.
    pub fn teardown(&self) {
        let states = self.states();
        for (i, s) in states.iter().enumerate() {
            if s.pid.is_some() {
                self.kill(i);
            }
        }
        let taken = self
            .network
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(ns) = taken {
            // Anything still inside a namespace (a grandchild) dies with it.
            for i in 0..self.addrs.len() {
                for pid in ns.pids(i) {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
            ns.remove();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec {
            extra_args: vec!["--heartbeat-ms".into(), "50".into()],
            ..ClusterSpec::default()
        }
    }

    #[test]
    fn a_joining_member_gets_its_addresses_and_gcs_flag() {
        let addrs = NodeAddrs {
            rpc: "10.0.0.11:6380".into(),
            http: "10.0.0.11:8000".into(),
            admin: "10.0.0.11:8265".into(),
        };
        let role = StartRole::Join {
            addr: "10.0.0.10:6380".into(),
            gcs: true,
        };
        let args = start_args(&spec(), &role, &addrs, Path::new("/d/n1"));
        assert_eq!(
            args.join(" "),
            "start --join 10.0.0.10:6380 --gcs --listen 10.0.0.11:6380 --http-listen \
             10.0.0.11:8000 --dashboard-listen 10.0.0.11:8265 --data-dir /d/n1 --num-cpus 1 \
             --node-ttl 3 --actor-threads 1 --heartbeat-ms 50"
        );
        let head = start_args(&spec(), &StartRole::Head, &addrs, Path::new("/d/n0"));
        assert_eq!(&head[..2], &["start", "--head"]);
    }
}
