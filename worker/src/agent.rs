//! The node agent: makes this node run what its assignments say, and
//! reports what happened.
//!
//! It compares the assignments in the cluster view with the local instance
//! table: an assignment without an instance (or with an older one) is
//! constructed on an arbiter; an instance without an assignment is stopped.
//! Outcomes (started, constructor failed, handler panicked) are written as
//! report keys under the node's lease by one reporter, in order, so the
//! controller never sees an older report after a newer one. The order the
//! agent learns outcomes in is not the order they happened in (a handler
//! may panic before the agent hears that its constructor returned), so the
//! reporter also never lets a report replace one that says more
//! ([`replaces`]): an instance's start never hides its end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use troupe_core::id::{ActorId, NodeId};
use troupe_gcs::client::GcsClient;
use troupe_gcs::{DeleteRequest, KeySelector, LeaseId, Operation, PutRequest, TxnOp, TxnRequest};

use crate::actor::{ActorContext, ActorError, Registry};
use crate::cluster::Cluster;
use crate::hosting::{HostEvent, HostEvents, Hosting};
use crate::schema::{self, AssignmentRecord, Key, ReportOutcome, ReportRecord};
use crate::view::ClusterView;

/// A report key change for the reporter.
enum ReportWrite {
    Put(ReportRecord),
    Delete(ActorId),
}

/// Everything the agent works with.
pub(crate) struct Agent {
    pub me: NodeId,
    pub view: ClusterView,
    pub hosting: Arc<Hosting>,
    pub registry: Registry,
    pub cluster: Cluster,
    pub gcs: GcsClient,
    pub lease: watch::Receiver<LeaseId>,
}

impl Agent {
    /// Runs until the task is aborted.
    pub(crate) async fn run(
        self,
        host_events: HostEvents,
        mut events: mpsc::UnboundedReceiver<HostEvent>,
    ) {
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report(
            self.me,
            self.gcs.clone(),
            self.lease.clone(),
            report_rx,
        ));
        let _reporter = crate::cluster::AbortOnDrop(reporter);
        let (done_tx, mut done_rx) =
            mpsc::unbounded_channel::<(ActorId, u64, Result<(), String>)>();
        let mut starting: HashSet<(ActorId, u64)> = HashSet::new();
        // Instances that failed to construct or panicked: never started
        // again; the controller answers with a new incarnation or DEAD.
        let mut failed: HashSet<(ActorId, u64)> = HashSet::new();
        let mut view = self.view.subscribe();
        loop {
            let desired: BTreeMap<ActorId, AssignmentRecord> = view
                .borrow_and_update()
                .assignments
                .iter()
                .filter(|((node, _), _)| *node == self.me)
                .map(|((_, actor), a)| (*actor, a.clone()))
                .collect();
            let running: BTreeMap<ActorId, u64> = self.hosting.running().into_iter().collect();
            for (id, assignment) in &desired {
                let key = (*id, assignment.incarnation);
                if running.get(id) == Some(&assignment.incarnation)
                    || starting.contains(&key)
                    || failed.contains(&key)
                {
                    continue;
                }
                if running.get(id).is_some_and(|i| *i > assignment.incarnation) {
                    continue;
                }
                starting.insert(key);
                self.start(assignment.clone(), host_events.clone(), done_tx.clone());
            }
            failed.retain(|(id, incarnation)| {
                desired
                    .get(id)
                    .is_some_and(|a| a.incarnation == *incarnation)
            });
            for (id, incarnation) in &running {
                let wanted = desired.get(id).map(|a| a.incarnation);
                if wanted.is_none_or(|w| w < *incarnation) {
                    tracing::debug!(actor = %id, incarnation, "stopping: no longer assigned here");
                    self.hosting.stop(*id, Some(*incarnation));
                    let _ = report_tx.send(ReportWrite::Delete(*id));
                }
            }
            tokio::select! {
                changed = view.changed() => if changed.is_err() { return },
                Some((actor, incarnation, outcome)) = done_rx.recv() => {
                    starting.remove(&(actor, incarnation));
                    let outcome = match outcome {
                        Ok(()) => ReportOutcome::Started,
                        Err(message) => {
                            tracing::warn!(%actor, incarnation, %message, "actor failed to start");
                            failed.insert((actor, incarnation));
                            ReportOutcome::ConstructorFailed { message }
                        }
                    };
                    let _ = report_tx.send(ReportWrite::Put(ReportRecord { actor, incarnation, outcome }));
                }
                Some(event) = events.recv() => match event {
                    HostEvent::Panicked { actor, incarnation, message } => {
                        failed.insert((actor, incarnation));
                        self.hosting.stop(actor, Some(incarnation));
                        let outcome = ReportOutcome::HandlerPanicked { message };
                        let _ = report_tx.send(ReportWrite::Put(ReportRecord { actor, incarnation, outcome }));
                    }
                },
            }
        }
    }

    /// Constructs one assignment's instance in the background.
    fn start(
        &self,
        assignment: AssignmentRecord,
        host_events: HostEvents,
        done: mpsc::UnboundedSender<(ActorId, u64, Result<(), String>)>,
    ) {
        let (actor, incarnation) = (assignment.actor, assignment.incarnation);
        let Some(actor_type) = self.registry.get(&assignment.type_name) else {
            let error = ActorError::NotRegistered {
                type_name: assignment.type_name.clone(),
            };
            let _ = done.send((actor, incarnation, Err(error.to_string())));
            return;
        };
        let cx = ActorContext {
            id: actor,
            incarnation,
            node: self.me,
            cluster: self.cluster.clone(),
        };
        let hosting = self.hosting.clone();
        tokio::spawn(async move {
            let outcome = hosting
                .start(actor_type, assignment.args, cx, host_events)
                .await;
            let _ = done.send((actor, incarnation, outcome));
        });
    }
}

