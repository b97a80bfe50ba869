//! The actor API and the serve layer across real node processes (`troupe-actors start`) on
//! loopback; the test process is a driver (`Cluster::connect`).

mod calls;
mod cli;
mod content;
mod errors;
mod failures;
#[allow(dead_code)]
#[path = "../../../serve/tests/serve/http.rs"]
mod http_client;
mod limits;
mod operator;
mod resilience;
mod serve;
mod support;
#[allow(dead_code)]
#[path = "../vision/support.rs"]
mod vision_support;
