//! Overload, bad requests and application errors.

use std::time::Duration;

use troupe_serve::{AppState, Application, Bind};

use crate::apps::{Hello, Scale};
use crate::support::{
    app_status, deploy, get, post, request, request_to, serve, start_proxy, wait_until, MAX_BODY,
};

#[test]
fn overload_is_refused_at_once_and_nothing_hangs() {
    deploy(
        Application::new("busy")
            .route_prefix(Some("/busy"))
            .ingress(
                Bind::<Hello>::new("busy", ())
                    .max_ongoing_requests(1)
                    .max_queued_requests(2),
            ),
    );
    // 1 running + 2 queued; the others are refused with 503. A request
    // that hung would end as 408 at the proxy's timeout instead.
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| get("/busy/slow").status))
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for client in clients {
        match client.join().unwrap() {
            200 => ok += 1,
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok + refused, 8, "every request got an answer");
    assert!(ok >= 3, "the running and the queued ones are served: {ok}");
    assert!(refused >= 1, "beyond the queue, requests are refused");
}

#[test]
fn bad_requests_get_clear_statuses_and_no_internals() {
    deploy(
        Application::new("strict")
            .route_prefix(Some("/strict"))
            .ingress(Bind::<Hello>::new("strict", ())),
    );
    let unknown = get("/nowhere");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(unknown.body.contains("/-/routes"));

    let big = vec![b'x'; MAX_BODY + 1];
    let too_big = request("POST", "/strict/double", &big);
    assert_eq!(too_big.status, 413);
    assert!(too_big.header("x-request-id").is_some(), "{too_big:?}");

    let malformed = post("/strict/double", "{not json");
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.body.contains("expected JSON"),
        "{}",
        malformed.body
    );

    let failed = get("/strict/fail");
    assert_eq!(failed.status, 500);
    assert!(!failed.body.contains("hunter2"), "{}", failed.body);
    let id = failed.header("x-request-id").unwrap();
    assert!(failed.body.contains(id), "{}", failed.body);
}

#[test]
fn a_request_longer_than_the_timeout_gets_408_once() {
    deploy(
        Application::new("late")
            .route_prefix(Some("/late"))
            .ingress(Bind::<Hello>::new("late", ())),
    );
    // `/slow` takes 1 s; this proxy waits 300 ms.
    let proxy = start_proxy(Duration::from_millis(300));
    let addr = proxy.addr().to_string();
    let late = request_to(&addr, "GET", "/late/slow", b"", &[]);
    assert_eq!(late.status, 408, "{}", late.body);
    assert!(
        late.body.starts_with("the request took longer than 0.3 s"),
        "{}",
        late.body
    );
    let id = late.header("x-request-id").unwrap();
    assert!(late.body.contains(id), "{}", late.body);
    serve().runtime.block_on(proxy.stop());
}

#[test]
fn a_constructor_that_keeps_failing_marks_the_app_deploy_failed() {
    let s = serve();
    let app = Application::new("broken")
        .route_prefix(Some("/broken"))
        .ingress(Bind::<Scale>::new("zero", 0));
    s.runtime
        .block_on(troupe_serve::deploy(&s.cluster, app))
        .unwrap();
    wait_until("broken is DEPLOY_FAILED", Duration::from_secs(20), || {
        app_status("broken").is_some_and(|st| st.state == AppState::DeployFailed)
    });
    let status = app_status("broken").unwrap();
    assert!(
        status.message.contains("factor 0 is refused"),
        "{}",
        status.message
    );
    // Requests get 503, quickly enough, not a hang.
    let r = get("/broken/x");
    assert_eq!(r.status, 503, "{}", r.body);
}

#[test]
fn a_client_that_disconnects_cancels_the_work() {
    use std::io::Write;
    deploy(
        Application::new("patient")
            .route_prefix(Some("/patient"))
            .ingress(Bind::<Hello>::new("patient", ())),
    );
    use std::sync::atomic::Ordering::SeqCst;
    let (started, before) = (
        crate::apps::STARTED.load(SeqCst),
        crate::apps::CANCELLED.load(SeqCst),
    );
    let mut stream = std::net::TcpStream::connect(&serve().http).unwrap();
    stream
        .write_all(b"GET /patient/wait HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    // The request is in the handler (20 s) when the client goes away.
    wait_until(
        "the request reached the replica",
        Duration::from_secs(10),
        || crate::apps::STARTED.load(SeqCst) > started,
    );
    drop(stream);
    wait_until("the handler was dropped", Duration::from_secs(10), || {
        crate::apps::CANCELLED.load(SeqCst) > before
    });
}
