//! The HTTP proxy (actix-web): routes each request by its application's
//! `route_prefix` to the application's ingress deployment, through that
//! deployment's router. `/-/healthz` and `/-/routes` as in Ray Serve;
//! `/-/healthz` also fails while the proxy cannot reach a deployment it
//! routes ([`reach`]).
//!
//! It runs on its own actix system (its own threads), so slow replicas on
//! the node's actor threads never stall accepting and parsing requests.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use tracing::Instrument;
use troupe_core::id::{NodeId, RequestId};

use crate::http::{ServeError, ServeRequest};
use crate::http_error::{request_id, request_id_of, ApiError};
use crate::http_thread::HttpThread;
use crate::records::ServeRecords;
use crate::runtime::ServeRuntime;

mod reach;

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where it listens (Ray Serve's default port is 8000).
    pub listen: String,
    /// HTTP worker threads.
    pub workers: usize,
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Longer requests get 408.
    pub request_timeout: Duration,
    /// One log line per request (target `troupe::access`).
    pub access_log: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:8000".into(),
            // As actix-web: one per core.
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            access_log: true,
        }
    }
}

pub use crate::records::{find_route, routes, Route};

struct ProxyState {
    runtime: Arc<ServeRuntime>,
    /// Set when the proxy starts stopping: `/-/healthz` answers 503.
    draining: Arc<AtomicBool>,
    timeout: Duration,
    access_log: bool,
    /// The `node_id` and `node_ip_address` labels of this proxy's
    /// ongoing-requests gauge.
    node: [String; 2],
}

impl ProxyState {
    /// The serve records of the current view revision (decoded once per
    /// revision for the whole node: `records`), whose route table the
    /// proxy matches.
    fn records(&self) -> Arc<ServeRecords> {
        crate::records::current(self.runtime.cluster())
    }

    /// A deployment this proxy routes and cannot reach, if any; free while
    /// no node is ejected (the common case).
    fn unreachable(&self) -> Option<reach::Unreachable> {
        let cluster = self.runtime.cluster();
        let health = cluster.health();
        if !health.any_ejected() {
            return None;
        }
        let ejected: Vec<NodeId> = health
            .snapshot()
            .into_iter()
            .filter(|n| n.ejected)
            .map(|n| n.node)
            .collect();
        let me = cluster.id();
        cluster.read_state(|s| {
            let records = crate::records::of(cluster, s);
            reach::unreachable(&records, s, me, |n| ejected.contains(&n))
        })
    }
}

