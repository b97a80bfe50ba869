//! `/api/openapi.json` against the running server: every route the server
//! registers is documented and every documented operation exists; each
//! answer's status is documented and its body validates against the
//! documented schema (a small JSON Schema checker for the keywords the
//! document uses: type, properties, required, additionalProperties, items,
//! enum, nullable, minimum/maximum, min/maxItems, $ref, allOf).

use std::collections::BTreeSet;

use serde_json::{json, Value};
use troupe_serve::admin::ROUTES;

use crate::exclusive;
use crate::support::{request_to, serve, Response, ADMIN_TOKEN};

fn document() -> Value {
    let r = request_to(&serve().admin, "GET", "/api/openapi.json", b"", &[]);
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.body).expect("the document is JSON")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local references only");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Every way `value` breaks `schema`, with JSON pointers.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, value, at, problems);
        }
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => panic!("the checker does not know type {other}"),
        };
        if !ok {
            problems.push(format!("{at}: expected {ty}, got {value}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n < min {
            problems.push(format!("{at}: {n} < minimum {min}"));
        }
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n > max {
            problems.push(format!("{at}: {n} > maximum {max}"));
        }
    }
    if let Value::Object(map) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(required.as_str().unwrap()) {
                problems.push(format!("{at}: missing required {required}"));
            }
        }
        for (key, item) in map {
            let path = format!("{at}/{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(s) => check(doc, s, item, &path, problems),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => problems.push(format!("{path}: not in the schema")),
                    Some(s @ Value::Object(_)) => check(doc, s, item, &path, problems),
                    _ => {}
                },
            }
        }
    }
    if let Value::Array(items) = value {
        let len = items.len() as u64;
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            problems.push(format!("{at}: {len} items is out of bounds"));
        }
        if let Some(s) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(doc, s, item, &format!("{at}/{i}"), problems);
            }
        }
    }
}

/// Checks `response`'s body is the API's one error shape.
fn is_an_error(doc: &Value, response: &Response) {
    let mut problems = Vec::new();
    let body = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.body));
    check(
        doc,
        &json!({ "$ref": "#/components/schemas/Error" }),
        &body,
        "",
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
}

/// Checks `response` against the operation's documented responses.
fn conforms(doc: &Value, method: &str, path: &str, response: &Response) {
    let operation = &doc["paths"][path][method.to_lowercase()];
    let documented = &operation["responses"][response.status.to_string()];
    assert!(
        !documented.is_null(),
        "{method} {path} answered {} which the document does not list: {}",
        response.status,
        response.body
    );
    let documented = resolve(doc, documented);
    let content = documented["content"]
        .as_object()
        .expect("every response has content");
    let (media, media_doc) = content.iter().next().unwrap();
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with(media.as_str()),
        "{method} {path}: content-type {content_type:?}, documented {media}"
    );
    if media == "application/json" {
        let value: Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", response.body));
        let mut problems = Vec::new();
        check(doc, &media_doc["schema"], &value, "", &mut problems);
        assert!(
            problems.is_empty(),
            "{method} {path} {}: the body breaks the documented schema:\n{}\nbody: {value}",
            response.status,
            problems.join("\n")
        );
    }
}

