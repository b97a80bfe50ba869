//! The RPC services of a member: Raft's internal traffic, the KV, watches
//! and administration. Each maps openraft's and the store's errors to the
//! wire's [`GcsError`] here, in one place.

use std::collections::BTreeSet;

use futures::StreamExt;
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RaftError,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, ChangeMembers};
use troupe_core::rpc::{CallContext, ResponseStream, RpcServer, Service, Status};

use tokio::time::Instant;

use super::join::{self, JoinPlan};
use super::{election, GcsMember};
use crate::api::{
    Addressed, Admin, AdminReply, AdminRequest, GcsError, Kv, KvReply, KvRequest, PreVote,
    PreVoteReply, RaftAppend, RaftPreVote, RaftSnapshot, RaftVote, Watch, WatchRequest,
};
use crate::command::{Command, Operation, RangeRequest};
use crate::health::member_id;
use crate::lease_tracker::LeaseTrackerError;
use crate::model::RevisionEvents;
use crate::response::Outcome;
use crate::types::{Node, NodeId, TypeConfig};
use crate::GcsStoreError;

pub(super) fn register(member: GcsMember, server: RpcServer) -> RpcServer {
    server
        .with_service(RaftService(member.clone()))
        .with_service(VoteService(member.clone()))
        .with_service(SnapshotService(member.clone()))
        .with_service(PreVoteService(member.clone()))
        .with_service(KvService(member.clone()))
        .with_service(WatchService(member.clone()))
        .with_service(AdminService(member.clone()))
        .with_service(super::backup::BackupService(member))
}

/// Where a member's key for "this id was removed" lives. Ids of removed
/// members are never accepted again.
pub(crate) fn removed_marker(id: NodeId) -> Vec<u8> {
    format!("\u{0}gcs/removed/{id}").into_bytes()
}

fn not_leader(
    member: &GcsMember,
    leader_id: Option<NodeId>,
    leader_node: Option<Node>,
) -> GcsError {
    GcsError::NotLeader {
        member: member.id,
        leader: leader_id.zip(leader_node.map(|n| n.addr)),
    }
}

pub(super) fn store_error(e: GcsStoreError) -> GcsError {
    match e {
        GcsStoreError::Compacted {
            requested,
            compacted_at,
        } => GcsError::Compacted {
            requested,
            compacted_at,
        },
        other => GcsError::Storage(other.to_string()),
    }
}

fn write_error(
    member: &GcsMember,
    e: RaftError<NodeId, ClientWriteError<NodeId, Node>>,
) -> GcsError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            not_leader(member, f.leader_id, f.leader_node)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => membership_error(c),
        RaftError::Fatal(f) => GcsError::Unavailable(format!("member {} stopped: {f}", member.id)),
    }
}

fn membership_error(e: ChangeMembershipError<NodeId>) -> GcsError {
    match e {
        ChangeMembershipError::InProgress(_) => {
            GcsError::Unavailable(format!("another membership change is in progress: {e}"))
        }
        other => GcsError::Invalid(other.to_string()),
    }
}

pub(super) fn leader_check_error(
    member: &GcsMember,
    e: RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>,
) -> GcsError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            not_leader(member, f.leader_id, f.leader_node)
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            GcsError::Unavailable(format!("the leader cannot reach a quorum: {q}"))
        }
        RaftError::Fatal(f) => GcsError::Unavailable(format!("member {} stopped: {f}", member.id)),
    }
}

struct RaftService(GcsMember);
impl Service for RaftService {
    type Protocol = RaftAppend;
    async fn call(
        &self,
        rpc: Addressed<AppendEntriesRequest<TypeConfig>>,
        _cx: CallContext,
    ) -> Result<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>, Status> {
        let rpc = for_me(&self.0, rpc)?;
        Ok(self.0.raft.append_entries(rpc).await)
    }
}

struct VoteService(GcsMember);
impl Service for VoteService {
    type Protocol = RaftVote;
    async fn call(
        &self,
        rpc: Addressed<VoteRequest<NodeId>>,
        _cx: CallContext,
    ) -> Result<Result<VoteResponse<NodeId>, RaftError<NodeId>>, Status> {
        let rpc = for_me(&self.0, rpc)?;
        Ok(self.0.raft.vote(rpc).await)
    }
}

