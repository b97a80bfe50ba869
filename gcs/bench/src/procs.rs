//! The two clusters under test: 3 `troupe gcs serve` processes and 3 `etcd`
//! processes on 127.0.0.1, each member in its own data directory under one
//! temporary directory. Every member is a child process killed by pid when
//! its guard drops (normal end, error or panic). Every wait is bounded.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;
use tokio::time::Instant;
use troupe_core::rpc::{CallOptions, ClusterToken, RpcClient, RpcConfig};
use troupe_gcs::api::{Admin, AdminReply, AdminRequest, MemberStatus};
use troupe_gcs::client::{ClientConfig, GcsClient};

pub const TOKEN: &str = "gcs-bench-token";

/// `n` distinct free ports on 127.0.0.1 (held together while chosen).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A child process, SIGKILLed (and reaped) when dropped.
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL by pid, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open log {}", path.display()))
}

/// Resident set size of `pid` in KiB (VmRSS), if it is alive.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of `pid` in seconds (`/proc/PID/stat`,
/// 100 clock ticks per second), if it is alive.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // After the comm: state is field 3, utime 14, stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Total CPU seconds of the given processes (dead ones count 0).
pub fn cpu_total(pids: &[Option<u32>]) -> f64 {
    pids.iter().flatten().filter_map(|p| cpu_secs(*p)).sum()
}

/// Disk usage of `dir` in KiB, as `du -sk` reports it (allocated blocks,
/// so preallocated or sparse files count as the filesystem sees them).
pub fn du_kib(dir: &Path) -> Option<u64> {
    let out = Command::new("du")
        .arg("-sk")
        .arg(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ---------------------------------------------------------------- Troupe

pub struct TroupeMember {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    log: PathBuf,
    pub proc: Proc,
}

impl TroupeMember {
    fn spawn(bin: &Path, extra: &[String], id: u64, dir: PathBuf, log: PathBuf, listen: &str, bootstrap: bool) -> Result<TroupeMember> {
        let mut cmd = Command::new(bin);
        cmd.args(["gcs", "serve"]).args(extra);
        cmd.args(["--id", &id.to_string(), "--listen", listen, "--token", TOKEN])
            .arg("--data-dir")
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&log)?);
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {} gcs serve", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut proc = Proc { child: Some(child) };
        // Read the "listening on" line on a thread (bounded wait), then keep
        // draining stdout so the member never writes to a closed pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            other => {
                proc.kill();
                bail!(
                    "troupe member {id} did not start ({other:?}); see {}",
                    log.display()
                );
            }
        };
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|_| line.contains("listening on"))
            .ok_or_else(|| anyhow!("member {id} printed {line:?}"))?
            .to_string();
        Ok(TroupeMember { id, addr, dir, log, proc })
    }

    /// This member's own view, or None if it does not answer within 1 s.
    pub async fn status(&self, rpc: &RpcClient) -> Option<MemberStatus> {
        if !self.proc.is_running() {
            return None;
        }
        let options = CallOptions {
            timeout: Some(Duration::from_secs(1)),
            fail_fast: true,
        };
        let channel = rpc.channel(&self.addr);
        let call = channel.call_with::<Admin>(&AdminRequest::Status, options);
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(Ok(AdminReply::Status(s)))) => Some(s),
            _ => None,
        }
    }
}

pub struct TroupeCluster {
    pub members: Vec<TroupeMember>,
    pub rpc: RpcClient,
    bin: PathBuf,
    extra: Vec<String>,
    _tmp: TempDir,
}

