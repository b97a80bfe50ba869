//! Ray's health endpoints, which Kubernetes probes (KubeRay's among them)
//! and load balancers call on the dashboard port without a token:
//!
//! - `GET /api/gcs_healthz`: `success` (200) while the control store
//!   serves a linearizable read within [`GCS_CHECK_TIMEOUT`], else 503
//!   with why (no quorum, no member reachable);
//! - `GET /api/local_raylet_healthz`: `success` while this node process
//!   runs (in Ray, the node's raylet; in Troupe the admin server lives in
//!   the node process, so an answer is the proof);
//! - `GET /api/healthz`: both, one `name: result` line each (Ray's agent
//!   format), 503 if either failed. A node without a GCS member answers
//!   `gcs: success (no local gcs)`, as Ray's worker nodes do.
//!
//! The answers are `application/text`, as Ray's.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::AdminState;

/// How long the control store may take to answer the check (KubeRay's
/// probes give the whole request 2 s).
pub const GCS_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// The key the check reads (it need not exist).
const PROBE_KEY: &[u8] = b"/troupe/healthz";

/// Whether the control store serves a linearizable read now.
async fn gcs_check(state: &AdminState) -> Result<(), String> {
    match tokio::time::timeout(GCS_CHECK_TIMEOUT, state.cluster.gcs().get(PROBE_KEY)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("the control store did not answer a read: {e}")),
        Err(_) => Err(format!(
            "the control store did not answer a read within {} ms (no quorum, or no member reachable)",
            GCS_CHECK_TIMEOUT.as_millis()
        )),
    }
}

/// The status and body of a health answer from its checks, in Ray's
/// agent format (`name: result` lines; 503 if any failed). Pure.
pub fn answer(checks: &[(&str, Result<&str, String>)]) -> (StatusCode, String) {
    let failed = checks.iter().any(|(_, r)| r.is_err());
    let body = checks
        .iter()
        .map(|(name, r)| match r {
            Ok(ok) => format!("{name}: {ok}"),
            Err(e) => format!("{name}: {e}"),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let status = match failed {
        true => StatusCode::SERVICE_UNAVAILABLE,
        false => StatusCode::OK,
    };
    (status, body)
}

fn text(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/text")
        .body(body)
}

/// `GET /api/gcs_healthz`.
pub(super) async fn gcs_healthz(state: web::Data<AdminState>) -> HttpResponse {
    match gcs_check(&state).await {
        Ok(()) => text(StatusCode::OK, "success".into()),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Health check failed: {e}"),
        ),
    }
}

/// `GET /api/local_raylet_healthz`.
pub(super) async fn local_healthz() -> HttpResponse {
    text(StatusCode::OK, "success".into())
}

/// `GET /api/healthz`.
pub(super) async fn healthz(state: web::Data<AdminState>) -> HttpResponse {
    let gcs = match state.member {
        Some(_) => gcs_check(&state).await.map(|()| "success"),
        None => Ok("success (no local gcs)"),
    };
    let (status, body) = answer(&[("raylet", Ok("success")), ("gcs", gcs)]);
    text(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_is_a_line_and_any_failure_is_a_503() {
        let (status, body) = answer(&[("raylet", Ok("success")), ("gcs", Ok("success"))]);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "raylet: success\ngcs: success");
        let (status, body) = answer(&[("raylet", Ok("success")), ("gcs", Err("no quorum".into()))]);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "raylet: success\ngcs: no quorum");
    }
}
