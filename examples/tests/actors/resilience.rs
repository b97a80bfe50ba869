//! Serving through node failures, as the data path sees them: a streamed
//! response cut by its replica's node is not started again elsewhere; a
//! node ejected while paused (SIGSTOP) is readmitted after it resumes,
//! with no request failing meanwhile; and with the GCS's quorum lost, the
//! surviving node serves on while control operations fail early.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{ready, IntoFuture};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use troupe::chaos::workload::actor::Tally;
use troupe::core::rpc::ClusterToken;
use troupe::prelude::*;
use troupe::serve::spec::{ReplicaState, ReplicaStatus, STATUS_PREFIX};
use troupe::serve::{declarative, AppState};
use troupe_examples::patterns::{self, Ticker, TickerArgs};

use crate::serve::{get, http, post};
use crate::support::{wait_until, TestCluster, SERVE_BIN, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_its_replicas_node_is_not_started_again() {
    // The proxy of node 0 serves the client; the two replicas run on
    // nodes 1 and 2 (each offers one `ticker`, each replica takes one), so
    // a retry would have a live replica to go to at once.
    let mut cluster = TestCluster::head_of(SERVE_BIN, &["--num-cpus", "1"]);
    let ticker_slot = ["--num-cpus", "1", "--resources", r#"{"ticker": 1}"#];
    for _ in 1..3 {
        cluster.join(&ticker_slot);
    }
    let driver = cluster.driver().await;
    let ticks = 100;
    let app = Application::new("ticker")
        .route_prefix(Some("/ticker"))
        .streaming_ingress(
            Bind::<Ticker>::new(
                "ticker",
                TickerArgs {
                    lines: ticks,
                    every_ms: 100,
                },
            )
            .num_replicas(2)
            .num_cpus(0.1)
            .resource("ticker", 1.0),
        );
    let version = troupe::serve::deploy(&driver, app).await.unwrap();
    let versions = [("ticker".to_owned(), version)].into();
    declarative::wait_running(&driver, &versions, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    let state = driver.state().await.unwrap();
    let node_index = |id: NodeId| {
        let addr = &state.nodes[&id].addr;
        (0..cluster.nodes.len()).find(|&i| &cluster.nodes[i].addr == addr)
    };
    let placed = running_replicas(&driver, "ticker").await;
    let hosts: BTreeSet<_> = placed
        .iter()
        .filter_map(|r| r.node)
        .map(node_index)
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from([Some(1), Some(2)]),
        "one replica on each of nodes 1 and 2: {placed:?}"
    );

    // The head and the first tick, then the node of the replica that
    // started the stream is killed.
    let http = cluster.nodes[0].http.clone();
    let (mut stream, mut body) = tokio::task::spawn_blocking(move || {
        let mut stream = ChunkedResponse::open(&http, "/ticker")?;
        let mut body = String::new();
        while !body.contains("tick 0\n") {
            let chunk = stream.next_chunk()?.ok_or_else(|| {
                io::Error::other(format!("the stream ended before its first tick: {body:?}"))
            })?;
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        io::Result::Ok((stream, body))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(stream.status(), 200, "{}", stream.head);
    assert!(stream.is_chunked(), "{}", stream.head);
    let replica = body
        .strip_prefix("start replica=")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no start line first: {body:?}"))
        .to_owned();
    let victim = placed
        .iter()
        .find(|r| r.id.to_string() == replica)
        .and_then(|r| r.node)
        .unwrap_or_else(|| panic!("{replica} is not one of {placed:?}"));
    let victim_index = node_index(victim).unwrap();
    cluster.nodes[victim_index].kill();

    let started = tokio::time::Instant::now();
    let (end, body) = tokio::task::spawn_blocking(move || {
        let end = loop {
            match stream.next_chunk() {
                Ok(Some(chunk)) => body.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        (end, body)
    })
    .await
    .unwrap();
    eprintln!(
        "killed node {victim_index} under the stream; the body ended after {:?}: {end:?}",
        started.elapsed()
    );
    // Ended: cut off (no last chunk), not complete, and not hanging until
    // the client's read timeout.
    let cut = end.expect_err("the stream completed although its replica's node was killed");
    assert!(
        !matches!(
            cut.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "the body neither completed nor ended within the read timeout: {cut}; {body:?}"
    );
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("start ")).count(),
        1,
        "the stream was started again after the client had its first bytes: {body:?}"
    );
    let sent: Vec<String> = (0..lines.len() - 1).map(|i| format!("tick {i}")).collect();
    assert_eq!(
        lines[1..],
        sent.iter().map(String::as_str).collect::<Vec<_>>(),
        "one stream's ticks, in order: {body:?}"
    );
    assert!(
        sent.len() < ticks as usize,
        "the stream ended early: {body:?}"
    );

    // A replacement node; the controller puts the lost replica there, and
    // a new stream is served from start to end.
    cluster.join(&ticker_slot);
    wait_until(
        "the lost replica is replaced",
        Duration::from_secs(30),
        || {
            let driver = driver.clone();
            async move {
                let replicas = running_replicas(&driver, "ticker").await;
                replicas.len() == 2 && replicas.iter().all(|r| r.node != Some(victim))
            }
        },
    )
    .await;
    let http = cluster.nodes[0].http.clone();
    let fresh = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = ChunkedResponse::read_whole(&http, "/ticker?lines=3");
            if answer.is_ok() || std::time::Instant::now() >= deadline {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap()
    .expect("a new stream after the replacement");
    let lines: Vec<&str> = fresh.lines().collect();
    assert!(lines[0].starts_with("start replica="), "{fresh:?}");
    assert_eq!(lines[1..], ["tick 0", "tick 1", "tick 2"], "{fresh:?}");
}

/// PreVote across processes: a GCS follower paused (SIGSTOP) for longer
/// than the leader's lease and many election timeouts resumes without an
/// election: its term stays the cluster's and the leader keeps leading
/// (without PreVote it would raise its term on waking and unseat it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_gcs_follower_resumes_without_raising_the_term() {
    let tmp = tempfile::tempdir().unwrap();
    let (nodes, _driver, _) = spread_chain(tmp.path(), &["--gcs"]).await;
    // (leads, term) of node `i`'s GCS member, from its /metrics.
    let role = |i: usize| -> Option<(bool, u64)> {
        let page = metrics_page(&nodes[i].admin);
        let gauge = |name: &str| {
            page.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        Some((
            gauge("troupe_gcs_is_leader")? == 1.0,
            gauge("troupe_gcs_term")? as u64,
        ))
    };
    // One leader, every member in its term.
    let agreed = |roles: &[Option<(bool, u64)>]| -> Option<(usize, u64)> {
        let leaders: Vec<usize> = (0..roles.len())
            .filter(|&i| roles[i].is_some_and(|(leads, _)| leads))
            .collect();
        let [leader] = leaders[..] else { return None };
        let term = roles[leader]?.1;
        roles
            .iter()
            .all(|r| r.is_some_and(|(_, t)| t == term))
            .then_some((leader, term))
    };
    let roles = || (0..3).map(role).collect::<Vec<_>>();
    wait_until(
        "the members agree on a leader",
        Duration::from_secs(20),
        || ready(agreed(&roles()).is_some()),
    )
    .await;
    let (leader, term) = agreed(&roles()).unwrap();
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let watcher = (0..3).find(|&i| i != follower).unwrap();
    // Load through another node's proxy: its routers reach the follower's
    // replicas, so the data path notices the pause.
    let load = Load::start(&nodes[watcher].http, 2);
    wait_until("the load flows", Duration::from_secs(10), || {
        ready(load.succeeded() > 20)
    })
    .await;

    nodes[follower].signal(Signal::SIGSTOP);
    // The data path notices the silence after about a second: several
    // election timeouts (150-300 ms) and the lease have passed by then.
    let ejected = || {
        node_gauge(
            &nodes[watcher].admin,
            "troupe_node_ejected",
            &nodes[follower].id,
        )
    };
    wait_until(
        "another node ejects the paused follower",
        Duration::from_secs(10),
        || ready(ejected() == Some(1.0)),
    )
    .await;
    nodes[follower].signal(Signal::SIGCONT);
    wait_until(
        "the resumed follower answers and is readmitted",
        Duration::from_secs(20),
        || ready(role(follower).is_some() && matches!(ejected(), Some(0.0) | None)),
    )
    .await;
    let _ = load.stop();
    let after = roles();
    assert_eq!(
        agreed(&after),
        Some((leader, term)),
        "after the pause: (leads, term) per node {after:?}, before: node {leader} led term {term}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_ejected_readmitted_and_fails_no_request() {
    // Nodes whose lease outlives the pause: the GCS keeps node 2 and its
    // replicas; only the data path notices it is silent. Node 0 alone runs
    // the GCS.
    let tmp = tempfile::tempdir().unwrap();
    let (nodes, driver, _) = spread_chain(tmp.path(), &[]).await;
    let paused_id: NodeId = nodes[2].id.parse().unwrap();
    let on_paused = |replicas: &[ReplicaStatus]| -> BTreeSet<ActorId> {
        replicas
            .iter()
            .filter(|r| r.node == Some(paused_id))
            .map(|r| r.actor)
            .collect()
    };
    let before = on_paused(&running_replicas(&driver, "chain").await);
    assert_eq!(before.len(), 3, "one replica of each stage on node 2");

    let load = Load::start(&nodes[0].http, 4);
    let pipeline_on_2 = || served(&nodes[2].admin, "pipeline");
    wait_until(
        "node 2's pipeline serves node 0's load",
        Duration::from_secs(10),
        || ready(load.succeeded() > 50 && pipeline_on_2() > 0.0),
    )
    .await;

    let pause = Duration::from_secs(2);
    let paused_at = tokio::time::Instant::now();
    nodes[2].signal(Signal::SIGSTOP);
    let ejected = || node_gauge(&nodes[0].admin, "troupe_node_ejected", &nodes[2].id);
    wait_until(
        "node 0 ejects the paused node 2",
        Duration::from_secs(5),
        || ready(ejected() == Some(1.0)),
    )
    .await;
    eprintln!("node 2 ejected {:?} after SIGSTOP", paused_at.elapsed());
    // The fault lasts `pause` (well within the node TTL), however soon it
    // was noticed.
    tokio::time::sleep_until(paused_at + pause).await;
    nodes[2].signal(Signal::SIGCONT);
    let resumed_at = tokio::time::Instant::now();
    wait_until("node 0 readmits node 2", Duration::from_secs(20), || {
        ready(matches!(ejected(), Some(0.0) | None))
    })
    .await;
    eprintln!("node 2 readmitted {:?} after SIGCONT", resumed_at.elapsed());
    let at_readmission = pipeline_on_2();
    wait_until(
        "node 2's pipeline serves node 0's load again",
        Duration::from_secs(15),
        || ready(pipeline_on_2() >= at_readmission + 20.0),
    )
    .await;
    let (succeeded, failures) = load.stop();

    let page = metrics_page(&nodes[0].admin);
    let ejections = metric_sum(&page, "troupe_node_ejections_total");
    let retries = metric_sum(&page, "troupe_router_retries_total");
    eprintln!(
        "{succeeded} requests succeeded, {} failed; node 0: {ejections} ejections, {retries} retries",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} requests failed (of {}) with retries on: {failures:?}",
        failures.len(),
        succeeded + failures.len() as u64
    );
    assert!(
        succeeded >= 200,
        "only {succeeded} requests succeeded: the load hardly ran"
    );
    assert!(ejections >= 1.0, "node 0 counted no ejection");
    // The pause caught requests in flight, which were sent again: no
    // failure means something.
    assert!(
        retries >= 1.0,
        "node 0's routers retried no request:\n{page}"
    );
    let after = on_paused(&running_replicas(&driver, "chain").await);
    assert_eq!(
        before, after,
        "node 2's replicas were replaced: the pause outlasted its lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_the_survivor_serves_and_control_operations_fail_early() {
    // Three nodes, every one a GCS member, each hosting one replica of
    // every stage of the chain. Killing two of them loses the store's
    // quorum; node 0 still holds a replica of every stage.
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, driver, config) = spread_chain(tmp.path(), &["--gcs"]).await;
    let stages = ["count", "normalize", "pipeline"];
    let survivor: NodeId = nodes[0].id.parse().unwrap();
    let placed = running_by_deployment(&driver, "chain").await;
    assert_eq!(placed.keys().collect::<Vec<_>>(), stages, "{placed:?}");
    for (stage, replicas) in &placed {
        let on_survivor = replicas.iter().filter(|r| r.node == Some(survivor));
        assert_eq!(
            (replicas.len(), on_survivor.count()),
            (3, 1),
            "three replicas of {stage}, one on node 0: {replicas:?}"
        );
    }
    let chain_answers = |proxy: &str| {
        matches!(post(proxy, "/chain", " Hello World "),
            Ok((200, body)) if body == r#"{"text":"hello world","words":2}"#)
    };
    wait_until(
        "node 0's proxy serves the chain",
        Duration::from_secs(10),
        || ready(chain_answers(&nodes[0].http)),
    )
    .await;
    // Ray's health probes (KubeRay's) pass with a quorum.
    for path in ["/api/gcs_healthz", "/api/local_raylet_healthz"] {
        assert_eq!(
            get(&nodes[0].admin, path).unwrap(),
            (200, "success".to_string()),
            "{path}"
        );
    }
    let page = metrics_page(&nodes[0].admin);
    let node_0_leads = metric_sum(&page, "troupe_gcs_is_leader") == 1.0;
    eprintln!("before the kill, node 0 leads the GCS: {node_0_leads}");

    // Both at once, by pid; then node 0's proxy gets requests one after
    // another while the control operations below run.
    nodes[1].signal(Signal::SIGKILL);
    nodes[2].signal(Signal::SIGKILL);
    let killed_at = tokio::time::Instant::now();
    let load = Load::start(&nodes[0].http, 1);

    // A change of the serve config: refused at once with a 503 that names
    // no internal cause, instead of hanging for the GCS client's 10 s.
    let mut changed = config.clone();
    let deployments = &mut changed.applications[0].deployments;
    let count = deployments.iter_mut().find(|d| d.name == "count").unwrap();
    assert_eq!(
        count.num_replicas,
        Some(troupe::serve::config::NumReplicas::Fixed(3))
    );
    count.num_replicas = Some(troupe::serve::config::NumReplicas::Fixed(2));
    let body = serde_json::to_string(&changed).unwrap();
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(troupe::serve::config::parse_value(&value).is_ok(), "{body}");
    let admin = nodes[0].admin.clone();
    let started = tokio::time::Instant::now();
    let put =
        tokio::task::spawn_blocking(move || http(&admin, "PUT", "/api/serve/applications/", &body))
            .await
            .unwrap();
    let put_took = started.elapsed();
    eprintln!(
        "PUT /api/serve/applications/ {:?} after the kill answered in {put_took:?}: {put:?}",
        started - killed_at
    );
    let (status, body) = put.unwrap_or_else(|e| {
        panic!(
            "the PUT got no answer ({e}) after {put_took:?}; node 0's log:\n{}",
            nodes[0].log_tail(30)
        )
    });
    let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "a config change without quorum: {body}\nnode 0's log:\n{}",
        nodes[0].log_tail(30)
    );
    // Which rule answered, not how fast: the GCS client's early give-up
    // (no member knows a leader) rather than its 10 s request timeout.
    let request_id = error["error"]["request_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!request_id.is_empty(), "no request id in {body}");
    let cause = nodes[0].logged_503(&request_id).await;
    assert!(
        cause.contains("no member has known a leader"),
        "without quorum the PUT must fail by the no-leader rule rather than wait out the GCS \
         client's request timeout; node 0 logged: {cause}"
    );
    for node in &nodes {
        assert!(
            !body.contains(&node.addr),
            "the 503 sends the client an internal cause (node address {}): {body}",
            node.addr
        );
    }
    assert!(
        !body.contains("127.0.0.1:"),
        "the 503 sends the client an address: {body}"
    );
    assert!(nodes[0].is_alive(), "node 0 exited after the PUT");

    // A read of the serve state: whatever it answers (a 503, or the state
    // as last seen), it answers, and bounded.
    let admin = nodes[0].admin.clone();
    let started = tokio::time::Instant::now();
    let read = tokio::task::spawn_blocking(move || get(&admin, "/api/serve/applications/")).await;
    let read_took = started.elapsed();
    let (status, body) = read.unwrap().unwrap_or_else(|e| {
        panic!(
            "GET /api/serve/applications/ got no answer ({e}) after {read_took:?}; node 0's \
             log:\n{}",
            nodes[0].log_tail(30)
        )
    });
    eprintln!("GET /api/serve/applications/ answered {status} in {read_took:?}: {body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "a read of the serve state without quorum: {body}"
    );
    let request_id = error["error"]["request_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cause = nodes[0].logged_503(&request_id).await;
    assert!(
        cause.contains("no member has known a leader"),
        "without quorum the read must fail by the no-leader rule; node 0 logged: {cause}"
    );
    assert!(nodes[0].is_alive(), "node 0 exited after the GET");

    // Without quorum the GCS probe fails (503, saying why) and the node's
    // own passes: the node serves on.
    let admin = nodes[0].admin.clone();
    let (gcs, local) = tokio::task::spawn_blocking(move || {
        (
            get(&admin, "/api/gcs_healthz"),
            get(&admin, "/api/local_raylet_healthz"),
        )
    })
    .await
    .unwrap();
    let (status, body) = gcs.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("Health check failed: "), "{body}");
    assert_eq!(local.unwrap(), (200, "success".to_string()));

    // An actor spawn through the driver (connected before the kill: a
    // driver registers itself in the GCS, which cannot commit now).
    let started = tokio::time::Instant::now();
    let spawned = tokio::time::timeout(
        Duration::from_secs(20),
        driver.spawn::<Tally>(0).num_cpus(0.0).into_future(),
    )
    .await;
    let spawn_took = started.elapsed();
    match spawned {
        Err(_) => panic!("a spawn without quorum was still waiting after {spawn_took:?}"),
        Ok(Ok(handle)) => panic!("a spawn without quorum succeeded: {:?}", handle.id()),
        Ok(Err(e)) => {
            eprintln!("spawn without quorum failed in {spawn_took:?}: {e}");
            // The early rule (no controller for NO_CONTROLLER_GRACE), not
            // the spawn's own timeout ("no controller answered within").
            assert!(
                e.to_string().contains("the GCS has no leader"),
                "without quorum a spawn must fail by the no-controller rule rather than wait \
                 out its timeout: {e}"
            );
        }
    }
    assert!(nodes[0].is_alive(), "node 0 exited after the spawn");

    // Serving went on through all of that, and goes on after it.
    let after_control = load.succeeded();
    wait_until(
        "node 0's proxy answers 50 requests since the kill, 20 of them after the control \
         operations failed",
        Duration::from_secs(30),
        || ready(load.failed() > 0 || load.succeeded() >= (after_control + 20).max(50)),
    )
    .await;
    let longest = load.longest();
    let (succeeded, failures) = load.stop();
    eprintln!(
        "node 0's proxy since the kill ({:?} ago): {succeeded} requests succeeded, {} failed, \
         the longest took {longest:?}",
        killed_at.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "node 0 holds a replica of every stage, yet {} of {} requests failed without quorum: \
         {failures:?}\nnode 0's log:\n{}",
        failures.len(),
        succeeded + failures.len() as u64,
        nodes[0].log_tail(30)
    );
    assert!(nodes[0].is_alive(), "node 0 exited during the quorum loss");
}

/// Three nodes of the serve examples' binary (node 0 the head; the others
/// join with `join_args`, e.g. `--gcs`) running the fault scenarios'
/// chain (`chaos/scenarios/serve/chain.yaml`, three replicas of each
/// stage), after checking that spreading put one replica of each stage on
/// every node. Returns the nodes, a driver connected through node 0, and
/// the deployed config.
async fn spread_chain(
    dir: &Path,
    join_args: &[&str],
) -> (Vec<PausableNode>, Cluster, troupe::serve::ServeConfig) {
    let mut nodes = vec![PausableNode::start(&dir.join("n0"), &["--head"])];
    for i in 1..3 {
        let head = nodes[0].addr.clone();
        let mut args = vec!["--join", &head];
        args.extend_from_slice(join_args);
        nodes.push(PausableNode::start(&dir.join(format!("n{i}")), &args));
    }
    if join_args.contains(&"--gcs") {
        wait_until(
            "the GCS has three voting members",
            Duration::from_secs(30),
            || ready(gcs_voters(&nodes[0].admin) == Some(3)),
        )
        .await;
    }
    let driver = connect_driver(&nodes[0].addr, 3).await;
    let config = troupe::serve::config::parse_yaml(include_str!(
        "../../../chaos/scenarios/serve/chain.yaml"
    ))
    .unwrap();
    let deployed = declarative::apply(&driver, &patterns::catalog(), &config)
        .await
        .unwrap();
    declarative::wait_deployed(&driver, &deployed, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    let every_node: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let placed = running_by_deployment(&driver, "chain").await;
    assert_eq!(placed.len(), 3, "the chain's stages: {placed:?}");
    for (deployment, replicas) in &placed {
        let on: BTreeSet<String> = replicas
            .iter()
            .filter_map(|r| r.node.map(|n| n.to_string()))
            .collect();
        assert_eq!(
            on, every_node,
            "{deployment}'s replicas are not spread one per node: {replicas:?}"
        );
    }
    (nodes, driver, config)
}

/// The running replicas of every deployment of `app`, as its status
/// record lists them (empty until the app is RUNNING).
async fn running_replicas(driver: &Cluster, app: &str) -> Vec<ReplicaStatus> {
    running_by_deployment(driver, app)
        .await
        .into_values()
        .flatten()
        .collect()
}

/// [`running_replicas`] by deployment name.
async fn running_by_deployment(
    driver: &Cluster,
    app: &str,
) -> BTreeMap<String, Vec<ReplicaStatus>> {
    let key = format!("{STATUS_PREFIX}{app}").into_bytes();
    let Ok(state) = driver.state().await else {
        return BTreeMap::new();
    };
    let status = state
        .extra
        .get(&key)
        .and_then(|v| troupe::serve::spec::decode_status(v))
        .filter(|s| s.state == AppState::Running);
    status
        .into_iter()
        .flat_map(|s| s.deployments)
        .map(|(name, d)| {
            let running = d.replicas.into_iter();
            let running = running.filter(|r| r.state == ReplicaState::Running);
            (name, running.collect())
        })
        .collect()
}

/// A node of the serve examples' binary with a lease long enough to be
/// paused (SIGSTOP) for seconds without being declared dead (`role` may
/// add `--gcs` and `--resources`); its log goes to `<dir>.log`. Killed by
/// pid when dropped.
struct PausableNode {
    id: String,
    addr: String,
    http: String,
    admin: String,
    log: PathBuf,
    child: Child,
}

impl PausableNode {
    const NODE_TTL_S: &'static str = "10";

    fn start(dir: &Path, role: &[&str]) -> PausableNode {
        let log_path = dir.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(SERVE_BIN)
            .arg("start")
            .args(role)
            .args(["--token", TOKEN, "--node-ttl", Self::NODE_TTL_S])
            .args(["--num-cpus", "1", "--actor-threads", "1"])
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--dashboard-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn a node process");
        // `node <id> listening on <addr> http <addr> admin <addr>`
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| -> String {
            let at = words.iter().position(|w| *w == key);
            let word = at.and_then(|i| words.get(i + 1));
            word.unwrap_or_else(|| panic!("no {key:?} in the node's first line {line:?}"))
                .to_string()
        };
        PausableNode {
            id: after("node"),
            addr: after("on"),
            http: after("http"),
            admin: after("admin"),
            log: log_path,
            child,
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, signal).unwrap();
    }

    /// False once the process has exited (or was killed).
    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The line the node logged for the 503 it answered to `request_id`
    /// (its cause), waiting for the log to be written (bounded).
    async fn logged_503(&self, request_id: &str) -> String {
        let find = || {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            log.lines()
                .find(|l| l.contains(request_id) && l.contains("answered 503"))
                .map(str::to_owned)
        };
        wait_until(
            "the node logs the 503's cause",
            Duration::from_secs(10),
            || ready(find().is_some()),
        )
        .await;
        find().unwrap_or_default()
    }

    /// The last `lines` lines of the node's log (warnings and errors), for
    /// a failing assertion's message.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for PausableNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to the chain through one proxy from `threads` threads, one
/// after another, until stopped: the successes counted, the failures kept.
struct Load {
    stop: Arc<AtomicBool>,
    succeeded: Arc<AtomicU64>,
    /// The longest request so far, in microseconds.
    longest_us: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(proxy: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let succeeded = Arc::new(AtomicU64::new(0));
        let longest_us = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, succeeded, failures) =
                    (stop.clone(), succeeded.clone(), failures.clone());
                let longest_us = longest_us.clone();
                let proxy = proxy.to_owned();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let sent = std::time::Instant::now();
                        let answer = post(&proxy, "/chain", " Hello World ");
                        let took = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        longest_us.fetch_max(took, Ordering::Relaxed);
                        match answer {
                            Ok((200, body)) if body == r#"{"text":"hello world","words":2}"# => {
                                succeeded.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.lock().unwrap().push(format!("{other:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            succeeded,
            longest_us,
            failures,
            threads,
        }
    }

    fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// The longest request so far.
    fn longest(&self) -> Duration {
        Duration::from_micros(self.longest_us.load(Ordering::Relaxed))
    }

    fn failed(&self) -> usize {
        self.failures.lock().unwrap().len()
    }

    /// Stops the threads: the successes and the failures.
    fn stop(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            thread.join().unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.succeeded(), failures)
    }
}

impl Drop for Load {
    /// A test that fails midway leaves no thread sending requests.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A driver connected through `addr`, once `nodes` nodes are registered
/// and a controller runs.
async fn connect_driver(addr: &str, nodes: usize) -> Cluster {
    let token = ClusterToken::new(TOKEN).unwrap();
    let driver = Cluster::connect(addr, token).await.unwrap();
    wait_until("every node is registered", Duration::from_secs(20), || {
        let driver = driver.clone();
        async move {
            driver
                .state()
                .await
                .is_ok_and(|s| s.nodes.len() == nodes && s.controller.is_some())
        }
    })
    .await;
    driver
}

/// The GCS membership as the node of `admin` reports it, if it answers.
fn gcs_members(admin: &str) -> Option<serde_json::Value> {
    match get(admin, "/api/gcs/members") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// How many voting members the GCS has, as the node of `admin` reports.
fn gcs_voters(admin: &str) -> Option<usize> {
    Some(gcs_members(admin)?["voters"].as_array()?.len())
}

/// A node's `/metrics` page (empty if it does not answer).
fn metrics_page(admin: &str) -> String {
    match get(admin, "/metrics") {
        Ok((200, page)) => page,
        _ => String::new(),
    }
}

/// The sum of the samples of `name` on `page` whose labels contain every
/// one of `labels` (`key="value"`).
fn metric_sum_with(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with(['{', ' ']))
        .filter(|rest| labels.iter().all(|label| rest.contains(label)))
        .filter_map(|rest| rest.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .fold(0.0, |sum, sample| sum + sample)
}

fn metric_sum(page: &str, name: &str) -> f64 {
    metric_sum_with(page, name, &[])
}

/// Requests the `deployment` replicas on the node of `admin` have served.
fn served(admin: &str, deployment: &str) -> f64 {
    let label = format!("deployment=\"{deployment}\"");
    metric_sum_with(
        &metrics_page(admin),
        "ray_serve_deployment_processing_latency_ms_count",
        &[&label],
    )
}

/// The per-node gauge `name{node="<node>"}` on the node of `admin`, if the
/// page has it.
fn node_gauge(admin: &str, name: &str, node: &str) -> Option<f64> {
    let sample = format!("{name}{{node=\"{node}\"}} ");
    metrics_page(admin)
        .lines()
        .find_map(|l| l.strip_prefix(&sample)?.trim().parse().ok())
}

/// A streamed (chunked) HTTP/1.1 response, read a chunk at a time.
struct ChunkedResponse {
    head: String,
    reader: BufReader<TcpStream>,
}

impl ChunkedResponse {
    /// `GET path` and its head; reads time out after 10 s.
    fn open(addr: &str, path: &str) -> io::Result<ChunkedResponse> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            &stream,
            "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                return Ok(ChunkedResponse { head, reader });
            }
            head.push_str(&line);
        }
    }

    fn status(&self) -> u16 {
        let status = self.head.split(' ').nth(1);
        status.and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    fn is_chunked(&self) -> bool {
        self.head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    }

    /// The next chunk's data; `None` after the last (empty) chunk; an
    /// error if the connection ends or breaks before it.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut size = String::new();
        if self.reader.read_line(&mut size)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let hex = size.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|e| io::Error::other(format!("chunk size {size:?}: {e}")))?;
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data)?;
        data.truncate(size);
        Ok((size > 0).then_some(data))
    }

    /// The whole body of a 200 streamed response to `GET path`.
    fn read_whole(addr: &str, path: &str) -> Result<String, String> {
        let mut response = ChunkedResponse::open(addr, path).map_err(|e| e.to_string())?;
        if response.status() != 200 || !response.is_chunked() {
            let mut rest = String::new();
            let _ = response.reader.read_to_string(&mut rest);
            return Err(format!("{}{rest}", response.head));
        }
        let mut body = String::new();
        while let Some(chunk) = response
            .next_chunk()
            .map_err(|e| format!("{e}: {body:?}"))?
        {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        Ok(body)
    }
}
