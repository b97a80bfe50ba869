//! One node for the whole test binary (serve's runtime is per process),
//! on a runtime of its own, with the proxy on a free port; a small
//! blocking HTTP/1.1 client; polling with a deadline.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use troupe_core::rpc::ClusterToken;
use troupe_serve::{AppState, AppStatus, Application, ProxyConfig, ServeRoles};
use troupe_worker::{Cluster, Node, NodeConfig, Role};

pub use crate::http::{request_to, Response};

/// The admin API's bearer token in these tests.
pub const ADMIN_TOKEN: &str = "admin-secret";
/// The admin token being rotated in (`also_accept`).
pub const ROTATED_ADMIN_TOKEN: &str = "admin-secret-2";

pub struct TestServe {
    pub runtime: tokio::runtime::Runtime,
    pub cluster: Cluster,
    pub http: String,
    pub admin: String,
    _node: Node,
    _roles: ServeRoles,
    _dir: tempfile::TempDir,
}

/// Body limit of the test proxy.
pub const MAX_BODY: usize = 64 * 1024;

pub fn serve() -> &'static TestServe {
    static SERVE: OnceLock<TestServe> = OnceLock::new();
    SERVE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (node, roles) = runtime.block_on(async {
            let mut config = NodeConfig::new(
                Role::Head,
                ClusterToken::new("serve-test").unwrap(),
                dir.path(),
            );
            config.actor_threads = 2;
            let node = Node::start(config, crate::apps::catalog().registry())
                .await
                .unwrap();
            let proxy = ProxyConfig {
                listen: "127.0.0.1:0".into(),
                max_body_bytes: MAX_BODY,
                request_timeout: Duration::from_secs(5),
                ..ProxyConfig::default()
            };
            let admin = troupe_serve::AdminConfig {
                listen: "127.0.0.1:0".into(),
                token: Some(ADMIN_TOKEN.into()),
                also_accept: vec![ROTATED_ADMIN_TOKEN.into()],
                catalog: crate::apps::catalog(),
            };
            let roles = troupe_serve::start(&node, Some(proxy), Some(admin)).unwrap();
            (node, roles)
        });
        TestServe {
            cluster: node.cluster(),
            http: roles.proxy_addr().unwrap().to_string(),
            admin: roles.admin_addr().unwrap().to_string(),
            runtime,
            _node: node,
            _roles: roles,
            _dir: dir,
        }
    })
}

/// Deploys `app` and waits until its status is RUNNING.
pub fn deploy(app: Application) {
    let s = serve();
    let name = app.name().to_owned();
    s.runtime
        .block_on(troupe_serve::deploy(&s.cluster, app))
        .unwrap();
    wait_until(
        &format!("{name} is RUNNING"),
        Duration::from_secs(20),
        || app_status(&name).is_some_and(|s| s.state == AppState::Running),
    );
}

/// The status of `app`, as the controller last wrote it.
pub fn app_status(app: &str) -> Option<AppStatus> {
    let key = format!("{}{app}", troupe_serve::spec::STATUS_PREFIX).into_bytes();
    serve().cluster.read_state(|s| {
        s.extra
            .get(&key)
            .and_then(|v| troupe_worker::schema::decode::<AppStatus>(v).ok())
    })
}

pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(method: &str, path: &str, body: &[u8]) -> Response {
    request_to(&serve().http, method, path, body, &[])
}

pub fn get(path: &str) -> Response {
    request("GET", path, b"")
}

pub fn post(path: &str, body: &str) -> Response {
    request("POST", path, body.as_bytes())
}

/// The body of a `transfer-encoding: chunked` response, de-chunked.
pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// A second proxy of the test node with its own request timeout, on a
/// free port (the shared one keeps its settings).
pub fn start_proxy(request_timeout: Duration) -> troupe_serve::Proxy {
    let s = serve();
    let _inside = s.runtime.enter();
    let config = ProxyConfig {
        listen: "127.0.0.1:0".into(),
        max_body_bytes: MAX_BODY,
        request_timeout,
        access_log: false,
        ..ProxyConfig::default()
    };
    troupe_serve::Proxy::start(config, troupe_serve::runtime::current().unwrap()).unwrap()
}
