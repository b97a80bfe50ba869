//! `troupe-examples`: runnable programs built on Troupe.
//!
//! # Layout
//!
//! - [`actors`]: the actor-API example's types — a counter and a toy
//!   parameter server with its workers — hosted by the `troupe-actors`
//!   binary (`actors/main.rs`, with its README).
//! - [`patterns`]: the serve examples — one application per composition
//!   pattern (`chain`, `ensemble`, `select`) and the benchmarks' `noop`
//!   apps — run by `troupe-chain`, `troupe-ensemble`, `troupe-select`
//!   (`serve/`, with its README).
#![forbid(unsafe_code)]

pub mod actors;
pub mod patterns;
