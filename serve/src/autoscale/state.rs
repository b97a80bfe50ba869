//! What [`super::decide`] takes and gives besides the policy and the
//! window: the current counts, the state carried between calls (stored in
//! the GCS by the controller, so plain data that bincode and JSON encode),
//! and the decision with its reason.

use serde::{Deserialize, Serialize};
use troupe_worker::schema::Record;

/// A deployment's replica counts as the controller sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    /// The count the controller is driving towards (the last decision's).
    pub target: u32,
    /// How many of them run and take requests (starting ones excluded).
    pub running: u32,
}

/// Which way a decision moved the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Up,
    Down,
}

/// The last decision, as far as later decisions need it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LastDecision {
    /// When it was taken (ms since the UNIX epoch).
    pub at_ms: u64,
    pub direction: Direction,
    pub from: u32,
    pub to: u32,
    /// The mean total load it was taken on.
    pub load: f64,
}

/// What [`super::decide`] carries from one call to the next. Plain data:
/// the controller stores it in the GCS (bincode, as every record) so a
/// controller that takes over continues from it; [`ScaleState::default`]
/// is the state of a deployment never scaled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleState {
    /// Since when every call wanted more replicas (`None`: the last call
    /// did not).
    pub up_since_ms: Option<u64>,
    /// Since when every call wanted fewer replicas (to a count above zero).
    pub down_since_ms: Option<u64>,
    /// Since when every call saw a load of exactly zero with one replica
    /// left and `min_replicas` 0 (the 1 → 0 condition).
    pub zero_since_ms: Option<u64>,
    /// The last decision taken, if any.
    pub last: Option<LastDecision>,
    /// When, after the last upscale, every replica it asked for was first
    /// seen running (`None` while some still start, or when the last
    /// decision was not an upscale).
    pub caught_up_ms: Option<u64>,
    /// Whether, since then, the load has fit the target at least once
    /// (its backlog is gone: later upscales are ordinary again).
    pub fit_after_upscale: bool,
}

impl Record for ScaleState {
    const KIND: &'static str = "serve autoscaling state";
}

/// A change of target, with why: what `serve status` and the admin API
/// show as a deployment's last scaling decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub direction: Direction,
    pub from: u32,
    pub to: u32,
    /// When it was taken (ms since the UNIX epoch).
    pub at_ms: u64,
    /// For people: "average 9.4 ongoing requests over 30 s, target 2 per
    /// replica: 5 replicas".
    pub reason: String,
}
