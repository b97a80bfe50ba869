//! Each composition pattern over HTTP, and replicas replaced under load.

use std::time::Duration;

use troupe_serve::{Application, Bind};

use crate::apps::{Chain, ChainArgs, Ensemble, EnsembleArgs, Hello, Scale, Upper};
use crate::support::{app_status, deploy, get, post, serve, wait_until};

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
    let load = std::thread::spawn(|| {
        let mut statuses = Vec::new();
        for _ in 0..200 {
            statuses.push(get("/steady/x").status);
        }
        statuses
    });
    std::thread::sleep(Duration::from_millis(50));
    s.runtime.block_on(s.cluster.kill(victim)).unwrap();
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
    std::thread::sleep(Duration::from_millis(100));
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
