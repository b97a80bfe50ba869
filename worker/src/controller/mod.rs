//! The cluster controller: a singleton on the node whose GCS member leads,
//! its writes fenced by the Raft term.
//!
//! On taking over it claims `/troupe/controller-term` with its term (only
//! if the key holds an older term), then runs rounds of
//! [`reconcile`](reconcile::reconcile) on the cluster view. Each round's
//! writes are one transaction that first compares the term key with its
//! own claim, so a deposed controller's writes never land. Between rounds
//! it waits for its own writes to show in the view, so a round never
//! decides on a state older than the last one's outcome. Rounds also
//! delete what has been dead for the retention ([`gc`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use troupe_core::id::{ActorId, NodeId};
use troupe_gcs::client::GcsClient;
use troupe_gcs::member::GcsMember;
use troupe_gcs::{DeleteRequest, KeySelector, PutRequest, TxnOp};

pub(crate) mod gc;
pub(crate) mod reconcile;

use crate::actor::ActorError;
use crate::fencing::{claim_term, commit_fenced};
use crate::placement::PlacementPolicy;
use crate::protocol::{ControlError, ControlReply, ControlRequest, SpawnRequest};
use crate::schema::keys;
use crate::view::ClusterState;
use crate::view::ClusterView;

/// Requests at most one round takes.
const MAX_BATCH: usize = 4096;
/// A round runs at least this often (a dead node is noticed by the view
/// change; this is a backstop).
const TICK: Duration = Duration::from_millis(500);

/// One queued request and where its answer goes.
pub(crate) struct Queued {
    pub request: ControlRequest,
    pub reply: oneshot::Sender<Result<ControlReply, ControlError>>,
}

impl Queued {
    /// About what the request adds to a round on `state`: the record it
    /// writes (a spawn's new one, a killed actor's).
    fn bytes(&self, state: &ClusterState) -> usize {
        const FIELDS: usize = 512;
        FIELDS
            + match &self.request {
                ControlRequest::Spawn(s) => s.args.len(),
                ControlRequest::Kill { actor } => {
                    state.actors.get(actor).map_or(0, |a| a.args.len())
                }
            }
    }
}

/// The handle RPC handlers use to reach the controller.
#[derive(Clone)]
pub(crate) struct ControllerHandle {
    queue: mpsc::Sender<Queued>,
    active: Arc<AtomicBool>,
}

impl ControllerHandle {
    /// Queues `request` if this node runs the controller now.
    pub(crate) async fn submit(
        &self,
        request: ControlRequest,
    ) -> Result<ControlReply, ControlError> {
        if !self.active.load(Ordering::Acquire) {
            return Err(ControlError::NotController);
        }
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Queued { request, reply }).await.is_err() {
            return Err(ControlError::NotController);
        }
        answer.await.unwrap_or(Err(ControlError::NotController))
    }
}

/// Starts the controller task of a GCS member node.
pub(crate) fn start(
    member: GcsMember,
    gcs: GcsClient,
    view: ClusterView,
    me: NodeId,
    retention: Duration,
) -> (ControllerHandle, tokio::task::JoinHandle<()>) {
    let (queue, rx) = mpsc::channel(MAX_BATCH);
    let active = Arc::new(AtomicBool::new(false));
    let handle = ControllerHandle {
        queue,
        active: active.clone(),
    };
    let task = tokio::spawn(run(member, gcs, view, me, retention, rx, active));
    (handle, task)
}

async fn run(
    member: GcsMember,
    gcs: GcsClient,
    view: ClusterView,
    me: NodeId,
    retention: Duration,
    mut rx: mpsc::Receiver<Queued>,
    active: Arc<AtomicBool>,
) {
    loop {
        // Follower: refuse what is queued and wait to lead.
        while let Ok(q) = rx.try_recv() {
            let _ = q.reply.send(Err(ControlError::NotController));
        }
        if !member.is_leader() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let term = member.status().term;
        let claim = match claim_term(&gcs, keys::CONTROLLER_TERM_KEY.as_bytes(), term, me).await {
            Ok(Some(claim)) => claim,
            Ok(None) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, term, "could not claim the controller term");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tracing::info!(term, node = %me, "running the cluster controller");
        if !view
            .wait_for_revision(claim.revision, Duration::from_secs(10))
            .await
        {
            continue;
        }
        active.store(true, Ordering::Release);
        lead(&member, &gcs, &view, term, &claim.value, retention, &mut rx).await;
        active.store(false, Ordering::Release);
        tracing::info!(term, node = %me, "stopped running the cluster controller");
    }
}

