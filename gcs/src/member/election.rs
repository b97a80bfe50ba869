//! Elections with PreVote (Raft thesis §9.6), driven outside openraft.
//!
//! openraft 0.9 has no PreVote: a member that hears no leader (cut off,
//! paused, or the only survivor of a quorum loss) raises its term at every
//! election timeout, and when it comes back its higher term makes the
//! healthy leader step down. So members run with openraft's own election
//! timer off (`enable_elect: false`) and this module decides when to
//! campaign:
//!
//! 1. A voter that is not the leader and has heard no leader for its
//!    election timeout (the leader's lease plus a random timeout when a
//!    leader was established, as openraft's own timer) asks every other
//!    voter "would you vote for me at term + 1?" ([`PreVote`]) without
//!    changing any state.
//! 2. A voter grants that only if it is not the leader, has not heard a
//!    leader within the lease, and the asker's log is at least as up to date
//!    as its own ([`grant`]).
//! 3. Only with grants from a majority of every voter set (both during a
//!    joint membership change) does the member start a real election
//!    (`trigger().elect()`, which raises the term).
//!
//! A member that cannot reach a majority therefore never raises its term,
//! and one that returns finds a leader it follows at once. The decisions
//! are pure functions of a [`Local`] view and the time; the driver
//! ([`run`]) is the only IO.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use troupe_core::rpc::{CallOptions, RpcClient};

use crate::api::RaftPreVote;
use crate::types::{LogId, NodeId, Raft};

/// "Would you vote for me at `term`?" No state changes on either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    pub candidate: NodeId,
    /// The term the candidate would campaign at (its current term + 1).
    pub term: u64,
    /// The candidate's last log id.
    pub last_log: Option<LogId>,
}

/// A voter's answer to a [`PreVote`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreVoteReply {
    Granted,
    /// Refused, with the reason (for logs and tests).
    Refused(Refusal),
}

/// Why a voter would not vote for a candidate now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// It leads, so a leader exists.
    IAmLeader,
    /// It heard the leader within the lease.
    LeaderHeard,
    /// The candidate's log is behind its own.
    LogBehind,
    /// The candidate's proposed term is below its own.
    StaleTerm,
    /// It is not a voter (learners do not vote).
    NotVoter,
}

/// What one member knows of itself, read from its Raft state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub id: NodeId,
    pub is_leader: bool,
    pub is_voter: bool,
    pub term: u64,
    /// Whether its vote is committed: a leader was established in `term`.
    pub leader_established: bool,
    /// When its vote was last granted or confirmed by a leader's message
    /// (openraft refreshes it on every heartbeat); `None` before any.
    pub heard: Option<Instant>,
    pub last_log: Option<LogId>,
    /// The voter sets: one, or two during a joint membership change.
    pub voter_sets: Vec<BTreeSet<NodeId>>,
}

/// Whether `local` would vote for `request`'s candidate now. Pure.
pub fn grant(request: &PreVote, local: &Local, now: Instant, lease: Duration) -> PreVoteReply {
    let refuse = PreVoteReply::Refused;
    if !local.is_voter {
        return refuse(Refusal::NotVoter);
    }
    if local.is_leader {
        return refuse(Refusal::IAmLeader);
    }
    if request.term < local.term {
        return refuse(Refusal::StaleTerm);
    }
    if local.leader_established && local.heard.is_some_and(|t| now < t + lease) {
        return refuse(Refusal::LeaderHeard);
    }
    if request.last_log < local.last_log {
        return refuse(Refusal::LogBehind);
    }
    PreVoteReply::Granted
}

/// Whether `local` should ask for pre-votes now: a voter that does not lead
/// and has heard no leader for `timeout` (plus the `lease` when a leader
/// was established, as openraft's own timer), and has not asked within
/// `timeout` already. Pure.
pub fn due(
    local: &Local,
    now: Instant,
    last_attempt: Option<Instant>,
    lease: Duration,
    timeout: Duration,
) -> bool {
    if !local.is_voter || local.is_leader {
        return false;
    }
    if last_attempt.is_some_and(|t| now < t + timeout) {
        return false;
    }
    let wait = match local.leader_established {
        true => lease + timeout,
        false => timeout,
    };
    local.heard.is_none_or(|t| now >= t + wait)
}

/// Whether `granted` (the candidate itself included) holds a majority of
/// every voter set. Pure.
pub fn has_quorum(voter_sets: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !voter_sets.is_empty()
        && voter_sets
            .iter()
            .all(|set| set.iter().filter(|id| granted.contains(id)).count() * 2 > set.len())
}

/// Reads `raft`'s view of itself.
pub async fn local(raft: &Raft, id: NodeId) -> Option<Local> {
    let last_log = raft.data_metrics().borrow().last_log;
    raft.with_raft_state(move |st| {
        let membership = st.membership_state.effective();
        let voter_sets: Vec<BTreeSet<NodeId>> = membership
            .membership()
            .get_joint_config()
            .iter()
            .map(|set| set.iter().copied().collect())
            .collect();
        let vote = st.vote_ref();
        Local {
            id,
            is_leader: st.server_state == openraft::ServerState::Leader,
            is_voter: membership.voter_ids().any(|v| v == id),
            term: vote.leader_id().term,
            leader_established: vote.is_committed(),
            heard: st.vote_last_modified(),
            last_log,
            voter_sets,
        }
    })
    .await
    .ok()
}