impl TroupeCluster {
    /// `extra` are more `troupe gcs serve` flags (e.g. `--snapshot-every`).
    pub async fn start(bin: &Path, extra: Vec<String>) -> Result<TroupeCluster> {
        let tmp = tempfile::Builder::new().prefix("troupe-gcs-bench-").tempdir()?;
        let ports = free_ports(3)?;
        let mut members = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            members.push(TroupeMember::spawn(
                bin,
                &extra,
                id,
                tmp.path().join(format!("m{id}")),
                tmp.path().join(format!("m{id}.log")),
                &format!("127.0.0.1:{port}"),
                i == 0,
            )?);
        }
        let rpc = RpcClient::new(RpcConfig::new(ClusterToken::new(TOKEN)?));
        let cluster = TroupeCluster {
            members,
            rpc,
            bin: bin.to_path_buf(),
            extra,
            _tmp: tmp,
        };
        let client = cluster.client();
        for m in &cluster.members[1..] {
            client
                .admin(AdminRequest::AddLearner { id: m.id, addr: m.addr.clone() })
                .await
                .with_context(|| format!("add member {} as a learner", m.id))?;
            client
                .admin(AdminRequest::Promote { id: m.id })
                .await
                .with_context(|| format!("promote member {}", m.id))?;
        }
        cluster.wait_healthy(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// One shared client over all members, with the default config.
    pub fn client(&self) -> GcsClient {
        let addrs = self.members.iter().map(|m| m.addr.clone()).collect();
        GcsClient::new(self.rpc.clone(), ClientConfig::new(addrs)).expect("members given")
    }

    /// A client whose backoff between rounds is capped at `max` (the rest
    /// of the config is the default).
    pub fn client_with_backoff_max(&self, max: Duration) -> GcsClient {
        let addrs = self.members.iter().map(|m| m.addr.clone()).collect();
        let mut config = ClientConfig::new(addrs);
        config.backoff.1 = max.max(config.backoff.0);
        GcsClient::new(self.rpc.clone(), config).expect("members given")
    }

    /// The index of the member that reports itself Leader.
    pub async fn leader(&self, within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if m.status(&self.rpc).await.is_some_and(|s| s.role == "Leader") {
                    return Ok(i);
                }
            }
            if Instant::now() >= deadline {
                bail!("no troupe member became leader within {within:?}");
            }
            sleep_ms(50).await;
        }
    }

    /// All members run, agree on one leader and are within 100 applied
    /// entries of it, and a write succeeds.
    pub async fn wait_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let client = self.client();
        loop {
            let mut statuses = Vec::new();
            for m in &self.members {
                statuses.push(m.status(&self.rpc).await);
            }
            let ok = statuses.iter().all(|s| s.is_some()) && {
                let s: Vec<&MemberStatus> = statuses.iter().flatten().collect();
                let leader = s[0].leader;
                let max_applied = s.iter().filter_map(|s| s.last_applied_index).max().unwrap_or(0);
                leader.is_some()
                    && s.iter().all(|x| x.leader == leader)
                    && s.iter().filter(|x| x.role == "Leader").count() == 1
                    && s.iter().all(|x| x.last_applied_index.unwrap_or(0) + 100 >= max_applied)
            };
            if ok
                && tokio::time::timeout(Duration::from_secs(2), client.put("bench/health", "ok"))
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("troupe cluster not healthy within {within:?}: {statuses:?}");
            }
            sleep_ms(100).await;
        }
    }

    /// Time (from `since`) until a member other than `old` reports itself
    /// Leader, polling every 20 ms.
    pub async fn new_leader_after(&self, old: usize, since: Instant, within: Duration) -> Option<Duration> {
        while since.elapsed() < within {
            for (i, m) in self.members.iter().enumerate() {
                if i != old && m.status(&self.rpc).await.is_some_and(|s| s.role == "Leader") {
                    return Some(since.elapsed());
                }
            }
            sleep_ms(20).await;
        }
        None
    }

    pub fn kill(&mut self, i: usize) {
        self.members[i].proc.kill();
    }

    pub fn restart(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let again = TroupeMember::spawn(&self.bin, &self.extra, m.id, m.dir.clone(), m.log.clone(), &m.addr, false)?;
        self.members[i] = again;
        Ok(())
    }

    pub fn pids_and_dirs(&self) -> Vec<(Option<u32>, PathBuf)> {
        self.members.iter().map(|m| (m.proc.pid(), m.dir.clone())).collect()
    }
}

impl Drop for TroupeCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.proc.kill();
        }
    }
}

// ---------------------------------------------------------------- etcd

pub struct EtcdMember {
    pub client_url: String,
    pub dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    pub proc: Proc,
}

impl EtcdMember {
    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log_file(&self.log)?)
            .stderr(log_file(&self.log)?)
            .spawn()
            .context("spawn etcd (is etcd-server installed?)")?;
        self.proc = Proc { child: Some(child) };
        Ok(())
    }

    /// (member id, leader id, raft index) from this member, or None if it
    /// does not answer within 2 s.
    pub async fn status(&self) -> Option<(u64, u64, u64)> {
        if !self.proc.is_running() {
            return None;
        }
        let fut = async {
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(1));
            let mut c = etcd_client::Client::connect([self.client_url.as_str()], Some(options))
                .await
                .ok()?;
            let s = c.status().await.ok()?;
            Some((s.header()?.member_id(), s.leader(), s.raft_index()))
        };
        tokio::time::timeout(Duration::from_secs(2), fut).await.ok().flatten()
    }
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    _tmp: TempDir,
}

