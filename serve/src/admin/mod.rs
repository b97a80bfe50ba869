//! The admin HTTP server on the dashboard port (default 8265): Prometheus
//! metrics at `/metrics` and the read side of the admin REST API. With a
//! bearer token set, `/api/` requests without it get 401 and change
//! nothing. A config is at most [`limits::MAX_CONFIG_BYTES`] (413). Errors have one shape, `{"error": {"code", "message", "path",
//! "request_id"}}`, made by [`crate::http_error`] (control store errors
//! are a fixed 503 text; their cause is logged).

mod health;
pub mod ray;

use std::io;
use std::net::SocketAddr;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use troupe_gcs::member::GcsMember;
use troupe_worker::lifecycle::ActorState;
use troupe_worker::Cluster;

use crate::catalog::Catalog;
use crate::config;
use crate::declarative;
use crate::http_error::{request_id, ApiError, HttpError};
use crate::http_thread::HttpThread;
use crate::limits;

/// The admin server's settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: String,
    /// Required as `Authorization: Bearer <token>` on `/api/` when set.
    pub token: Option<String>,
    /// Other admin tokens accepted while the token is rotated.
    pub also_accept: Vec<String>,
    /// The application builders a `PUT /api/serve/applications/` config
    /// can name (the binary's own).
    pub catalog: Catalog,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:8265".into(),
            token: None,
            also_accept: Vec::new(),
            catalog: Catalog::new(),
        }
    }
}

struct AdminState {
    cluster: Cluster,
    member: Option<GcsMember>,
    token: Option<String>,
    also_accept: Vec<String>,
    catalog: Catalog,
    /// [`OPENAPI`] with `app` limited to this binary's builders.
    openapi: String,
}

/// Every endpoint, as (method, path): what the server registers, and what
/// the OpenAPI document must describe (a test holds them together).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/version"),
    ("GET", "/api/ray/version"),
    ("GET", "/api/gcs_healthz"),
    ("GET", "/api/local_raylet_healthz"),
    ("GET", "/api/healthz"),
    ("GET", "/api/cluster/nodes"),
    ("GET", "/api/cluster/actors"),
    ("GET", "/api/gcs/members"),
    ("GET", "/api/serve/applications/"),
    ("PUT", "/api/serve/applications/"),
    ("DELETE", "/api/serve/applications/"),
];

/// The handler of one of [`ROUTES`].
fn route(method: &str, path: &str) -> actix_web::Route {
    match (method, path) {
        ("GET", "/metrics") => web::get().to(metrics_page),
        ("GET", "/api/openapi.json") => web::get().to(openapi),
        ("GET", "/api/version") => web::get().to(version),
        ("GET", "/api/ray/version") => web::get().to(ray_version),
        ("GET", "/api/gcs_healthz") => web::get().to(health::gcs_healthz),
        ("GET", "/api/local_raylet_healthz") => web::get().to(health::local_healthz),
        ("GET", "/api/healthz") => web::get().to(health::healthz),
        ("GET", "/api/cluster/nodes") => web::get().to(nodes),
        ("GET", "/api/cluster/actors") => web::get().to(actors),
        ("GET", "/api/gcs/members") => web::get().to(members),
        ("GET", "/api/serve/applications/") => web::get().to(applications),
        ("PUT", "/api/serve/applications/") => web::put().to(put_applications),
        ("DELETE", "/api/serve/applications/") => web::delete().to(delete_all),
        _ => unreachable!("{method} {path} is in ROUTES without a handler"),
    }
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// A running admin server.
pub struct AdminServer {
    http: HttpThread,
}

impl AdminServer {
    /// Starts the server on its own thread.
    pub fn start(
        config: AdminConfig,
        cluster: Cluster,
        member: Option<GcsMember>,
    ) -> io::Result<AdminServer> {
        let state = web::Data::new(AdminState {
            cluster,
            member,
            token: config.token,
            also_accept: config.also_accept,
            openapi: openapi_for(&config.catalog),
            catalog: config.catalog,
        });
        let http = HttpThread::start("admin API", &config.listen, 1, move |app| {
            app.app_data(state.clone());
            let mut scope = web::scope("").wrap(from_fn(request_id));
            // One resource per path: its methods, and 405 for the others.
            let mut paths: Vec<&str> = ROUTES.iter().map(|&(_, p)| p).collect();
            paths.dedup();
            for path in paths {
                let mut resource = web::resource(path);
                for &(method, _) in ROUTES.iter().filter(|&&(_, p)| p == path) {
                    resource = resource.route(route(method, path));
                }
                scope = scope.service(resource.default_service(web::to(method_not_allowed)));
            }
            app.service(scope.default_service(web::to(not_found)));
        })?;
        Ok(AdminServer { http })
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    pub async fn stop(self) {
        self.http.stop().await;
    }
}

/// The answers of the API's handlers; errors in the one shape.
type Answer = Result<HttpResponse, ApiError>;

/// `Ok` if the request may go on; the 401 otherwise.
fn authorize(request: &HttpRequest, state: &AdminState) -> Result<(), ApiError> {
    let Some(token) = state.token.as_ref() else {
        return Ok(());
    };
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let accepted = std::iter::once(token).chain(&state.also_accept);
    if given.is_some_and(|given| accepted.into_iter().any(|t| t == given)) {
        return Ok(());
    }
    Err(ApiError::json(
        request,
        HttpError::public(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this API needs `Authorization: Bearer <token>` with the cluster's admin token",
        ),
    ))
}

async fn metrics_page(state: web::Data<AdminState>) -> HttpResponse {
    let metrics = crate::metrics::metrics();
    metrics.record_health(state.cluster.health());
    metrics.record_view(state.cluster.watch_stats());
    let id = state.cluster.id();
    let ip = state
        .cluster
        .read_state(|s| s.nodes.get(&id).map(|n| n.addr.clone()))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map_or_else(String::new, |a| a.ip().to_string());
    metrics.record_host(&ip);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render(state.member.as_ref()))
}

async fn version(request: HttpRequest, state: web::Data<AdminState>) -> Answer {
    authorize(&request, &state)?;
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "rpc_protocol": troupe_core::rpc::PROTOCOL_VERSION,
    })))
}