/// Writes reports in order, batching what queued up meanwhile, retrying
/// until each batch is written.
async fn report(
    me: NodeId,
    gcs: GcsClient,
    lease: watch::Receiver<LeaseId>,
    mut rx: mpsc::UnboundedReceiver<ReportWrite>,
) {
    // The last report queued for writing per actor (until its key is
    // deleted): what a new one must not hide.
    let mut reported: HashMap<ActorId, ReportRecord> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        batch.retain(|write| match write {
            ReportWrite::Put(next) => {
                let keep = replaces(reported.get(&next.actor), next);
                if keep {
                    reported.insert(next.actor, next.clone());
                } else {
                    tracing::debug!(actor = %next.actor, incarnation = next.incarnation,
                        outcome = ?next.outcome, "report not written: a later one says more");
                }
                keep
            }
            ReportWrite::Delete(actor) => {
                reported.remove(actor);
                true
            }
        });
        if batch.is_empty() {
            continue;
        }
        loop {
            let lease = *lease.borrow();
            let ops = batch
                .iter()
                .map(|w| match w {
                    ReportWrite::Put(r) => TxnOp::Put(
                        PutRequest::new(
                            Key::Report {
                                node: me,
                                actor: r.actor,
                            }
                            .to_bytes(),
                            schema::encode(r),
                        )
                        .with_lease(lease),
                    ),
                    ReportWrite::Delete(actor) => TxnOp::Delete(DeleteRequest {
                        selector: KeySelector::Key(
                            Key::Report {
                                node: me,
                                actor: *actor,
                            }
                            .to_bytes(),
                        ),
                        prev_kv: false,
                    }),
                })
                .collect();
            let txn = TxnRequest {
                compares: vec![],
                success: ops,
                failure: vec![],
            };
            match gcs.write(Operation::Txn(txn)).await {
                Ok(response) if response.outcome.is_ok() => break,
                Ok(response) => {
                    // An unknown lease: the node is re-registering.
                    tracing::debug!(outcome = ?response.outcome, "report not written; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "report not written; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether `next` may replace `reported`, the report last written for the
/// same actor on this node (they share one key). A report about a later
/// incarnation replaces anything; one about an earlier incarnation nothing.
/// For the same incarnation, only an end (the constructor failed, a handler
/// panicked) replaces a start: the agent may hear of a panic before it hears
/// that the constructor returned, and a `Started` written after the panic's
/// report would hide the panic from the controller for good (the actor
/// would stay ALIVE with no instance, every call waiting for it).
fn replaces(reported: Option<&ReportRecord>, next: &ReportRecord) -> bool {
    let Some(reported) = reported else {
        return true;
    };
    match next.incarnation.cmp(&reported.incarnation) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            reported.outcome == ReportOutcome::Started && next.outcome != ReportOutcome::Started
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(incarnation: u64, outcome: ReportOutcome) -> ReportRecord {
        ReportRecord {
            actor: ActorId::new(7),
            incarnation,
            outcome,
        }
    }

    fn panicked() -> ReportOutcome {
        ReportOutcome::HandlerPanicked {
            message: "boom".into(),
        }
    }

    fn failed() -> ReportOutcome {
        ReportOutcome::ConstructorFailed {
            message: "no model".into(),
        }
    }

    #[test]
    fn the_first_report_of_an_actor_is_written() {
        for outcome in [ReportOutcome::Started, panicked(), failed()] {
            assert!(replaces(None, &report(1, outcome)));
        }
    }

    #[test]
    fn a_start_heard_after_the_panic_of_the_same_instance_does_not_hide_it() {
        // The flake this rule fixes: the panic was reported first, then the
        // constructor's return; one key per actor, so writing the start
        // would leave the controller believing the instance ALIVE.
        assert!(!replaces(
            Some(&report(2, panicked())),
            &report(2, ReportOutcome::Started)
        ));
        assert!(!replaces(
            Some(&report(2, failed())),
            &report(2, ReportOutcome::Started)
        ));
    }

    #[test]
    fn an_instance_s_end_replaces_its_start() {
        let started = report(2, ReportOutcome::Started);
        assert!(replaces(Some(&started), &report(2, panicked())));
        assert!(replaces(Some(&started), &report(2, failed())));
    }

    #[test]
    fn a_later_incarnation_replaces_anything_and_an_earlier_one_nothing() {
        let outcomes = [ReportOutcome::Started, panicked(), failed()];
        let mut cases = 0;
        for old in &outcomes {
            for new in &outcomes {
                assert!(replaces(
                    Some(&report(2, old.clone())),
                    &report(3, new.clone())
                ));
                assert!(!replaces(
                    Some(&report(3, old.clone())),
                    &report(2, new.clone())
                ));
                cases += 1;
            }
        }
        assert_eq!(cases, 9);
    }

    #[test]
    fn a_repeated_report_of_the_same_instance_is_not_written_again() {
        for outcome in [ReportOutcome::Started, panicked(), failed()] {
            assert!(!replaces(
                Some(&report(2, outcome.clone())),
                &report(2, outcome)
            ));
        }
        // Its first end stands: a panic after a failed constructor cannot
        // happen, and would say nothing new.
        assert!(!replaces(
            Some(&report(2, failed())),
            &report(2, panicked())
        ));
    }
}