struct SnapshotService(GcsMember);
impl Service for SnapshotService {
    type Protocol = RaftSnapshot;
    async fn call(
        &self,
        rpc: Addressed<InstallSnapshotRequest<TypeConfig>>,
        _cx: CallContext,
    ) -> Result<
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
        Status,
    > {
        let rpc = for_me(&self.0, rpc)?;
        Ok(self.0.raft.install_snapshot(rpc).await)
    }
}

struct PreVoteService(GcsMember);
impl Service for PreVoteService {
    type Protocol = RaftPreVote;
    async fn call(
        &self,
        rpc: Addressed<PreVote>,
        _cx: CallContext,
    ) -> Result<PreVoteReply, Status> {
        let rpc = for_me(&self.0, rpc)?;
        let Some(local) = election::local(&self.0.raft, self.0.id).await else {
            return Err(Status::unavailable("this GCS member is shutting down"));
        };
        let reply = election::grant(&rpc, &local, Instant::now(), self.0.lease);
        Ok(reply)
    }
}

/// The message inside `rpc` if it is for this member; refused otherwise
/// (the sender's membership names another id at this address: a member
/// that lost its data and came back under a new id).
fn for_me<T>(member: &GcsMember, rpc: Addressed<T>) -> Result<T, Status> {
    if rpc.to != member.id {
        return Err(Status::rejected(format!(
            "this is GCS member {me}, not {them}: member {them} is gone from this address \
             (its data directory was replaced); remove it with `troupe gcs remove --id {them}`",
            me = member_id(member.id),
            them = member_id(rpc.to),
        )));
    }
    Ok(rpc.rpc)
}

struct KvService(GcsMember);
impl KvService {
    async fn write(&self, command: Command) -> Result<KvReply, GcsError> {
        let member = &self.0;
        if matches!(command.op, crate::Operation::ExpireSessions { .. }) {
            // The session clock moves by leader time only (`member::sessions`).
            return Err(GcsError::Invalid(
                "sessions are expired by the GCS leader itself; clients cannot ask for it".into(),
            ));
        }
        let started = std::time::Instant::now();
        let response = member
            .write(command)
            .await
            .map_err(|e| write_error(member, e))?;
        member
            .write_latency
            .observe(started.elapsed().as_secs_f64() * 1e3);
        // Keep the leader's lease deadlines in step with what it committed.
        match &response.outcome {
            Ok(Outcome::LeaseGranted { id, ttl_ms }) => member.leases.granted(*id, *ttl_ms),
            Ok(Outcome::LeaseRevoked { id, .. }) => member.leases.revoked(*id),
            _ => {}
        }
        Ok(KvReply::Written(response))
    }

    async fn range(&self, request: RangeRequest, linearizable: bool) -> Result<KvReply, GcsError> {
        let member = &self.0;
        if linearizable {
            member
                .raft
                .ensure_linearizable()
                .await
                .map_err(|e| leader_check_error(member, e))?;
        }
        let read = member.reader.range(&request).map_err(store_error)?;
        Ok(KvReply::Range(read))
    }
}

impl Service for KvService {
    type Protocol = Kv;
    async fn call(
        &self,
        request: KvRequest,
        _cx: CallContext,
    ) -> Result<Result<KvReply, GcsError>, Status> {
        Ok(match request {
            KvRequest::Write(command) => self.write(command).await,
            KvRequest::Range {
                request,
                linearizable,
            } => self.range(request, linearizable).await,
            KvRequest::KeepAlive(id) => self.keep_alive(id).await,
        })
    }
}

