//! Sequential specifications: the [`Model`] trait and the key-value
//! [`KvModel`] of the GCS control store.

use std::fmt::{self, Debug};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// The sequential specification of an object, as the checker sees it.
///
/// A model is a deterministic state machine: [`Model::step`] says whether an
/// operation with a given input may return a given output from a state, and
/// which state follows. Models are stateless types; everything lives in
/// [`Model::State`], which the checker clones and hashes for memoisation, so
/// keep it small (the per-key state, not the whole store).
pub trait Model {
    /// The state of one partition (one independent object).
    type State: Clone + Eq + Hash + Debug;
    /// What a client asked for.
    type Input: Debug;
    /// What a client was told.
    type Output: Debug;
    /// Names a partition; see [`Model::partition`].
    type Key: Clone + Ord + Debug;

    /// The state of every partition before any operation.
    fn init() -> Self::State;

    /// The state after `input` returned `output` from `state`, or `None` if
    /// that output is impossible from that state.
    fn step(state: &Self::State, input: &Self::Input, output: &Self::Output)
        -> Option<Self::State>;

    /// The state after `input` took effect from `state` with an output nobody
    /// saw (the client timed out). Models are deterministic, so this is the
    /// unique successor; "it never took effect" needs no state of its own,
    /// because the checker may linearize such an operation after all others.
    fn step_unknown(state: &Self::State, input: &Self::Input) -> Self::State;

    /// The partition `input` touches. Linearizability is local: a history is
    /// linearizable iff each per-partition subhistory is, so the checker
    /// checks partitions separately.
    fn partition(input: &Self::Input) -> Self::Key;

    /// True if `input` never changes the state. Such operations constrain
    /// nothing when their outcome is unknown, so the checker drops them.
    fn is_read_only(_input: &Self::Input) -> bool {
        false
    }

    /// Renders a partition key for explanations.
    fn describe_key(key: &Self::Key) -> String {
        format!("{key:?}")
    }

    /// Renders a state for explanations.
    fn describe_state(state: &Self::State) -> String {
        format!("{state:?}")
    }
}

/// A map from byte-string keys to byte-string values, partitioned by key.
///
/// The per-key state is `Option<Vec<u8>>`: `None` while the key is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvModel;

/// An operation on the key-value store.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvInput {
    /// Sets `key` to `value`; returns [`KvOutput::Ok`].
    Put {
        /// The key written.
        key: Vec<u8>,
        /// The value written.
        value: Vec<u8>,
    },
    /// Reads `key`; returns [`KvOutput::Value`].
    Get {
        /// The key read.
        key: Vec<u8>,
    },
    /// Removes `key` (present or not); returns [`KvOutput::Ok`].
    Delete {
        /// The key removed.
        key: Vec<u8>,
    },
    /// Sets `key` to `new` iff its value is `expected` (`None`: absent);
    /// returns [`KvOutput::Swapped`].
    Cas {
        /// The key compared and maybe written.
        key: Vec<u8>,
        /// The value the key must hold for the swap to happen.
        expected: Option<Vec<u8>>,
        /// The value written on a successful swap.
        new: Vec<u8>,
    },
}

impl KvInput {
    /// A [`KvInput::Put`].
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A [`KvInput::Get`].
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Self::Get { key: key.into() }
    }

    /// A [`KvInput::Delete`].
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Self::Delete { key: key.into() }
    }

    /// A [`KvInput::Cas`].
    pub fn cas(key: impl Into<Vec<u8>>, expected: Option<&[u8]>, new: impl Into<Vec<u8>>) -> Self {
        Self::Cas {
            key: key.into(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.into(),
        }
    }

    /// The key this operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Put { key, .. }
            | Self::Get { key }
            | Self::Delete { key }
            | Self::Cas { key, .. } => key,
        }
    }
}

/// The reply to a [`KvInput`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOutput {
    /// A put or delete was applied.
    Ok,
    /// The value read (`None`: the key was absent).
    Value(Option<Vec<u8>>),
    /// Whether a compare-and-swap swapped.
    Swapped(bool),
}

impl KvOutput {
    /// A read that found the key absent.
    pub const NOT_FOUND: Self = Self::Value(None);

    /// A read that found `value`.
    pub fn found(value: impl Into<Vec<u8>>) -> Self {
        Self::Value(Some(value.into()))
    }
}

impl Model for KvModel {
    type State = Option<Vec<u8>>;
    type Input = KvInput;
    type Output = KvOutput;
    type Key = Vec<u8>;

    fn init() -> Self::State {
        None
    }

    fn step(state: &Self::State, input: &KvInput, output: &KvOutput) -> Option<Self::State> {
        match (input, output) {
            (KvInput::Put { value, .. }, KvOutput::Ok) => Some(Some(value.clone())),
            (KvInput::Get { .. }, KvOutput::Value(read)) => (read == state).then(|| state.clone()),
            (KvInput::Delete { .. }, KvOutput::Ok) => Some(None),
            (KvInput::Cas { expected, new, .. }, KvOutput::Swapped(swapped)) => {
                let matches = state == expected;
                if *swapped != matches {
                    None
                } else if matches {
                    Some(Some(new.clone()))
                } else {
                    Some(state.clone())
                }
            }
            _ => None,
        }
    }

    fn step_unknown(state: &Self::State, input: &KvInput) -> Self::State {
        match input {
            KvInput::Put { value, .. } => Some(value.clone()),
            KvInput::Get { .. } => state.clone(),
            KvInput::Delete { .. } => None,
            KvInput::Cas { expected, new, .. } if state == expected => Some(new.clone()),
            KvInput::Cas { .. } => state.clone(),
        }
    }

    fn partition(input: &KvInput) -> Vec<u8> {
        input.key().to_vec()
    }

    fn is_read_only(input: &KvInput) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn describe_key(key: &Vec<u8>) -> String {
        format!("{:?}", Bytes(key))
    }

    fn describe_state(state: &Self::State) -> String {
        format!("{:?}", state.as_deref().map(Bytes))
    }
}

/// Renders bytes as an escaped byte-string literal, `b"like this"`.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        for &byte in self.0 {
            write!(f, "{}", std::ascii::escape_default(byte))?;
        }
        f.write_str("\"")
    }
}

impl Debug for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Put { key, value } => write!(f, "Put({:?}, {:?})", Bytes(key), Bytes(value)),
            Self::Get { key } => write!(f, "Get({:?})", Bytes(key)),
            Self::Delete { key } => write!(f, "Delete({:?})", Bytes(key)),
            Self::Cas { key, expected, new } => write!(
                f,
                "Cas({:?}, expected {:?}, new {:?})",
                Bytes(key),
                expected.as_deref().map(Bytes),
                Bytes(new)
            ),
        }
    }
}

impl Debug for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("Ok"),
            Self::Value(value) => write!(f, "Value({:?})", value.as_deref().map(Bytes)),
            Self::Swapped(swapped) => write!(f, "Swapped({swapped})"),
        }
    }
}
