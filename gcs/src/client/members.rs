//! The addresses a client tries, kept current from what leaders say: a
//! pure state machine, fed by the client's refresher (IO in `mod.rs`).
//!
//! A client starts from seed addresses (the members it was told about).
//! Whenever a leader tells it the membership, the known list becomes the
//! leader's voters and learners, in that order: members added later are
//! tried, removed ones are not. The seeds stay as a last resort, tried
//! only after every known member failed once (a client that learned a
//! membership which then lost all its members can still find a cluster
//! at the addresses it was started with).

use crate::api::{MemberStatus, Membership};

/// Known member addresses and the seeds, with the term of the leader that
/// last told the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberList {
    seeds: Vec<String>,
    known: Vec<String>,
    /// The term of the last membership learned (0: none yet).
    term: u64,
}

impl MemberList {
    /// A list that knows only `seeds` (not empty: the client checks).
    pub(crate) fn new(seeds: Vec<String>) -> MemberList {
        let seeds = dedup(seeds);
        MemberList {
            known: seeds.clone(),
            seeds,
            term: 0,
        }
    }

    /// The addresses to try, in order.
    pub(crate) fn known(&self) -> &[String] {
        &self.known
    }

    /// The known addresses, then the seeds that are not among them: for a
    /// round after every known member failed.
    pub(crate) fn with_seeds(&self) -> Vec<String> {
        let mut all = self.known.clone();
        for seed in &self.seeds {
            if !all.contains(seed) {
                all.push(seed.clone());
            }
        }
        all
    }

    /// Whether a member's status answer is believed: a leader's that
    /// lists itself among the voters (a leader removing itself does not)
    /// and whose term is not older than one already learned (a deposed
    /// leader that has not noticed yet). A follower's answer is not (it
    /// may lag, or be a removed member that no longer hears of changes).
    pub(crate) fn believes(&self, status: &MemberStatus) -> bool {
        status.role == "Leader"
            && status.term >= self.term
            && status
                .membership
                .voters
                .iter()
                .any(|(id, _)| *id == status.id)
    }

    /// Takes a member's status answer: a believed one
    /// ([`Self::believes`]) replaces the known list with its membership.
    /// True if the list changed.
    pub(crate) fn learn(&mut self, status: &MemberStatus) -> bool {
        if !self.believes(status) {
            return false;
        }
        let learned = addrs(&status.membership);
        self.term = status.term;
        if learned == self.known {
            return false;
        }
        self.known = learned;
        true
    }
}

/// The address of the leader a member's answer names, if its membership
/// lists it.
pub(crate) fn leader_addr(status: &MemberStatus) -> Option<String> {
    let leader = status.leader?;
    let m = &status.membership;
    m.voters
        .iter()
        .chain(m.learners.iter())
        .find(|(id, _)| *id == leader)
        .map(|(_, addr)| addr.clone())
}

/// Voters' then learners' addresses, each once.
fn addrs(membership: &Membership) -> Vec<String> {
    dedup(membership.addrs())
}

fn dedup(addrs: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    fn status(
        role: &str,
        term: u64,
        voters: &[(u64, &str)],
        learners: &[(u64, &str)],
    ) -> MemberStatus {
        let pairs = |l: &[(u64, &str)]| l.iter().map(|(i, a)| (*i, a.to_string())).collect();
        MemberStatus {
            id: voters.first().map_or(1, |v| v.0),
            role: role.into(),
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
            millis_since_quorum_ack: None,
        }
    }

    #[test]
    fn a_leader_s_membership_replaces_the_known_list_added_in_removed_out() {
        let mut list = MemberList::new(s(&["a", "b", "c"]));
        assert_eq!(list.known(), s(&["a", "b", "c"]));
        // D and E join (E still a learner).
        let grown = status(
            "Leader",
            3,
            &[(1, "a"), (2, "b"), (3, "c"), (4, "d")],
            &[(5, "e")],
        );
        assert!(list.learn(&grown));
        assert_eq!(list.known(), s(&["a", "b", "c", "d", "e"]));
        assert!(!list.learn(&grown), "the same membership changes nothing");
        // A, B, C removed.
        let replaced = status("Leader", 4, &[(4, "d"), (5, "e")], &[]);
        assert!(list.learn(&replaced));
        assert_eq!(list.known(), s(&["d", "e"]));
        // The seeds come back only as a last resort, after the known ones.
        assert_eq!(list.with_seeds(), s(&["d", "e", "a", "b", "c"]));
    }

    #[test]
    fn followers_older_terms_and_empty_memberships_teach_nothing() {
        let mut list = MemberList::new(s(&["a", "b", "b"]));
        assert_eq!(list.known(), s(&["a", "b"]), "duplicates dropped");
        assert!(!list.learn(&status("Follower", 9, &[(4, "d")], &[])));
        assert!(!list.learn(&status("Leader", 9, &[], &[])), "never empty");
        let mut leaving = status("Leader", 9, &[(4, "d")], &[]);
        leaving.id = 1;
        assert!(
            !list.believes(&leaving),
            "a leader that removed itself is not believed"
        );
        assert!(!list.learn(&leaving));
        assert_eq!(list.known(), s(&["a", "b"]));
        assert!(list.learn(&status("Leader", 5, &[(4, "d"), (5, "e")], &[])));
        assert!(
            !list.learn(&status("Leader", 4, &[(1, "a")], &[])),
            "a deposed leader of an older term is not believed"
        );
        assert_eq!(list.known(), s(&["d", "e"]));
        assert!(
            list.learn(&status("Leader", 5, &[(5, "e")], &[])),
            "same term: newer change"
        );
        assert_eq!(list.known(), s(&["e"]));
        assert_eq!(list.with_seeds(), s(&["e", "a", "b"]));
    }

    #[test]
    fn the_leader_s_address_comes_from_the_answer_s_membership() {
        let answer = status("Follower", 2, &[(7, "x:1"), (8, "y:1")], &[]);
        assert_eq!(leader_addr(&answer), Some("x:1".into()));
        let mut unknown = answer.clone();
        unknown.leader = Some(99);
        assert_eq!(leader_addr(&unknown), None);
        unknown.leader = None;
        assert_eq!(leader_addr(&unknown), None);
    }
}
