//! [`NodeRecord`]: a node's registration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use troupe_core::id::NodeId;
use troupe_core::resources::Resources;

use super::Record;

/// One node, at `/troupe/nodes/<node-id>`, written by the node itself and
/// attached to its lease: the key vanishes when the lease expires, which is
/// how the cluster learns that the node died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Where its RPC server listens, `host:port`.
    pub addr: String,
    /// Its data-plane listeners, one per actor arbiter: a call to an actor
    /// goes to the one of the arbiter that runs it (see
    /// `hosting::arbiter_index`), so it is handled on the actor's own
    /// thread. Empty: send calls to `addr`.
    pub data_addrs: Vec<String>,
    /// What it has in total (from the machine or `--num-cpus` and friends).
    pub resources: Resources,
    /// Free-form labels, e.g. `zone = "a"`.
    pub labels: BTreeMap<String, String>,
    /// Wall-clock start time in milliseconds since the Unix epoch; for
    /// display only, never compared across nodes.
    pub started_at_ms: u64,
    /// Whether it also runs a GCS member.
    pub gcs_member: bool,
    /// Whether it is leaving and takes no new actors.
    pub draining: bool,
    /// Its lease's TTL (`--node-ttl`): declared dead this long after it
    /// stops renewing it. Milliseconds.
    pub node_ttl_ms: u64,
}

impl Record for NodeRecord {
    const KIND: &'static str = "node";
}
