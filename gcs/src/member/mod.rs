//! A GCS member: the sled store, the Raft node on top of it, the lease
//! keeper, and the RPC services that expose them.
//!
//! ```text
//! let member = GcsMember::open(config, rpc_client).await?;
//! let server = member.register(RpcServer::new(rpc_config)).bind(listen).await?;
//! member.bootstrap(&server.local_addr().to_string()).await?;   // first member only
//! ```

mod backup;
pub mod election;
pub mod join;
mod leases;
mod proposer;
mod services;
mod sessions;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ServerState, SnapshotPolicy};
use troupe_core::rpc::{RpcClient, RpcServer};

use crate::api::{MemberStatus, Membership};
use crate::command::Command;
use crate::kv::SessionRetention;
use crate::network::Network;
use crate::response::Response;
use crate::store::{self, GcsReader, StoreConfig};
use crate::types::{NodeId, Raft};

pub use backup::{backup_items, must_adopt_address};
pub use leases::LeaseKeeper;
pub use proposer::{payload_bytes, BatchLimits, Proposer, WriteError};

/// How to run one member.
#[derive(Debug, Clone)]
pub struct GcsConfig {
    /// This member's id: unique in the cluster and never reused.
    pub id: NodeId,
    /// Where sled keeps the log and the state machine.
    pub data_dir: PathBuf,
    /// How often the leader heartbeats followers.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in this range
    /// starts an election.
    pub election_timeout: (Duration, Duration),
    /// Snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every: u64,
    /// Also snapshot once the log since the last snapshot holds this many
    /// bytes: an entry is a batch of writes, so a count of entries alone
    /// does not bound the log's size on disk.
    pub snapshot_log_bytes: u64,
    /// Log entries kept behind a snapshot for lagging followers.
    pub keep_logs_after_snapshot: u64,
    /// The log is purged in steps of at least this many entries.
    pub purge_batch: u64,
    pub store: StoreConfig,
    /// How the leader batches concurrent writes into one log entry.
    pub batch: BatchLimits,
    /// Client sessions unused for this long are removed from the
    /// exactly-once table (`--session-retention`; 1 hour by default).
    pub sessions: SessionRetention,
    /// Test hook: dial these addresses instead of the members' own (a
    /// fault-injecting proxy per link).
    pub dial_overrides: HashMap<NodeId, String>,
}

impl GcsConfig {
    /// Defaults for a member with `id` storing its data in `data_dir`:
    /// 50 ms heartbeats and 150–300 ms election timeouts, for members on one
    /// machine or a LAN (openraft's followers also wait out the old leader's
    /// lease, so a lost leader is replaced in about half a second; raise
    /// both on slower networks), snapshots every 10,000 entries.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>) -> GcsConfig {
        GcsConfig {
            id,
            data_dir: data_dir.into(),
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
            snapshot_every: 10_000,
            snapshot_log_bytes: 64 << 20,
            keep_logs_after_snapshot: 1_000,
            purge_batch: 256,
            store: StoreConfig::default(),
            batch: BatchLimits::default(),
            sessions: SessionRetention::default(),
            dial_overrides: HashMap::new(),
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, GcsMemberError> {
        let ms = |d: Duration| d.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "troupe-gcs".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            purge_batch_size: self.purge_batch,
            // Entries are batches of writes (up to `batch.max_bytes`); an
            // AppendEntries too large for one RPC message is split (see
            // `network`).
            max_payload_entries: 64,
            // Elections are started by `election::run` after a PreVote
            // round, never by openraft's own timer (see `election`).
            enable_elect: false,
            // Each snapshot chunk (openraft's 3 MiB) must arrive within
            // this; openraft's 200 ms default never lets a multi-MiB
            // snapshot (a restored backup) reach a joining member on a
            // busy machine.
            install_snapshot_timeout: 5_000,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| GcsMemberError::Config(format!("invalid Raft settings: {e}")))
    }
}

/// Why a member could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum GcsMemberError {
    #[error("{0}")]
    Config(String),
    // Not `#[from]`: the store's error is in the message already, and a
    // `source` would print it twice under anyhow's `{:#}`.
    #[error("cannot open the GCS data directory: {0}")]
    Store(crate::GcsStoreError),
    #[error("Raft failed: {0}")]
    Raft(String),
}

impl From<crate::GcsStoreError> for GcsMemberError {
    fn from(e: crate::GcsStoreError) -> Self {
        GcsMemberError::Store(e)
    }
}

