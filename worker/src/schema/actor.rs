//! Actor records: the desired and observed state of one actor, its spawn
//! options, its name, and its assignment to a node.

use std::fmt;

use serde::{Deserialize, Serialize};
use troupe_core::id::{ActorId, NodeId};
use troupe_core::resources::Resources;

use super::keys::check_segment;
use super::{Record, SchemaError};
use crate::lifecycle::{ActorState, DeathReason};

/// The namespace of actors spawned without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A cluster-wide actor name: unique within its namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorName {
    namespace: String,
    name: String,
}

impl ActorName {
    /// A name, checked to be usable as key segments: non-empty, at most 255
    /// bytes, no `/` and no control characters.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, SchemaError> {
        let (namespace, name) = (namespace.into(), name.into());
        check_segment("actor namespace", &namespace)?;
        check_segment("actor name", &name)?;
        Ok(Self { namespace, name })
    }

    /// `name` in the [`DEFAULT_NAMESPACE`].
    pub fn in_default(name: impl Into<String>) -> Result<Self, SchemaError> {
        Self::new(DEFAULT_NAMESPACE, name)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name within the namespace.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ActorName {
    /// `namespace/name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How often something may be retried: `max_restarts`, `max_task_retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryLimit {
    /// Without limit (Ray's `-1`).
    Unlimited,
    /// At most this many times; `AtMost(0)` means never.
    AtMost(u32),
}

impl RetryLimit {
    /// Never retry.
    pub const NEVER: Self = Self::AtMost(0);

    /// The limit from Ray's integer convention: `-1` is unlimited, `0`
    /// never, `n` at most `n` times. `option` names the setting in errors.
    pub fn from_ray(option: &'static str, value: i64) -> Result<Self, SchemaError> {
        match value {
            -1 => Ok(Self::Unlimited),
            _ => u32::try_from(value)
                .map(Self::AtMost)
                .map_err(|_| SchemaError::InvalidOption {
                    option,
                    value: value.to_string(),
                    expected: "-1 (unlimited), 0 (never) or a count up to 4294967295",
                }),
        }
    }

    /// Whether one more retry is allowed after `used` of them.
    pub fn allows_another(self, used: u32) -> bool {
        match self {
            Self::Unlimited => true,
            Self::AtMost(limit) => used < limit,
        }
    }
}

impl fmt::Display for RetryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unlimited => f.write_str("unlimited"),
            Self::AtMost(n) => write!(f, "{n}"),
        }
    }
}

/// Who spawned an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// Program code outside any actor, running in this node's process.
    Node(NodeId),
    /// Another actor.
    Actor(ActorId),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(node) => write!(f, "{node}"),
            Self::Actor(actor) => write!(f, "{actor}"),
        }
    }
}

/// Whether an actor dies with its owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifetime {
    /// Killed when its [`Owner`] dies (the default, as in Ray).
    #[default]
    Owned,
    /// Lives until killed, whatever happens to its owner.
    Detached,
}

/// The options an actor was spawned with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorOptions {
    /// What one instance needs on its node.
    pub resources: Resources,
    /// How often the actor is restarted after its node dies or a handler
    /// panics.
    pub max_restarts: RetryLimit,
    /// How often a call that failed because the actor died is retried.
    pub max_task_retries: RetryLimit,
    /// Whether it dies with its owner.
    pub lifetime: Lifetime,
    /// Actors with the same spread group are spread over the nodes: each
    /// is placed on a node with room holding the fewest live actors of its
    /// group, before the placement policy decides among those (Ray's
    /// `SPREAD` strategy, per group). Serve gives every deployment's
    /// replicas one group, so losing a node never takes every replica of a
    /// deployment while other nodes could hold one.
    pub spread_group: Option<String>,
}

impl Default for ActorOptions {
    /// No resources, no restarts, no retries, owned, no spread group.
    fn default() -> Self {
        Self {
            resources: Resources::new(),
            max_restarts: RetryLimit::NEVER,
            max_task_retries: RetryLimit::NEVER,
            lifetime: Lifetime::Owned,
            spread_group: None,
        }
    }
}

/// One actor, at `/troupe/actors/<actor-id>`. Written only by the cluster
/// scheduler, fenced by its term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRecord {
    pub id: ActorId,
    /// The registered actor type, e.g. `"Counter"`.
    pub type_name: String,
    /// Its cluster-wide name, if it has one.
    pub name: Option<ActorName>,
    /// Who spawned it.
    pub owner: Owner,
    pub options: ActorOptions,
    /// The constructor argument, encoded by the actor type's codec; kept so
    /// the actor can be constructed again on another node. As bytes (the
    /// same bincode form, copied at once: it may hold a large `user_config`).
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// Where it is in its lifecycle (see [`crate::lifecycle`]).
    pub state: ActorState,
    /// The node holding its assignment, while it has one.
    pub node: Option<NodeId>,
    /// Restarts spent so far out of `options.max_restarts`.
    pub restarts: u32,
    /// Counts instances started: bumped with every `StartOn`, so reports
    /// from an older instance are recognised and ignored.
    pub incarnation: u64,
    /// Why it has no node yet, from the last placement round.
    pub pending_reason: Option<String>,
    /// The Raft term of the scheduler that last wrote this record.
    pub term: u64,
    /// When it became DEAD, in milliseconds since the Unix epoch by the
    /// clock of the controller that noticed it (version 4). The record
    /// is collected this long plus the retention later (see
    /// `controller::gc`). `None` while it lives, and for a DEAD record
    /// written before the field existed until a controller stamps it.
    pub died_at_ms: Option<u64>,
}

