//! Backups through the CLI: serve applications deployed on a 2-node
//! cluster, `troupe gcs snapshot save`, the old cluster killed, `troupe gcs
//! snapshot restore` into a new data directory, a new head started on it:
//! every application comes back and answers. A damaged backup is refused
//! with the checksum error naming the file.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::operator::ok;
use crate::serve::post;
use crate::support::{wait_until, NodeProcess, TestCluster, SERVE_BIN, TOKEN};

fn troupe(args: &[&str]) -> Output {
    Command::new(SERVE_BIN)
        .args(args)
        .env("TROUPE_CLUSTER_TOKEN", TOKEN)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// `troupe gcs snapshot restore FILE --data-dir DIR`.
fn restore(file: &Path, dir: &Path) -> Output {
    let (file, dir) = (file.to_str().unwrap(), dir.to_str().unwrap());
    troupe(&["gcs", "snapshot", "restore", file, "--data-dir", dir])
}

/// Two applications of the chain example, one replica per deployment.
fn config() -> String {
    let mut text = String::from("applications:\n");
    for name in ["chain", "again"] {
        text.push_str(&format!(
            "  - name: {name}\n    route_prefix: /{name}\n    app: chain\n    deployments:\n"
        ));
        for deployment in ["normalize", "count", "pipeline"] {
            text.push_str(&format!(
                "      - {{name: {deployment}, actor_options: {{num_cpus: 0.1}}}}\n"
            ));
        }
    }
    text
}

const ROUTES: [&str; 2] = ["/chain", "/again"];
const ANSWER: &str = r#"{"text":"one two","words":2}"#;

fn answers(http: &str, route: &str) -> bool {
    post(http, route, " One TWO ").is_ok_and(|(code, body)| code == 200 && body == ANSWER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_serves_every_application_on_a_new_cluster() {
    let mut cluster = TestCluster::serve_nodes(2);
    let _driver = cluster.driver().await;
    let head = cluster.nodes[0].addr.clone();
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.yaml");
    std::fs::write(&apps, config()).unwrap();
    ok(troupe(&[
        "serve",
        "deploy",
        apps.to_str().unwrap(),
        "--address",
        &head,
    ]));
    for route in ROUTES {
        assert!(answers(&cluster.nodes[0].http, route), "{route} before");
    }

    let file = dir.path().join("cluster.backup");
    let file_s = file.to_str().unwrap();
    // `--gcs` is an alias of `--address`.
    let saved = ok(troupe(&["gcs", "snapshot", "save", file_s, "--gcs", &head]));
    assert!(saved.contains("saved revision"), "{saved}");
    assert!(std::fs::metadata(&file).unwrap().len() > 100);
    for node in &mut cluster.nodes {
        node.kill();
    }

    // A damaged copy is refused, naming the file; nothing is written.
    let damaged = dir.path().join("damaged.backup");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&damaged, &bytes).unwrap();
    let refused_dir = dir.path().join("refused");
    let out = restore(&damaged, &refused_dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(damaged.to_str().unwrap()) && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    assert!(
        !refused_dir.exists(),
        "nothing written for a damaged backup"
    );

    // Restored into a new directory, a new head serves both applications.
    let restored = dir.path().join("restored");
    let out = ok(restore(&file, &restored));
    assert!(out.contains("troupe start --head --data-dir"), "{out}");
    assert!(
        out.contains("only member is node-0000000000000001"),
        "{out}"
    );
    // Restoring over it again is refused: a restore never overwrites.
    let again = restore(&file, &restored);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    let new_head = NodeProcess::start_bin(SERVE_BIN, &restored, &["--head", "--num-cpus", "2"]);
    wait_until(
        "every restored application answers",
        Duration::from_secs(90),
        || {
            let all = ROUTES.iter().all(|r| answers(&new_head.http, r));
            async move { all }
        },
    )
    .await;
    // The new cluster's only voter is the restored id at its real address.
    let status = ok(troupe(&["status", "--address", &new_head.addr]));
    assert!(
        status.contains(&format!(
            "leader node-0000000000000001 at {}",
            new_head.addr
        )),
        "{status}"
    );
    assert!(status.contains("1 voters, 0 learners"), "{status}");
}