impl KvService {
    /// Renews a lease on the leader. Leadership is confirmed with a quorum
    /// first: a deposed leader that has not heard of the new term yet must
    /// not renew a lease in its own tracker while the real leader, which
    /// never saw the keep-alive, lets it expire.
    async fn keep_alive(&self, id: crate::model::LeaseId) -> Result<KvReply, GcsError> {
        let member = &self.0;
        member
            .raft
            .ensure_linearizable()
            .await
            .map_err(|e| leader_check_error(member, e))?;
        match self.0.leases.keep_alive(id) {
            Ok(ttl) => Ok(KvReply::KeptAlive {
                ttl_ms: ttl.as_millis() as u64,
            }),
            Err(LeaseTrackerError::NotLeader) => {
                let m = self.0.raft.metrics().borrow().clone();
                let leader = m.current_leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| (l, n.addr.clone()))
                });
                // A fresh leader that has not finished taking over yet
                // also lands here: the client retries.
                if m.current_leader == Some(self.0.id) {
                    Err(GcsError::Unavailable(
                        "the new leader is still taking over leases".into(),
                    ))
                } else {
                    Err(GcsError::NotLeader {
                        member: self.0.id,
                        leader,
                    })
                }
            }
            Err(LeaseTrackerError::NotFound(id) | LeaseTrackerError::Expired(id)) => {
                Err(GcsError::LeaseNotFound(id))
            }
        }
    }
}

struct WatchService(GcsMember);
impl Service for WatchService {
    type Protocol = Watch;
    async fn call(
        &self,
        _req: WatchRequest,
        _cx: CallContext,
    ) -> Result<Result<RevisionEvents, GcsError>, Status> {
        Err(Status::unimplemented(
            "gcs.watch is a stream; open it with Channel::stream",
        ))
    }

    async fn stream(
        &self,
        request: WatchRequest,
        _cx: CallContext,
    ) -> Result<ResponseStream<Result<RevisionEvents, GcsError>>, Status> {
        let reader = &self.0.reader;
        let from = match request.from_revision {
            0 => {
                reader
                    .revision()
                    .map_err(|e| Status::internal(e.to_string()))?
                    + 1
            }
            r => r,
        };
        let watcher = reader.watch(request.selector, from);
        // Items until the first error, which is sent and ends the stream.
        let stream = futures::stream::unfold(Some(watcher), |state| async move {
            let mut watcher = state?;
            match watcher.next().await {
                Ok(events) => Some((Ok(Ok(events)), Some(watcher))),
                Err(e) => Some((Ok(Err(store_error(e))), None)),
            }
        });
        Ok(stream.boxed())
    }
}

/// How long a joining member may take to catch up as a learner.
const JOIN_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(120);

struct AdminService(GcsMember);
impl AdminService {
    fn require_unused(&self, id: NodeId) -> Result<(), GcsError> {
        let removed = self
            .0
            .reader
            .get(&removed_marker(id))
            .map_err(store_error)?;
        if removed.is_some() {
            return Err(GcsError::Invalid(format!(
                "member id {id} belonged to a removed member and is never reused; pick a new id"
            )));
        }
        Ok(())
    }

