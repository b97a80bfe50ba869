//! Black-box tests of the RPC transport: servers on 127.0.0.1:0 in this
//! process, and real peer processes (`troupe-rpc-peer`) where a test must
//! kill, freeze or restart the other side.

mod calls;
mod failures;
mod processes;
mod streams;
mod support;
