//! Lease deadlines, tracked by the leader only.
//!
//! Leases themselves (id, TTL, attached keys) are replicated state. Their
//! deadlines are not: wall-clock time differs between members, so only the
//! leader tracks deadlines, and expiry is a decision it commits through Raft
//! (`Operation::LeaseRevoke`). This type is that decision logic with the
//! clock passed in, so it is tested with explicit instants.
//!
//! The runtime drives it:
//! - on winning an election: [`LeaseTracker::on_become_leader`] with every
//!   replicated lease; every deadline becomes `now + ttl`, so a failover
//!   never expires a lease the old leader was keeping alive;
//! - on losing leadership: [`LeaseTracker::on_step_down`];
//! - after a grant/revoke is applied: [`LeaseTracker::on_grant`] /
//!   [`LeaseTracker::on_revoke`];
//! - on a client keep-alive: [`LeaseTracker::keep_alive`];
//! - on a timer at [`LeaseTracker::next_deadline`]: [`LeaseTracker::expire`],
//!   then propose a `LeaseRevoke` per returned id.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::model::LeaseId;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LeaseTrackerError {
    /// This member is not the leader: keep-alives go to the leader.
    #[error("not the leader")]
    NotLeader,
    #[error("{0} not found")]
    NotFound(LeaseId),
    /// The lease's deadline passed and its revocation is under way.
    #[error("{0} expired")]
    Expired(LeaseId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    ttl: Duration,
    deadline: Instant,
    /// Returned by `expire`; a revoke is being committed.
    expiring: bool,
}

/// The leader's view of lease deadlines.
#[derive(Debug, Default, Clone)]
pub struct LeaseTracker {
    leader: bool,
    leases: BTreeMap<LeaseId, Tracked>,
    /// `(deadline, id)` of every lease not yet expiring, for `expire`.
    by_deadline: BTreeSet<(Instant, LeaseId)>,
}

