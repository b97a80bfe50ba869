//! `troupe-chaos`: the chaos harness and its tools.
//!
//! `troupe chaos run SCENARIO.yaml` starts a real cluster of node
//! processes (each in its own network namespace when it can), deploys a
//! serve config, drives open-loop load, injects faults from a seeded
//! schedule, checks invariants and writes a report (see CHAOS.md).
//!
//! # Layout
//!
//! - [`scenario`]: the scenario file (parsed with path-precise errors) and
//!   the seeded fault timeline it yields.
//! - [`record`]: what a run records (requests, faults, probes, instance
//!   lifecycles).
//! - [`cluster`]: the cluster under test: network namespaces and their
//!   bridge, fixed loopback ports (`cluster::ports`), node processes, and
//!   the guard that removes everything.
//! - [`workload`]: open-loop HTTP clients (fixed or health-checking) and the
//!   GCS operation recorder.
//! - [`fault`]: each fault kind's inject and heal, targets chosen by role.
//! - [`probe`]: reading leader, term and replica counts off the nodes'
//!   `/metrics` and admin API.
//! - [`analysis`]: statistics (confidence bounds, gaps, windows) and the
//!   safety checks, pure.
//! - [`report`]: `report.json`, the HTML page with SVG charts, the summary
//!   table.
//! - `run.rs`: [`run`] / [`RunOptions`], the orchestrator; `verdict.rs`:
//!   judging what it collected (statistics, checks, the report).
//! - [`linearizability`]: a Porcupine-style checker of recorded histories
//!   (with a key-value model), for "the control store is linearizable".
//! - [`fault_proxy`]: a TCP proxy that passes, delays, refuses or
//!   blackholes traffic on command, and [`fault_proxy::LinkTable`], one
//!   proxy per directed link between cluster members (partitions).
#![forbid(unsafe_code)]

pub mod analysis;
pub mod cluster;
pub mod fault;
pub mod fault_proxy;
pub mod linearizability;
pub mod probe;
pub mod record;
pub mod report;
mod run;
pub mod scenario;
mod verdict;
pub mod workload;

pub use run::{run, RunOptions};
