//! The serve layer end to end on one node embedded in this test process
//! (GCS, worker, controllers, proxy), over real HTTP on loopback.

mod admin;
mod apps;
mod autoscale;
mod compose;
mod errors;
mod http;
mod support;
mod updates;
