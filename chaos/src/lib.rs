//! `troupe-chaos`: the chaos harness.
//!
//! Will start a real multi-process cluster on this machine, drive open-loop
//! HTTP load, inject faults from a seeded schedule, check invariants and
//! report availability.
#![forbid(unsafe_code)]
