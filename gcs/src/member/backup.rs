//! The member's side of backups and restores: serving a consistent copy of
//! the state machine ([`Backup`]), and a restored (or moved) single-member
//! cluster taking the address it really listens on.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use openraft::{BasicNode, ChangeMembers, ServerState};
use troupe_core::rpc::{CallContext, ResponseStream, Service, Status};

use super::{services, GcsMember};
use crate::api::{Backup, BackupChunk, BackupRequest, GcsError, BACKUP_MAX_CHUNK};

/// How long a sole voter waits to lead before it updates its own address.
const LEAD_WAIT: Duration = Duration::from_secs(10);
/// How long a backup waits for a fresh snapshot to be built.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

/// Splits `body` into the items of a backup stream: the start, then data
/// chunks of at most `chunk` bytes (at least 1). Pure.
pub fn backup_items(
    member: u64,
    last_log_index: Option<u64>,
    body: Vec<u8>,
    chunk: u32,
) -> Vec<BackupChunk> {
    let chunk = chunk.clamp(1, BACKUP_MAX_CHUNK) as usize;
    let mut items = vec![BackupChunk::Start {
        member,
        last_log_index,
        total_bytes: body.len() as u64,
    }];
    items.extend(body.chunks(chunk).map(|c| BackupChunk::Data(c.to_vec())));
    items
}

pub(super) struct BackupService(pub(super) GcsMember);

impl BackupService {
    /// The leader's state at or after a linearizable read point: the
    /// snapshot openraft keeps, built afresh if the last one is older than
    /// the read point (a snapshot is a consistent cut taken while applying
    /// is paused, as for any follower that needs one).
    /// With `local`, this member's applied state instead, leader or not
    /// (quorum-loss recovery).
    async fn take(&self, chunk: u32, local: bool) -> Result<Vec<BackupChunk>, GcsError> {
        let member = &self.0;
        let read_point = match local {
            true => member.raft.metrics().borrow().last_applied.map(|l| l.index),
            false => member
                .raft
                .ensure_linearizable()
                .await
                .map_err(|e| services::leader_check_error(member, e))?
                .map(|l| l.index),
        };
        let covers = |snapshot: Option<u64>| snapshot.is_some() && snapshot >= read_point;
        let current = member.raft.metrics().borrow().snapshot.map(|s| s.index);
        if !covers(current) {
            member
                .raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| GcsError::Unavailable(format!("member {} stopped: {e}", member.id)))?;
            member
                .raft
                .wait(Some(SNAPSHOT_WAIT))
                .metrics(
                    |m| covers(m.snapshot.map(|s| s.index)),
                    "a snapshot covering the read point",
                )
                .await
                .map_err(|e| {
                    GcsError::Unavailable(format!("no snapshot was built in time: {e}"))
                })?;
        }
        let reader = member.reader.clone();
        let stored = tokio::task::spawn_blocking(move || reader.current_snapshot())
            .await
            .map_err(|e| GcsError::Storage(format!("the backup task failed: {e}")))?
            .map_err(services::store_error)?;
        match stored {
            Some((last, body)) if covers(last.map(|l| l.index)) => {
                Ok(backup_items(member.id, last.map(|l| l.index), body, chunk))
            }
            _ => Err(GcsError::Unavailable(
                "the snapshot was replaced while it was read; retry".into(),
            )),
        }
    }
}

impl Service for BackupService {
    type Protocol = Backup;

    async fn call(
        &self,
        _request: BackupRequest,
        _cx: CallContext,
    ) -> Result<Result<BackupChunk, GcsError>, Status> {
        Err(Status::unimplemented(
            "gcs.backup is a stream; open it with Channel::stream",
        ))
    }

    async fn stream(
        &self,
        request: BackupRequest,
        _cx: CallContext,
    ) -> Result<ResponseStream<Result<BackupChunk, GcsError>>, Status> {
        let items: Vec<Result<BackupChunk, GcsError>> =
            match self.take(request.chunk_bytes, request.local).await {
                Ok(items) => items.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
        Ok(futures::stream::iter(items.into_iter().map(Ok)).boxed())
    }
}

/// Whether a member that listens on `addr` must record it: it is the only
/// voter and its membership names another address (a cluster restored from
/// a backup, or a single member restarted on another port). Pure.
pub fn must_adopt_address(me: u64, addr: &str, voters: &[(u64, String)]) -> bool {
    matches!(voters, [(id, recorded)] if *id == me && recorded != addr)
}

impl GcsMember {
    /// Records `addr` as this member's address if it is the cluster's only
    /// voter and the membership names another one, so that joining nodes
    /// and clients redirected to the leader find it. Waits (bounded) for
    /// the member to lead first; logs and goes on if it cannot.
    pub(super) async fn adopt_address(&self, addr: &str) {
        let status = self.status();
        if !must_adopt_address(self.id, addr, &status.membership.voters) {
            return;
        }
        let led = self
            .raft
            .wait(Some(LEAD_WAIT))
            .state(ServerState::Leader, "lead to update the own address")
            .await;
        if let Err(e) = led {
            tracing::warn!(error = %e, addr, "could not lead to record the new address");
            return;
        }
        let nodes = BTreeMap::from([(self.id, BasicNode::new(addr))]);
        match self
            .raft
            .change_membership(ChangeMembers::SetNodes(nodes), false)
            .await
        {
            Ok(_) => tracing::info!(member = self.id, addr, "recorded the member's new address"),
            Err(e) => tracing::warn!(error = %e, addr, "could not record the new address"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_sent_as_a_start_and_bounded_chunks_in_order() {
        let body: Vec<u8> = (0..10u8).collect();
        let items = backup_items(7, Some(42), body.clone(), 4);
        assert_eq!(
            items[0],
            BackupChunk::Start {
                member: 7,
                last_log_index: Some(42),
                total_bytes: 10
            }
        );
        let data: Vec<Vec<u8>> = items[1..]
            .iter()
            .map(|i| match i {
                BackupChunk::Data(d) => d.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(data.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert_eq!(data.concat(), body);
        // A chunk size of 0 or above the cap is clamped.
        assert_eq!(backup_items(1, None, vec![1, 2], 0).len(), 3);
        let big = backup_items(1, None, vec![0; (3 << 20) + 1], u32::MAX);
        assert_eq!(big.len(), 5, "3 MiB + 1 byte in chunks of at most 1 MiB");
        assert_eq!(
            backup_items(1, None, Vec::new(), 4).len(),
            1,
            "empty: start only"
        );
    }

    #[test]
    fn only_a_sole_voter_at_another_address_adopts_its_own() {
        let one = |id: u64, a: &str| vec![(id, a.to_string())];
        assert!(must_adopt_address(1, "h:2", &one(1, "h:1")));
        assert!(!must_adopt_address(1, "h:1", &one(1, "h:1")));
        assert!(!must_adopt_address(1, "h:2", &one(2, "h:1")), "not me");
        let three = vec![(1, "h:1".to_string()), (2, "h:2".into()), (3, "h:3".into())];
        assert!(
            !must_adopt_address(1, "h:9", &three),
            "never with other voters"
        );
        assert!(!must_adopt_address(1, "h:9", &[]));
    }
}