impl LeaseTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Start tracking as the new leader: every lease gets a full TTL from
    /// `now`, whatever the previous leader had recorded.
    pub fn on_become_leader(
        &mut self,
        now: Instant,
        leases: impl IntoIterator<Item = (LeaseId, Duration)>,
    ) {
        self.leader = true;
        self.leases.clear();
        self.by_deadline.clear();
        for (id, ttl) in leases {
            self.insert(id, ttl, now);
        }
    }

    /// Stop tracking: a follower decides nothing about leases.
    pub fn on_step_down(&mut self) {
        self.leader = false;
        self.leases.clear();
        self.by_deadline.clear();
    }

    /// Bring the tracked set in line with the replicated leases: a lease not
    /// yet tracked gets `now + ttl`, a tracked lease that no longer exists is
    /// dropped, deadlines of the others are kept. A safety net for grants and
    /// revokes applied without passing through [`Self::on_grant`] /
    /// [`Self::on_revoke`] (e.g. entries of the previous term applied after
    /// this member became leader).
    pub fn reconcile(
        &mut self,
        now: Instant,
        leases: impl IntoIterator<Item = (LeaseId, Duration)>,
    ) {
        if !self.leader {
            return;
        }
        let replicated: BTreeMap<LeaseId, Duration> = leases.into_iter().collect();
        let gone: Vec<LeaseId> = self
            .leases
            .keys()
            .filter(|id| !replicated.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.remove(id);
        }
        for (id, ttl) in replicated {
            if !self.leases.contains_key(&id) {
                self.insert(id, ttl, now);
            }
        }
    }

    /// A grant was applied: its deadline starts now.
    pub fn on_grant(&mut self, id: LeaseId, ttl: Duration, now: Instant) {
        if self.leader {
            self.remove(id);
            self.insert(id, ttl, now);
        }
    }

    /// A revoke was applied (by expiry or by a client).
    pub fn on_revoke(&mut self, id: LeaseId) {
        self.remove(id);
    }

    /// Extend a lease to `now + ttl`; returns its TTL.
    pub fn keep_alive(&mut self, id: LeaseId, now: Instant) -> Result<Duration, LeaseTrackerError> {
        if !self.leader {
            return Err(LeaseTrackerError::NotLeader);
        }
        let tracked = *self
            .leases
            .get(&id)
            .ok_or(LeaseTrackerError::NotFound(id))?;
        if tracked.expiring {
            return Err(LeaseTrackerError::Expired(id));
        }
        self.remove(id);
        self.insert(id, tracked.ttl, now);
        Ok(tracked.ttl)
    }

    /// The leases whose deadline is at or before `now`, earliest first. Each
    /// is returned once: it is marked expiring (keep-alives are refused) until
    /// [`Self::on_revoke`] or a leadership change.
    pub fn expire(&mut self, now: Instant) -> Vec<LeaseId> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            self.by_deadline.pop_first();
            if let Some(tracked) = self.leases.get_mut(&id) {
                tracked.expiring = true;
            }
            expired.push(id);
        }
        expired
    }

    /// The leases returned by [`Self::expire`] whose revoke has not been
    /// applied yet (to re-propose after a failed proposal).
    pub fn expiring(&self) -> Vec<LeaseId> {
        self.leases
            .iter()
            .filter(|(_, t)| t.expiring)
            .map(|(id, _)| *id)
            .collect()
    }

    /// When the next lease expires, for the runtime's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// The deadline of a tracked lease.
    pub fn deadline(&self, id: LeaseId) -> Option<Instant> {
        self.leases.get(&id).map(|t| t.deadline)
    }

    fn insert(&mut self, id: LeaseId, ttl: Duration, now: Instant) {
        let deadline = now + ttl;
        self.leases.insert(
            id,
            Tracked {
                ttl,
                deadline,
                expiring: false,
            },
        );
        self.by_deadline.insert((deadline, id));
    }

    fn remove(&mut self, id: LeaseId) {
        if let Some(tracked) = self.leases.remove(&id) {
            self.by_deadline.remove(&(tracked.deadline, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn leader(t0: Instant) -> LeaseTracker {
        let mut tracker = LeaseTracker::new();
        tracker.on_become_leader(t0, [(LeaseId(1), 10 * S), (LeaseId(2), 3 * S)]);
        tracker
    }

    #[test]
    fn leases_expire_in_deadline_order_exactly_once() {
        let t0 = Instant::now();
        let mut tracker = leader(t0);
        assert_eq!(tracker.next_deadline(), Some(t0 + 3 * S));
        assert!(tracker.expire(t0 + 2 * S).is_empty());
        assert_eq!(tracker.expire(t0 + 3 * S), [LeaseId(2)]);
        assert!(tracker.expire(t0 + 4 * S).is_empty(), "returned once");
        assert_eq!(tracker.expiring(), [LeaseId(2)]);
        assert_eq!(
            tracker.keep_alive(LeaseId(2), t0 + 4 * S),
            Err(LeaseTrackerError::Expired(LeaseId(2)))
        );
        tracker.on_revoke(LeaseId(2));
        assert!(tracker.expiring().is_empty());
        assert_eq!(tracker.expire(t0 + 100 * S), [LeaseId(1)]);
    }

    #[test]
    fn keep_alive_pushes_the_deadline() {
        let t0 = Instant::now();
        let mut tracker = leader(t0);
        assert_eq!(tracker.keep_alive(LeaseId(2), t0 + 2 * S), Ok(3 * S));
        assert!(tracker.expire(t0 + 4 * S).is_empty());
        assert_eq!(tracker.deadline(LeaseId(2)), Some(t0 + 5 * S));
        assert_eq!(tracker.expire(t0 + 5 * S), [LeaseId(2)]);
        assert_eq!(
            tracker.keep_alive(LeaseId(9), t0),
            Err(LeaseTrackerError::NotFound(LeaseId(9)))
        );
    }

    #[test]
    fn a_new_leader_gives_every_lease_a_full_ttl() {
        let t0 = Instant::now();
        let mut old = leader(t0);
        // The old leader is about to expire lease 2 when it fails over.
        assert!(old.expire(t0 + 2 * S).is_empty());
        old.on_step_down();
        assert!(
            old.expire(t0 + 100 * S).is_empty(),
            "a follower expires nothing"
        );
        assert_eq!(
            old.keep_alive(LeaseId(1), t0),
            Err(LeaseTrackerError::NotLeader)
        );

        // The new leader takes over late; nothing expires before a full TTL.
        let t1 = t0 + 20 * S;
        let mut new = LeaseTracker::new();
        new.on_become_leader(t1, [(LeaseId(1), 10 * S), (LeaseId(2), 3 * S)]);
        assert!(new.expire(t1).is_empty());
        assert!(new.expire(t1 + 3 * S - Duration::from_nanos(1)).is_empty());
        assert_eq!(new.expire(t1 + 3 * S), [LeaseId(2)]);
    }

    #[test]
    fn reconcile_adds_missing_and_drops_gone_leases_keeping_deadlines() {
        let t0 = Instant::now();
        let mut tracker = leader(t0);
        tracker.keep_alive(LeaseId(1), t0 + S).expect("alive");
        tracker.reconcile(t0 + 2 * S, [(LeaseId(1), 10 * S), (LeaseId(3), S)]);
        assert_eq!(tracker.deadline(LeaseId(1)), Some(t0 + 11 * S), "kept");
        assert_eq!(tracker.deadline(LeaseId(2)), None, "gone");
        assert_eq!(tracker.deadline(LeaseId(3)), Some(t0 + 3 * S), "added");
        assert_eq!(tracker.expire(t0 + 3 * S), [LeaseId(3)]);
    }

    #[test]
    fn grants_are_tracked_only_by_a_leader() {
        let t0 = Instant::now();
        let mut follower = LeaseTracker::new();
        follower.on_grant(LeaseId(7), S, t0);
        assert_eq!(follower.next_deadline(), None);

        let mut tracker = leader(t0);
        tracker.on_grant(LeaseId(7), S, t0 + S);
        assert_eq!(tracker.next_deadline(), Some(t0 + 2 * S));
        tracker.on_revoke(LeaseId(7));
        assert_eq!(tracker.next_deadline(), Some(t0 + 3 * S));
    }
}
