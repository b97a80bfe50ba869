//! OPERATIONS.md's procedures, run as written against node processes of
//! the serve examples' binary (`troupe-chain`, standing for `troupe`):
//! replacing a failed member, recovering from a quorum lost for good, and
//! rotating the cluster token with rolling restarts (the same rolling
//! restart, node by node, is how a cluster is upgraded). Backups and
//! restores are `backup.rs`; a member back on an empty disk is
//! `membership.rs`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::operator::ok;
use crate::serve::post;
use crate::support::{wait_until, NodeProcess, TestCluster, SERVE_BIN, TOKEN};

/// `troupe-chain ARGS` with `token` in TROUPE_CLUSTER_TOKEN, also
/// accepting `accept` (TROUPE_ACCEPT_TOKEN) when given.
fn troupe_with(token: &str, accept: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(SERVE_BIN);
    command
        .args(args)
        .env("TROUPE_CLUSTER_TOKEN", token)
        .env("RUST_LOG", "error");
    if let Some(accept) = accept {
        command.env("TROUPE_ACCEPT_TOKEN", accept);
    }
    command.output().unwrap()
}

fn troupe(args: &[&str]) -> Output {
    troupe_with(TOKEN, None, args)
}

/// One application of the chain example, one replica per deployment.
const CONFIG: &str =
    "applications:\n  - name: chain\n    route_prefix: /chain\n    app: chain\n    \
deployments:\n      - {name: normalize, actor_options: {num_cpus: 0.1}}\n      \
- {name: count, actor_options: {num_cpus: 0.1}}\n      \
- {name: pipeline, actor_options: {num_cpus: 0.1}}\n";