/// `DELETE /api/serve/applications/` with the token; must answer 200.
fn delete_all() -> Response {
    let r = call(
        "DELETE",
        "/api/serve/applications/",
        &Value::Null,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

fn call(method: &str, path: &str, body: &Value, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let body = match body {
        Value::Null => Vec::new(),
        b => serde_json::to_vec(b).unwrap(),
    };
    request_to(&serve().admin, method, path, &body, &headers)
}

#[test]
fn the_documented_operations_are_exactly_the_served_ones() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn every_answer_matches_the_document() {
    let _one = exclusive();
    let doc = document();
    // With an application deployed, so the lists are not empty, and one
    // of its deployments autoscaled.
    let config = json!({ "applications": [
        { "name": "doc", "route_prefix": "/doc", "app": "scaled", "deployments": [
            { "name": "double", "autoscaling_config": { "min_replicas": 1, "max_replicas": 2 } },
        ] },
    ] });
    let r = call(
        "PUT",
        "/api/serve/applications/",
        &config,
        Some(ADMIN_TOKEN),
    );
    conforms(&doc, "PUT", "/api/serve/applications/", &r);
    assert_eq!(r.status, 200);
    crate::support::wait_until("doc is RUNNING", std::time::Duration::from_secs(30), || {
        crate::support::app_status("doc")
            .is_some_and(|s| s.state == troupe_serve::AppState::Running)
    });
    for &(method, path) in ROUTES {
        if method != "GET" {
            continue;
        }
        let r = call(method, path, &Value::Null, Some(ADMIN_TOKEN));
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        conforms(&doc, method, path, &r);
        if path == "/api/serve/applications/" {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            let scaling =
                &body["applications"]["doc"]["deployments"]["double"]["autoscaling_detail"];
            assert_eq!(scaling["min_replicas"], 1, "{body}");
            assert_eq!(scaling["max_replicas"], 2, "{body}");
            assert_eq!(scaling["target_replicas"], 1, "{body}");
            assert_eq!(scaling["scaling_status"], "STABLE", "{body}");
        }
        let needs_token = doc["paths"][path][method.to_lowercase()]
            .get("security")
            .is_none_or(|s| s.as_array().is_some_and(|a| !a.is_empty()));
        let anonymous = call(method, path, &Value::Null, None);
        assert_eq!(
            anonymous.status,
            if needs_token { 401 } else { 200 },
            "{method} {path}"
        );
        conforms(&doc, method, path, &anonymous);
    }
    let bad = json!({ "applications": [ { "name": "doc", "app": "scaled", "num_replicas": 1 } ] });
    let r = call("PUT", "/api/serve/applications/", &bad, Some(ADMIN_TOKEN));
    assert_eq!(r.status, 400);
    conforms(&doc, "PUT", "/api/serve/applications/", &r);
    let r = call("PUT", "/api/serve/applications/", &Value::Null, None);
    conforms(&doc, "PUT", "/api/serve/applications/", &r);
    let r = delete_all();
    conforms(&doc, "DELETE", "/api/serve/applications/", &r);
    // A documented path with another method: 405, saying which.
    let r = call("POST", "/api/version", &Value::Null, Some(ADMIN_TOKEN));
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = call(
        "PATCH",
        "/api/serve/applications/",
        &Value::Null,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.header("allow"), Some("GET, PUT, DELETE"));
    is_an_error(&doc, &r);
    // The document names this binary's application builders.
    assert_eq!(
        doc["components"]["schemas"]["AppConfig"]["properties"]["app"]["enum"],
        json!(["chain", "hello", "scaled"])
    );
    // What is not documented is not served.
    let r = call(
        "GET",
        "/api/serve/deployments/",
        &Value::Null,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(r.status, 404);
    is_an_error(&doc, &r);
}

/// The venv with schemathesis (pinned, from PyPI), made once per target
/// dir; concurrent test binaries take turns through a lock file.
fn schemathesis() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-4.32.5");
    let st = dir.join("bin/st");
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if !st.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let made = std::process::Command::new(&python)
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("{python} is needed to run schemathesis: {e}"));
        assert!(made.success(), "python3 -m venv failed");
        let installed = std::process::Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "schemathesis==4.32.5"])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install schemathesis failed");
    }
    st
}

/// Schemathesis generates requests from the document (valid ones and
/// broken ones, with and without the token) and checks every answer
/// against it: statuses, content types, bodies, 405 for undeclared
/// methods, 4xx for schema-violating bodies. One check is off: that every
/// schema-valid config is accepted, which cannot hold (a builder's `args`,
/// unique names and prefixes are checked on PUT and answered 400).
#[test]
fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    let st = schemathesis();
    let _one = exclusive();
    let admin = &serve().admin;
    // Its cache (`.schemathesis/`) goes under the target dir, not the
    // source tree.
    let work = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-run");
    std::fs::create_dir_all(&work).unwrap();
    let out = std::process::Command::new(st)
        .current_dir(&work)
        .arg("run")
        .arg(format!("http://{admin}/api/openapi.json"))
        .args(["--url", &format!("http://{admin}")])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--max-examples", "40", "--seed", "7"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--request-timeout", "30"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It may have deployed generated configs: leave nothing behind.
    delete_all();
}