impl EtcdCluster {
    pub async fn start() -> Result<EtcdCluster> {
        let tmp = tempfile::Builder::new().prefix("etcd-bench-").tempdir()?;
        let ports = free_ports(6)?;
        let names: Vec<String> = (1..=3).map(|i| format!("e{i}")).collect();
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[3 + i]);
        let initial_cluster = (0..3)
            .map(|i| format!("{}={}", names[i], peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..3 {
            let client_url = format!("http://127.0.0.1:{}", ports[i]);
            let dir = tmp.path().join(&names[i]);
            let args: Vec<String> = vec![
                "--name".into(),
                names[i].clone(),
                "--data-dir".into(),
                dir.display().to_string(),
                "--listen-client-urls".into(),
                client_url.clone(),
                "--advertise-client-urls".into(),
                client_url.clone(),
                "--listen-peer-urls".into(),
                peer(i),
                "--initial-advertise-peer-urls".into(),
                peer(i),
                "--initial-cluster".into(),
                initial_cluster.clone(),
                "--initial-cluster-token".into(),
                "troupe-gcs-bench".into(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--logger".into(),
                "zap".into(),
                "--log-level".into(),
                "warn".into(),
            ];
            let mut m = EtcdMember {
                client_url,
                dir,
                log: tmp.path().join(format!("{}.log", names[i])),
                args,
                proc: Proc { child: None },
            };
            m.spawn()?;
            members.push(m);
        }
        let cluster = EtcdCluster { members, _tmp: tmp };
        cluster.wait_healthy(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// One shared client over all endpoints (etcd-client balances over
    /// them, as clientv3 does).
    pub async fn client(&self) -> Result<etcd_client::Client> {
        let options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
        let c = tokio::time::timeout(
            Duration::from_secs(10),
            etcd_client::Client::connect(self.endpoints(), Some(options)),
        )
        .await
        .context("etcd connect timed out")??;
        Ok(c)
    }

    /// The index of the member whose id is the leader all answering
    /// members report.
    pub async fn leader(&self, within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            let mut ids = Vec::new();
            for m in &self.members {
                ids.push(m.status().await);
            }
            for (i, s) in ids.iter().enumerate() {
                if let Some((id, leader, _)) = s {
                    if id == leader && *leader != 0 {
                        return Ok(i);
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!("no etcd member became leader within {within:?}");
            }
            sleep_ms(50).await;
        }
    }

    /// All members answer, agree on the leader, are within 100 raft
    /// entries of each other, and a write succeeds.
    pub async fn wait_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut client: Option<etcd_client::Client> = None;
        loop {
            let mut s = Vec::new();
            for m in &self.members {
                s.push(m.status().await);
            }
            let ok = s.iter().all(|x| x.is_some()) && {
                let s: Vec<(u64, u64, u64)> = s.iter().flatten().copied().collect();
                let leader = s[0].1;
                let max = s.iter().map(|x| x.2).max().unwrap_or(0);
                leader != 0
                    && s.iter().all(|x| x.1 == leader)
                    && s.iter().any(|x| x.0 == leader)
                    && s.iter().all(|x| x.2 + 100 >= max)
            };
            if ok {
                if client.is_none() {
                    client = self.client().await.ok();
                }
                if let Some(c) = client.as_mut() {
                    if tokio::time::timeout(Duration::from_secs(2), c.put("bench/health", "ok", None))
                        .await
                        .is_ok_and(|r| r.is_ok())
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!("etcd cluster not healthy within {within:?}: {s:?}");
            }
            sleep_ms(100).await;
        }
    }

    /// Time (from `since`) until a member other than `old` reports a
    /// leader that is not `old_id`, polling every 20 ms.
    pub async fn new_leader_after(&self, old: usize, old_id: u64, since: Instant, within: Duration) -> Option<Duration> {
        while since.elapsed() < within {
            for (i, m) in self.members.iter().enumerate() {
                if i != old && m.status().await.is_some_and(|(_, l, _)| l != 0 && l != old_id) {
                    return Some(since.elapsed());
                }
            }
            sleep_ms(20).await;
        }
        None
    }

    pub fn kill(&mut self, i: usize) {
        self.members[i].proc.kill();
    }

    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.members[i].spawn()
    }

    pub fn pids_and_dirs(&self) -> Vec<(Option<u32>, PathBuf)> {
        self.members.iter().map(|m| (m.proc.pid(), m.dir.clone())).collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.proc.kill();
        }
    }
}
