//! Exactly-once sessions expire after the retention, on every member, and
//! live ones do not: the leader's expiry commands move every replica's
//! session clock alike, and a client whose idle session expired writes on
//! under a new one.

use std::time::Duration;

use troupe_core::rpc::CallOptions;
use troupe_gcs::api::{Kv, KvReply, KvRequest};
use troupe_gcs::member::GcsConfig;
use troupe_gcs::{Command, CommandError, Operation, Response, SessionRetention};

use crate::support::{wait_until, Cluster};

fn short_retention(config: &mut GcsConfig) {
    config.sessions = SessionRetention {
        retention: Duration::from_millis(800),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_on_every_member_and_live_ones_stay() {
    let cluster = Cluster::start_with(3, short_retention).await;
    let leader = cluster.wait_for_leader().await;
    let ch = cluster.rpc.channel(&cluster.nodes[leader].addr);
    let send = |command: Command| {
        let ch = ch.clone();
        async move {
            match ch
                .call_with::<Kv>(
                    &KvRequest::Write(command),
                    CallOptions::timeout(Duration::from_secs(10)),
                )
                .await
                .unwrap()
                .unwrap()
            {
                KvReply::Written(r) => r,
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    const IDLE: u64 = 0x1d1e;
    const LIVE: u64 = 0x11fe;
    let first: Response = send(Command::with_session(IDLE, 1, Operation::put("idle", "1"))).await;
    assert!(first.outcome.is_ok());
    // A plain client too, idle from now on: its next write must still
    // succeed (under a new session).
    let client = cluster.client();
    client.put("client", "1").await.unwrap();

    // The live session writes on while the idle one expires everywhere.
    let mut seq = 1;
    let sessions_of = |i: usize| {
        let member = cluster.nodes[i].member.as_ref().unwrap();
        let (stamps, clock) = member.reader().sessions().unwrap();
        let ids: Vec<u64> = stamps.iter().map(|(id, _)| *id).collect();
        (ids, clock)
    };
    let mut writes_while_waiting = 0;
    wait_until(
        "the idle sessions are gone from every member",
        Duration::from_secs(20),
        || {
            let live = send(Command::with_session(
                LIVE,
                seq,
                Operation::put("live", "x"),
            ));
            seq += 1;
            writes_while_waiting += 1;
            let gone = (0..3).all(|i| {
                let (ids, _) = sessions_of(i);
                !ids.contains(&IDLE) && ids.len() == 1
            });
            async move {
                let live = live.await;
                assert!(live.outcome.is_ok(), "a live session lost: {live:?}");
                gone
            }
        },
    )
    .await;
    // The clock moved by about the retention (and the same on all).
    let clocks: Vec<u64> = (0..3).map(|i| sessions_of(i).1).collect();
    assert!(clocks[leader] >= 800, "session clock {clocks:?}");
    assert!(
        writes_while_waiting >= 5,
        "the live session wrote throughout ({writes_while_waiting} writes)"
    );
    for i in 0..3 {
        assert_eq!(sessions_of(i).0, vec![LIVE], "member {i}");
    }

    // The live session's last write is still answered from the table.
    let last = seq - 1;
    let retried = send(Command::with_session(
        LIVE,
        last,
        Operation::put("live", "y"),
    ))
    .await;
    assert!(retried.outcome.is_ok());
    // The idle one: a retry and a next write are refused, nothing applied.
    let revision = cluster
        .client()
        .get("idle")
        .await
        .unwrap()
        .unwrap()
        .mod_revision;
    for seq in [1, 2] {
        let refused = send(Command::with_session(
            IDLE,
            seq + 1,
            Operation::put("idle", "2"),
        ))
        .await;
        assert_eq!(
            refused.outcome,
            Err(CommandError::SessionExpired {
                client_id: IDLE,
                seq: seq + 1
            })
        );
    }
    let idle = cluster.client().get("idle").await.unwrap().unwrap();
    assert_eq!(
        (idle.mod_revision, idle.value.as_slice()),
        (revision, &b"1"[..])
    );
    // The plain client's idle session expired too; its write goes through.
    let again = client.put("client", "2").await.unwrap();
    assert!(again.outcome.is_ok(), "{again:?}");
    let value = client.get("client").await.unwrap().unwrap();
    assert_eq!((value.value.as_slice(), value.version), (&b"2"[..], 2));
}
