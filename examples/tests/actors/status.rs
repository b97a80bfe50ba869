//! `troupe status` on a 3-node cluster (a head and two `--join --gcs`
//! nodes): it names the GCS leader and three live voters at their
//! addresses, with the node TTL; once a member is killed, it flags it
//! unreachable and warns that one more loss stops the store.

use std::process::{Command, Output};
use std::time::Duration;

use crate::operator::ok;
use crate::support::{wait_until, TestCluster, SERVE_BIN, TOKEN};

/// `troupe status` through `address` (`flag` is `--address` or `--gcs`).
fn status(flag: &str, address: &str) -> Output {
    Command::new(SERVE_BIN)
        .args(["status", flag, address, "--token", TOKEN])
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// The member line of `addr` in a status text, if any.
fn member_line<'a>(text: &'a str, addr: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.contains(&format!("  {addr} ")) && l.contains("voter"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_leader_each_member_and_flags_a_dead_one() {
    let mut cluster = TestCluster::head_of(SERVE_BIN, &["--num-cpus", "1"]);
    cluster.join(&["--gcs", "--num-cpus", "1"]);
    cluster.join(&["--gcs", "--num-cpus", "1"]);
    let _driver = cluster.driver().await;
    let head = cluster.nodes[0].addr.clone();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();

    // Members are added one by one: wait until all three are voters.
    let mut text = String::new();
    wait_until("status lists three voters", Duration::from_secs(30), || {
        text = ok(status("--address", &head));
        let all = addrs.iter().all(|a| member_line(&text, a).is_some());
        async move { all }
    })
    .await;
    assert!(text.contains("gcs: leader node-"), "{text}");
    assert!(text.contains("3 voters, 0 learners"), "{text}");
    assert_eq!(
        text.matches("ttl 1s").count(),
        3,
        "every node's TTL: {text}"
    );
    let (leader, _) = cluster.gcs_leader(Duration::from_secs(20)).await;
    for (i, addr) in addrs.iter().enumerate() {
        let line = member_line(&text, addr).unwrap();
        let state = if i == leader { "leader" } else { "follower" };
        assert!(line.contains(state), "node {i} should be {state}: {text}");
        assert!(!line.contains("unreachable"), "{text}");
    }
    assert!(
        text.contains(&format!("at {}", addrs[leader])),
        "the leader's address: {text}"
    );
    assert!(!text.contains(" ! "), "nothing to flag yet: {text}");

    // Kill a member other than the one asked (and not the leader, so the
    // answer does not wait for an election).
    let victim = (1..3).find(|&i| i != leader).unwrap();
    cluster.nodes[victim].kill();
    let dead = addrs[victim].clone();
    wait_until(
        "status flags the killed member",
        Duration::from_secs(30),
        || {
            // `--gcs` is an alias of `--address`.
            text = ok(status("--gcs", &head));
            let flagged = member_line(&text, &dead).is_some_and(|l| l.contains("unreachable"));
            async move { flagged }
        },
    )
    .await;
    assert!(text.contains("! UNREACHABLE"), "{text}");
    assert!(
        text.contains("2 of 3 voters answered: losing one more stops the control store"),
        "{text}"
    );
    let live = addrs
        .iter()
        .filter(|a| member_line(&text, a).is_some_and(|l| !l.contains("unreachable")))
        .count();
    assert_eq!(live, 2, "{text}");
}
