//! Each composition pattern over HTTP, and replicas replaced under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe_serve::{Application, Bind};

use crate::apps::{Chain, ChainArgs, Ensemble, EnsembleArgs, Hello, Scale, Upper};
use crate::support::{app_status, deploy, get, post, request_to, serve, start_proxy, wait_until};

#[test]
fn hello_over_http_with_health_and_routes() {
    deploy(
        Application::new("hello")
            .route_prefix(Some("/hello"))
            .ingress(Bind::<Hello>::new("hello", ())),
    );
    let r = get("/hello/world");
    assert_eq!((r.status, r.body.as_str()), (200, "hello /world"));
    assert!(r.header("x-request-id").is_some());
    let r = post("/hello/double", r#"{"n": 21}"#);
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"n":42}"#));
    assert_eq!(get("/-/healthz").body, "success");
    let routes = get("/-/routes");
    assert!(
        routes.body.contains(r#""/hello":"hello""#),
        "{}",
        routes.body
    );
}

#[test]
fn a_draining_proxy_fails_its_health_check_then_refuses_connections() {
    deploy(
        Application::new("drained")
            .route_prefix(Some("/drained"))
            .ingress(Bind::<Hello>::new("drained", ())),
    );
    let proxy = start_proxy(Duration::from_secs(5));
    let addr = proxy.addr().to_string();
    let healthz = request_to(&addr, "GET", "/-/healthz", b"", &[]);
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "success"));
    assert!(healthz.header("x-request-id").is_some());
    proxy.drain();
    let healthz = request_to(&addr, "GET", "/-/healthz", b"", &[]);
    assert_eq!((healthz.status, healthz.body.as_str()), (503, "draining"));
    // Draining, it still serves requests.
    let r = request_to(&addr, "GET", "/drained/x", b"", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "hello /x"));
    serve().runtime.block_on(proxy.stop());
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

#[test]
fn chaining_through_a_handle() {
    let mut app = Application::new("chain").route_prefix(Some("/chain"));
    let upper = app.add(Bind::<Upper>::new("upper", ()).num_replicas(2));
    deploy(app.ingress(Bind::<Chain>::new("chain", ChainArgs { upper })));
    let r = post("/chain", "quiet please");
    assert_eq!((r.status, r.body.as_str()), (200, "QUIET PLEASE!"));
}

#[test]
fn ensemble_and_dynamic_selection() {
    let mut app = Application::new("ensemble").route_prefix(Some("/ensemble"));
    let double = app.add(Bind::<Scale>::new("double", 2));
    let triple = app.add(Bind::<Scale>::new("triple", 3));
    deploy(app.ingress(Bind::<Ensemble>::new(
        "ensemble",
        EnsembleArgs { double, triple },
    )));
    let r = post("/ensemble", "7");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, r#"{"double":14,"sum":35,"triple":21}"#);
    assert_eq!(post("/ensemble/select?model=triple", "5").body, "15");
    assert_eq!(post("/ensemble/select?model=double", "5").body, "10");
    assert_eq!(post("/ensemble/select?model=nope", "5").status, 400);
}

#[test]
fn killed_replicas_are_replaced_and_requests_go_on() {
    deploy(
        Application::new("steady")
            .route_prefix(Some("/steady"))
            .ingress(Bind::<Hello>::new("front", ()).num_replicas(2)),
    );
    let s = serve();
    let before = app_status("steady").unwrap().deployments["front"]
        .replicas
        .clone();
    let victim = before[0].actor;
    // The load runs until it has made REQUESTS_AFTER_KILL requests after the
    // kill (bounded, in case the test fails before it is stopped).
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = std::thread::spawn({
        let (done, stop) = (done.clone(), stop.clone());
        move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) && statuses.len() < 10_000 {
                statuses.push(get("/steady/x").status);
                done.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        }
    });
    wait_until("the load is flowing", Duration::from_secs(20), || {
        done.load(Ordering::SeqCst) >= 20
    });
    s.runtime.block_on(s.cluster.kill(victim)).unwrap();
    let at_kill = done.load(Ordering::SeqCst);
    const REQUESTS_AFTER_KILL: usize = 200;
    wait_until(
        "requests complete after the kill",
        Duration::from_secs(20),
        || done.load(Ordering::SeqCst) >= at_kill + REQUESTS_AFTER_KILL,
    );
    stop.store(true, Ordering::SeqCst);
    let statuses = load.join().unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    wait_until(
        "the killed replica is replaced",
        Duration::from_secs(20),
        || {
            app_status("steady").is_some_and(|st| {
                let replicas = &st.deployments["front"].replicas;
                st.state == troupe_serve::AppState::Running
                    && replicas.len() == 2
                    && replicas.iter().all(|r| r.actor != victim)
            })
        },
    );
}

/// Requests the replicas of the `shrink` application have started (those
/// running now plus those done), from the admin API's `/metrics`.
fn shrink_requests_started() -> f64 {
    let page = request_to(&serve().admin, "GET", "/metrics", b"", &[]).body;
    let sum = |metric: &str| -> f64 {
        page.lines()
            .filter_map(|l| l.strip_prefix(metric)?.strip_prefix('{'))
            .filter(|l| l.contains(r#"application="shrink""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    sum("ray_serve_replica_processing_queries")
        + sum("ray_serve_deployment_processing_latency_ms_count")
}

#[test]
fn scaling_down_drains_replicas_without_failing_requests() {
    let app = |n| {
        Application::new("shrink")
            .route_prefix(Some("/shrink"))
            .ingress(Bind::<Hello>::new("front", ()).num_replicas(n))
    };
    deploy(app(3));
    // Slow requests in flight on every replica while two are stopped.
    let slow: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(|| get("/shrink/slow").status))
        .collect();
    wait_until(
        "the six slow requests reached replicas",
        Duration::from_secs(20),
        || shrink_requests_started() >= 6.0,
    );
    let s = serve();
    s.runtime
        .block_on(troupe_serve::deploy(&s.cluster, app(1)))
        .unwrap();
    let fast: Vec<u16> = (0..50).map(|_| get("/shrink/x").status).collect();
    let slow: Vec<u16> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        slow.iter().chain(&fast).all(|s| *s == 200),
        "{slow:?} {fast:?}"
    );
    wait_until("one replica left", Duration::from_secs(30), || {
        app_status("shrink").is_some_and(|st| {
            st.state == troupe_serve::AppState::Running
                && st.deployments["front"].replicas.len() == 1
        })
    });
}

#[test]
fn a_streaming_ingress_sends_its_body_in_chunks() {
    use crate::apps::Ticker;
    use crate::support::dechunk;
    deploy(
        Application::new("ticker")
            .route_prefix(Some("/ticker"))
            .streaming_ingress(Bind::<Ticker>::new("ticker", 5)),
    );
    let r = get("/ticker");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(dechunk(&r.body), "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n");
    let refused = get("/ticker/refuse");
    assert_eq!(refused.status, 400, "{}", refused.body);
}
