//! Faults: each kind's inject and heal, against the cluster of a run.
//! Targets are chosen by role when the fault comes ([`targets::choose`]);
//! a fault that cannot be injected (no such target, no namespaces, no
//! netem) is recorded as skipped with why, never silently dropped.
//!
//! # Layout
//! - this file: [`Injector`] (inject, heal, the record of each fault);
//! - `targets.rs`: choosing targets and partition cuts, pure;
//! - `update.rs`: the config a rolling update deploys, pure.

mod targets;
mod update;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::cluster::network::netem_available;
use crate::cluster::Cluster;
use crate::record::FaultRecord;
use crate::scenario::{FaultKind, PlannedFault};
use crate::workload::client;

pub use targets::{choose, partition_cuts, RoleView};
pub use update::patched_config;

/// What a heal must undo.
#[derive(Debug)]
pub enum Undo {
    /// Restart these nodes (after a kill or a wipe).
    Restart(Vec<usize>),
    /// SIGCONT these nodes.
    Resume(Vec<usize>),
    /// Restore these links.
    Links(Vec<(usize, usize)>),
    /// Remove netem from these nodes.
    Undegrade(Vec<usize>),
    /// Deploy this config again.
    Deploy(Value),
    /// Nothing.
    Nothing,
}

/// Injects and heals faults on one cluster.
pub struct Injector {
    cluster: Arc<Cluster>,
    origin: Instant,
    /// The config the run deployed (the base of updates).
    config: Option<Value>,
    netem: bool,
}

impl Injector {
    /// An injector for `cluster`; `config` is what the run deployed.
    pub fn new(cluster: Arc<Cluster>, origin: Instant, config: Option<Value>) -> Injector {
        let netem = cluster.network().is_some() && netem_available();
        Injector {
            cluster,
            origin,
            config,
            netem,
        }
    }

