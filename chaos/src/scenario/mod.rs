//! Scenarios: what a chaos run starts, drives, breaks and checks, read from
//! YAML (`troupe chaos run SCENARIO.yaml`), and the fault timeline a seed
//! turns it into.
//!
//! # Layout
//! - this file: the typed scenario ([`Scenario`] and its parts);
//! - `parse.rs`: [`parse_yaml`] / [`load`]: YAML → generic value → walked
//!   by `troupe_core::config::Validator`, so every problem is reported at
//!   once with its path (`faults.timeline[2].target`), unknown fields with a
//!   "did you mean";
//! - `schedule.rs`: [`timeline`]: the scenario and a seed → the planned
//!   faults (times, kinds, targets), pure and reproducible.

mod parse;
mod schedule;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use parse::{load, parse_yaml};
pub use schedule::{timeline, PlannedFault};

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Its name (file stem by convention), shown in the report.
    pub name: String,
    /// What it is for, for a person.
    pub description: String,
    /// How long the workloads run, seconds.
    pub duration_s: f64,
    /// The seed used when `--seed` is not given.
    pub seed: u64,
    /// The cluster to start.
    pub cluster: ClusterSpec,
    /// The serve config deployed before the load starts, as JSON (the file
    /// named by `serve_config`, read and converted, or given inline).
    pub serve_config: Option<serde_json::Value>,
    /// The load.
    pub workloads: Vec<Workload>,
    /// The faults.
    pub faults: FaultPlan,
    /// What must hold, and the SLO.
    pub checks: Checks,
}

impl Scenario {
    /// The fault kinds the scenario may inject (`kill`, `partition`, ...).
    pub fn fault_kinds(&self) -> std::collections::BTreeSet<&'static str> {
        let timeline = self.faults.timeline.iter().map(|t| &t.fault);
        let random = self.faults.random.iter().flat_map(|r| r.choices.iter());
        timeline.chain(random).map(|f| f.kind.name()).collect()
    }
}

/// How the harness isolates nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Namespaces when the harness can make them (root, `ip`), else loopback.
    Auto,
    /// Each node in its own network namespace on a bridge; an error if that
    /// cannot be set up.
    Namespaces,
    /// Every node on 127.0.0.1 with its own ports; partitions and link
    /// degradation are unavailable.
    Loopback,
}

/// The cluster a run starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The node binary (any program built on `troupe::cli::run`): a path
    /// (with a `/`, relative to the working directory) or a bare name looked
    /// up next to the running executable, then on `PATH`. `None`: the
    /// running executable itself.
    pub binary: Option<String>,
    /// How many node processes (at least 1).
    pub nodes: usize,
    /// How many of them (the first ones; node 0 is the head) run GCS members.
    pub gcs_members: usize,
    /// CPUs each node offers to actors.
    pub num_cpus: f64,
    /// `--node-ttl` of every node, seconds.
    pub node_ttl_s: f64,
    /// `--actor-threads` of every node.
    pub actor_threads: usize,
    /// Namespaces or loopback.
    pub network: NetworkMode,
    /// More arguments for every node's `start`.
    pub extra_args: Vec<String>,
}

impl Default for ClusterSpec {
    /// Three nodes, all GCS members, 1 CPU each, a 3 s node TTL, one actor
    /// thread, namespaces when possible, the running binary.
    fn default() -> Self {
        ClusterSpec {
            binary: None,
            nodes: 3,
            gcs_members: 3,
            num_cpus: 1.0,
            node_ttl_s: 3.0,
            actor_threads: 1,
            network: NetworkMode::Auto,
            extra_args: Vec::new(),
        }
    }
}

/// One concurrent workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// Open-loop HTTP to the nodes' proxies.
    Http(HttpWorkload),
    /// Put/get/CAS on a few GCS keys, recorded for the linearizability check.
    Gcs(GcsWorkload),
    /// Calls to named actors that restart when their node dies.
    Actor(ActorWorkload),
}

impl Workload {
    /// The workload's name.
    pub fn name(&self) -> &str {
        match self {
            Workload::Http(w) => &w.name,
            Workload::Gcs(w) => &w.name,
            Workload::Actor(w) => &w.name,
        }
    }
}

/// How an HTTP workload picks a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientMode {
    /// Round-robin over the listed proxies, dead or alive (a client
    /// configured with fixed addresses).
    Fixed,
    /// Spread over the proxies that pass health checks, as a load balancer
    /// would: `/-/healthz` probed every 200 ms, a proxy that refuses a
    /// connection is taken out at once until a probe passes again.
    Balanced,
}

