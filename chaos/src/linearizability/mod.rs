//! A linearizability checker in the style of Wing & Gong, Lowe and
//! Porcupine, used to prove the GCS control store linearizable under
//! leader failures.
//!
//! # Layout
//! - [`model`]: the [`Model`] trait (a sequential specification with a
//!   partition key) and [`KvModel`], the store's key-value map.
//! - [`history`]: [`Operation`], [`History`] and the thread-safe
//!   [`Recorder`] that timestamps operations while a test runs.
//! - `checker`: [`check`] / [`check_with`] split a history by partition
//!   (linearizability is local) and return a [`CheckResult`].
//! - `search`: the DFS with backtracking and memoisation on
//!   (linearized set, state), as Porcupine's `checkSingle`.
//!
//! # Example
//! ```
//! use troupe_chaos::linearizability::{check, CheckResult, KvInput, KvModel, KvOutput, Recorder};
//!
//! let recorder = Recorder::new();
//! let put = recorder.begin(1, KvInput::put("k", "v"));
//! recorder.end(put, Some(KvOutput::Ok));
//! let get = recorder.begin(2, KvInput::get("k"));
//! recorder.end(get, Some(KvOutput::found("v")));
//! let result = check::<KvModel>(&recorder.into_history()).unwrap();
//! assert_eq!(result, CheckResult::Ok);
//! ```
//!
//! Operations with unknown outcomes (`output: None`) are handled as
//! Porcupine does: their return is at +infinity and any output is accepted,
//! so they may take effect anywhere after their call, or (linearized last)
//! never.

#![forbid(unsafe_code)]

mod bitset;
mod checker;
pub mod history;
pub mod model;
mod search;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

pub use checker::{check, check_with, CheckConfig, CheckResult, Explanation};
pub use history::{History, HistoryError, Operation, Recorder, Token};
pub use model::{KvInput, KvModel, KvOutput, Model};

/// A history of [`KvModel`] operations.
pub type KvHistory = History<KvInput, KvOutput>;