    /// Whether `tc netem` can degrade links here.
    pub fn netem(&self) -> bool {
        self.netem
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Injects `planned` given the cluster's `view`: its record (heal time
    /// unset) and what its heal must undo.
    pub async fn inject(&self, planned: &PlannedFault, view: &RoleView) -> (FaultRecord, Undo) {
        let spec = &planned.spec;
        let mut record = FaultRecord {
            class: spec.class.clone(),
            kind: spec.kind.name().to_owned(),
            targets: Vec::new(),
            start_ms: self.now_ms(),
            heal_ms: None,
            description: String::new(),
            skipped: None,
        };
        let wanted = planned.offsets_ms.len().max(1);
        let targets = choose(&spec.target.role, wanted, view, planned.pick);
        let needs_target = !matches!(spec.kind, FaultKind::Update { .. });
        if needs_target && targets.is_empty() {
            record.skipped = Some(format!("no node matched the target {:?}", spec.target.role));
            return (record, Undo::Nothing);
        }
        let role = |t: usize| {
            let mut r = Vec::new();
            if view.leader == Some(t) {
                r.push("GCS leader");
            } else if view.members.contains(&t) {
                r.push("GCS follower");
            }
            if view
                .hosting
                .iter()
                .any(|(k, v)| k.contains('/') && v.contains(&t))
            {
                r.push("hosts replicas");
            }
            format!("node {t} ({})", r.join(", "))
        };
        let names = targets
            .iter()
            .map(|t| role(*t))
            .collect::<Vec<_>>()
            .join(", ");
        record.targets = targets.clone();
        let start = Instant::now();
        let at_offsets =
            |k: usize| start + Duration::from_millis(*planned.offsets_ms.get(k).unwrap_or(&0));
        let undo = match &spec.kind {
            FaultKind::Kill => {
                for (k, t) in targets.iter().enumerate() {
                    tokio::time::sleep_until(at_offsets(k)).await;
                    self.cluster.kill(*t);
                }
                record.description = format!("SIGKILL {names}");
                Undo::Restart(targets)
            }
            FaultKind::Pause => {
                for (k, t) in targets.iter().enumerate() {
                    tokio::time::sleep_until(at_offsets(k)).await;
                    self.cluster.pause(*t);
                }
                record.description = format!("SIGSTOP {names}");
                Undo::Resume(targets)
            }
            FaultKind::Wipe => {
                for (k, t) in targets.iter().enumerate() {
                    tokio::time::sleep_until(at_offsets(k)).await;
                    if let Err(e) = self.cluster.wipe(*t) {
                        record.skipped = Some(format!("{e:#}"));
                    }
                }
                record.description = format!("SIGKILL and wipe the data directory of {names}");
                Undo::Restart(targets)
            }
            FaultKind::Partition { mode } => {
                let Some(ns) = self.cluster.network() else {
                    record.skipped =
                        Some("partitions need network namespaces (this run is on loopback)".into());
                    return (record, Undo::Nothing);
                };
                let cuts = partition_cuts(*mode, &targets, self.cluster.len());
                let mut done = Vec::new();
                for cut in cuts {
                    match ns.cut(cut.0, cut.1) {
                        Ok(()) => done.push(cut),
                        Err(e) => record.skipped = Some(format!("{e:#}")),
                    }
                }
                record.description = format!("partition ({mode:?}) {names}");
                Undo::Links(done)
            }
            FaultKind::Degrade {
                delay_ms,
                jitter_ms,
                loss_pct,
            } => {
                let Some(ns) = self.cluster.network().filter(|_| self.netem) else {
                    record.skipped = Some(
                        "link degradation needs network namespaces and `tc netem` (sch_netem), \
                         which this kernel does not have"
                            .into(),
                    );
                    return (record, Undo::Nothing);
                };
                let mut done = Vec::new();
                for t in &targets {
                    match ns.degrade(*t, *delay_ms, *jitter_ms, *loss_pct) {
                        Ok(()) => done.push(*t),
                        Err(e) => record.skipped = Some(format!("{e:#}")),
                    }
                }
                record.description =
                    format!("delay {delay_ms}±{jitter_ms} ms, loss {loss_pct}% on {names}");
                Undo::Undegrade(done)
            }
            FaultKind::Update {
                app,
                deployment,
                set,
                app_args,
            } => {
                let Some(base) = self.config.clone() else {
                    record.skipped = Some("an update needs the scenario's serve_config".into());
                    return (record, Undo::Nothing);
                };
                let next = match patched_config(&base, app, deployment, set, app_args.as_ref()) {
                    Ok(v) => v,
                    Err(e) => {
                        record.skipped = Some(e);
                        return (record, Undo::Nothing);
                    }
                };
                record.description = format!(
                    "rolling update of {app}/{deployment}: {}",
                    Value::Object(set.clone())
                );
                if let Err(e) = self.deploy(&next, view).await {
                    record.skipped = Some(e);
                    return (record, Undo::Nothing);
                }
                Undo::Deploy(base)
            }
        };
        (record, undo)
    }

    /// Deploys `config` through the admin API of a running node (the
    /// leader's first).
    pub async fn deploy(&self, config: &Value, view: &RoleView) -> Result<(), String> {
        let body = serde_json::to_vec(config).map_err(|e| e.to_string())?;
        let mut order: Vec<usize> = view.leader.into_iter().collect();
        order.extend(view.up.iter().copied().filter(|i| Some(*i) != view.leader));
        let mut last = String::from("no node is running");
        for i in order {
            match client::send_json(
                &self.cluster.addrs(i).admin,
                "PUT",
                "/api/serve/applications/",
                body.clone(),
                Duration::from_secs(15),
            )
            .await
            {
                Some((200, _)) => return Ok(()),
                Some((status, body)) => {
                    last = format!(
                        "node {i} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                    if status == 400 {
                        break;
                    }
                }
                None => last = format!("node {i} did not answer"),
            }
        }
        Err(format!("deploying the config failed: {last}"))
    }

    /// Undoes a fault; returns a note when part of it failed.
    pub async fn heal(&self, undo: Undo, view: &RoleView) -> Option<String> {
        match undo {
            Undo::Restart(nodes) => {
                let mut problems = Vec::new();
                for n in nodes {
                    let role = match self.cluster.restart_role(n, view.leader) {
                        Ok(r) => r,
                        Err(e) => {
                            problems.push(format!("node {n}: {e:#}"));
                            continue;
                        }
                    };
                    if let Err(e) = self.cluster.start(n, role).await {
                        problems.push(format!("node {n}: {e:#}"));
                    }
                }
                (!problems.is_empty()).then(|| problems.join("; "))
            }
            Undo::Resume(nodes) => {
                for n in nodes {
                    self.cluster.resume(n);
                }
                None
            }
            Undo::Links(cuts) => {
                let ns = self.cluster.network()?;
                let failed: Vec<String> = cuts
                    .into_iter()
                    .filter_map(|(a, b)| ns.restore(a, b).err().map(|e| format!("{e:#}")))
                    .collect();
                (!failed.is_empty()).then(|| failed.join("; "))
            }
            Undo::Undegrade(nodes) => {
                let ns = self.cluster.network()?;
                let failed: Vec<String> = nodes
                    .into_iter()
                    .filter_map(|n| ns.undegrade(n).err().map(|e| format!("{e:#}")))
                    .collect();
                (!failed.is_empty()).then(|| failed.join("; "))
            }
            Undo::Deploy(config) => self.deploy(&config, view).await.err(),
            Undo::Nothing => None,
        }
    }
}
