//! Nothing outlives a run: not on Ctrl-C mid-run (a paused node is resumed
//! and killed, namespaces and temp dirs removed), not on a panic.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use troupe::chaos::cluster::{Cluster, StartRole};
use troupe::chaos::scenario::{ClusterSpec, NetworkMode};

use crate::{alive, eventually, ip_object_exists, namespaces_or_skip, scenario, state, SERVE_BIN};

/// The value after `key=` in a log line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('"').to_owned())
}

#[test]
fn an_interrupted_run_resumes_its_paused_node_and_leaves_nothing_behind() {
    if !namespaces_or_skip("interrupted run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        "interrupted",
        "name: interrupted\nduration_s: 300\ncluster: {nodes: 2, gcs_members: 1, network: namespaces}\n\
         serve_config:\n  applications:\n    - {name: chain, route_prefix: /chain, app: chain}\n\
         workloads:\n  - {name: chain, kind: http, path: /chain, body: x, rate: 20}\n\
         faults:\n  timeline:\n    - {at_s: 1, kind: pause, target: 'node:1', heal_after_s: 250}\n",
    );
    let mut harness = Command::new(SERVE_BIN)
        .args(["chaos", "run"])
        .arg(&path)
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("RUST_LOG", "info")
        .env("TROUPE_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let harness_pid = harness.id();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = harness.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let (mut pids, mut netns, mut data, mut bridge) = (Vec::new(), None, None, None);
    let mut paused = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while paused.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the run never paused a node; pids {pids:?}"));
        if line.contains("node started") {
            pids.push(field(&line, "pid").unwrap().parse::<u32>().unwrap());
        }
        if line.contains("network namespaces made") {
            netns = field(&line, "netns");
            bridge = field(&line, "bridge");
        }
        if line.contains("data directories") {
            data = field(&line, "dir");
        }
        if line.contains("signal sent") && line.contains("SIGSTOP") {
            paused = field(&line, "pid").map(|p| p.parse::<u32>().unwrap());
        }
    }
    let paused = paused.unwrap();
    assert!(
        pids.len() >= 2 && pids.contains(&paused),
        "{pids:?} {paused}"
    );
    assert!(
        eventually(Duration::from_secs(5), || state(paused) == Some('T')),
        "node {paused} was never stopped"
    );
    let (netns, bridge, data) = (netns.unwrap(), bridge.unwrap(), data.unwrap());
    assert!(std::path::Path::new(&data).exists());

    kill(Pid::from_raw(harness_pid as i32), Signal::SIGINT).unwrap();
    let status = {
        let mut status = None;
        assert!(
            eventually(Duration::from_secs(60), || {
                status = harness.try_wait().unwrap();
                status.is_some()
            }),
            "the harness did not exit after SIGINT"
        );
        status.unwrap()
    };
    assert!(!status.success(), "an interrupted run must not exit 0");
    for pid in &pids {
        assert!(
            eventually(Duration::from_secs(10), || !alive(*pid)),
            "node process {pid} outlived the run (state {:?})",
            state(*pid)
        );
    }
    assert!(!ip_object_exists(&netns), "namespace {netns} left behind");
    assert!(!ip_object_exists(&bridge), "bridge {bridge} left behind");
    assert!(
        !std::path::Path::new(&data).exists(),
        "data dir {data} left behind"
    );
}

#[test]
fn a_panic_in_the_harness_kills_its_nodes() {
    let spec = ClusterSpec {
        binary: Some(SERVE_BIN.into()),
        nodes: 1,
        gcs_members: 1,
        network: NetworkMode::Loopback,
        ..ClusterSpec::default()
    };
    let logs = tempfile::tempdir().unwrap();
    let (pid_tx, pid_rx) = mpsc::channel();
    let logs_path = logs.path().to_owned();
    let run = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let mut unavailable = Vec::new();
            let cluster = Cluster::prepare(
                &spec,
                "panic-test",
                &logs_path,
                tokio::time::Instant::now(),
                &mut unavailable,
            )
            .unwrap();
            cluster.start(0, StartRole::Head).await.unwrap();
            pid_tx.send(cluster.states()[0].pid.unwrap()).unwrap();
            panic!("the harness panics with a node running");
        })
    });
    let pid: u32 = pid_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(run.join().is_err(), "the thread was meant to panic");
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "node {pid} outlived the panic"
    );
}
