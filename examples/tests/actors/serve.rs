//! Serving across node processes: composition with replicas spread by
//! resources, and the loss of the GCS leader's node under HTTP load.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe::prelude::*;
use troupe::serve::spec::STATUS_PREFIX;
use troupe::serve::{AppState, AppStatus};
use troupe_examples::patterns::{
    Lexicon, LexiconArgs, Noop, Normalize, Pipeline, PipelineArgs, Router, RouterArgs, Vote,
    WordCount,
};

use crate::support::{wait_until, TestCluster, SERVE_BIN, TOKEN};

/// `METHOD path` with `body` on a fresh connection: status and body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub(crate) fn post(addr: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    http(addr, "POST", path, body)
}

pub(crate) fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http(addr, "GET", path, "")
}

pub(crate) async fn status_of(cluster: &Cluster, app: &str) -> Option<AppStatus> {
    let key = format!("{STATUS_PREFIX}{app}").into_bytes();
    let state = cluster.state().await.ok()?;
    state
        .extra
        .get(&key)
        .and_then(|v| troupe::serve::spec::decode_status(v))
}

async fn wait_running(cluster: &Cluster, app: &str, replicas: usize) -> AppStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = status_of(cluster, app).await;
        if let Some(s) = &status {
            let count: usize = s.deployments.values().map(|d| d.replicas.len()).sum();
            if s.state == AppState::Running && count == replicas {
                return status.unwrap();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{app} is not RUNNING with {replicas} replicas: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_spread_over_three_nodes_answers_through_any_proxy() {
    let cluster = TestCluster::serve_nodes(3);
    let driver = cluster.driver().await;
    // 3 deployments x 3 replicas x 0.25 CPU, spread over 3 nodes of 1 CPU.
    let mut app = Application::new("chain3");
    let normalize = app.add(
        Bind::<Normalize>::new("normalize", ())
            .num_replicas(3)
            .num_cpus(0.25),
    );
    let count = app.add(
        Bind::<WordCount>::new("count", ())
            .num_replicas(3)
            .num_cpus(0.25),
    );
    let app = app.ingress(
        Bind::<Pipeline>::new("pipeline", PipelineArgs { normalize, count })
            .num_replicas(3)
            .num_cpus(0.25),
    );
    troupe::serve::deploy(&driver, app).await.unwrap();
    let status = wait_running(&driver, "chain3", 9).await;
    let nodes: BTreeSet<_> = status
        .deployments
        .values()
        .flat_map(|d| d.replicas.iter().filter_map(|r| r.node))
        .collect();
    assert_eq!(nodes.len(), 3, "replicas spread over the three nodes");
    for node in &cluster.nodes {
        let (code, body) = post(&node.http, "/", "  One TWO three ").unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, r#"{"text":"one two three","words":3}"#);
    }

    // Ensemble and dynamic selection, their models spread the same way.
    let lexicon = |name: &str, good: &[&str], bad: &[&str]| {
        Bind::<Lexicon>::new(name, LexiconArgs::new(good, bad))
            .num_replicas(2)
            .num_cpus(0.05)
    };
    let mut ensemble = Application::new("vote3").route_prefix(Some("/vote"));
    let models = vec![
        ensemble.add(lexicon("a", &["good"], &["bad"])),
        ensemble.add(lexicon("b", &["great"], &["awful"])),
        ensemble.add(lexicon("c", &["fine"], &["bland"])),
    ];
    troupe::serve::deploy(
        &driver,
        ensemble.ingress(Bind::<Vote>::new("vote", models).num_cpus(0.05)),
    )
    .await
    .unwrap();
    let mut select = Application::new("select3").route_prefix(Some("/select"));
    let fast = select.add(lexicon("fast", &["good"], &["bad"]));
    let thorough = select.add(lexicon("thorough", &["good", "fine"], &["bad", "bland"]));
    troupe::serve::deploy(
        &driver,
        select.ingress(Bind::<Router>::new("router", RouterArgs { fast, thorough }).num_cpus(0.05)),
    )
    .await
    .unwrap();
    wait_running(&driver, "vote3", 7).await;
    wait_running(&driver, "select3", 5).await;
    for node in &cluster.nodes {
        let (code, body) = post(&node.http, "/vote", "good, great, bland").unwrap();
        assert_eq!(
            (code, body.as_str()),
            (
                200,
                r#"{"mean":0.3333333333333333,"scores":[1.0,1.0,-1.0]}"#
            )
        );
        let (code, body) = post(&node.http, "/select?model=thorough", "good but bland").unwrap();
        assert_eq!(
            (code, body.as_str()),
            (200, r#"{"model":"thorough","score":0.0}"#)
        );
    }

    // The operator's view, then a shutdown, through the CLI.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(SERVE_BIN)
            .args(args)
            .args(["--address", &cluster.nodes[2].addr, "--token", TOKEN])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["serve", "status", "--json"])).unwrap();
    for app in ["chain3", "vote3", "select3"] {
        assert_eq!(json["applications"][app]["status"], "RUNNING", "{json}");
    }
    assert_eq!(
        json["applications"]["chain3"]["deployments"]["pipeline"]["replicas"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let table = cli(&["serve", "status"]);
    assert!(table.contains("chain3  RUNNING"), "{table}");
    assert!(table.contains("3/3 replicas running"), "{table}");
    assert!(cli(&["serve", "shutdown"]).contains("deleted 3 application(s)"));
    wait_until("every replica stopped", Duration::from_secs(30), || {
        let driver = driver.clone();
        async move {
            driver.state().await.is_ok_and(|s| {
                s.actors.values().all(|a| a.state.name() == "DEAD")
                    && !s
                        .extra
                        .keys()
                        .any(|k| k.starts_with(b"/troupe/serve/status/"))
            })
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_gcs_leader_and_controller_fails_no_request() {
    // Three GCS members. The node whose member leads runs both controllers
    // (they follow the leader) and hosts no replica; the driver and the
    // load go through another node. Which node leads is read from the
    // nodes, not assumed: the replicas then ask for a resource that every
    // node but the leader's has.
    let (mut cluster, leader, term) = TestCluster::serve_gcs_trio().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (via, proxy) = (others[0], others[1]);
    let driver = cluster.driver_via(via, 3).await;
    let away = format!("away_from_{leader}");
    let noop = |n| {
        Application::new("noop")
            .route_prefix(Some("/noop"))
            .ingress(
                Bind::<Noop>::new("noop", ())
                    .num_replicas(n)
                    .num_cpus(0.5)
                    .resource(&away, 1.0),
            )
    };
    troupe::serve::deploy(&driver, noop(2)).await.unwrap();
    let before = wait_running(&driver, "noop", 2).await;
    let replicas = |s: &AppStatus| -> BTreeSet<_> {
        s.deployments
            .values()
            .flat_map(|d| d.replicas.iter().map(|r| r.actor))
            .collect()
    };
    let state = driver.state().await.unwrap();
    let leader_id = state
        .nodes
        .values()
        .find(|n| n.addr == cluster.nodes[leader].addr)
        .map(|n| n.id)
        .expect("the leader's node is registered");
    assert!(
        before
            .deployments
            .values()
            .flat_map(|d| &d.replicas)
            .all(|r| r.node != Some(leader_id)),
        "no replica on the leader's node: {before:?}"
    );

    let http = cluster.nodes[proxy].http.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = {
        let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let answer = post(&http, "/noop", "");
                sent.fetch_add(1, Ordering::Relaxed);
                if !matches!(answer, Ok((200, _))) {
                    failures.lock().unwrap().push(format!("{answer:?}"));
                }
            }
        })
    };
    wait_until("load is flowing", Duration::from_secs(10), || {
        let sent = sent.clone();
        async move { sent.load(Ordering::Relaxed) > 20 }
    })
    .await;
    // The node killed is the one that leads at that moment.
    let term_now = cluster.kill_leader(leader, term, "the replicas").await;
    // The survivors elect a new leader in a later term.
    cluster.assert_new_leader(leader, term_now).await;
    // The new controllers take over; a scale change takes effect.
    troupe::serve::deploy(&driver, noop(3)).await.unwrap();
    let after = wait_running(&driver, "noop", 3).await;
    let at_kill = sent.load(Ordering::Relaxed);
    wait_until(
        "load went on after the failover",
        Duration::from_secs(10),
        || {
            let sent = sent.clone();
            async move { sent.load(Ordering::Relaxed) > at_kill + 50 }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        sent.load(Ordering::Relaxed)
    );
    // The surviving GCS nodes' admin API reports the app and the new term.
    let (code, apps) = get(&cluster.nodes[via].admin, "/api/serve/applications/").unwrap();
    assert_eq!(code, 200, "{apps}");
    assert!(apps.contains(r#""status":"RUNNING""#), "{apps}");
    let (_, page) = get(&cluster.nodes[proxy].admin, "/metrics").unwrap();
    assert!(page.contains("troupe_gcs_term"), "{page}");
    assert!(
        replicas(&before).is_subset(&replicas(&after)),
        "the new controller adopted the running replicas: {:?} then {:?}",
        replicas(&before),
        replicas(&after)
    );
}
