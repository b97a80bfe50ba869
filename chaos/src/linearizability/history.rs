//! Recorded histories: [`Operation`], [`History`] and the thread-safe
//! [`Recorder`] that builds one while a test runs.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One client operation as observed from the client side.
///
/// Times are on one monotonic clock (nanoseconds from a shared origin in
/// [`Recorder`]). `output: None` means the outcome is unknown (the client
/// timed out or lost its connection): the operation may have taken effect at
/// any point after `call`, or never, so the checker treats its return time as
/// +infinity whatever `ret` says and accepts any output for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// Which client issued the operation (informational).
    pub client: u64,
    /// When the client invoked the operation.
    pub call: u64,
    /// When the client saw the reply; `None` if it never did.
    pub ret: Option<u64>,
    /// What the client asked for.
    pub input: I,
    /// What the client was told; `None` if the outcome is unknown.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// True if nobody knows whether or how this operation took effect.
    pub fn is_unknown(&self) -> bool {
        self.output.is_none()
    }

    /// The return time the checker uses: `None` stands for +infinity, which
    /// is the case for every operation with an unknown outcome.
    pub fn effective_ret(&self) -> Option<u64> {
        self.output.as_ref().and(self.ret)
    }
}

/// A problem that makes a history impossible to check.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HistoryError {
    /// An operation returned before it was called.
    #[error("operation #{index} returns at {ret}, before its call at {call}")]
    ReturnBeforeCall {
        /// The operation's index in the history.
        index: usize,
        /// Its call time.
        call: u64,
        /// Its return time.
        ret: u64,
    },
}

/// A complete record of operations, in any order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History<I, O> {
    operations: Vec<Operation<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self {
            operations: Vec::new(),
        }
    }
}

impl<I, O> From<Vec<Operation<I, O>>> for History<I, O> {
    fn from(operations: Vec<Operation<I, O>>) -> Self {
        Self { operations }
    }
}

impl<I, O> History<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an operation.
    pub fn push(&mut self, operation: Operation<I, O>) {
        self.operations.push(operation);
    }

    /// The operations, indexed as explanations refer to them (`#index`).
    pub fn operations(&self) -> &[Operation<I, O>] {
        &self.operations
    }

    /// Mutable access, e.g. to inject a fault into a recorded history.
    pub fn operations_mut(&mut self) -> &mut [Operation<I, O>] {
        &mut self.operations
    }

    /// Gives the operations back.
    pub fn into_operations(self) -> Vec<Operation<I, O>> {
        self.operations
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// True if there is no operation.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Checks that every known return comes no earlier than its call.
    pub fn validate(&self) -> Result<(), HistoryError> {
        for (index, op) in self.operations.iter().enumerate() {
            if let Some(ret) = op.ret {
                if ret < op.call {
                    return Err(HistoryError::ReturnBeforeCall {
                        index,
                        call: op.call,
                        ret,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Proof that an operation was begun, to hand back to [`Recorder::end`].
///
/// Dropping a token without ending it leaves the operation's outcome unknown,
/// which is the right record for a client task that panicked or was cancelled.
#[derive(Debug)]
#[must_use = "end the operation with Recorder::end, or its outcome stays unknown"]
pub struct Token {
    index: usize,
}

/// Records a [`History`] from many threads, timestamping calls and returns
/// on one monotonic clock.
///
/// Take the `begin` timestamp before sending the request and the `end` one
/// after the reply arrives: the recorded interval then contains the real
/// one, which can only make the check more permissive, never wrong.
#[derive(Debug)]
pub struct Recorder<I, O> {
    origin: Instant,
    operations: Mutex<Vec<Operation<I, O>>>,
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> Recorder<I, O> {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self::with_origin(Instant::now())
    }

    /// A recorder whose clock counts from `origin`, to share one clock
    /// between several recorders.
    pub fn with_origin(origin: Instant) -> Self {
        Self {
            origin,
            operations: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the origin.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that `client` invokes `input`, now.
    pub fn begin(&self, client: u64, input: I) -> Token {
        let call = self.now();
        let mut operations = self.lock();
        operations.push(Operation {
            client,
            call,
            ret: None,
            input,
            output: None,
        });
        Token {
            index: operations.len() - 1,
        }
    }

    /// Records that the operation of `token` returned `output`, now;
    /// `None` records an unknown outcome (timeout, lost connection).
    ///
    /// # Panics
    /// If `token` came from another recorder with fewer operations.
    pub fn end(&self, token: Token, output: Option<O>) {
        let ret = self.now();
        let mut operations = self.lock();
        let operation = operations
            .get_mut(token.index)
            .expect("token from another recorder");
        if output.is_some() {
            operation.ret = Some(ret);
        }
        operation.output = output;
    }

    /// The number of operations begun so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no operation was begun.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The history so far; operations still running appear as unknown.
    pub fn snapshot(&self) -> History<I, O>
    where
        I: Clone,
        O: Clone,
    {
        History::from(self.lock().clone())
    }

    /// The history; operations never ended appear as unknown.
    pub fn into_history(self) -> History<I, O> {
        History::from(
            self.operations
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Operation<I, O>>> {
        // A client thread that panicked mid-push leaves a usable vector.
        self.operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::Recorder;
    use crate::linearizability::{check, CheckResult, KvInput, KvModel, KvOutput};

    #[test]
    fn recorder_collects_operations_from_many_threads() {
        let recorder = Recorder::new();
        std::thread::scope(|scope| {
            for client in 0..4 {
                let recorder = &recorder;
                scope.spawn(move || {
                    for _ in 0..25 {
                        let token = recorder.begin(client, KvInput::get("k"));
                        recorder.end(token, Some(KvOutput::NOT_FOUND));
                    }
                });
            }
        });
        let abandoned = recorder.begin(9, KvInput::put("k", "v"));
        drop(abandoned);
        let timed_out = recorder.begin(9, KvInput::put("k", "w"));
        recorder.end(timed_out, None);
        assert_eq!(recorder.snapshot().len(), 102);
        let history = recorder.into_history();
        let ops = history.operations();
        assert!(ops[..100]
            .iter()
            .all(|op| op.ret.is_some_and(|r| r >= op.call)));
        assert!(ops[100..]
            .iter()
            .all(|op| op.is_unknown() && op.ret.is_none()));
        assert_eq!(check::<KvModel>(&history), Ok(CheckResult::Ok));
    }
}