fn answers(http: &str) -> bool {
    post(http, "/chain", " One TWO ")
        .is_ok_and(|(code, body)| code == 200 && body == r#"{"text":"one two","words":2}"#)
}

/// `troupe gcs members --address ADDR` (the report), or its error.
fn members(addr: &str) -> String {
    let out = troupe(&["gcs", "members", "--address", addr, "--timeout", "5"]);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The member id `troupe gcs members` shows for `addr` (node-<hex>).
fn member_id(report: &str, addr: &str) -> String {
    report
        .lines()
        .filter(|l| l.contains(addr))
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.starts_with("node-"))
        .unwrap_or_else(|| panic!("no member at {addr} in:\n{report}"))
        .to_string()
}

/// A head and two `--join --gcs` nodes serving [`CONFIG`].
async fn three_members(dir: &Path) -> TestCluster {
    let mut cluster = TestCluster::head_of(SERVE_BIN, &["--num-cpus", "1"]);
    cluster.join(&["--gcs", "--num-cpus", "1"]);
    cluster.join(&["--gcs", "--num-cpus", "1"]);
    let head = cluster.nodes[0].addr.clone();
    let config = dir.join("app.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    ok(troupe(&[
        "serve",
        "deploy",
        config.to_str().unwrap(),
        "--address",
        &head,
        "--timeout",
        "60",
    ]));
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_failed_member_then_recover_from_a_lost_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = three_members(dir.path()).await;
    let head = cluster.nodes[0].addr.clone();
    assert!(answers(&cluster.nodes[0].http));

    // "Replace a failed member": its machine is gone. `gcs members` flags
    // it; remove its id, start a new GCS node.
    let lost = cluster.nodes[2].addr.clone();
    cluster.nodes[2].kill();
    wait_until(
        "gcs members flags the lost member",
        Duration::from_secs(20),
        || {
            let report = members(&head);
            std::future::ready(report.contains("UNREACHABLE"))
        },
    )
    .await;
    let lost_id = member_id(&members(&head), &lost);
    ok(troupe(&[
        "gcs",
        "remove",
        "--id",
        &lost_id,
        "--address",
        &head,
    ]));
    let new = cluster.join(&["--gcs", "--num-cpus", "1"]);
    let new_addr = cluster.nodes[new].addr.clone();
    wait_until(
        "three live voters again, the new one among them",
        Duration::from_secs(30),
        || {
            let report = members(&head);
            std::future::ready(
                report.contains(&new_addr)
                    && !report.contains(&lost)
                    && !report.contains("UNREACHABLE"),
            )
        },
    )
    .await;

    // "Recover from a lost quorum": two of three members are gone for
    // good; nothing can be changed any more.
    cluster.nodes[1].kill();
    cluster.nodes[new].kill();
    // Save what the survivor applied, stop it, restore as a new cluster.
    let backup = dir.path().join("survivor.backup");
    let saved = ok(troupe(&[
        "gcs",
        "snapshot",
        "save",
        backup.to_str().unwrap(),
        "--local",
        "--address",
        &head,
    ]));
    assert!(saved.contains("saved revision"), "{saved}");
    cluster.nodes[0].kill();
    let restored_dir = dir.path().join("restored");
    ok(troupe(&[
        "gcs",
        "snapshot",
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]));
    let new_head = NodeProcess::start_bin(SERVE_BIN, &restored_dir, &["--head", "--num-cpus", "1"]);
    wait_until(
        "the restored head serves the application",
        Duration::from_secs(30),
        || std::future::ready(answers(&new_head.http)),
    )
    .await;
    let joined = NodeProcess::start_bin(
        SERVE_BIN,
        &dir.path().join("rejoined"),
        &["--join", &new_head.addr, "--gcs", "--num-cpus", "1"],
    );
    wait_until(
        "a new member joins the restored cluster",
        Duration::from_secs(30),
        || {
            let report = members(&new_head.addr);
            std::future::ready(report.contains(&joined.addr) && !report.contains("UNREACHABLE"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_the_cluster_token_with_rolling_restarts() {
    const NEW: &str = "the-new-cluster-token";
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = three_members(dir.path()).await;
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let head = addrs[0].clone();
    // Each step restarts every node in turn (joining nodes first, the head
    // last) on its own data directory and address; after each restart the
    // cluster must be whole again before the next node goes.
    let other = |token: &str| if token == NEW { TOKEN } else { NEW };
    let steps: [(&str, &[&str]); 3] = [
        (TOKEN, &["--accept-token", NEW]),
        (NEW, &["--accept-token", TOKEN]),
        (NEW, &[]),
    ];
    for (token, extra) in steps {
        for i in [1, 2, 0] {
            cluster.nodes[i].kill();
            let role: Vec<&str> = match i {
                0 => vec!["--head"],
                _ => vec!["--join", &head, "--gcs"],
            };
            let args = [&role[..], &["--num-cpus", "1"], extra].concat();
            cluster.nodes[i] = NodeProcess::start_with_token(
                SERVE_BIN,
                &cluster.tmp.path().join(format!("n{i}")),
                &addrs[i],
                token,
                &args,
            );
            wait_until(
                &format!("node {i} is back with every member live ({token})"),
                Duration::from_secs(30),
                || {
                    // Mid-rotation the CLI holds both tokens, as the
                    // nodes do (OPERATIONS.md).
                    let out =
                        troupe_with(token, Some(other(token)), &["status", "--address", &head]);
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    std::future::ready(
                        out.status.success()
                            && text.contains("nodes (3):")
                            && addrs.iter().all(|a| text.contains(a.as_str()))
                            && !text.contains("UNREACHABLE"),
                    )
                },
            )
            .await;
        }
    }
    let http = cluster.nodes[1].http.clone();
    wait_until("the cluster serves", Duration::from_secs(30), || {
        std::future::ready(answers(&http))
    })
    .await;
    // Every member answers the new token alone, and the old one is refused.
    let out = troupe_with(NEW, None, &["status", "--address", &head]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        addrs.iter().all(|a| text.contains(a.as_str())) && !text.contains("UNREACHABLE"),
        "{text}"
    );
    let old = troupe_with(TOKEN, None, &["status", "--address", &head]);
    assert!(!old.status.success(), "the old token still works");
}
