//! The data path's view of node health: outlier detection as in Envoy.
//!
//! The GCS decides membership, but it learns of a dead or silent node only
//! when the node's lease lapses (seconds), and not at all while it has no
//! quorum. Calls learn sooner: a refused connection, a connection lost
//! mid-call (including one the RPC keepalive closed because the peer went
//! silent), or repeated call timeouts. Every call this process makes
//! reports how its node answered to one [`HealthTable`]; a node it judges
//! unhealthy is *ejected*: routers over replicas (the serve layer's) stop
//! choosing replicas on it at once, all of them together. Ejection only
//! removes candidates; it never adds a node the GCS does not list.
//!
//! An ejection lasts [`HealthPolicy::base_ejection`], doubling with each
//! ejection in a row up to [`HealthPolicy::max_ejection`]; when it ends,
//! the node stays out until a probe (one RPC to the node, sent by the
//! table's prober task) answers, and a failed probe ejects it again for
//! longer. Ejections in a row are forgotten after `max_ejection` of health.
//! The decision is the pure state machine [`NodeHealth`]; [`HealthTable`]
//! holds one per node and takes the clock at its edge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use troupe_core::id::NodeId;

/// Tunables of the outlier detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    /// The first ejection's length.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// Consecutive call timeouts (with no answer in between) that eject.
    pub timeouts_to_eject: u32,
    /// How long a probe may take.
    pub probe_timeout: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            base_ejection: Duration::from_millis(500),
            max_ejection: Duration::from_secs(8),
            timeouts_to_eject: 3,
            probe_timeout: Duration::from_millis(500),
        }
    }
}

/// What one call (or probe) learned about its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The node answered (whatever the answer).
    Answered,
    /// No connection could be made: refused, reset or unreachable.
    Unreachable,
    /// An open connection was lost before the answer: the peer closed it,
    /// or it went silent and the keepalive gave up on it.
    ConnectionLost,
    /// The call's deadline passed with the connection open.
    Timeout,
}

/// What a signal changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// The node is out of rotation for (at least) this long.
    Ejected {
        length: Duration,
    },
    /// The node is back.
    Readmitted,
}

/// One node's health: the pure state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// Out of rotation (until a probe or a call answers).
    ejected: bool,
    /// When the current ejection's length has passed (a probe is due).
    until: Option<Instant>,
    /// Ejections in a row; the next lasts `base * 2^ejections`.
    ejections: u32,
    /// Call timeouts since the last answer.
    timeouts: u32,
    /// Since when the node has been in rotation.
    healthy_since: Option<Instant>,
}

impl NodeHealth {
    /// Whether routers should leave the node out.
    pub fn is_ejected(&self) -> bool {
        self.ejected
    }

    /// Ejections in a row so far.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// Whether the ejection's length has passed, so a probe should ask.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.ejected && self.until.is_some_and(|until| now >= until)
    }

    /// Takes one call's outcome.
    pub fn observe(&mut self, signal: Signal, now: Instant, policy: &HealthPolicy) -> Change {
        match signal {
            Signal::Answered => {
                self.timeouts = 0;
                if self.ejected {
                    return self.readmit(now);
                }
                let since = *self.healthy_since.get_or_insert(now);
                if self.ejections > 0 && now.saturating_duration_since(since) >= policy.max_ejection
                {
                    self.ejections = 0;
                }
                Change::None
            }
            Signal::Unreachable | Signal::ConnectionLost if !self.ejected => {
                self.eject(now, policy)
            }
            Signal::Timeout if !self.ejected => {
                self.timeouts += 1;
                if self.timeouts >= policy.timeouts_to_eject.max(1) {
                    self.eject(now, policy)
                } else {
                    Change::None
                }
            }
            // Already out: calls that were in flight when it went report
            // the same news again.
            Signal::Unreachable | Signal::ConnectionLost | Signal::Timeout => Change::None,
        }
    }

    /// Takes a probe's outcome: an answer readmits, anything else ejects
    /// again, for longer.
    pub fn probed(&mut self, answered: bool, now: Instant, policy: &HealthPolicy) -> Change {
        if !self.ejected {
            return Change::None;
        }
        if answered {
            self.readmit(now)
        } else {
            self.eject(now, policy)
        }
    }

    fn eject(&mut self, now: Instant, policy: &HealthPolicy) -> Change {
        let factor = 1u32 << self.ejections.min(16);
        let length = policy
            .base_ejection
            .saturating_mul(factor)
            .min(policy.max_ejection);
        self.ejected = true;
        self.until = Some(now + length);
        self.ejections = self.ejections.saturating_add(1);
        self.timeouts = 0;
        self.healthy_since = None;
        Change::Ejected { length }
    }

    fn readmit(&mut self, now: Instant) -> Change {
        self.ejected = false;
        self.until = None;
        self.timeouts = 0;
        self.healthy_since = Some(now);
        Change::Readmitted
    }
}

