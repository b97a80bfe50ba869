//! The actor API and the serve layer across real node processes (`troupe-actors start`) on
//! loopback; the test process is a driver (`Cluster::connect`).

mod calls;
mod cli;
mod errors;
mod failures;
mod operator;
mod serve;
mod support;