/// One running member. Cheap to clone; [`GcsMember::shutdown`] stops it.
#[derive(Clone)]
pub struct GcsMember {
    id: NodeId,
    raft: Raft,
    reader: GcsReader,
    leases: Arc<LeaseKeeper>,
    proposer: Proposer,
    snapshots: tokio::task::AbortHandle,
    elections: tokio::task::AbortHandle,
    /// The leader's session expiry task (`sessions`).
    session_expiry: tokio::task::AbortHandle,
    /// Pre-vote rounds asked and won.
    election_rounds: Arc<election::Rounds>,
    /// Membership changes are made one at a time (see `services`).
    membership_changes: Arc<tokio::sync::Mutex<()>>,
    /// For asking other members (who answers at an address).
    rpc: RpcClient,
    /// openraft's leader lease: a follower that heard the leader within it
    /// refuses pre-votes (and votes).
    lease: Duration,
    write_latency: prometheus::Histogram,
}

/// The name of [`GcsMember::write_latency`] on `/metrics`.
pub const WRITE_LATENCY_METRIC: &str = "troupe_gcs_write_latency_ms";

/// Buckets of [`GcsMember::write_latency`], milliseconds.
const WRITE_BUCKETS_MS: &[f64] = &[
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// The highest log index held by a majority of the voters, from each
/// voter's last matched index (`None`: nothing matched yet). Pure.
pub fn quorum_index(matched: &[Option<u64>]) -> Option<u64> {
    if matched.is_empty() {
        return None;
    }
    let mut sorted: Vec<Option<u64>> = matched.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted[matched.len() / 2]
}

impl GcsMember {
    /// Opens (or creates) the member's store and starts its Raft node and
    /// lease keeper. It takes part in the cluster once its services are
    /// served and it is bootstrapped or added by the leader.
    pub async fn open(config: GcsConfig, rpc: RpcClient) -> Result<GcsMember, GcsMemberError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            GcsMemberError::Config(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let (log, sm) = store::open(&config.data_dir, config.store.clone())?;
        let reader = sm.reader();
        let log_size = log.clone();
        let network = Network::new(rpc.clone(), config.dial_overrides.clone());
        let raft = Raft::new(config.id, Arc::new(config.raft_config()?), network, log, sm)
            .await
            .map_err(|e| GcsMemberError::Raft(e.to_string()))?;
        let leases = LeaseKeeper::start(config.id, raft.clone(), reader.clone());
        let proposer = Proposer::start(raft.clone(), reader.clone(), config.batch);
        let session_expiry = tokio::spawn(sessions::run(
            raft.clone(),
            proposer.clone(),
            config.sessions,
        ))
        .abort_handle();
        let snapshots = tokio::spawn(snapshot_by_size(
            raft.clone(),
            log_size,
            config.snapshot_log_bytes,
        ))
        .abort_handle();
        let timing = election::Timing {
            lease: config.election_timeout.1,
            timeout: config.election_timeout,
            tick: ELECTION_TICK,
        };
        let overrides = config.dial_overrides.clone();
        let dial: election::DialFn = Arc::new(move |id, addr: &str| {
            overrides
                .get(&id)
                .cloned()
                .unwrap_or_else(|| addr.to_string())
        });
        let rounds = Arc::new(election::Rounds::default());
        let elections = tokio::spawn(election::run(
            raft.clone(),
            config.id,
            rpc.clone(),
            dial,
            timing,
            rounds.clone(),
        ))
        .abort_handle();
        let write_latency = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                WRITE_LATENCY_METRIC,
                "Time writes this GCS member led took to commit and apply, in milliseconds.",
            )
            .buckets(WRITE_BUCKETS_MS.to_vec()),
        )
        .map_err(|e| GcsMemberError::Config(e.to_string()))?;
        Ok(GcsMember {
            id: config.id,
            raft,
            reader,
            leases,
            proposer,
            snapshots,
            elections,
            session_expiry,
            membership_changes: Arc::default(),
            election_rounds: rounds,
            rpc,
            lease: timing.lease,
            write_latency,
        })
    }

    /// Adds the member's services (Raft, KV, watch, admin) to `server`.
    pub fn register(&self, server: RpcServer) -> RpcServer {
        services::register(self.clone(), server)
    }

    /// Makes this member the first voter of a new cluster reachable at
    /// `addr`. If the member already belongs to a cluster (a restart on the
    /// same data directory, or one restored from a backup), only records
    /// `addr` when it is the sole voter and was known at another address.
    pub async fn bootstrap(&self, addr: &str) -> Result<(), GcsMemberError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| GcsMemberError::Raft(e.to_string()))?
        {
            self.adopt_address(addr).await;
            return Ok(());
        }
        let members = BTreeMap::from([(self.id, BasicNode::new(addr))]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(()),
            Err(e) => Err(GcsMemberError::Raft(e.to_string())),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft node (metrics, membership, client writes).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Commits `command` through Raft, batched with concurrent writes into
    /// one log entry, and returns its response once applied here.
    pub async fn write(&self, command: Command) -> Result<Response, WriteError> {
        self.proposer.write(command).await
    }

    /// Local (serializable) reads of this member's state machine.
    pub fn reader(&self) -> &GcsReader {
        &self.reader
    }

    /// Pre-vote rounds this member asked and won (see [`election`]).
    pub fn election_rounds(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let r = &self.election_rounds;
        (r.asked.load(Relaxed), r.won.load(Relaxed))
    }

    /// Whether this member currently leads.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The time writes this member led took to commit and apply (from a
    /// write's arrival to its answer, batching included), as a Prometheus
    /// histogram for the metrics page.
    pub fn write_latency(&self) -> &prometheus::Histogram {
        &self.write_latency
    }

    /// On the leader, the highest log index a majority of the voters holds
    /// (the commit index); elsewhere the last applied index, a lower bound
    /// of it.
    pub fn commit_index(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        let applied = m.last_applied.map(|l| l.index);
        let Some(replication) = &m.replication else {
            return applied;
        };
        let matched: Vec<Option<u64>> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| match id == self.id {
                true => m.last_log_index,
                false => replication.get(&id).copied().flatten().map(|l| l.index),
            })
            .collect();
        quorum_index(&matched).or(applied)
    }

    /// This member's view of the cluster.
    pub fn status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let config = m.membership_config.membership();
        let voter_ids: std::collections::BTreeSet<NodeId> = config.voter_ids().collect();
        let mut voters = Vec::new();
        let mut learners = Vec::new();
        for (id, node) in config.nodes() {
            if voter_ids.contains(id) {
                voters.push((*id, node.addr.clone()));
            } else {
                learners.push((*id, node.addr.clone()));
            }
        }
        MemberStatus {
            id: self.id,
            role: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            revision: self.reader.revision().unwrap_or(0),
            membership: Membership { voters, learners },
            matched: m
                .replication
                .iter()
                .flatten()
                .map(|(id, log)| (*id, log.map(|l| l.index)))
                .collect(),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }

    /// Stops the lease keeper and the Raft node. Acknowledged writes are on
    /// disk already; this only stops taking part.
    pub async fn shutdown(&self) -> Result<(), GcsMemberError> {
        self.leases.stop();
        self.snapshots.abort();
        self.elections.abort();
        self.session_expiry.abort();
        self.raft
            .shutdown()
            .await
            .map_err(|e| GcsMemberError::Raft(e.to_string()))
    }
}

