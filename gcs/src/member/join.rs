//! How a member joins: the pure plan behind `AdminRequest::Join`.
//!
//! A node that restarts on an empty data directory gets a new member id but
//! comes back at its old address. Left alone, the old id stays a voter that
//! can never answer again (a ghost: 4 voters where 3 run, so one more loss
//! stops commits). Joining recognises it: members recorded at the joining
//! member's address under another id are replaced by the new id in the
//! same membership change (openraft's joint consensus: a majority of the
//! old voters and of the new ones must agree, so the change is as safe as
//! any other), and their ids are retired.

use std::collections::BTreeSet;

use crate::api::Membership;
use crate::types::NodeId;

/// What joining `id` at an address takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinPlan {
    /// It is a voter already: nothing to do (joins are retried).
    AlreadyVoter,
    /// Add it as a learner, let it catch up, then make it a voter in place
    /// of `replaces` (members recorded at its address under other ids).
    Join { replaces: BTreeSet<NodeId> },
}

/// The plan for `id` joining at `addr` given the current `membership`. Pure.
pub fn plan(membership: &Membership, id: NodeId, addr: &str) -> JoinPlan {
    if membership.voters.iter().any(|(v, _)| *v == id) {
        return JoinPlan::AlreadyVoter;
    }
    let replaces = membership
        .voters
        .iter()
        .chain(membership.learners.iter())
        .filter(|(other, a)| *other != id && a == addr)
        .map(|(other, _)| *other)
        .collect();
    JoinPlan::Join { replaces }
}

/// The voters once `id` joined in place of `replaces`. Pure.
pub fn voters_after(
    membership: &Membership,
    id: NodeId,
    replaces: &BTreeSet<NodeId>,
) -> BTreeSet<NodeId> {
    let mut voters: BTreeSet<NodeId> = membership
        .voter_ids()
        .into_iter()
        .filter(|v| !replaces.contains(v))
        .collect();
    voters.insert(id);
    voters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(voters: &[(NodeId, &str)], learners: &[(NodeId, &str)]) -> Membership {
        let own = |list: &[(NodeId, &str)]| list.iter().map(|(i, a)| (*i, a.to_string())).collect();
        Membership {
            voters: own(voters),
            learners: own(learners),
        }
    }

    #[test]
    fn a_new_address_joins_and_replaces_nobody() {
        let m = members(&[(1, "a:1"), (2, "b:1")], &[]);
        let plan = plan(&m, 3, "c:1");
        assert_eq!(
            plan,
            JoinPlan::Join {
                replaces: BTreeSet::new()
            }
        );
        assert_eq!(
            voters_after(&m, 3, &BTreeSet::new()),
            BTreeSet::from([1, 2, 3])
        );
    }

    #[test]
    fn a_voter_joining_again_is_a_no_op() {
        let m = members(&[(1, "a:1"), (2, "b:1"), (3, "c:1")], &[]);
        assert_eq!(plan(&m, 3, "c:1"), JoinPlan::AlreadyVoter);
    }

    #[test]
    fn a_member_back_at_a_known_address_under_a_new_id_takes_the_old_ones_place() {
        // 3 was wiped and came back as 7: never 4 voters.
        let m = members(&[(1, "a:1"), (2, "b:1"), (3, "c:1")], &[]);
        let JoinPlan::Join { replaces } = plan(&m, 7, "c:1") else {
            panic!("must join");
        };
        assert_eq!(replaces, BTreeSet::from([3]));
        assert_eq!(voters_after(&m, 7, &replaces), BTreeSet::from([1, 2, 7]));
        // A retry after it became a learner: the old id still goes.
        let m = members(&[(1, "a:1"), (2, "b:1"), (3, "c:1")], &[(7, "c:1")]);
        assert_eq!(
            plan(&m, 7, "c:1"),
            JoinPlan::Join {
                replaces: BTreeSet::from([3])
            }
        );
        // A learner left at the address goes too.
        let m = members(&[(1, "a:1"), (2, "b:1")], &[(5, "c:1")]);
        assert_eq!(
            plan(&m, 7, "c:1"),
            JoinPlan::Join {
                replaces: BTreeSet::from([5])
            }
        );
    }
}
