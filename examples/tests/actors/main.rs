//! The actor API and the serve layer across real node processes (`troupe-actors start`) on
//! loopback; the test process is a driver (`Cluster::connect`).

mod autoscale;
mod backup;
mod calls;
mod cli;
mod content;
mod deploy;
mod errors;
mod failures;
mod grafana;
#[allow(dead_code)]
#[path = "../../../serve/tests/serve/http.rs"]
mod http_client;
mod limits;
mod membership;
mod operator;
mod raycli;
mod resilience;
mod retention;
mod runbook;
mod serve;
mod status;
mod support;
#[allow(dead_code)]
#[path = "../vision/support.rs"]
mod vision_support;
mod watches;