/// Runs rounds while this member leads in `term` and the claim holds.
async fn lead(
    member: &GcsMember,
    gcs: &GcsClient,
    view: &ClusterView,
    term: u64,
    claim: &[u8],
    retention: Duration,
    rx: &mut mpsc::Receiver<Queued>,
) {
    let mut changes = view.subscribe();
    let mut carried: Option<Queued> = None;
    loop {
        if !member.is_leader() || member.status().term != term {
            if let Some(q) = carried.take() {
                let _ = q.reply.send(Err(ControlError::NotController));
            }
            return;
        }
        let mut batch: Vec<Queued> = carried.take().into_iter().collect();
        // The new records of a batch take at most half a round's bytes:
        // the other half is for their placements (see `ROUND_BYTES`).
        let weight = |q: &Queued| view.read(|state| q.bytes(state));
        let mut bytes: usize = batch.iter().map(weight).sum();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) if !batch.is_empty() && bytes + weight(&q) > reconcile::ROUND_BYTES / 2 => {
                    carried = Some(q);
                    break;
                }
                Ok(q) => {
                    bytes += weight(&q);
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let min_revision = batch
            .iter()
            .filter_map(|q| match &q.request {
                ControlRequest::Spawn(s) => Some(s.min_revision),
                ControlRequest::Kill { .. } => None,
            })
            .max()
            .unwrap_or(0);
        if !view
            .wait_for_revision(min_revision, Duration::from_secs(5))
            .await
        {
            refuse(batch, "the controller's view of the cluster is behind");
            continue;
        }
        let (spawns, kills, replies) = split(batch);
        let clock = gc::Clock::now(retention);
        let plan = view.read(|state| {
            reconcile::reconcile(state, term, clock, &spawns, &kills, PlacementPolicy::Spread)
        });
        let revision = if plan.writes.is_empty() {
            view.read(|s| s.revision)
        } else {
            match commit(gcs, claim, &plan.writes).await {
                Ok(Some(revision)) => revision,
                Ok(None) => {
                    tracing::info!(term, "a later controller took over; stepping down");
                    for reply in replies {
                        let _ = reply.send(Err(ControlError::NotController));
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller round not committed");
                    for reply in replies {
                        let _ = reply.send(Err(ControlError::NotController));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        };
        let outcomes = plan.spawned.into_iter().chain(plan.killed);
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let answer = outcome
                .map(|record| ControlReply { record, revision })
                .map_err(ControlError::Actor);
            let _ = reply.send(answer);
        }
        // See our own writes before deciding again.
        view.wait_for_revision(revision, Duration::from_secs(5))
            .await;
        changes.borrow_and_update();
        tokio::select! {
            q = rx.recv() => match q {
                Some(q) => carried = Some(q),
                None => return,
            },
            _ = changes.changed() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

type Reply = oneshot::Sender<Result<ControlReply, ControlError>>;

/// Spawns and kills of a batch, and the replies in the order the round
/// answers them (spawns, then kills).
fn split(batch: Vec<Queued>) -> (Vec<SpawnRequest>, Vec<ActorId>, Vec<Reply>) {
    let mut spawns = Vec::new();
    let mut kills = Vec::new();
    let mut spawn_replies = Vec::new();
    let mut kill_replies = Vec::new();
    for q in batch {
        match q.request {
            ControlRequest::Spawn(s) => {
                spawns.push(*s);
                spawn_replies.push(q.reply);
            }
            ControlRequest::Kill { actor } => {
                kills.push(actor);
                kill_replies.push(q.reply);
            }
        }
    }
    spawn_replies.extend(kill_replies);
    (spawns, kills, spawn_replies)
}

fn refuse(batch: Vec<Queued>, why: &str) {
    for q in batch {
        let _ = q.reply.send(Err(ControlError::Actor(ActorError::Cluster(
            why.to_owned(),
        ))));
    }
}

/// Commits a round's writes if the claim still holds: `Ok(None)` if not.
async fn commit(
    gcs: &GcsClient,
    claim: &[u8],
    writes: &std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Result<Option<u64>, String> {
    let ops = writes
        .iter()
        .map(|(key, value)| match value {
            Some(value) => TxnOp::Put(PutRequest::new(key.clone(), value.clone())),
            None => TxnOp::Delete(DeleteRequest {
                selector: KeySelector::Key(key.clone()),
                prev_kv: false,
            }),
        })
        .collect();
    commit_fenced(gcs, keys::CONTROLLER_TERM_KEY.as_bytes(), claim, ops).await
}
