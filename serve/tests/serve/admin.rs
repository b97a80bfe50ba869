//! `/metrics` and the admin REST API.

use troupe_serve::{Application, Bind};

use crate::apps::Hello;
use crate::support::{deploy, get, request_to, serve, ADMIN_TOKEN, ROTATED_ADMIN_TOKEN};

/// The value of the sample `name{labels}` on the page (labels in the order
/// the encoder writes them: sorted by name).
fn sample(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// Every sample line is `name{labels} value`; every other line a comment.
fn parses_as_prometheus_text(page: &str) -> bool {
    page.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .all(|l| {
            let Some((series, value)) = l.rsplit_once(' ') else {
                return false;
            };
            let name = series.split('{').next().unwrap_or_default();
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            let labels_ok = !series.contains('{') || series.ends_with('}');
            let value_ok = value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN";
            name_ok && labels_ok && value_ok
        })
}

#[test]
fn metrics_count_the_requests_and_parse() {
    deploy(
        Application::new("counted")
            .route_prefix(Some("/counted"))
            .ingress(Bind::<Hello>::new("counted", ())),
    );
    for _ in 0..7 {
        assert_eq!(get("/counted/x").status, 200);
    }
    let page = request_to(&serve().admin, "GET", "/metrics", b"", &[]);
    assert_eq!(page.status, 200);
    let page = page.body;
    assert!(parses_as_prometheus_text(&page), "{page}");
    let ok = r#"ray_serve_num_http_requests_total{application="counted",method="GET",route="/counted",status_code="200"}"#;
    assert_eq!(sample(&page, ok), Some(7.0), "{page}");
    let count = r#"ray_serve_http_request_latency_ms_count{application="counted",method="GET",route="/counted",status_code="200"}"#;
    assert_eq!(sample(&page, count), Some(7.0), "{page}");
    assert!(
        page.contains("ray_serve_replica_processing_queries{application=\"counted\""),
        "{page}"
    );
    assert_eq!(sample(&page, "troupe_gcs_is_leader"), Some(1.0), "{page}");
}

#[test]
fn the_admin_api_answers_with_the_token_and_only_with_it() {
    deploy(
        Application::new("listed")
            .route_prefix(Some("/listed"))
            .ingress(Bind::<Hello>::new("listed", ())),
    );
    let admin = &serve().admin;
    let bearer = format!("authorization: Bearer {ADMIN_TOKEN}");
    let denied = request_to(admin, "GET", "/api/cluster/nodes", b"", &[]);
    assert_eq!(denied.status, 401);
    assert!(
        denied.body.contains(r#""code":"unauthorized""#),
        "{}",
        denied.body
    );
    let wrong = request_to(
        admin,
        "DELETE",
        "/api/serve/applications/",
        b"",
        &["authorization: Bearer nope"],
    );
    assert_eq!(wrong.status, 401);

    // While the token is rotated, the one rotated in is accepted too.
    let rotated = format!("authorization: Bearer {ROTATED_ADMIN_TOKEN}");
    let during_rotation = request_to(admin, "GET", "/api/cluster/nodes", b"", &[&rotated]);
    assert_eq!(during_rotation.status, 200, "{}", during_rotation.body);

    let nodes = request_to(admin, "GET", "/api/cluster/nodes", b"", &[&bearer]);
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    let nodes_id = nodes.header("x-request-id").map(str::to_owned);
    let nodes: serde_json::Value = serde_json::from_str(&nodes.body).unwrap();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1);

    let apps = request_to(admin, "GET", "/api/serve/applications/", b"", &[&bearer]);
    let apps: serde_json::Value = serde_json::from_str(&apps.body).unwrap();
    assert_eq!(
        apps["applications"]["listed"]["status"], "RUNNING",
        "{apps}"
    );
    // The 401s above changed nothing.
    assert_eq!(get("/listed/x").status, 200);

    let actors = request_to(admin, "GET", "/api/cluster/actors", b"", &[&bearer]);
    assert!(actors.body.contains("test.Hello"), "{}", actors.body);
    let members = request_to(admin, "GET", "/api/gcs/members", b"", &[&bearer]);
    assert!(members.body.contains(r#""voters""#), "{}", members.body);
    // Ray's health probes need no token (Kubernetes probes carry none).
    for (path, body) in [
        ("/api/gcs_healthz", "success"),
        ("/api/local_raylet_healthz", "success"),
        ("/api/healthz", "raylet: success\ngcs: success"),
    ] {
        let health = request_to(admin, "GET", path, b"", &[]);
        assert_eq!((health.status, health.body.as_str()), (200, body), "{path}");
        assert_eq!(health.header("content-type"), Some("application/text"));
    }
    let missing = request_to(admin, "GET", "/api/nope", b"", &[&bearer]);
    assert_eq!(missing.status, 404);
    let error: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(error["error"]["path"], "/api/nope");
    // Every answer, error or not, names its request.
    let id = missing.header("x-request-id").unwrap();
    assert_eq!(error["error"]["request_id"], id);
    assert!(nodes_id.is_some() && denied.header("x-request-id").is_some());
}