/// Open-loop HTTP at a fixed rate: a request is sent when it is due
/// whatever happened to the ones before it; none is retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpWorkload {
    /// Its name, in the report.
    pub name: String,
    /// The path requested (`/chain`, `/select?model=fast`).
    pub path: String,
    /// `GET` or `POST`.
    pub method: String,
    /// The request body.
    pub body: String,
    /// Requests per second.
    pub rate: f64,
    /// A request with no answer after this many seconds is a `timeout`.
    pub timeout_s: f64,
    /// How a proxy is chosen.
    pub client: ClientMode,
    /// The nodes whose proxies it uses; empty: every node.
    pub proxies: Vec<usize>,
}

/// GCS operations on a few keys, for the linearizability and lost-write
/// checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GcsWorkload {
    /// Its name, in the report.
    pub name: String,
    /// Operations per second over all clients (open loop per client).
    pub rate: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// How many keys they share.
    pub keys: usize,
    /// An operation with no answer after this long has an unknown outcome.
    pub timeout_s: f64,
}

/// Open-loop calls to named actors (`troupe.chaos.Tally`, hosted by every
/// binary built on `troupe::cli::run`), spread round robin over them; an
/// actor whose node dies is restarted elsewhere within `max_restarts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActorWorkload {
    /// Its name, in the report.
    pub name: String,
    /// Calls per second over all actors.
    pub rate: f64,
    /// How many named actors (`chaos-<workload>-<k>`), spawned before the
    /// load starts.
    pub actors: usize,
    /// A call with no answer after this many seconds is a `timeout`.
    pub timeout_s: f64,
    /// The actors' `max_restarts` (-1: no limit).
    pub max_restarts: i64,
    /// The actors' `max_task_retries`: retries of a call whose instance was
    /// lost (at-least-once; 0: a lost call fails).
    pub max_task_retries: i64,
}

/// The faults of a run: an explicit timeline, a seeded random schedule, or
/// both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct FaultPlan {
    /// Faults at fixed times.
    pub timeline: Vec<TimedFault>,
    /// Faults drawn from a seeded random schedule.
    pub random: Option<RandomFaults>,
}

/// A fault at a fixed time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimedFault {
    /// Seconds after the load started.
    pub at_s: f64,
    /// What to do.
    pub fault: FaultSpec,
}

/// A random fault every `every_s` (uniform in the range) from `from_s`
/// until `until_s`, each drawn uniformly from `choices`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomFaults {
    /// The gap between one fault's heal and the next fault, seconds
    /// (min, max).
    pub every_s: (f64, f64),
    /// When the first may come, seconds after the load started.
    pub from_s: f64,
    /// No fault starts after this (default: the duration minus the
    /// convergence time).
    pub until_s: f64,
    /// The faults to draw from.
    pub choices: Vec<FaultSpec>,
}

/// One fault: a kind, its targets, and when it heals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// What to do to the targets.
    pub kind: FaultKind,
    /// Which nodes.
    pub target: TargetSpec,
    /// Seconds until the heal (restart, SIGCONT, links restored, config
    /// restored); `None`: never healed during the run.
    pub heal_after_s: Option<f64>,
    /// The label of its row in the per-class table; default:
    /// `<kind>-<target>` (`kill-gcs_leader`).
    pub class: String,
}

/// Partition shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionMode {
    /// The targets lose every link: to other nodes and to the clients.
    Isolate,
    /// The targets keep their links among themselves and lose those to the
    /// other nodes (a minority/majority split when they are a minority);
    /// clients reach both sides.
    Split,
    /// Packets from the targets to the other nodes are dropped; the other
    /// way is delivered.
    OneWay,
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL; the heal restarts the node on its data directory.
    Kill,
    /// SIGSTOP; the heal sends SIGCONT.
    Pause,
    /// Cut links; the heal restores them.
    Partition {
        /// Which links.
        mode: PartitionMode,
    },
    /// Delay, jitter and loss on the targets' links (`tc netem`); the heal
    /// removes them.
    Degrade {
        /// Added delay, ms.
        delay_ms: u64,
        /// Jitter around the delay, ms.
        jitter_ms: u64,
        /// Packet loss, percent.
        loss_pct: f64,
    },
    /// SIGKILL, the data directory wiped, and (at the heal) a restart that
    /// joins the cluster again as a new node.
    Wipe,
    /// A rolling update through the admin API: the deployed config with
    /// `set` applied to one deployment; the heal deploys the config from
    /// before. Targets no node.
    Update {
        /// The application.
        app: String,
        /// The deployment.
        deployment: String,
        /// Fields set on the deployment (`user_config`, `num_replicas`,
        /// `max_ongoing_requests` ...), or, for a code/args change, set on
        /// the application with `app_args`.
        set: serde_json::Map<String, serde_json::Value>,
        /// Replaces the application's `args` (a code/args change).
        app_args: Option<serde_json::Value>,
    },
}

