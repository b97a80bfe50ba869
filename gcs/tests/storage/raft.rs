//! The stores under a real (single-member) openraft node: writes, dedup,
//! snapshots with log purge, linearizable reads, and a restart on the same
//! directory. Multi-member networking is the transport's job.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, SnapshotPolicy};
use troupe_gcs::types::Raft;
use troupe_gcs::*;

/// Fails the test instead of hanging; passing runs never wait on it.
const DEADLINE: Duration = Duration::from_secs(60);

/// A member alone never sends RPCs; any attempt is an unreachable peer.
struct NoPeers;

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, Node, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
        "single-member test cluster",
    )))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: NodeId, _node: &Node) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

fn config() -> Arc<Config> {
    let config = Config {
        cluster_name: "gcs-test".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Config::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

/// Open the stores once the previous incarnation has let go of them: after
/// `shutdown`, openraft's state machine task and sled's IO threads release
/// the database asynchronously.
async fn open_when_released(dir: &Path) -> (LogStore, StateMachineStore) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match open(dir, StoreConfig::default()) {
            Ok(stores) => return stores,
            Err(e)
                if tokio::time::Instant::now() < deadline
                    && e.to_string().contains("could not acquire lock") =>
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

async fn start(dir: &Path) -> (Raft, GcsReader) {
    let (log, sm) = open_when_released(dir).await;
    let reader = sm.reader();
    let raft = Raft::new(1, config(), NoPeers, log, sm)
        .await
        .expect("raft");
    (raft, reader)
}

fn put(seq: u64) -> Command {
    Command::with_session(
        7,
        seq,
        Operation::Put(PutRequest {
            key: format!("k{}", seq % 4).into_bytes(),
            value: seq.to_be_bytes().to_vec(),
            lease: None,
            prev_kv: false,
        }),
    )
}

async fn write(raft: &Raft, command: Command) -> Response {
    let mut answer = raft
        .client_write(command.into())
        .await
        .expect("client write")
        .data
        .responses;
    assert_eq!(answer.len(), 1, "one response per command");
    answer.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_writes_snapshots_purges_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (raft, reader) = start(dir.path()).await;
        raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:0"))]))
            .await
            .expect("initialize");
        raft.wait(Some(DEADLINE))
            .metrics(|m| m.current_leader == Some(1), "leader")
            .await
            .expect("leader");
        for seq in 1..=30 {
            assert_eq!(write(&raft, put(seq)).await.revision, seq);
        }
        // A retried write returns the first answer and changes nothing.
        assert_eq!(write(&raft, put(30)).await.revision, 30);
        raft.ensure_linearizable().await.expect("read index");
        assert_eq!(reader.revision().expect("revision"), 30);
        assert_eq!(
            reader.get(b"k2").expect("get").map(|kv| kv.version),
            Some(8),
            "puts with seq 2, 6, .., 30"
        );

        raft.wait(Some(DEADLINE))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= 20),
                "log purged behind a snapshot",
            )
            .await
            .expect("purge");
        raft.shutdown().await.expect("shutdown");
    }

    {
        let (raft, reader) = start(dir.path()).await;
        raft.wait(Some(DEADLINE))
            .metrics(|m| m.current_leader == Some(1), "leader again")
            .await
            .expect("leader");
        assert_eq!(
            write(&raft, put(31)).await.revision,
            31,
            "state and revision survived"
        );
        assert_eq!(
            write(&raft, put(30)).await.outcome,
            Err(CommandError::StaleSequence {
                client_id: 7,
                seq: 30,
                last_seq: 31
            })
        );
        assert_eq!(
            reader.get(b"k3").expect("get").map(|kv| kv.mod_revision),
            Some(31)
        );
        raft.shutdown().await.expect("shutdown");
    }

    let (mut log, _sm) = open_when_released(dir.path()).await;
    let state = log.get_log_state().await.expect("log state");
    assert!(
        state.last_purged_log_id.is_some_and(|p| p.index >= 20),
        "{state:?}"
    );
}
