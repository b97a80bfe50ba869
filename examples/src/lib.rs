//! `troupe-examples`: runnable programs built on Troupe.
//!
//! # Layout
//!
//! - [`actors`]: the actor-API example's types — a counter and a toy
//!   parameter server with its workers — hosted by the `troupe-actors`
//!   binary (`actors/main.rs`, with its README).
#![forbid(unsafe_code)]

pub mod actors;
