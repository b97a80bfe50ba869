//! Node processes on loopback, each with its own data directory, killed by
//! pid when the test ends.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use troupe::chaos::cluster::ports::PortLease;
use troupe::core::rpc::ClusterToken;
use troupe::Cluster;

pub const TOKEN: &str = "actor-process-test";

/// Polls `cond` until it holds, failing the test after `within`.
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

/// `--resources` for node `i` of `n`: a resource named after each *other*
/// node (`away_from_<j>`), so that work asking for `away_from_<j>` runs
/// anywhere but on node `j`.
pub fn away_from_others(i: usize, n: usize) -> String {
    let names: Vec<String> = (0..n)
        .filter(|&j| j != i)
        .map(|j| format!("\"away_from_{j}\": 100"))
        .collect();
    format!("{{{}}}", names.join(", "))
}

/// Where a node started on `dir` writes its log (warnings and errors),
/// appended across restarts: `<dir>.log`, next to its data directory.
pub fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.with_extension("log")
}

fn log_file(dir: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// One node process (`troupe-actors start` or `troupe-chain start`).
pub struct NodeProcess {
    pub addr: String,
    /// Its HTTP proxy.
    pub http: String,
    /// Its admin API (GCS nodes).
    pub admin: String,
    child: Option<Child>,
}

/// The actor example's binary.
pub const ACTORS_BIN: &str = env!("CARGO_BIN_EXE_troupe-actors");
/// The content-understanding example's binary.
pub const CONTENT_BIN: &str = env!("CARGO_BIN_EXE_troupe-content");
/// A binary with the serve examples' deployments.
pub const SERVE_BIN: &str = env!("CARGO_BIN_EXE_troupe-chain");

impl NodeProcess {
    /// Starts a node of `bin` with `args` after `start` and waits for its
    /// "listening on" line.
    pub fn start_bin(bin: &str, dir: &Path, args: &[&str]) -> NodeProcess {
        Self::start_bin_at(bin, dir, "127.0.0.1:0", args)
    }

    /// [`Self::start_bin`] with the RPC address `listen` (a restarted GCS
    /// member keeps its address).
    pub fn start_bin_at(bin: &str, dir: &Path, listen: &str, args: &[&str]) -> NodeProcess {
        Self::start_with_token(bin, dir, listen, TOKEN, args)
    }

    /// [`Self::start_bin_at`] with the cluster token `token`.
    pub fn start_with_token(
        bin: &str,
        dir: &Path,
        listen: &str,
        token: &str,
        args: &[&str],
    ) -> NodeProcess {
        let mut child = Command::new(bin)
            .arg("start")
            .args(args)
            .args(["--listen", listen, "--token", token, "--node-ttl", "1"])
            .args(["--actor-threads", "1", "--http-listen", "127.0.0.1:0"])
            .args(["--dashboard-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log_file(dir))
            .spawn()
            .expect("spawn a node process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the node's first line");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the node did not start: {line:?}"))
            .to_string();
        let word_after = |key: &str| {
            line.split(key)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_default()
                .to_string()
        };
        let http = word_after(" http ");
        let admin = word_after(" admin ");
        NodeProcess {
            addr,
            http,
            admin,
            child: Some(child),
        }
    }

    /// Waits (up to `within`) for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while let Some(child) = self.child.as_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// False once the process was killed or exited.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// This node's GCS member as its admin `/metrics` reports it: whether
    /// it leads, and its term. `None` if the page does not answer or has
    /// no GCS gauges (not a GCS node).
    pub fn gcs_role(&self) -> Option<(bool, u64)> {
        let page = self.metrics()?;
        let leads = sample(&page, "troupe_gcs_is_leader")? == 1.0;
        let term = sample(&page, "troupe_gcs_term")? as u64;
        Some((leads, term))
    }

    /// This node's admin `/metrics` page, if it answers.
    pub fn metrics(&self) -> Option<String> {
        let (code, page) = crate::serve::get(&self.admin, "/metrics").ok()?;
        (code == 200).then_some(page)
    }

    /// SIGKILL: no goodbye, the lease has to expire.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of the unlabelled metric `name` on a `/metrics` page.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Node processes sharing one temp dir; the first is the head.
pub struct TestCluster {
    pub nodes: Vec<NodeProcess>,
    pub bin: &'static str,
    pub tmp: TempDir,
    /// The nodes' RPC ports, held while the cluster lives: a node killed
    /// and started again at its address finds it free (a port from
    /// `bind(0)` is in the ephemeral range, which any outgoing connection
    /// may take in between).
    ports: Vec<PortLease>,
}

/// A fixed loopback RPC address nobody else is handed while `lease` lives.
fn leased_addr() -> (String, PortLease) {
    let lease = PortLease::take(1).expect("a free loopback port");
    (format!("127.0.0.1:{}", lease.ports()[0]), lease)
}

impl TestCluster {
    /// A head node of the actor example started with `args`.
    pub fn head(args: &[&str]) -> TestCluster {
        Self::head_of(ACTORS_BIN, args)
    }

    /// A head node of `bin` started with `args`.
    pub fn head_of(bin: &'static str, args: &[&str]) -> TestCluster {
        let tmp = tempfile::tempdir().unwrap();
        let (listen, lease) = leased_addr();
        let head = NodeProcess::start_bin_at(
            bin,
            &tmp.path().join("n0"),
            &listen,
            &[&["--head"], args].concat(),
        );
        TestCluster {
            nodes: vec![head],
            bin,
            tmp,
            ports: vec![lease],
        }
    }

    /// `n` nodes of the serve examples' binary with 1 CPU each.
    pub fn serve_nodes(n: usize) -> TestCluster {
        Self::nodes_of(SERVE_BIN, n)
    }

    /// `n` nodes of `bin` with 1 CPU each.
    pub fn nodes_of(bin: &'static str, n: usize) -> TestCluster {
        let mut cluster = Self::head_of(bin, &["--num-cpus", "1"]);
        for _ in 1..n {
            cluster.join(&["--num-cpus", "1"]);
        }
        cluster
    }

    /// Three GCS nodes of the serve examples' binary with 2 CPUs each,
    /// node `i` offering `away_from_<j>` for every other node `j` (see
    /// [`away_from_others`]), once they agree on a GCS leader; with that
    /// leader's index and term. Work asking for `away_from_<leader>` stays
    /// off the controllers' node.
    pub async fn serve_gcs_trio() -> (TestCluster, usize, u64) {
        let mut cluster = Self::head_of(
            SERVE_BIN,
            &["--num-cpus", "2", "--resources", &away_from_others(0, 3)],
        );
        for i in 1..3 {
            let resources = away_from_others(i, 3);
            cluster.join(&["--gcs", "--num-cpus", "2", "--resources", &resources]);
        }
        let (leader, term) = cluster.gcs_leader(Duration::from_secs(30)).await;
        (cluster, leader, term)
    }

    /// Starts a node that joins through the head; returns its index.
    pub fn join(&mut self, args: &[&str]) -> usize {
        let dir = self.tmp.path().join(format!("n{}", self.nodes.len()));
        let head = self.nodes[0].addr.clone();
        let (listen, lease) = leased_addr();
        let node = NodeProcess::start_bin_at(
            self.bin,
            &dir,
            &listen,
            &[&["--join", &head], args].concat(),
        );
        self.nodes.push(node);
        self.ports.push(lease);
        self.nodes.len() - 1
    }

    /// Kills node `i` and starts it again on its data directory and RPC
    /// address with `args` (the head restarts with `--head`).
    pub fn restart(&mut self, i: usize, args: &[&str]) {
        self.nodes[i].kill();
        let dir = self.tmp.path().join(format!("n{i}"));
        let listen = self.nodes[i].addr.clone();
        self.nodes[i] = NodeProcess::start_bin_at(self.bin, &dir, &listen, args);
    }

    /// What node `i` logged so far (warnings and errors).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(log_path(&self.tmp.path().join(format!("n{i}"))))
            .unwrap_or_default()
    }

    /// A driver connected through node `i`, once `n` nodes are registered.
    pub async fn driver_via(&self, i: usize, nodes: usize) -> Cluster {
        let token = ClusterToken::new(TOKEN).unwrap();
        let cluster = Cluster::connect(&self.nodes[i].addr, token)
            .await
            .expect("connect a driver");
        wait_until("every node is registered", Duration::from_secs(20), || {
            let cluster = cluster.clone();
            async move {
                cluster
                    .state()
                    .await
                    .is_ok_and(|s| s.nodes.len() == nodes && s.controller.is_some())
            }
        })
        .await;
        cluster
    }

    /// The index of the node whose GCS member leads, and its term, once the
    /// running nodes agree: every one answers, exactly one leads, and all
    /// are in the same term (no election under way, no deposed leader
    /// that still believes it leads). Every running node must be a GCS
    /// node (the others report no leader and term 0).
    pub async fn gcs_leader(&self, within: Duration) -> (usize, u64) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let roles: Vec<(usize, Option<(bool, u64)>)> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.is_running())
                .map(|(i, n)| (i, n.gcs_role()))
                .collect();
            let leaders: Vec<(usize, u64)> = roles
                .iter()
                .filter_map(|&(i, role)| match role {
                    Some((true, term)) => Some((i, term)),
                    _ => None,
                })
                .collect();
            if let [(leader, term)] = leaders[..] {
                if roles
                    .iter()
                    .all(|(_, role)| role.is_some_and(|(_, t)| t == term))
                {
                    return (leader, term);
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the running nodes do not agree on a GCS leader; (node, (leads, term)): {roles:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills node `leader`, after checking it still leads (in any term;
    /// `what` says what was placed away from it); returns the term it led.
    pub async fn kill_leader(&mut self, leader: usize, term: u64, what: &str) -> u64 {
        let (leader_now, term_now) = self.gcs_leader(Duration::from_secs(10)).await;
        assert_eq!(
            leader_now, leader,
            "leadership moved from node {leader} (term {term}) to node {leader_now} (term \
             {term_now}) before the kill; {what} were placed away from node {leader}"
        );
        self.nodes[leader].kill();
        term_now
    }

    /// Waits for a node other than `old` to lead in a term after `term`.
    pub async fn assert_new_leader(&self, old: usize, term: u64) {
        let (new_leader, new_term) = self.gcs_leader(Duration::from_secs(30)).await;
        assert!(
            new_leader != old && new_term > term,
            "node {new_leader} leads in term {new_term} after node {old} (term {term}) was killed"
        );
        eprintln!("killed node {old}, the leader in term {term}; node {new_leader} leads in term {new_term}");
    }

    /// A driver connected through the head.
    pub async fn driver(&self) -> Cluster {
        self.driver_via(0, self.nodes.len()).await
    }
}
