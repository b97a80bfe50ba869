//! The public entry points: [`check`] and [`check_with`], which split a
//! history by partition and search each one, and their [`CheckResult`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::history::{History, HistoryError, Operation};
use super::model::Model;
use super::search::{search, Budget, Failure, Outcome};

/// How many operations of the prefix an [`Explanation`] renders.
const PREFIX_TAIL: usize = 8;
/// How many concurrent operations an [`Explanation`] renders.
const CONCURRENT_SHOWN: usize = 8;

/// Limits that keep a check from running forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// The most DFS steps spent on one partition before giving up with
    /// [`CheckResult::Unknown`].
    pub max_steps_per_partition: u64,
    /// Wall-clock limit for the whole check, if any.
    pub time_limit: Option<Duration>,
}

impl CheckConfig {
    /// The default step budget: up to tens of seconds of work. Proving a
    /// realistic history of thousands of operations per key linearizable
    /// takes about one step per operation; proving one illegal can take
    /// millions, and many pending timed-out writes on one key can need more.
    pub const DEFAULT_MAX_STEPS_PER_PARTITION: u64 = 20_000_000;
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            max_steps_per_partition: Self::DEFAULT_MAX_STEPS_PER_PARTITION,
            time_limit: None,
        }
    }
}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult<K> {
    /// Every partition is linearizable.
    Ok,
    /// The partition `key` is not linearizable (the first such in key order).
    Illegal {
        /// The partition with the violation.
        key: K,
        /// What the search found, for a human.
        explanation: Explanation,
    },
    /// The budget ran out on partition `key` before a verdict; no partition
    /// checked so far was illegal.
    Unknown {
        /// The partition whose search was cut short.
        key: K,
        /// The steps spent on it.
        steps: u64,
    },
}

impl<K> CheckResult<K> {
    /// True for [`CheckResult::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// True for [`CheckResult::Illegal`].
    pub fn is_illegal(&self) -> bool {
        matches!(self, Self::Illegal { .. })
    }
}

/// Why a partition is not linearizable, from the deepest point the search
/// reached. Operations are named `#index`, their index in the [`History`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The partition, rendered.
    pub key: String,
    /// How many operations the partition has (unknown reads excluded).
    pub operations: usize,
    /// History indices of the longest linearizable prefix, in order.
    pub prefix: Vec<usize>,
    /// The model state after that prefix, rendered.
    pub state: String,
    /// The last operations of the prefix, rendered.
    pub prefix_tail: Vec<String>,
    /// History index of the operation whose return came before it could be
    /// linearized after the prefix.
    pub blocking_index: usize,
    /// That operation, rendered.
    pub blocking: String,
    /// History indices of the other pending operations tried after the prefix.
    pub concurrent: Vec<usize>,
    /// The first few of those, rendered.
    pub concurrent_shown: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {}: no linearization of its {} operation(s); the longest linearizable \
             prefix has {} operation(s) and leaves the state {}",
            self.key,
            self.operations,
            self.prefix.len(),
            self.state
        )?;
        if !self.prefix_tail.is_empty() {
            writeln!(f, "  prefix ends with:")?;
            for line in &self.prefix_tail {
                writeln!(f, "    {line}")?;
            }
        }
        writeln!(f, "  cannot be linearized before it returns:")?;
        writeln!(f, "    {}", self.blocking)?;
        if !self.concurrent.is_empty() {
            writeln!(
                f,
                "  nor can any of the {} other pending operation(s) help, e.g.:",
                self.concurrent.len()
            )?;
            for line in &self.concurrent_shown {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

/// Checks `history` against model `M` with the default [`CheckConfig`].
pub fn check<M: Model>(
    history: &History<M::Input, M::Output>,
) -> Result<CheckResult<M::Key>, HistoryError> {
    check_with::<M>(history, &CheckConfig::default())
}

/// Checks `history` against model `M`, one partition at a time in key order.
///
/// Unknown-outcome operations that [`Model::is_read_only`] are dropped first:
/// they constrain nothing.
pub fn check_with<M: Model>(
    history: &History<M::Input, M::Output>,
    config: &CheckConfig,
) -> Result<CheckResult<M::Key>, HistoryError> {
    history.validate()?;
    let deadline = config.time_limit.map(|limit| Instant::now() + limit);
    let mut partitions: BTreeMap<M::Key, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.operations().iter().enumerate() {
        if op.is_unknown() && M::is_read_only(&op.input) {
            continue;
        }
        partitions
            .entry(M::partition(&op.input))
            .or_default()
            .push(index);
    }
    let mut unknown = None;
    for (key, indices) in partitions {
        let ops: Vec<_> = indices.iter().map(|&i| &history.operations()[i]).collect();
        let budget = Budget {
            max_steps: config.max_steps_per_partition,
            deadline,
        };
        match search::<M>(&ops, &budget) {
            Outcome::Linearizable => {}
            Outcome::Illegal(failure) => {
                let explanation = explain::<M>(&key, history, &indices, failure);
                return Ok(CheckResult::Illegal { key, explanation });
            }
            Outcome::Exhausted { steps } => {
                unknown.get_or_insert(CheckResult::Unknown { key, steps });
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
        }
    }
    Ok(unknown.unwrap_or(CheckResult::Ok))
}

/// Turns a search failure (in local ids) into an [`Explanation`].
fn explain<M: Model>(
    key: &M::Key,
    history: &History<M::Input, M::Output>,
    indices: &[usize],
    failure: Failure<M::State>,
) -> Explanation {
    let describe = |local: usize| {
        let index = indices[local];
        describe_operation(index, &history.operations()[index])
    };
    let tail_start = failure.prefix.len().saturating_sub(PREFIX_TAIL);
    Explanation {
        key: M::describe_key(key),
        operations: indices.len(),
        prefix: failure.prefix.iter().map(|&l| indices[l]).collect(),
        state: M::describe_state(&failure.state),
        prefix_tail: failure.prefix[tail_start..]
            .iter()
            .map(|&l| describe(l))
            .collect(),
        blocking_index: indices[failure.blocking],
        blocking: describe(failure.blocking),
        concurrent: failure.concurrent.iter().map(|&l| indices[l]).collect(),
        concurrent_shown: failure
            .concurrent
            .iter()
            .take(CONCURRENT_SHOWN)
            .map(|&l| describe(l))
            .collect(),
    }
}

/// `#3 client 1 [120, 180] Get(b"x") -> Value(Some(b"1"))`.
fn describe_operation<I: fmt::Debug, O: fmt::Debug>(index: usize, op: &Operation<I, O>) -> String {
    let ret = op.ret.map_or_else(|| "?".to_owned(), |ret| ret.to_string());
    match &op.output {
        Some(output) => format!(
            "#{index} client {} [{}, {ret}] {:?} -> {output:?}",
            op.client, op.call, op.input
        ),
        None => format!(
            "#{index} client {} [{}, {ret}] {:?} -> unknown outcome",
            op.client, op.call, op.input
        ),
    }
}