impl FaultKind {
    /// The kind's name as written in a scenario.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition { .. } => "partition",
            FaultKind::Degrade { .. } => "degrade",
            FaultKind::Wipe => "wipe",
            FaultKind::Update { .. } => "update",
        }
    }
}

/// Which nodes a fault hits, chosen when it is injected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// The role the targets are chosen by.
    pub role: TargetRole,
    /// How many distinct nodes (at least 1; `gcs_majority` sets its own).
    pub count: usize,
    /// Spread the injections over this many ms (0: all at once); the
    /// offsets are drawn from the schedule's seed.
    pub within_ms: u64,
}

/// A role a target is chosen by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetRole {
    /// The node whose GCS member leads (then other members, if count > 1).
    GcsLeader,
    /// GCS members that do not lead.
    GcsFollower,
    /// Any GCS member.
    GcsMember,
    /// A majority of GCS members (quorum loss); `count` is ignored.
    GcsMajority,
    /// Nodes hosting replicas of the named deployment (`app/deployment` or
    /// `deployment`).
    Hosting(String),
    /// A node by index.
    Node(usize),
    /// Any node (nodes not running are skipped).
    Any,
    /// No node (an update).
    None,
}

/// What must hold after the run, and the SLO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    /// The success rate every fault class (and the whole run) must reach.
    pub min_success: f64,
    /// The longest time with no success on any proxy inside a fault window,
    /// seconds (`None`: reported, not checked).
    pub max_gap_s: Option<f64>,
    /// After the last heal every deployment must be back at its target
    /// replica count within this many seconds.
    pub converge_within_s: f64,
    /// A fault's window (for the per-class table) lasts until this many
    /// seconds after its heal.
    pub window_tail_s: f64,
    /// The GCS history must be linearizable (needs a `gcs` workload).
    pub linearizable: bool,
    /// At least this many GCS operations must have a known outcome.
    pub min_known_gcs_ops: usize,
    /// No acknowledged GCS write may be lost.
    pub no_lost_writes: bool,
    /// No actor may run on two nodes at once.
    pub single_placement: bool,
    /// No node may log a panic.
    pub no_panics: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            min_success: 0.9999,
            max_gap_s: None,
            converge_within_s: 60.0,
            window_tail_s: 5.0,
            linearizable: true,
            min_known_gcs_ops: 100,
            no_lost_writes: true,
            single_placement: true,
            no_panics: true,
        }
    }
}

/// Where a scenario's relative paths are resolved (the scenario file's
/// folder).
pub type BaseDir = PathBuf;

#[cfg(test)]
mod shipped {
    use super::*;

    /// Every scenario in `chaos/scenarios/` parses, plans faults, and (but
    /// the smoke run) sends enough requests for a 99.99% bound: with no
    /// failure in n requests the 95% bound is 3/n, so n >= 30,000.
    #[test]
    fn the_shipped_scenarios_parse_and_are_large_enough() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let (scenario, _) = load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
            assert!(
                !timeline(&scenario, scenario.seed).is_empty(),
                "{} plans no fault",
                path.display()
            );
            if scenario.name == "smoke" {
                assert!(scenario.duration_s <= 90.0, "the smoke run must fit CI");
                continue;
            }
            let requests: f64 = scenario
                .workloads
                .iter()
                .filter_map(|w| match w {
                    Workload::Http(h) => Some(h.rate * scenario.duration_s),
                    Workload::Gcs(_) | Workload::Actor(_) => None,
                })
                .sum();
            assert!(
                requests >= 30_000.0,
                "{} sends only {requests} requests",
                path.display()
            );
        }
        assert!(seen >= 14, "only {seen} scenarios in {}", dir.display());
    }
}
