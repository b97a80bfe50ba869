//! The serve config file and the declarative side of the admin API: golden
//! configs, invalid ones with their exact messages, `PUT/DELETE
//! /api/serve/applications/`, and the OpenAPI document checked against
//! the running server. One node embedded in this test process (a separate
//! binary from `serve`: these tests replace the whole desired state).

#[allow(dead_code)]
#[path = "../serve/apps.rs"]
mod apps;
#[allow(dead_code)]
#[path = "../serve/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../serve/support.rs"]
mod support;

mod files;
mod openapi;
mod rest;

use std::sync::{Mutex, MutexGuard};

/// The tests that change the cluster's applications run one at a time.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
