//! A byte flipped in a stopped follower's WAL: the member refuses to start
//! with an error that names the file and offset and says how to replace it;
//! the others keep every acknowledged write; the replacement done as the
//! error says catches up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::RangeRequest;

use crate::support::{troupe_gcs, wait_until, Cluster, Member};

const WRITES: usize = 200;
const WAIT: Duration = Duration::from_secs(30);

/// Record `(start, end)` offsets of a segment, from its length fields
/// (`[len u32 LE][crc32 u32 LE][payload]`).
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, pos + 8 + len));
        pos += 8 + len;
    }
    out
}

/// The member's WAL segments, oldest first.
fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    paths.sort();
    paths
}

/// The acknowledged keys a client reads (linearizable, or serializable
/// from whichever member it asks).
async fn keys(client: &GcsClient, linearizable: bool) -> BTreeSet<String> {
    let read = client
        .range(RangeRequest::prefix(b"acked/".to_vec(), None), linearizable)
        .await
        .unwrap();
    read.kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_wal_stops_the_member_and_its_replacement_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let mut acked = BTreeSet::new();
    for i in 0..WRITES {
        let key = format!("acked/{i:05}");
        client.put(key.clone(), vec![1u8; 40]).await.unwrap();
        acked.insert(key);
    }
    assert!(acked.len() >= WRITES, "{} acknowledged writes", acked.len());
    let revision = client
        .range(RangeRequest::key(b"none".to_vec()), true)
        .await
        .unwrap()
        .revision;

    // A follower that holds every write, stopped.
    let leader = cluster.leader().await;
    let victim = (leader + 1) % 3;
    let rpc = cluster.rpc.clone();
    let member = &cluster.members[victim];
    wait_until("the follower applies every write", WAIT, || {
        let rpc = rpc.clone();
        async move {
            member
                .status(&rpc)
                .await
                .is_some_and(|s| s.revision >= revision)
        }
    })
    .await;
    cluster.members[victim].kill();

    // A byte in the middle of its last segment (the one a torn append could
    // have left short), changed to a non-zero value.
    let segment = segments(&cluster.members[victim].dir).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let layout = records(&bytes);
    assert!(
        layout.len() > 10,
        "the segment holds the writes: {layout:?}"
    );
    let at = bytes.len() / 2;
    bytes[at] = match bytes[at] ^ 0x5a {
        0 => 0xa5,
        b => b,
    };
    std::fs::write(&segment, &bytes).unwrap();
    let record = layout.iter().find(|r| r.0 <= at && at < r.1).unwrap().0;

    // It refuses to start, saying where, what and what to do.
    let (status, stderr) = cluster.members[victim].restart_expecting_exit(WAIT).await;
    assert!(!status.success(), "{status}: {stderr}");
    for says in [
        format!("{} is damaged at offset {record}:", segment.display()),
        "fails its checksum".to_string(),
        "must not start".to_string(),
        "troupe gcs remove --id <ID>".to_string(),
        "If this is the only member, restore from a backup instead".to_string(),
    ] {
        assert!(stderr.contains(&says), "{says:?} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.lines().count() <= 12, "one screen:\n{stderr}");

    // The two others serve every acknowledged write.
    assert_eq!(keys(&client, true).await, acked);

    // Replace it as the error says: remove its id, start a member with a
    // new id on an empty data directory, add it.
    let old_id = cluster.members[victim].id.to_string();
    let healthy = cluster.members[leader].addr.clone();
    let removed = troupe_gcs(&["remove", "--id", &old_id, "--gcs", &healthy], WAIT).await;
    assert!(removed.status.success(), "{removed:?}");
    let fresh = cluster.members[victim].dir.with_file_name("replacement");
    let replacement = Member::start_new(4, fresh);
    let added = troupe_gcs(
        &[
            "add",
            "--id",
            "4",
            "--addr",
            &replacement.addr,
            "--gcs",
            &healthy,
        ],
        WAIT,
    )
    .await;
    assert!(added.status.success(), "{added:?}");
    let rpc = cluster.rpc.clone();
    let want: BTreeSet<u64> = cluster
        .members
        .iter()
        .filter(|m| m.is_running())
        .map(|m| m.id)
        .chain([4])
        .collect();
    wait_until("the replacement is a voter and caught up", WAIT, || {
        let (rpc, replacement, want) = (rpc.clone(), &replacement, &want);
        async move {
            replacement
                .status(&rpc)
                .await
                .is_some_and(|s| s.revision >= revision && s.membership.voter_ids() == *want)
        }
    })
    .await;

    // Its own state (a serializable read answered by it alone) holds every
    // acknowledged write.
    let local = GcsClient::new(
        cluster.rpc.clone(),
        ClientConfig::new(vec![replacement.addr.clone()]),
    )
    .unwrap();
    assert_eq!(keys(&local, false).await, acked);
    cluster.members.push(replacement);
}
