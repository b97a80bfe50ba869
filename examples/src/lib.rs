//! `troupe-examples`: runnable programs built on Troupe.
//!
//! Will hold the content-understanding pipeline on candle models, one
//! program per composition pattern, and an actor-API example.
#![forbid(unsafe_code)]
