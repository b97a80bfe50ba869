//! The control store's health as an operator sees it (`troupe status`,
//! `troupe gcs members`): every member probed at its address, the leader's
//! replication state, and the problems worth a flag.
//!
//! [`probe`] is the IO (one status call per member address, in parallel);
//! [`report`] decides liveness, lag and flags from what came back, and
//! [`render`] prints it: both pure.
//!
//! Members are shown by their id in the `node-<16 hex digits>` form of
//! `troupe_core::id::NodeId` (a node's GCS member has its node's id);
//! [`parse_member_id`] also accepts the decimal form.

use std::fmt::Write;
use std::time::Duration;

use troupe_core::rpc::{CallOptions, RpcClient};

use crate::api::{Admin, AdminReply, AdminRequest, MemberStatus};
use crate::types::NodeId;

/// A member id as every command prints it: `node-<16 hex digits>`.
pub fn member_id(id: NodeId) -> String {
    troupe_core::id::NodeId::new(id).to_string()
}

/// A member id as typed by an operator: `node-<16 hex digits>` (as shown)
/// or a decimal number.
pub fn parse_member_id(text: &str) -> Result<NodeId, String> {
    let text = text.trim();
    if text.starts_with("node-") {
        return text
            .parse::<troupe_core::id::NodeId>()
            .map(|id| id.get())
            .map_err(|e| e.to_string());
    }
    text.parse::<u64>().map_err(|_| {
        format!(
            "invalid member id {text:?}: give it as shown by `troupe status` or `troupe gcs \
             members` (node- and 16 hex digits, e.g. node-000000000000002a) or as a decimal \
             number (e.g. 42)"
        )
    })
}

/// What one member address answered, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub addr: String,
    pub answer: Result<MemberStatus, String>,
}

/// Asks every address for its member's status, in parallel, each bounded
/// by `timeout`.
pub async fn probe(rpc: &RpcClient, addrs: &[String], timeout: Duration) -> Vec<Probe> {
    let options = CallOptions {
        timeout: Some(timeout),
        fail_fast: true,
    };
    let calls = addrs.iter().map(|addr| async move {
        let answer = match rpc
            .channel(addr)
            .call_with::<Admin>(&AdminRequest::Status, options)
            .await
        {
            Ok(Ok(AdminReply::Status(status))) => Ok(status),
            Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        Probe {
            addr: addr.clone(),
            answer,
        }
    });
    futures::future::join_all(calls).await
}

/// One member's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// Leader, Follower, Candidate, Learner as it answered; `None`:
    /// unreachable.
    pub state: Option<String>,
    /// Log entries behind the leader's last one (`None`: unknown).
    pub lag: Option<u64>,
    /// What is wrong, worded for the operator.
    pub flags: Vec<String>,
}

/// The control store at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsReport {
    /// The leader and the term, as the best-informed answer says.
    pub leader: Option<NodeId>,
    pub term: u64,
    pub rows: Vec<MemberRow>,
    /// Cluster-wide problems (no leader, quorum at risk).
    pub warnings: Vec<String>,
}

