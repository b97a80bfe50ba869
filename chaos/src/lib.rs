//! `troupe-chaos`: the chaos harness and its tools.
//!
//! The harness (to come) starts a real multi-process cluster on this
//! machine, drives open-loop HTTP load, injects faults from a seeded
//! schedule, checks invariants and reports availability. Its tools are
//! usable on their own, and the GCS tests use them today:
//!
//! # Layout
//!
//! - [`linearizability`]: a Porcupine-style checker of recorded histories
//!   (with a key-value model), for "the control store is linearizable".
//! - [`fault_proxy`]: a TCP proxy that passes, delays, refuses or
//!   blackholes traffic on command, and [`fault_proxy::LinkTable`], one
//!   proxy per directed link between cluster members (partitions).
#![forbid(unsafe_code)]

pub mod fault_proxy;
pub mod linearizability;