/// How the driver times elections.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// openraft's leader lease (its `election_timeout_max`): a follower that
    /// heard the leader within it refuses to vote for anyone else.
    pub lease: Duration,
    /// Election timeouts are drawn from this range.
    pub timeout: (Duration, Duration),
    /// How often the driver looks.
    pub tick: Duration,
}

/// What the driver did, for tests and operators.
#[derive(Debug, Default)]
pub struct Rounds {
    /// Pre-vote rounds asked.
    pub asked: AtomicU64,
    /// Rounds won, each followed by an election.
    pub won: AtomicU64,
}

/// Campaigns for `raft` when [`due`], after a successful pre-vote round.
/// Runs until Raft stops; the member aborts it on shutdown.
pub async fn run(
    raft: Raft,
    id: NodeId,
    rpc: RpcClient,
    dial: DialFn,
    timing: Timing,
    rounds: Arc<Rounds>,
) {
    let mut every = tokio::time::interval(timing.tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_attempt: Option<Instant> = None;
    let mut timeout = draw(timing.timeout);
    loop {
        every.tick().await;
        let Some(me) = local(&raft, id).await else {
            return; // Raft stopped.
        };
        let now = Instant::now();
        if !due(&me, now, last_attempt, timing.lease, timeout) {
            continue;
        }
        last_attempt = Some(now);
        timeout = draw(timing.timeout);
        let granted = pre_vote_round(&raft, &me, &rpc, &dial, timing.timeout.0).await;
        rounds.asked.fetch_add(1, Ordering::Relaxed);
        // A leader may have been elected while we asked (the voters granted
        // before it won): if we have heard of it since, or moved to another
        // term, campaigning now would unseat it.
        let Some(now) = local(&raft, id).await else {
            return;
        };
        let unchanged = now.term == me.term && now.heard == me.heard && !now.is_leader;
        if unchanged && has_quorum(&me.voter_sets, &granted) {
            rounds.won.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                term = me.term + 1,
                granted = ?granted,
                "pre-vote won: starting an election"
            );
            if raft.trigger().elect().await.is_err() {
                return;
            }
        } else {
            tracing::debug!(granted = ?granted, "pre-vote lost: not raising the term");
        }
    }
}

/// Where to reach a member: its address in the membership, or a test's
/// override.
pub type DialFn = Arc<dyn Fn(NodeId, &str) -> String + Send + Sync>;

/// Asks every other voter; returns who granted (`me` included).
async fn pre_vote_round(
    raft: &Raft,
    me: &Local,
    rpc: &RpcClient,
    dial: &DialFn,
    timeout: Duration,
) -> BTreeSet<NodeId> {
    let peers: BTreeSet<NodeId> = me
        .voter_sets
        .iter()
        .flatten()
        .copied()
        .filter(|p| *p != me.id)
        .collect();
    let addrs: Vec<(NodeId, String)> = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        peers
            .iter()
            .filter_map(|p| {
                let node = m.membership_config.membership().get_node(p)?;
                Some((*p, dial(*p, &node.addr)))
            })
            .collect()
    };
    let request = PreVote {
        candidate: me.id,
        term: me.term + 1,
        last_log: me.last_log,
    };
    let asks = addrs.into_iter().map(|(peer, addr)| {
        let channel = rpc.channel(&addr);
        let request = crate::api::Addressed {
            to: peer,
            rpc: request.clone(),
        };
        async move {
            let options = CallOptions {
                timeout: Some(timeout),
                fail_fast: true,
            };
            match channel.call_with::<RaftPreVote>(&request, options).await {
                Ok(PreVoteReply::Granted) => Some(peer),
                Ok(PreVoteReply::Refused(why)) => {
                    tracing::debug!(peer, ?why, "pre-vote refused");
                    None
                }
                Err(e) => {
                    tracing::debug!(peer, error = %e, "pre-vote not answered");
                    None
                }
            }
        }
    });
    // Stop as soon as a quorum granted: waiting out an unreachable voter's
    // timeout gives another candidate time to win first.
    let mut granted = BTreeSet::from([me.id]);
    let mut answers: futures::stream::FuturesUnordered<_> = asks.collect();
    while !has_quorum(&me.voter_sets, &granted) {
        match futures::StreamExt::next(&mut answers).await {
            Some(Some(peer)) => {
                granted.insert(peer);
            }
            Some(None) => {}
            None => break,
        }
    }
    granted
}