/// Ray's `GET /api/ray/version`, which Ray's `serve` CLI asks first: the
/// Ray version whose API Troupe implements, with Troupe's own beside it.
async fn ray_version(request: HttpRequest, state: web::Data<AdminState>) -> Answer {
    authorize(&request, &state)?;
    Ok(HttpResponse::Ok().json(json!({
        "version": ray::RAY_DASHBOARD_API_VERSION,
        "ray_version": ray::RAY_VERSION,
        "ray_commit": "troupe",
        "session_name": "troupe",
        "troupe_version": env!("CARGO_PKG_VERSION"),
    })))
}

/// The cluster's tables, linearizably read (503 without a quorum).
async fn read_state(
    request: &HttpRequest,
    state: &AdminState,
) -> Result<troupe_worker::ClusterState, ApiError> {
    authorize(request, state)?;
    state
        .cluster
        .state()
        .await
        .map_err(|e| ApiError::json(request, HttpError::store_read(e)))
}

async fn nodes(request: HttpRequest, state: web::Data<AdminState>) -> Answer {
    let cluster = read_state(&request, &state).await?;
    let used = troupe_worker::status::used_resources(&cluster);
    let nodes: Vec<_> = cluster
        .nodes
        .values()
        .map(|n| {
            let used = used.get(&n.id).cloned().unwrap_or_default();
            json!({
                "id": n.id.to_string(),
                "address": n.addr,
                "gcs_member": n.gcs_member,
                "resources": { "CPU": n.resources.cpus().to_f64(), "GPU": n.resources.gpus().to_f64() },
                "used": { "CPU": used.cpus().to_f64(), "GPU": used.gpus().to_f64() },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "nodes": nodes })))
}

async fn actors(request: HttpRequest, state: web::Data<AdminState>) -> Answer {
    let cluster = read_state(&request, &state).await?;
    let actors: Vec<_> = cluster
        .actors
        .values()
        .map(|a| {
            json!({
                "id": a.id.to_string(),
                "type": a.type_name,
                "name": a.name.as_ref().map(ToString::to_string),
                "state": a.state.name(),
                "node": a.node.map(|n| n.to_string()),
                "restarts": a.restarts,
                "message": match &a.state {
                    ActorState::Dead { reason } => Some(reason.to_string()),
                    _ => a.pending_reason.clone(),
                },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "actors": actors })))
}

