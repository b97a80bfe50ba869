//! The control store as real processes: `troupe gcs serve` members that
//! are SIGKILLed and restarted from their data directories.

mod corruption;
mod durability;
mod linearizability;
mod partition;
mod support;