/// One node's health as the metrics and status show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealthSnapshot {
    pub node: NodeId,
    pub ejected: bool,
    pub ejections: u32,
}

/// Every node's health as this process's calls see it; shared by every
/// router and handle of the process.
#[derive(Debug, Default)]
pub struct HealthTable {
    policy: HealthPolicy,
    nodes: Mutex<HashMap<NodeId, NodeHealth>>,
    /// Ejected nodes now: the common case (none) takes no lock.
    ejected: AtomicUsize,
    /// Ejections since start, for the metrics.
    total_ejections: AtomicUsize,
}

impl HealthTable {
    pub fn new(policy: HealthPolicy) -> HealthTable {
        HealthTable {
            policy,
            ..HealthTable::default()
        }
    }

    pub fn policy(&self) -> &HealthPolicy {
        &self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, NodeHealth>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what a call to `node` learned.
    pub fn report(&self, node: NodeId, signal: Signal) {
        if signal == Signal::Answered && self.ejected.load(Ordering::Relaxed) == 0 {
            // Healthy and staying so: only the decay clock needs a look,
            // and only for nodes that were ejected before.
            let mut nodes = self.lock();
            if let Some(health) = nodes.get_mut(&node) {
                health.observe(signal, Instant::now(), &self.policy);
            }
            return;
        }
        let mut nodes = self.lock();
        let health = nodes.entry(node).or_default();
        let change = health.observe(signal, Instant::now(), &self.policy);
        self.apply(node, change, Some(signal));
    }

    /// Records a probe's outcome.
    pub fn probed(&self, node: NodeId, answered: bool) {
        let mut nodes = self.lock();
        let Some(health) = nodes.get_mut(&node) else {
            return;
        };
        let change = health.probed(answered, Instant::now(), &self.policy);
        self.apply(node, change, None);
    }

    fn apply(&self, node: NodeId, change: Change, signal: Option<Signal>) {
        match change {
            Change::Ejected { length } => {
                if signal.is_some() {
                    self.ejected.fetch_add(1, Ordering::Relaxed);
                }
                self.total_ejections.fetch_add(1, Ordering::Relaxed);
                let cause = match signal {
                    Some(Signal::Unreachable) => "a connection to it failed",
                    Some(Signal::ConnectionLost) => "a connection to it was lost or went silent",
                    Some(Signal::Timeout) => "calls to it timed out",
                    Some(Signal::Answered) | None => "its probe was not answered",
                };
                tracing::warn!(
                    %node,
                    cause,
                    ejected_ms = length.as_millis() as u64,
                    "node ejected from routing (data-path health)"
                );
            }
            Change::Readmitted => {
                self.ejected.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(%node, "node readmitted to routing");
            }
            Change::None => {}
        }
    }

    /// Whether any node is ejected now (no lock).
    pub fn any_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed) > 0
    }

    /// Whether routers should leave `node` out.
    pub fn is_ejected(&self, node: NodeId) -> bool {
        if self.ejected.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.lock().get(&node).is_some_and(NodeHealth::is_ejected)
    }

    /// Ejected nodes whose probe is due.
    pub fn due_probes(&self) -> Vec<NodeId> {
        if self.ejected.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, h)| h.probe_due(now))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Forgets nodes the GCS no longer lists.
    pub fn retain(&self, keep: impl Fn(&NodeId) -> bool) {
        let mut nodes = self.lock();
        nodes.retain(|node, health| {
            let kept = keep(node);
            if !kept && health.is_ejected() {
                self.ejected.fetch_sub(1, Ordering::Relaxed);
            }
            kept
        });
    }

    /// Every node with a record, for the metrics.
    pub fn snapshot(&self) -> Vec<NodeHealthSnapshot> {
        let mut out: Vec<NodeHealthSnapshot> = self
            .lock()
            .iter()
            .map(|(node, h)| NodeHealthSnapshot {
                node: *node,
                ejected: h.is_ejected(),
                ejections: h.ejections(),
            })
            .collect();
        out.sort_by_key(|s| s.node);
        out
    }

    /// Ejections since the process started.
    pub fn total_ejections(&self) -> usize {
        self.total_ejections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(8),
            timeouts_to_eject: 3,
            probe_timeout: Duration::from_millis(500),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_refused_or_lost_connection_ejects_at_once() {
        let (p, t0) = (policy(), Instant::now());
        for signal in [Signal::Unreachable, Signal::ConnectionLost] {
            let mut h = NodeHealth::default();
            assert_eq!(
                h.observe(signal, t0, &p),
                Change::Ejected { length: ms(1000) }
            );
            assert!(h.is_ejected());
            // The calls that were in flight say it again: nothing changes.
            assert_eq!(h.observe(signal, t0, &p), Change::None);
            assert_eq!(h.ejections(), 1);
        }
    }

    #[test]
    fn timeouts_eject_only_when_consecutive() {
        let (p, t0) = (policy(), Instant::now());
        let mut h = NodeHealth::default();
        assert_eq!(h.observe(Signal::Timeout, t0, &p), Change::None);
        assert_eq!(h.observe(Signal::Timeout, t0, &p), Change::None);
        // An answer in between starts the count again.
        assert_eq!(h.observe(Signal::Answered, t0, &p), Change::None);
        assert_eq!(h.observe(Signal::Timeout, t0, &p), Change::None);
        assert_eq!(h.observe(Signal::Timeout, t0, &p), Change::None);
        assert!(!h.is_ejected());
        assert!(matches!(
            h.observe(Signal::Timeout, t0, &p),
            Change::Ejected { .. }
        ));
    }

    #[test]
    fn probes_come_due_after_the_ejection_and_decide() {
        let (p, t0) = (policy(), Instant::now());
        let mut h = NodeHealth::default();
        h.observe(Signal::Unreachable, t0, &p);
        assert!(!h.probe_due(t0 + ms(999)));
        assert!(h.probe_due(t0 + ms(1000)));
        // Still out after its time: only an answer readmits.
        assert!(h.is_ejected());
        assert_eq!(
            h.probed(false, t0 + ms(1000), &p),
            Change::Ejected { length: ms(2000) }
        );
        assert!(!h.probe_due(t0 + ms(2999)));
        assert_eq!(h.probed(true, t0 + ms(3000), &p), Change::Readmitted);
        assert!(!h.is_ejected());
        // A probe for a node in rotation changes nothing.
        assert_eq!(h.probed(false, t0 + ms(3000), &p), Change::None);
    }

    #[test]
    fn ejections_in_a_row_double_up_to_the_cap_and_are_forgotten_after_health() {
        let (p, t0) = (policy(), Instant::now());
        let mut h = NodeHealth::default();
        let mut lengths = Vec::new();
        let mut now = t0;
        for _ in 0..6 {
            match h.observe(Signal::Unreachable, now, &p) {
                Change::Ejected { length } => lengths.push(length.as_secs()),
                other => panic!("{other:?}"),
            }
            // Back briefly, then out again.
            now += ms(100);
            assert_eq!(h.observe(Signal::Answered, now, &p), Change::Readmitted);
        }
        assert_eq!(lengths, [1, 2, 4, 8, 8, 8]);
        // Healthy for max_ejection: the next ejection is short again.
        h.observe(Signal::Answered, now + p.max_ejection, &p);
        assert_eq!(
            h.observe(Signal::Unreachable, now + p.max_ejection, &p),
            Change::Ejected { length: ms(1000) }
        );
    }

    #[test]
    fn an_answer_while_ejected_readmits() {
        let (p, t0) = (policy(), Instant::now());
        let mut h = NodeHealth::default();
        h.observe(Signal::ConnectionLost, t0, &p);
        assert_eq!(h.observe(Signal::Answered, t0, &p), Change::Readmitted);
        assert!(!h.is_ejected());
    }

    #[test]
    fn the_table_counts_ejected_nodes_and_forgets_departed_ones() {
        let table = HealthTable::new(policy());
        let (a, b) = (NodeId::random(), NodeId::random());
        table.report(a, Signal::Answered);
        assert!(!table.is_ejected(a));
        table.report(a, Signal::Unreachable);
        table.report(b, Signal::ConnectionLost);
        assert!(table.is_ejected(a) && table.is_ejected(b));
        assert_eq!(table.total_ejections(), 2);
        table.report(b, Signal::Answered);
        assert!(!table.is_ejected(b));
        table.retain(|n| *n != a);
        assert!(!table.is_ejected(a));
        assert_eq!(table.snapshot().len(), 1);
        assert!(table.due_probes().is_empty());
    }
}