/// Decides liveness, lag and flags from the probes. The membership is the
/// leader's if it answered (else the answer with the highest term);
/// `fallback` is used when no member answered. Pure.
pub fn report(probes: &[Probe], fallback: Option<&MemberStatus>) -> GcsReport {
    let answers: Vec<&MemberStatus> = probes
        .iter()
        .filter_map(|p| p.answer.as_ref().ok())
        .collect();
    let leader_answer = answers
        .iter()
        .filter(|s| s.role == "Leader")
        .max_by_key(|s| s.term)
        .copied();
    let reference = leader_answer
        .or_else(|| answers.iter().max_by_key(|s| s.term).copied())
        .or(fallback);
    let Some(reference) = reference else {
        return GcsReport {
            leader: None,
            term: 0,
            rows: Vec::new(),
            warnings: vec!["no GCS member answered; check the addresses and the token".into()],
        };
    };
    let members = reference
        .membership
        .voters
        .iter()
        .map(|m| (m, true))
        .chain(reference.membership.learners.iter().map(|m| (m, false)));
    let mut rows = Vec::new();
    for ((id, addr), voter) in members {
        let answer = probes
            .iter()
            .find(|p| p.addr == *addr)
            .map(|p| p.answer.as_ref());
        let mut flags = Vec::new();
        let state = match answer {
            Some(Ok(s)) if s.id == *id => Some(s.role.clone()),
            Some(Ok(s)) => {
                flags.push(format!(
                    "its address answers as {}: a member restarted there under a new id? remove \
                     the stale one with `troupe gcs remove --id {}`",
                    member_id(s.id),
                    member_id(*id)
                ));
                None
            }
            Some(Err(e)) => {
                flags.push(format!("UNREACHABLE ({e})"));
                None
            }
            None => {
                flags.push("UNREACHABLE (not probed)".into());
                None
            }
        };
        let lag = leader_answer.and_then(|l| {
            let last = l.last_log_index?;
            if l.id == *id {
                return Some(0);
            }
            let matched = l.matched.iter().find(|(m, _)| m == id)?.1;
            Some(last.saturating_sub(matched.unwrap_or(0)))
        });
        for (other, other_addr) in &reference.membership.voters {
            if voter && other != id && other_addr == addr {
                flags.push(format!(
                    "SHARES ADDRESS {addr} with voter {}: one process cannot be two voters",
                    member_id(*other)
                ));
            }
        }
        rows.push(MemberRow {
            id: *id,
            addr: addr.clone(),
            voter,
            state,
            lag,
            flags,
        });
    }
    let mut warnings = Vec::new();
    let voters = rows.iter().filter(|r| r.voter).count();
    let live = rows.iter().filter(|r| r.voter && r.state.is_some()).count();
    let quorum = voters / 2 + 1;
    if leader_answer.is_none() {
        warnings.push("no member answered as leader: writes wait until one is elected".into());
    }
    if live < quorum {
        warnings.push(format!(
            "only {live} of {voters} voters answered; a quorum needs {quorum}: the control \
             store cannot commit"
        ));
    } else if live < voters && live == quorum {
        warnings.push(format!(
            "{live} of {voters} voters answered: losing one more stops the control store"
        ));
    }
    GcsReport {
        leader: leader_answer.map(|l| l.id).or(reference.leader),
        term: reference.term,
        rows,
        warnings,
    }
}

