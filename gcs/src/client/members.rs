//! The member addresses a client tries, kept current from what the leader
//! says: a pure list, fed by the client's background refresher (IO in
//! `mod.rs`), read (never waited on) by requests and watches.
//!
//! The list starts as the addresses the client was given. It only changes
//! on a *believed* answer: a member that leads, lists itself among the
//! voters, is in a term not older than the last believed one, and heard a
//! quorum recently (or is the only voter). Addresses it lists that are new
//! are appended. An address is dropped only when a believed answer listed
//! it and a later one does not: the leader said it was removed. An address
//! no answer has listed yet stays (a member still joining is not in the
//! membership yet: the first version of this refresh replaced the list
//! with the leader's membership, and a node that had just joined lost its
//! own member's address). The order of the addresses kept never changes:
//! requests and watches walk the list by index, and a reordered list would
//! send the next attempt back to the member that just failed.

use crate::api::MemberStatus;

/// How recently a leader must have heard a quorum for its membership to be
/// believed (`MemberStatus::millis_since_quorum_ack`).
pub(crate) const MAX_QUORUM_AGE_MS: u64 = 1_000;

/// The addresses to try, in order, and the term of the last membership
/// believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberList {
    addrs: Vec<String>,
    /// The term of the last membership believed (0: none yet).
    term: u64,
    /// The addresses the last believed membership listed.
    listed: Vec<String>,
}

impl MemberList {
    /// A list of `start` (not empty: the client checks), duplicates dropped.
    pub(crate) fn new(start: Vec<String>) -> MemberList {
        let mut addrs: Vec<String> = Vec::with_capacity(start.len());
        for a in start {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        MemberList {
            addrs,
            term: 0,
            listed: Vec::new(),
        }
    }

    /// The addresses to try, in order.
    pub(crate) fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Whether a member's status answer may change the list (see the
    /// module doc). A follower's answer may lag, and a deposed leader's,
    /// or a removed member's, may be old: neither is believed.
    pub(crate) fn believes(&self, status: &MemberStatus) -> bool {
        let voters = &status.membership.voters;
        let sole_voter = voters.len() == 1;
        status.role == "Leader"
            && status.term >= self.term
            && voters.iter().any(|(id, _)| *id == status.id)
            && (sole_voter
                || status
                    .millis_since_quorum_ack
                    .is_some_and(|ms| ms <= MAX_QUORUM_AGE_MS))
    }

    /// Takes a member's status answer: a believed one adds the addresses
    /// it lists that are new (at the end) and drops those the previous
    /// believed one listed and it does not. True if the list changed.
    pub(crate) fn learn(&mut self, status: &MemberStatus) -> bool {
        if !self.believes(status) {
            return false;
        }
        self.term = status.term;
        let listed = status.membership.addrs();
        let removed: Vec<&String> = self.listed.iter().filter(|a| !listed.contains(a)).collect();
        let mut next: Vec<String> = self
            .addrs
            .iter()
            .filter(|a| !removed.contains(a))
            .cloned()
            .collect();
        for a in &listed {
            if !next.contains(a) {
                next.push(a.clone());
            }
        }
        self.listed = listed;
        if next == self.addrs {
            return false;
        }
        self.addrs = next;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Membership;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    /// A leader's answer (member id = the first voter's), heard a quorum
    /// 50 ms ago.
    fn leader(term: u64, voters: &[(u64, &str)], learners: &[(u64, &str)]) -> MemberStatus {
        let pairs = |l: &[(u64, &str)]| l.iter().map(|(i, a)| (*i, a.to_string())).collect();
        MemberStatus {
            id: voters.first().map_or(1, |v| v.0),
            role: "Leader".into(),
            term,
            leader: voters.first().map(|v| v.0),
            last_log_index: None,
            last_applied_index: None,
            revision: 0,
            membership: Membership {
                voters: pairs(voters),
                learners: pairs(learners),
            },
            matched: Vec::new(),
            millis_since_quorum_ack: Some(50),
        }
    }

    #[test]
    fn added_members_are_appended_and_removed_ones_dropped_keeping_the_order() {
        let mut list = MemberList::new(s(&["a", "b", "c", "b"]));
        assert_eq!(list.addrs(), s(&["a", "b", "c"]), "duplicates dropped");
        // C is still joining: not listed yet, and kept.
        assert!(!list.learn(&leader(2, &[(1, "a"), (2, "b")], &[])));
        assert_eq!(list.addrs(), s(&["a", "b", "c"]));
        // D and E join (E still a learner); the leader lists members in
        // its own order (by id): the known ones keep theirs.
        let grown = leader(3, &[(4, "d"), (1, "a"), (3, "c"), (2, "b")], &[(5, "e")]);
        assert!(list.learn(&grown));
        assert_eq!(list.addrs(), s(&["a", "b", "c", "d", "e"]));
        assert!(!list.learn(&grown), "the same membership changes nothing");
        // B and C removed.
        assert!(list.learn(&leader(4, &[(4, "d"), (1, "a"), (5, "e")], &[])));
        assert_eq!(list.addrs(), s(&["a", "d", "e"]));
        // Then A, the last start address.
        assert!(list.learn(&leader(4, &[(5, "e"), (4, "d")], &[])));
        assert_eq!(list.addrs(), s(&["d", "e"]));
    }

    #[test]
    fn only_a_leader_that_heard_a_quorum_in_a_current_term_changes_the_list() {
        let start = s(&["a", "b", "c"]);
        let mut list = MemberList::new(start.clone());
        let mut follower = leader(9, &[(4, "d")], &[]);
        follower.role = "Follower".into();
        assert!(!list.learn(&follower));
        let mut leaving = leader(9, &[(4, "d"), (6, "f")], &[]);
        leaving.id = 1;
        assert!(!list.learn(&leaving), "a leader that removed itself");
        let mut cut_off = leader(9, &[(4, "d"), (6, "f")], &[]);
        cut_off.millis_since_quorum_ack = Some(MAX_QUORUM_AGE_MS + 1);
        assert!(!list.learn(&cut_off), "a leader without a quorum lately");
        cut_off.millis_since_quorum_ack = None;
        assert!(!list.learn(&cut_off));
        assert_eq!(list.addrs(), start, "nothing dropped so far");
        // A sole voter is its own quorum.
        let mut alone = leader(9, &[(1, "a")], &[]);
        alone.millis_since_quorum_ack = None;
        assert!(list.believes(&alone));
        assert!(list.learn(&leader(5, &[(1, "a"), (4, "d"), (5, "e")], &[])));
        assert!(list.learn(&leader(5, &[(4, "d"), (5, "e")], &[])));
        assert_eq!(
            list.addrs(),
            s(&["b", "c", "d", "e"]),
            "A was listed, then not"
        );
        assert!(
            !list.learn(&leader(4, &[(1, "a")], &[])),
            "a deposed leader of an older term"
        );
        assert!(
            list.learn(&leader(5, &[(5, "e")], &[])),
            "same term: a later change"
        );
        assert_eq!(list.addrs(), s(&["b", "c", "e"]));
    }
}
