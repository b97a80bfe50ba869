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

use super::GcsMember;
use crate::api::{
    Admin, AdminReply, AdminRequest, GcsError, Kv, KvReply, KvRequest, RaftAppend, RaftSnapshot,
    RaftVote, Watch, WatchRequest,
};
use crate::command::{Command, Operation, RangeRequest};
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
        rpc: AppendEntriesRequest<TypeConfig>,
        _cx: CallContext,
    ) -> Result<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>, Status> {
        Ok(self.0.raft.append_entries(rpc).await)
    }
}

struct VoteService(GcsMember);
impl Service for VoteService {
    type Protocol = RaftVote;
    async fn call(
        &self,
        rpc: VoteRequest<NodeId>,
        _cx: CallContext,
    ) -> Result<Result<VoteResponse<NodeId>, RaftError<NodeId>>, Status> {
        Ok(self.0.raft.vote(rpc).await)
    }
}

struct SnapshotService(GcsMember);
impl Service for SnapshotService {
    type Protocol = RaftSnapshot;
    async fn call(
        &self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _cx: CallContext,
    ) -> Result<
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
        Status,
    > {
        Ok(self.0.raft.install_snapshot(rpc).await)
    }
}

struct KvService(GcsMember);
impl KvService {
    async fn write(&self, command: Command) -> Result<KvReply, GcsError> {
        let member = &self.0;
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