/// A running proxy.
pub struct Proxy {
    http: HttpThread,
    draining: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts the proxy on its own threads.
    pub fn start(config: ProxyConfig, runtime: Arc<ServeRuntime>) -> io::Result<Proxy> {
        let draining = Arc::new(AtomicBool::new(false));
        let node = node_labels(&runtime, &config.listen);
        // The gauge exists (at its true value, 0) before the first request.
        crate::metrics::metrics()
            .ongoing_http
            .with_label_values(&[node[0].as_str(), node[1].as_str()])
            .set(0);
        let state = web::Data::new(ProxyState {
            node,
            runtime,
            draining: draining.clone(),
            timeout: config.request_timeout,
            access_log: config.access_log,
        });
        let body_limit = config.max_body_bytes;
        let http = HttpThread::start("HTTP proxy", &config.listen, config.workers, move |app| {
            app.app_data(state.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .service(
                    web::scope("")
                        .wrap(from_fn(request_id))
                        .route("/-/healthz", web::get().to(healthz))
                        .route("/-/routes", web::get().to(list_routes))
                        .default_service(web::to(proxy)),
                );
        })?;
        tracing::info!(addr = %http.addr(), "HTTP proxy listening");
        Ok(Proxy { http, draining })
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Starts draining: `/-/healthz` answers 503 `draining` so load
    /// balancers send no more; requests are still served.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Drains ([`Proxy::drain`]), stops accepting, lets requests in flight
    /// finish (graceful), and stops the proxy's threads.
    pub async fn stop(self) {
        self.drain();
        self.http.stop().await;
    }
}

/// As Ray Serve's proxy: 200 `success` while it serves, 503 `draining`
/// once it stops; and 503 `unreachable: ...` while every replica of a
/// deployment it routes is on nodes its data path has ejected
/// ([`reach`]), so a load balancer sends to a proxy that reaches them. A
/// designed answer of the health check, not an error: probes are not
/// logged.
async fn healthz(state: web::Data<ProxyState>) -> HttpResponse {
    let (mut response, body) = if state.draining.load(Ordering::Relaxed) {
        (HttpResponse::ServiceUnavailable(), "draining".to_owned())
    } else if let Some(cut_off) = state.unreachable() {
        (HttpResponse::ServiceUnavailable(), cut_off.reason())
    } else {
        (HttpResponse::Ok(), "success".to_owned())
    };
    response.content_type("text/plain").body(body)
}

async fn list_routes(state: web::Data<ProxyState>) -> HttpResponse {
    let routes: BTreeMap<String, String> = state
        .records()
        .routes
        .iter()
        .map(|r| (r.prefix.clone(), r.app.clone()))
        .collect();
    HttpResponse::Ok().json(routes)
}

async fn proxy(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<ProxyState>,
) -> Result<HttpResponse, ApiError> {
    let request_id = request_id_of(&request);
    let started = Instant::now();
    let _ongoing = Ongoing::start(&state.node);
    let records = state.records();
    let path = request.path().to_owned();
    let Some((route, inner_path)) = find_route(&records.routes, &path) else {
        let error = ApiError::text(&request, &ServeError::NoRoute(path));
        access_log(
            &state,
            &tracing::Span::none(),
            &request,
            error.status_code().as_u16(),
            started,
            request_id,
            ("", ""),
        );
        return Err(error);
    };
    let span = tracing::info_span!(
        "request",
        app = %route.app,
        deployment = %route.ingress,
        replica = tracing::field::Empty,
        request_id = %request_id,
    );
    let serve_request = ServeRequest {
        method: request.method().as_str().to_owned(),
        path: inner_path,
        query: request.query_string().to_owned(),
        headers: request
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
    };
    let router = state.runtime.router(&route.app, &route.ingress);
    let timeout = state.timeout;
    let send = async {
        if route.streaming {
            let (status, headers, body) = router.send_stream(serve_request, timeout).await?;
            Ok(response_head(status, &headers).streaming(body))
        } else {
            let r = router.send_http(serve_request, timeout).await?;
            Ok(response_head(r.status, &r.headers).body(r.body.into_vec()))
        }
    };
    // The router applies the request's deadline, once, to everything the
    // request waits for (a replica, each attempt, a stream's head).
    let answer: Result<HttpResponse, ServeError> = send.instrument(span.clone()).await;
    let answer = answer.map_err(|error| ApiError::text(&request, &error));
    let status = match &answer {
        Ok(response) => response.status(),
        Err(error) => error.status_code(),
    };
    access_log(
        &state,
        &span,
        &request,
        status.as_u16(),
        started,
        request_id,
        (&route.app, &route.prefix),
    );
    answer
}

/// A response's status line and headers (`x-request-id` is the
/// middleware's).
fn response_head(status: u16, headers: &[(String, String)]) -> actix_web::HttpResponseBuilder {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    for (name, value) in headers {
        builder.insert_header((name.as_str(), value.as_str()));
    }
    builder
}

/// The access-log line and the request metrics of one answered request.
/// The line is logged inside the request's span, which carries the
/// application, ingress deployment, replica and request id.
fn access_log(
    state: &ProxyState,
    span: &tracing::Span,
    request: &HttpRequest,
    status: u16,
    started: Instant,
    request_id: RequestId,
    (app, route): (&str, &str),
) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if state.access_log {
        span.in_scope(|| {
            tracing::info!(
                target: "troupe::access",
                method = %request.method(),
                path = %request.path(),
                status,
                ms,
                %request_id,
                app,
                "request"
            )
        });
    }
    let m = crate::metrics::metrics();
    let status_text = status.to_string();
    m.http_requests
        .with_label_values(&[route, request.method().as_str(), app, &status_text])
        .inc();
    m.http_latency_ms
        .with_label_values(&[request.method().as_str(), route, app, &status_text])
        .observe(ms);
    if status >= 400 {
        m.http_errors
            .with_label_values(&[route, &status_text, request.method().as_str(), app])
            .inc();
    }
}

/// This node's id and IP address, the labels Ray puts on its proxy's
/// ongoing-requests gauge: the IP of the node's RPC address in the
/// cluster's node table, else the proxy's listen address.
fn node_labels(runtime: &ServeRuntime, listen: &str) -> [String; 2] {
    let cluster = runtime.cluster();
    let id = cluster.id();
    let rpc = cluster.read_state(|s| s.nodes.get(&id).map(|n| n.addr.clone()));
    let ip = rpc
        .as_deref()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .or_else(|| listen.parse::<SocketAddr>().ok())
        .map_or_else(String::new, |a| a.ip().to_string());
    [id.to_string(), ip]
}

/// Counts a request the proxy is handling.
struct Ongoing(prometheus::IntGauge);

impl Ongoing {
    fn start(node: &[String; 2]) -> Self {
        let gauge = crate::metrics::metrics()
            .ongoing_http
            .with_label_values(&[node[0].as_str(), node[1].as_str()]);
        gauge.inc();
        Ongoing(gauge)
    }
}

impl Drop for Ongoing {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::AppSpec;

    fn spec(name: &str, prefix: Option<&str>) -> AppSpec {
        AppSpec {
            name: name.into(),
            route_prefix: prefix.map(Into::into),
            ingress: "in".into(),
            streaming: false,
            deployments: vec![],
            version: 1,
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_paths_are_cut_at_segment_boundaries() {
        let table = routes([
            spec("root", Some("/")),
            spec("api", Some("/api")),
            spec("hidden", None),
        ]);
        assert_eq!(table.len(), 2);
        let (r, p) = find_route(&table, "/api/v1").unwrap();
        assert_eq!((r.app.as_str(), p.as_str()), ("api", "/v1"));
        let (r, p) = find_route(&table, "/api").unwrap();
        assert_eq!((r.app.as_str(), p.as_str()), ("api", "/"));
        let (r, p) = find_route(&table, "/apix").unwrap();
        assert_eq!((r.app.as_str(), p.as_str()), ("root", "/apix"));
        let only_api = routes([spec("api", Some("/api"))]);
        assert!(find_route(&only_api, "/other").is_none());
    }
}
