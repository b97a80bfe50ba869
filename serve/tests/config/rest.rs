//! `PUT` / `DELETE /api/serve/applications/`: declarative deploys over the
//! admin API, on the node embedded in this test process.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use troupe_serve::spec::{AppState, APPS_PREFIX};
use troupe_serve::{config, declarative};

use crate::exclusive;
use crate::support::{app_status, request_to, serve, wait_until, Response, ADMIN_TOKEN};

fn admin(method: &str, path: &str, body: &Value, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("authorization: Bearer {t}"));
    let mut headers = vec!["content-type: application/json"];
    if let Some(a) = &auth {
        headers.push(a);
    }
    let body = match body {
        Value::Null => Vec::new(),
        b => serde_json::to_vec(b).unwrap(),
    };
    request_to(&serve().admin, method, path, &body, &headers)
}

fn put(config: &Value) -> Response {
    admin("PUT", "/api/serve/applications/", config, Some(ADMIN_TOKEN))
}

fn body(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

/// The applications in the control store (linearizable read).
fn stored_apps() -> BTreeSet<String> {
    let s = serve();
    let state = s.runtime.block_on(s.cluster.state()).unwrap();
    state
        .extra
        .keys()
        .filter_map(|k| k.strip_prefix(APPS_PREFIX.as_bytes()))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

fn deployed() -> Option<config::ServeConfig> {
    let s = serve();
    s.runtime
        .block_on(declarative::deployed_config(&s.cluster))
        .unwrap()
}

fn wait_running(app: &str, version: u64) {
    wait_until(
        &format!("{app} is RUNNING at version {version}"),
        Duration::from_secs(30),
        || app_status(app).is_some_and(|s| s.state == AppState::Running && s.version >= version),
    );
}

/// The replica actors of `app`'s `deployment`, as the controller reports.
fn replicas(app: &str, deployment: &str) -> BTreeSet<String> {
    app_status(app).unwrap().deployments[deployment]
        .replicas
        .iter()
        .map(|r| r.actor.to_string())
        .collect()
}

fn http(method: &str, path: &str, body: &str) -> Response {
    request_to(&serve().http, method, path, body.as_bytes(), &[])
}

fn delete_everything() {
    let r = admin(
        "DELETE",
        "/api/serve/applications/",
        &Value::Null,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(stored_apps().is_empty());
}

#[test]
fn put_applies_a_whole_config_touching_only_what_changed_and_delete_removes_it() {
    let _one = exclusive();
    let first = json!({
        "applications": [
            { "name": "greet", "route_prefix": "/greet", "app": "hello" },
            { "name": "math", "route_prefix": "/math", "app": "scaled" },
        ]
    });
    let r = put(&first);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = body(&r);
    assert_eq!(v["changed"], json!(["greet", "math"]));
    let versions = v["applications"].clone();
    wait_running("greet", versions["greet"].as_u64().unwrap());
    wait_running("math", versions["math"].as_u64().unwrap());
    assert_eq!(http("GET", "/greet/x", "").body, "hello /x");
    // The builder's deployments call each other under the config's name.
    let sum = body(&http("POST", "/math", "2"));
    assert_eq!(sum["sum"], 10);
    let greet_replicas = replicas("greet", "hello");
    let triple_replicas = replicas("math", "triple");
    let double_replicas = replicas("math", "double");

    // New args for `double` only, and a new application.
    let second = json!({
        "applications": [
            { "name": "greet", "route_prefix": "/greet", "app": "hello" },
            { "name": "math", "route_prefix": "/math", "app": "scaled", "args": { "double": 4, "triple": 3 } },
            { "name": "shout", "route_prefix": "/shout", "app": "chain" },
        ]
    });
    let r = put(&second);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = body(&r);
    assert_eq!(v["changed"], json!(["math", "shout"]));
    assert_eq!(v["deleted"], json!([]));
    assert_eq!(v["applications"]["greet"], versions["greet"]);
    wait_running("math", v["applications"]["math"].as_u64().unwrap());
    wait_running("shout", v["applications"]["shout"].as_u64().unwrap());
    assert_eq!(body(&http("POST", "/math", "2"))["sum"], 14);
    assert_eq!(http("POST", "/shout", "hey").body, "HEY!");
    assert_eq!(
        replicas("greet", "hello"),
        greet_replicas,
        "greet was touched"
    );
    assert_eq!(
        replicas("math", "triple"),
        triple_replicas,
        "triple was touched"
    );
    wait_until(
        "double's replicas are replaced",
        Duration::from_secs(30),
        || replicas("math", "double").is_disjoint(&double_replicas),
    );
    // The config as deployed is what GET and `serve config` show.
    assert_eq!(deployed().unwrap(), config::parse_value(&second).unwrap());
    let listed = body(&admin(
        "GET",
        "/api/serve/applications/",
        &Value::Null,
        Some(ADMIN_TOKEN),
    ));
    assert_eq!(
        listed["applications"]["math"]["deployed_app_config"]["args"]["double"],
        4
    );
    assert_eq!(listed["proxy_location"], "EveryNode");

    // Leaving applications out deletes them.
    let r = put(
        &json!({ "applications": [ { "name": "greet", "route_prefix": "/greet", "app": "hello" } ] }),
    );
    assert_eq!(body(&r)["deleted"], json!(["math", "shout"]));
    assert_eq!(stored_apps(), BTreeSet::from(["greet".to_string()]));
    wait_until(
        "/math is gone from the proxy",
        Duration::from_secs(10),
        || http("POST", "/math", "2").status == 404,
    );
    assert_eq!(replicas("greet", "hello"), greet_replicas);

    delete_everything();
    assert_eq!(deployed(), None);
    wait_until(
        "/greet is gone from the proxy",
        Duration::from_secs(10),
        || http("GET", "/greet/x", "").status == 404,
    );
}

#[test]
fn concurrent_puts_do_not_interleave_the_last_wins_whole() {
    let _one = exclusive();
    let a = json!({ "applications": [
        { "name": "a1", "route_prefix": "/a1", "app": "hello" },
        { "name": "a2", "route_prefix": "/a2", "app": "hello" },
    ] });
    let b = json!({ "applications": [
        { "name": "b1", "route_prefix": "/b1", "app": "hello" },
    ] });
    let expected_a = BTreeSet::from(["a1".to_string(), "a2".to_string()]);
    let expected_b = BTreeSet::from(["b1".to_string()]);
    for round in 0..3 {
        std::thread::scope(|s| {
            for i in 0..8 {
                let config = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    let r = put(config);
                    assert_eq!(r.status, 200, "{}", r.body);
                });
            }
        });
        let apps = stored_apps();
        let config = deployed().unwrap();
        let names: BTreeSet<String> = config.applications.iter().map(|a| a.name.clone()).collect();
        assert!(
            apps == expected_a || apps == expected_b,
            "round {round}: a half-applied state: {apps:?}"
        );
        assert_eq!(
            apps, names,
            "round {round}: the stored config is another PUT's"
        );
    }
    delete_everything();
}

#[test]
fn without_the_token_writes_are_refused_and_change_nothing() {
    let _one = exclusive();
    let config =
        json!({ "applications": [ { "name": "kept", "route_prefix": "/kept", "app": "hello" } ] });
    assert_eq!(put(&config).status, 200);
    let before = (stored_apps(), deployed());
    let other = json!({ "applications": [] });
    for token in [None, Some("wrong")] {
        let r = admin("PUT", "/api/serve/applications/", &other, token);
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(body(&r)["error"]["code"], "unauthorized");
        let r = admin("DELETE", "/api/serve/applications/", &Value::Null, token);
        assert_eq!(r.status, 401, "{}", r.body);
        let r = admin("GET", "/api/serve/applications/", &Value::Null, token);
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert_eq!((stored_apps(), deployed()), before);
    delete_everything();
}

#[test]
fn an_invalid_config_is_a_400_with_every_problem_and_changes_nothing() {
    let _one = exclusive();
    let config =
        json!({ "applications": [ { "name": "kept", "route_prefix": "/kept", "app": "hello" } ] });
    assert_eq!(put(&config).status, 200);
    let before = (stored_apps(), deployed());

    let r = request_to(
        &serve().admin,
        "PUT",
        "/api/serve/applications/",
        b"applications: [",
        &[&format!("authorization: Bearer {ADMIN_TOKEN}")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(body(&r)["error"]["code"], "bad_json");

    let bad = json!({ "applications": [
        { "name": "x", "app": "hello", "deployments": [ { "name": "hello", "num_replicas": -2 } ] },
        { "name": "y", "app": "nope", "route_prefix": "/y" },
    ] });
    let r = put(&bad);
    assert_eq!(r.status, 400, "{}", r.body);
    let e = &body(&r)["error"];
    assert_eq!(e["code"], "invalid_config");
    assert_eq!(e["path"], "applications[0].deployments[0].num_replicas");
    // The schema's problem and the unknown builder, in one answer.
    assert_eq!(
        e["issues"],
        json!([
            { "path": "applications[0].deployments[0].num_replicas", "message": "must be >= 0, got -2" },
            { "path": "applications[1].app", "message": "no application builder named \"nope\" in this binary; it has: chain, hello, scaled" },
        ])
    );
    // A config that parses but does not build (an unknown builder).
    let r = put(&json!({ "applications": [ { "name": "y", "app": "nope" } ] }));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(body(&r)["error"]["path"], "applications[0].app");

    assert_eq!((stored_apps(), deployed()), before);
    delete_everything();
}