impl ActorRecord {
    /// A freshly spawned actor: PENDING, no node, nothing spent.
    pub fn new(
        id: ActorId,
        type_name: impl Into<String>,
        owner: Owner,
        options: ActorOptions,
    ) -> Self {
        Self {
            id,
            type_name: type_name.into(),
            name: None,
            owner,
            options,
            args: Vec::new(),
            state: ActorState::Pending,
            node: None,
            restarts: 0,
            incarnation: 0,
            pending_reason: None,
            term: 0,
            died_at_ms: None,
        }
    }

    /// Why it died, once it is DEAD.
    pub fn death_reason(&self) -> Option<&DeathReason> {
        match &self.state {
            ActorState::Dead { reason } => Some(reason),
            _ => None,
        }
    }
}

impl Record for ActorRecord {
    const KIND: &'static str = "actor";

    fn decode_older(version: u16, body: &[u8]) -> Option<Result<Self, String>> {
        (version == 3).then(|| v3::decode(body))
    }
}

/// Actor records as schema version 3 wrote them: without
/// [`ActorOptions::spread_group`] and [`ActorRecord::died_at_ms`]. Read
/// and converted, never written.
mod v3 {
    use serde::Deserialize;
    use troupe_core::id::{ActorId, NodeId};
    use troupe_core::resources::Resources;

    use super::{ActorName, ActorOptions, ActorRecord, Lifetime, Owner, RetryLimit};
    use crate::lifecycle::ActorState;

    #[derive(Deserialize)]
    struct Options {
        resources: Resources,
        max_restarts: RetryLimit,
        max_task_retries: RetryLimit,
        lifetime: Lifetime,
    }

    #[derive(Deserialize)]
    struct Record {
        id: ActorId,
        type_name: String,
        name: Option<ActorName>,
        owner: Owner,
        options: Options,
        #[serde(with = "serde_bytes")]
        args: Vec<u8>,
        state: ActorState,
        node: Option<NodeId>,
        restarts: u32,
        incarnation: u64,
        pending_reason: Option<String>,
        term: u64,
    }

    pub(super) fn decode(body: &[u8]) -> Result<ActorRecord, String> {
        let r: Record = crate::schema::deserialize(body)?;
        Ok(ActorRecord {
            id: r.id,
            type_name: r.type_name,
            name: r.name,
            owner: r.owner,
            options: ActorOptions {
                resources: r.options.resources,
                max_restarts: r.options.max_restarts,
                max_task_retries: r.options.max_task_retries,
                lifetime: r.options.lifetime,
                spread_group: None,
            },
            args: r.args,
            state: r.state,
            node: r.node,
            restarts: r.restarts,
            incarnation: r.incarnation,
            pending_reason: r.pending_reason,
            term: r.term,
            died_at_ms: None,
        })
    }
}

/// The owner of a name, at `/troupe/actor-names/<namespace>/<name>`;
/// created in the same transaction as the actor, only if absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorNameRecord {
    pub actor: ActorId,
}

impl Record for ActorNameRecord {
    const KIND: &'static str = "actor name";
}

/// An instruction to a node, at `/troupe/assignments/<node-id>/<actor-id>`:
/// run this incarnation of the actor. The node watches its own prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub actor: ActorId,
    pub incarnation: u64,
    /// Everything needed to construct it without reading the actor record.
    pub type_name: String,
    pub args: Vec<u8>,
    pub resources: Resources,
    /// The Raft term of the scheduler that wrote it.
    pub term: u64,
}

impl Record for AssignmentRecord {
    const KIND: &'static str = "assignment";
}

/// The fencing token of the cluster's controllers, at
/// `/troupe/controller-term`: every controller write is a transaction that
/// compares this key's value to the writer's own term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerTermRecord {
    /// The Raft term in which `node`'s GCS member became leader.
    pub term: u64,
    pub node: NodeId,
}

impl Record for ControllerTermRecord {
    const KIND: &'static str = "controller term";
}

/// What a node observed about one incarnation of an actor it hosts, at
/// `/troupe/reports/<node-id>/<actor-id>`, under the node's lease. The
/// scheduler turns it into a lifecycle event; a report about an older
/// incarnation is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub actor: ActorId,
    pub incarnation: u64,
    pub outcome: ReportOutcome,
}

/// What happened to the instance a [`ReportRecord`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportOutcome {
    /// Its constructor returned: it answers calls.
    Started,
    /// Its constructor failed (or the type is not registered on the node).
    ConstructorFailed { message: String },
    /// A handler panicked; the instance is gone.
    HandlerPanicked { message: String },
}

impl Record for ReportRecord {
    const KIND: &'static str = "report";
}