async fn members(request: HttpRequest, state: web::Data<AdminState>) -> Answer {
    authorize(&request, &state)?;
    let s = state
        .cluster
        .gcs()
        .status()
        .await
        .map_err(|e| ApiError::json(&request, HttpError::store_read(e)))?;
    Ok(HttpResponse::Ok().json(json!({
        "leader": s.leader,
        "term": s.term,
        "revision": s.revision,
        "voters": s.membership.voters,
        "learners": s.membership.learners,
    })))
}

/// Ray's `GET /api/serve/applications/`: the `ServeInstanceDetails`
/// document (see [`ray`]).
async fn applications(request: HttpRequest, state: web::Data<AdminState>) -> Answer {
    let cluster = read_state(&request, &state).await?;
    Ok(HttpResponse::Ok().json(ray::instance_details(&cluster)))
}

async fn delete_all(request: HttpRequest, state: web::Data<AdminState>) -> Answer {
    authorize(&request, &state)?;
    declarative::delete_all(&state.cluster)
        .await
        .map_err(|e| ApiError::json(&request, &e))?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// Ray Serve's `PUT /api/serve/applications/`: the body (JSON) is the
/// whole config; applications it does not name are deleted. A body over
/// [`limits::MAX_CONFIG_BYTES`] is 413, nested deeper than
/// [`limits::MAX_NESTING`] 400, before it is parsed.
async fn put_applications(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AdminState>,
) -> Answer {
    authorize(&request, &state)?;
    let body = read_body(&request, payload).await?;
    let text = std::str::from_utf8(&body).unwrap_or_default();
    limits::check_nesting(text, limits::MAX_NESTING).map_err(|e| {
        ApiError::json(
            &request,
            HttpError::public(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
        )
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::json(
            &request,
            HttpError::public(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("the body is not JSON ({e}); send the config as JSON, e.g. the output of `troupe serve build --json`"),
            ),
        )
    })?;
    // Schema, builders, deployment names and refusals in one answer.
    let (mut config, _) = config::check_value(&value, &state.catalog)
        .map_err(|e| ApiError::json(&request, HttpError::invalid_config(&e)))?;
    let warnings = config::set_aside_http_options(&mut config);
    for w in &warnings {
        tracing::warn!(path = %w.path, "deployed config: {}", w.message);
    }
    let done = declarative::apply(&state.cluster, &state.catalog, &config)
        .await
        .map_err(|e| ApiError::json(&request, &e))?;
    Ok(HttpResponse::Ok().json(json!({
        "applications": done.versions,
        "changed": done.changed,
        "deleted": done.deleted,
        "warnings": warnings
            .iter()
            .map(|w| json!({"path": w.path, "message": w.message}))
            .collect::<Vec<_>>(),
    })))
}

/// How much of an oversized body is read (and dropped) before the 413,
/// so that the client, still sending, reads the answer instead of a reset
/// connection.
const DRAIN_BYTES: usize = 64 << 20;

/// The body of a config request, at most [`limits::MAX_CONFIG_BYTES`]
/// (413 in the API's error shape otherwise; actix's own payload limit
/// would answer plain text).
async fn read_body(request: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut body = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::json(
                request,
                HttpError::public(
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    format!("the body could not be read ({e}); send it again"),
                ),
            )
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limits::MAX_CONFIG_BYTES {
            body.extend_from_slice(&chunk);
        } else {
            body = Vec::new();
            if seen > DRAIN_BYTES {
                break;
            }
        }
    }
    limits::check_config_size("the body", seen)
        .map_err(|e| ApiError::json(request, HttpError::too_large(e.to_string())))?;
    Ok(body)
}

/// [`OPENAPI`], with a config's `app` limited to `catalog`'s builders.
fn openapi_for(catalog: &Catalog) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    let names: Vec<&str> = catalog.app_names().collect();
    if let Some(app) = doc.pointer_mut("/components/schemas/AppConfig/properties/app") {
        app["enum"] = json!(names);
    }
    doc.to_string()
}

async fn openapi(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi.clone())
}

/// A known path asked with a method it does not serve.
async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    let path = request.path();
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|&&(_, p)| p == path)
        .map(|&(m, _)| m)
        .collect();
    let error = HttpError::public(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not served at {path}; use {}",
            request.method(),
            allowed.join(", ")
        ),
    );
    let mut response = ApiError::json(&request, error).error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    ApiError::json(
        &request,
        HttpError::public(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see /api/openapi.json for the API",
        ),
    )
    .error_response()
}