/// The text `troupe status` and `troupe gcs members` print. Pure.
pub fn render(report: &GcsReport) -> String {
    let mut out = String::new();
    let leader = match report.leader {
        Some(id) => {
            let addr = report
                .rows
                .iter()
                .find(|r| r.id == id)
                .map_or(String::new(), |r| format!(" at {}", r.addr));
            format!("{}{addr}", member_id(id))
        }
        None => "none".into(),
    };
    let voters = report.rows.iter().filter(|r| r.voter).count();
    let _ = writeln!(
        out,
        "gcs: leader {leader}, term {}, {voters} voters, {} learners",
        report.term,
        report.rows.len() - voters
    );
    let _ = writeln!(
        out,
        "  {:<21}  {:<21}  {:<7}  {:<11}  lag",
        "id", "address", "role", "state"
    );
    for row in &report.rows {
        let state = row
            .state
            .as_deref()
            .map_or("unreachable".to_string(), str::to_lowercase);
        let lag = row.lag.map_or("?".to_string(), |l| l.to_string());
        let role = if row.voter { "voter" } else { "learner" };
        let _ = writeln!(
            out,
            "  {:<21}  {:<21}  {role:<7}  {state:<11}  {lag}",
            member_id(row.id),
            row.addr
        );
        for flag in &row.flags {
            let _ = writeln!(out, "    ! {flag}");
        }
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "  ! {warning}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Membership;

    fn status(id: NodeId, role: &str, voters: &[(NodeId, &str)]) -> MemberStatus {
        MemberStatus {
            id,
            role: role.into(),
            term: 4,
            leader: Some(1),
            last_log_index: Some(100),
            last_applied_index: Some(100),
            revision: 10,
            membership: Membership {
                voters: voters.iter().map(|(i, a)| (*i, a.to_string())).collect(),
                learners: Vec::new(),
            },
            matched: Vec::new(),
            millis_since_quorum_ack: None,
        }
    }

    fn ok(addr: &str, s: MemberStatus) -> Probe {
        Probe {
            addr: addr.into(),
            answer: Ok(s),
        }
    }

    const THREE: &[(NodeId, &str)] = &[(1, "h:1"), (2, "h:2"), (3, "h:3")];

    #[test]
    fn ids_print_as_node_ids_and_parse_in_both_forms() {
        assert_eq!(member_id(42), "node-000000000000002a");
        assert_eq!(parse_member_id("node-000000000000002a"), Ok(42));
        assert_eq!(parse_member_id(" 42 "), Ok(42));
        assert!(parse_member_id("node-2a")
            .unwrap_err()
            .contains("hex digits"));
        let e = parse_member_id("two").unwrap_err();
        assert!(e.contains("decimal") && e.contains("node-"), "{e}");
    }

    #[test]
    fn a_healthy_cluster_names_its_leader_and_each_lag() {
        let mut leader = status(1, "Leader", THREE);
        leader.matched = vec![(1, Some(100)), (2, Some(100)), (3, Some(93))];
        let probes = vec![
            ok("h:1", leader),
            ok("h:2", status(2, "Follower", THREE)),
            ok("h:3", status(3, "Follower", THREE)),
        ];
        let r = report(&probes, None);
        assert_eq!(r.leader, Some(1));
        assert_eq!(r.rows.len(), 3);
        assert_eq!(
            r.rows.iter().map(|r| r.lag).collect::<Vec<_>>(),
            vec![Some(0), Some(0), Some(7)]
        );
        assert!(r.rows.iter().all(|r| r.flags.is_empty()), "{r:?}");
        assert!(r.warnings.is_empty(), "{r:?}");
        let text = render(&r);
        assert!(
            text.contains("leader node-0000000000000001 at h:1, term 4, 3 voters"),
            "{text}"
        );
        assert!(text.contains("follower"), "{text}");
    }

    #[test]
    fn an_unreachable_voter_and_a_shared_address_are_flagged() {
        let voters = &[(1, "h:1"), (2, "h:2"), (3, "h:3"), (4, "h:3")];
        let probes = vec![
            ok("h:1", status(1, "Leader", voters)),
            Probe {
                addr: "h:2".into(),
                answer: Err("connection refused".into()),
            },
            ok("h:3", status(4, "Follower", voters)),
        ];
        let r = report(&probes, None);
        let row = |id| r.rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row(2).state, None);
        assert!(row(2).flags[0].starts_with("UNREACHABLE (connection refused"));
        // 3 and 4 share h:3, which answers as 4: 3 is a ghost.
        assert!(row(3)
            .flags
            .iter()
            .any(|f| f.contains("answers as node-0000000000000004")));
        assert!(row(3)
            .flags
            .iter()
            .any(|f| f.contains("SHARES ADDRESS h:3")));
        assert!(row(4)
            .flags
            .iter()
            .any(|f| f.contains("SHARES ADDRESS h:3")));
        assert_eq!(row(4).state.as_deref(), Some("Follower"));
        // 2 of 4 voters answer: below a quorum of 3.
        assert!(
            r.warnings.iter().any(|w| w.contains("only 2 of 4 voters")),
            "{r:?}"
        );
        let text = render(&r);
        assert!(text.contains("unreachable"), "{text}");
        assert!(text.contains("! UNREACHABLE"), "{text}");
    }

    #[test]
    fn without_a_leader_the_best_answer_is_used_and_it_says_so() {
        let probes = vec![
            ok("h:1", status(1, "Candidate", THREE)),
            Probe {
                addr: "h:2".into(),
                answer: Err("timed out".into()),
            },
            Probe {
                addr: "h:3".into(),
                answer: Err("timed out".into()),
            },
        ];
        let r = report(&probes, None);
        assert_eq!(r.rows.len(), 3);
        assert!(r.rows.iter().all(|r| r.lag.is_none()));
        assert!(r
            .warnings
            .iter()
            .any(|w| w.contains("no member answered as leader")));
        assert!(r.warnings.iter().any(|w| w.contains("cannot commit")));
        let nobody = report(&[], None);
        assert!(nobody.warnings[0].contains("no GCS member answered"));
        let one_left = vec![
            ok("h:1", status(1, "Leader", THREE)),
            ok("h:2", status(2, "Follower", THREE)),
            Probe {
                addr: "h:3".into(),
                answer: Err("refused".into()),
            },
        ];
        let r = report(&one_left, None);
        assert!(
            r.warnings.iter().any(|w| w.contains("losing one more")),
            "{r:?}"
        );
    }
}
