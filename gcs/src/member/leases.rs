//! The lease keeper: runs the leader's [`LeaseTracker`] against the clock.
//!
//! On every member a task follows Raft's metrics. When its member becomes
//! leader it first waits until everything committed in earlier terms is
//! applied (`ensure_linearizable`), then starts every replicated lease with
//! a full TTL; from then on it commits a `LeaseRevoke` for each lease whose
//! deadline passes. When the member loses leadership it forgets all
//! deadlines. Keep-alives are answered from the tracker, on the leader only.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::command::{Command, Operation};
use crate::lease_tracker::{LeaseTracker, LeaseTrackerError};
use crate::model::LeaseId;
use crate::store::GcsReader;
use crate::types::{NodeId, Raft};

/// How often the leader re-reads the replicated leases as a safety net.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Shared between the keeper task and the services.
pub struct LeaseKeeper {
    tracker: Mutex<LeaseTracker>,
    /// Wakes the task when a deadline may have moved earlier.
    changed: Notify,
    task: Mutex<Option<AbortHandle>>,
}

impl LeaseKeeper {
    pub(crate) fn start(id: NodeId, raft: Raft, reader: GcsReader) -> Arc<LeaseKeeper> {
        let keeper = Arc::new(LeaseKeeper {
            tracker: Mutex::new(LeaseTracker::new()),
            changed: Notify::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(id, raft, reader, keeper.clone()));
        *keeper.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        keeper
    }

    fn tracker(&self) -> MutexGuard<'_, LeaseTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A grant this member committed as leader.
    pub(crate) fn granted(&self, id: LeaseId, ttl_ms: u64) {
        self.tracker()
            .on_grant(id, Duration::from_millis(ttl_ms), Instant::now());
        self.changed.notify_one();
    }

    /// A revoke this member committed.
    pub(crate) fn revoked(&self, id: LeaseId) {
        self.tracker().on_revoke(id);
    }

    /// Extends a lease by its TTL; returns the TTL.
    pub(crate) fn keep_alive(&self, id: LeaseId) -> Result<Duration, LeaseTrackerError> {
        self.tracker().keep_alive(id, Instant::now())
    }

    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

fn replicated_leases(reader: &GcsReader) -> Option<Vec<(LeaseId, Duration)>> {
    match reader.leases() {
        Ok(leases) => Some(
            leases
                .into_iter()
                .map(|l| (l.id, Duration::from_millis(l.ttl_ms)))
                .collect(),
        ),
        Err(e) => {
            warn!(error = %e, "cannot read the replicated leases");
            None
        }
    }
}

async fn run(id: NodeId, raft: Raft, reader: GcsReader, keeper: Arc<LeaseKeeper>) {
    let mut metrics = raft.metrics();
    let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
    // The term in which this member took over the leases. Metrics updates
    // are coalesced, so a lost-and-regained leadership can look unchanged;
    // comparing terms catches it (the deadlines from the earlier term are
    // stale: keep-alives went to another leader in between).
    let mut tracking_term: Option<u64> = None;
    loop {
        let (leads, term) = {
            let m = metrics.borrow();
            (
                m.state == ServerState::Leader && m.current_leader == Some(id),
                m.current_term,
            )
        };
        if tracking_term.is_some() && (!leads || tracking_term != Some(term)) {
            debug!(member = id, "leadership changed: dropping lease deadlines");
            keeper.tracker().on_step_down();
            tracking_term = None;
        }
        if leads && tracking_term.is_none() {
            // Everything committed before this term must be applied before
            // the replicated leases are read.
            if raft.ensure_linearizable().await.is_ok() {
                if let Some(leases) = replicated_leases(&reader) {
                    info!(
                        member = id,
                        term,
                        leases = leases.len(),
                        "leader: tracking lease deadlines"
                    );
                    keeper.tracker().on_become_leader(Instant::now(), leases);
                    tracking_term = Some(term);
                    continue;
                }
            }
        }
        let (next, is_tracking) = {
            let t = keeper.tracker();
            (t.next_deadline(), t.is_leader())
        };
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            changed = metrics.changed() => {
                if changed.is_err() {
                    return; // Raft shut down.
                }
            }
            _ = keeper.changed.notified() => {}
            _ = sleep => {
                // Only a leader still in the term it took over in decides.
                let current = metrics.borrow().current_term;
                if tracking_term != Some(current) {
                    continue;
                }
                let expired = keeper.tracker().expire(Instant::now());
                for lease in expired {
                    revoke(&raft, &keeper, lease).await;
                }
            }
            _ = reconcile.tick(), if is_tracking => {
                let retry = {
                    let mut t = keeper.tracker();
                    if let Some(leases) = replicated_leases(&reader) {
                        t.reconcile(Instant::now(), leases);
                    }
                    t.expiring()
                };
                // Revokes whose proposal failed earlier are proposed again.
                for lease in retry {
                    revoke(&raft, &keeper, lease).await;
                }
            }
        }
    }
}

async fn revoke(raft: &Raft, keeper: &LeaseKeeper, lease: LeaseId) {
    match raft
        .client_write(Command::new(Operation::LeaseRevoke { id: lease }).into())
        .await
    {
        Ok(_) => {
            info!(%lease, "lease expired: revoked it and its keys");
            keeper.revoked(lease);
        }
        Err(e) => {
            warn!(%lease, error = %e, "could not commit the revoke of an expired lease; will retry")
        }
    }
}