    async fn change(&self, change: ChangeMembers<NodeId, Node>) -> Result<AdminReply, GcsError> {
        let member = &self.0;
        member
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| write_error(member, e))?;
        Ok(AdminReply::Membership(member.status().membership))
    }

    async fn handle(&self, request: AdminRequest) -> Result<AdminReply, GcsError> {
        let member = &self.0;
        // Membership changes one at a time: two computed from the same
        // membership would race (a join's learner lost to another join).
        let _one_at_a_time = match request {
            AdminRequest::Status => None,
            _ => Some(member.membership_changes.lock().await),
        };
        match request {
            AdminRequest::Status => Ok(AdminReply::Status(member.status())),
            AdminRequest::AddLearner { id, addr } => {
                self.require_unused(id)?;
                member
                    .raft
                    .add_learner(id, BasicNode::new(addr), true)
                    .await
                    .map_err(|e| write_error(member, e))?;
                Ok(AdminReply::Membership(member.status().membership))
            }
            AdminRequest::Promote { id } => {
                self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                    .await
            }
            AdminRequest::Join { id, addr } => self.join(id, addr).await,
            AdminRequest::Remove { id } => {
                let status = member.status();
                let is_voter = status.membership.voter_ids().contains(&id);
                let is_learner = status.membership.learners.iter().any(|(l, _)| *l == id);
                if !is_voter && !is_learner {
                    return Err(GcsError::Invalid(format!("{id} is not a member")));
                }
                // Record the id first: a crash between the two steps leaves
                // the id blocked, never reused.
                self.write_marker(id).await?;
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                let reply = self.change(change).await?;
                if is_voter {
                    // A removed voter stays as a learner until dropped too.
                    let _ = self
                        .change(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                        .await;
                }
                let _ = reply;
                Ok(AdminReply::Membership(member.status().membership))
            }
        }
    }

    /// [`AdminRequest::Join`]: one membership change at a time.
    async fn join(&self, id: NodeId, addr: String) -> Result<AdminReply, GcsError> {
        let member = &self.0;
        self.require_unused(id)?;
        let replaces = match join::plan(&member.status().membership, id, &addr) {
            JoinPlan::AlreadyVoter => {
                return Ok(AdminReply::Membership(member.status().membership))
            }
            JoinPlan::Join { replaces } => replaces,
        };
        if !replaces.is_empty() {
            // Proof that the old members are gone from `addr`: it answers
            // as the joining member. (Two hosts announcing one address
            // would answer as themselves, and are refused.)
            let answering = self.member_at(&addr).await?;
            if answering != id {
                return Err(GcsError::Invalid(format!(
                    "{addr} answers as GCS member {}, not {}: two members announce \
                     the same address; give each node its own --listen address",
                    member_id(answering),
                    member_id(id)
                )));
            }
        }
        let caught_up = member.raft.add_learner(id, BasicNode::new(&addr), true);
        tokio::time::timeout(JOIN_CATCH_UP, caught_up)
            .await
            .map_err(|_| {
                GcsError::Unavailable(format!(
                    "member {} at {addr} did not catch up within {}s; check that it runs and \
                     that the members can reach {addr}, then retry",
                    member_id(id),
                    JOIN_CATCH_UP.as_secs()
                ))
            })?
            .map_err(|e| write_error(member, e))?;
        for old in &replaces {
            // Retire the old ids first: a crash between the steps leaves them
            // blocked, never reusable.
            self.write_marker(*old).await?;
        }
        let voters = join::voters_after(&member.status().membership, id, &replaces);
        self.change(ChangeMembers::ReplaceAllVoters(voters)).await?;
        let learners_left: BTreeSet<NodeId> = member
            .status()
            .membership
            .learners
            .iter()
            .map(|(l, _)| *l)
            .filter(|l| replaces.contains(l))
            .collect();
        if !learners_left.is_empty() {
            self.change(ChangeMembers::RemoveNodes(learners_left))
                .await?;
        }
        if !replaces.is_empty() {
            tracing::warn!(
                new = id,
                old = ?replaces,
                %addr,
                "GCS member replaced: {addr} came back with an empty data directory under id {id}; \
                 the old id(s) are removed for good"
            );
        }
        Ok(AdminReply::Membership(member.status().membership))
    }

    /// The id of the GCS member answering at `addr`.
    async fn member_at(&self, addr: &str) -> Result<NodeId, GcsError> {
        let channel = self.0.rpc.channel(addr);
        match channel.call::<Admin>(&AdminRequest::Status).await {
            Ok(Ok(AdminReply::Status(status))) => Ok(status.id),
            Ok(Ok(other)) => Err(GcsError::Unavailable(format!(
                "{addr} answered a status request with {other:?}"
            ))),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(GcsError::Unavailable(format!(
                "cannot reach {addr} to check which member answers there: {e}"
            ))),
        }
    }

    async fn write_marker(&self, id: NodeId) -> Result<(), GcsError> {
        let member = &self.0;
        member
            .write(Command::new(Operation::put(
                removed_marker(id),
                b"removed".to_vec(),
            )))
            .await
            .map_err(|e| write_error(member, e))?;
        Ok(())
    }
}

impl Service for AdminService {
    type Protocol = Admin;
    async fn call(
        &self,
        request: AdminRequest,
        _cx: CallContext,
    ) -> Result<Result<AdminReply, GcsError>, Status> {
        Ok(self.handle(request).await)
    }
}