/// How often the election driver looks at its member's Raft state.
const ELECTION_TICK: Duration = Duration::from_millis(20);

/// How often a member compares its log's size with `snapshot_log_bytes`.
const SNAPSHOT_SIZE_CHECK: Duration = Duration::from_millis(250);

/// Whether the log behind the last snapshot has grown enough for another.
/// Pure.
pub fn snapshot_due(log_bytes_since_snapshot: u64, limit: u64) -> bool {
    limit > 0 && log_bytes_since_snapshot >= limit
}

/// Triggers a snapshot whenever the log since the last one reaches `limit`
/// bytes (openraft's own policy counts entries). Aborted by
/// [`GcsMember::shutdown`]; ends by itself if Raft stops.
async fn snapshot_by_size(raft: Raft, log: store::LogStore, limit: u64) {
    let mut every = tokio::time::interval(SNAPSHOT_SIZE_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (snapshot, applied) = {
            // Read two fields in place; the guard ends with this block.
            let metrics = raft.metrics();
            let m = metrics.borrow();
            (m.snapshot.map(|s| s.index), m.last_applied.map(|l| l.index))
        };
        if applied.is_none() || applied == snapshot {
            continue;
        }
        if snapshot_due(log.bytes_after(snapshot), limit) {
            tracing::info!(?snapshot, limit, "log reached its size limit: snapshotting");
            if raft.trigger().snapshot().await.is_err() {
                return; // Raft stopped.
            }
        }
    }
}

#[cfg(test)]
mod quorum_tests {
    use super::quorum_index;

    #[test]
    fn the_commit_index_is_what_a_majority_holds() {
        assert_eq!(quorum_index(&[Some(7)]), Some(7));
        assert_eq!(quorum_index(&[Some(9), Some(5), Some(7)]), Some(7));
        assert_eq!(quorum_index(&[Some(9), None, None]), None);
        assert_eq!(
            quorum_index(&[Some(9), Some(9), None, None, Some(3)]),
            Some(3)
        );
        assert_eq!(quorum_index(&[Some(4), Some(6), Some(6), Some(8)]), Some(6));
        assert_eq!(quorum_index(&[]), None);
    }

    #[test]
    fn a_snapshot_is_due_at_the_size_limit_unless_disabled() {
        use super::snapshot_due;
        assert!(!snapshot_due(99, 100));
        assert!(snapshot_due(100, 100));
        assert!(snapshot_due(1 << 40, 100));
        assert!(!snapshot_due(1 << 40, 0), "0 turns the size policy off");
    }
}