fn draw((min, max): (Duration, Duration)) -> Duration {
    if max <= min {
        return min;
    }
    rand::rng().random_range(min..max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    const LEASE: Duration = Duration::from_millis(300);
    const TIMEOUT: Duration = Duration::from_millis(200);

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 0), index))
    }

    fn follower(now: Instant) -> Local {
        Local {
            id: 2,
            is_leader: false,
            is_voter: true,
            term: 5,
            leader_established: true,
            heard: Some(now),
            last_log: log(5, 10),
            voter_sets: vec![BTreeSet::from([1, 2, 3])],
        }
    }

    fn ask(term: u64, last_log: Option<LogId>) -> PreVote {
        PreVote {
            candidate: 3,
            term,
            last_log,
        }
    }

    #[test]
    fn a_voter_that_hears_its_leader_refuses() {
        let now = Instant::now();
        let me = follower(now);
        let reply = grant(&ask(6, log(5, 10)), &me, now + LEASE / 2, LEASE);
        assert_eq!(reply, PreVoteReply::Refused(Refusal::LeaderHeard));
        // Once the lease has passed without a word from the leader, it grants.
        let reply = grant(&ask(6, log(5, 10)), &me, now + LEASE, LEASE);
        assert_eq!(reply, PreVoteReply::Granted);
    }

    #[test]
    fn a_leader_a_learner_a_longer_log_or_a_higher_term_refuse() {
        let now = Instant::now();
        let later = now + LEASE * 2;
        let leader = Local {
            is_leader: true,
            ..follower(now)
        };
        assert_eq!(
            grant(&ask(6, log(5, 10)), &leader, later, LEASE),
            PreVoteReply::Refused(Refusal::IAmLeader)
        );
        let learner = Local {
            is_voter: false,
            ..follower(now)
        };
        assert_eq!(
            grant(&ask(6, log(5, 10)), &learner, later, LEASE),
            PreVoteReply::Refused(Refusal::NotVoter)
        );
        let me = follower(now);
        assert_eq!(
            grant(&ask(6, log(5, 9)), &me, later, LEASE),
            PreVoteReply::Refused(Refusal::LogBehind)
        );
        assert_eq!(
            grant(&ask(6, log(4, 11)), &me, later, LEASE),
            PreVoteReply::Refused(Refusal::LogBehind),
            "a log's last term counts before its length"
        );
        assert_eq!(
            grant(&ask(4, log(5, 10)), &me, later, LEASE),
            PreVoteReply::Refused(Refusal::StaleTerm)
        );
        assert_eq!(
            grant(&ask(6, log(6, 1)), &me, later, LEASE),
            PreVoteReply::Granted
        );
    }

    #[test]
    fn without_an_established_leader_the_lease_does_not_hold_votes_back() {
        let now = Instant::now();
        let candidate_seen = Local {
            leader_established: false,
            ..follower(now)
        };
        assert_eq!(
            grant(&ask(6, log(5, 10)), &candidate_seen, now, LEASE),
            PreVoteReply::Granted
        );
    }

    #[test]
    fn a_follower_asks_only_after_the_lease_and_its_timeout() {
        let now = Instant::now();
        let me = follower(now);
        assert!(!due(&me, now + LEASE, None, LEASE, TIMEOUT));
        assert!(due(&me, now + LEASE + TIMEOUT, None, LEASE, TIMEOUT));
        // Having just asked, it waits a timeout before asking again.
        let asked = now + LEASE + TIMEOUT;
        assert!(!due(&me, asked + TIMEOUT / 2, Some(asked), LEASE, TIMEOUT));
        assert!(due(&me, asked + TIMEOUT, Some(asked), LEASE, TIMEOUT));
        // No leader ever established: the timeout alone.
        let fresh = Local {
            leader_established: false,
            ..follower(now)
        };
        assert!(due(&fresh, now + TIMEOUT, None, LEASE, TIMEOUT));
        let never_heard = Local {
            heard: None,
            ..follower(now)
        };
        assert!(due(&never_heard, now, None, LEASE, TIMEOUT));
    }

    #[test]
    fn leaders_and_learners_never_ask() {
        let now = Instant::now();
        let late = now + LEASE * 10;
        let leader = Local {
            is_leader: true,
            ..follower(now)
        };
        assert!(!due(&leader, late, None, LEASE, TIMEOUT));
        let learner = Local {
            is_voter: false,
            ..follower(now)
        };
        assert!(!due(&learner, late, None, LEASE, TIMEOUT));
    }

    #[test]
    fn a_quorum_is_a_majority_of_every_voter_set() {
        let one = [BTreeSet::from([1, 2, 3])];
        assert!(!has_quorum(&one, &BTreeSet::from([2])));
        assert!(has_quorum(&one, &BTreeSet::from([2, 3])));
        assert!(has_quorum(&[BTreeSet::from([7])], &BTreeSet::from([7])));
        // Joint: {1,2,3} -> {1,2,4}: a majority of each.
        let joint = [BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2, 4])];
        assert!(has_quorum(&joint, &BTreeSet::from([1, 3, 4])));
        assert!(has_quorum(&joint, &BTreeSet::from([1, 2])));
        assert!(!has_quorum(&joint, &BTreeSet::from([1, 3])));
        assert!(!has_quorum(&[], &BTreeSet::from([1])));
        assert!(!has_quorum(&one, &BTreeSet::from([4, 5])));
    }
}
