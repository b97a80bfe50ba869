//! What a run records, as it happens: HTTP requests, GCS operations,
//! executed faults, periodic probes of the cluster, and actor instance
//! lifecycles read from the nodes' logs. Every time is in milliseconds
//! (or microseconds where said) since the run's origin: one monotonic
//! clock for the whole run.

use serde::{Deserialize, Serialize};

/// How one HTTP request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// Any other HTTP status (a 503, 408, 500 ...).
    Status(u16),
    /// The connection could not be made (refused, unreachable, connect timeout).
    Connect,
    /// No answer within the request's timeout.
    Timeout,
    /// The connection broke after the request was sent (reset, closed, bad answer).
    Broken,
    /// The client had no live proxy to send it to (balanced client only).
    NoProxy,
    /// An actor call whose instance was lost (its node died) or that was
    /// still restarting at the deadline.
    Unavailable,
    /// An actor call to an actor with no node yet at the deadline.
    Pending,
    /// An actor call to an actor that is DEAD (restarts spent).
    Died,
    /// An actor call that failed otherwise (the cluster did not answer ...).
    Error,
}

impl Outcome {
    /// True for a 2xx answer.
    pub fn is_success(self) -> bool {
        self == Outcome::Ok
    }

    /// The failure kind as reported in tables: `http_503`, `connect`, ...
    /// (`ok` for a success).
    pub fn kind(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(code) => format!("http_{code}"),
            Outcome::Connect => "connect".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Broken => "broken".into(),
            Outcome::NoProxy => "no_proxy".into(),
            Outcome::Unavailable => "unavailable".into(),
            Outcome::Pending => "pending".into(),
            Outcome::Died => "died".into(),
            Outcome::Error => "error".into(),
        }
    }
}

/// One HTTP request of an open-loop workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRecord {
    /// The workload's name (scenario `workloads[].name`).
    pub workload: String,
    /// When it was due to be sent (open loop: the schedule's time, not when
    /// a connection was free), ms since the origin.
    pub sent_ms: u64,
    /// From due time to the end (answer, error or timeout), microseconds.
    pub latency_us: u64,
    /// Index of the node whose proxy it went to (`None`: no live proxy).
    pub proxy: Option<usize>,
    /// How it ended.
    pub outcome: Outcome,
}

impl HttpRecord {
    /// When it ended, ms since the origin.
    pub fn end_ms(&self) -> u64 {
        self.sent_ms + self.latency_us / 1000
    }
}

/// A fault as it was executed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Its class (the scenario's `class`, or the kind and target), the key
    /// of the per-class table.
    pub class: String,
    /// The kind, as in the scenario (`kill`, `pause`, `partition` ...).
    pub kind: String,
    /// The nodes it hit, by index.
    pub targets: Vec<usize>,
    /// When it was injected, ms since the origin.
    pub start_ms: u64,
    /// When it was healed (restart, SIGCONT, links restored); `None` if it
    /// has no heal or the run ended first.
    pub heal_ms: Option<u64>,
    /// What happened, for a person ("SIGKILL node 0 (the GCS leader)").
    pub description: String,
    /// Set when it could not be injected (and why); it then has no window.
    pub skipped: Option<String>,
}

/// One look at the cluster, taken about once a second by the prober.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ProbeSample {
    /// When, ms since the origin.
    pub at_ms: u64,
    /// The GCS leader's node index, if a member said it leads.
    pub leader: Option<usize>,
    /// The highest Raft term any reachable member reported.
    pub term: Option<u64>,
    /// Running replicas per `app/deployment` as the admin API reports them
    /// (empty when no admin API answered).
    pub replicas: std::collections::BTreeMap<String, usize>,
    /// Target replicas per `app/deployment`.
    pub targets: std::collections::BTreeMap<String, usize>,
    /// Node indexes whose process is running (not killed, maybe paused).
    pub up: Vec<usize>,
}

/// An actor instance starting or stopping on a node, from its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceEvent {
    /// The node's index.
    pub node: usize,
    /// The actor's id as logged (`actor-…`).
    pub actor: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Started (true) or stopped (false).
    pub started: bool,
    /// When, ms since the origin (wall clock mapped onto the run's clock).
    pub at_ms: u64,
}

/// A node process's life: from start to its end (kill, exit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLife {
    /// The node's index.
    pub node: usize,
    /// When this process started, ms since the origin.
    pub start_ms: u64,
    /// When it was killed or exited; `None` while running at the end.
    pub end_ms: Option<u64>,
}
