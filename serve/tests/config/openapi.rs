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
    // With an application deployed, so the lists are not empty.
    let config = json!({ "applications": [
        { "name": "doc", "route_prefix": "/doc", "app": "scaled" },
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
    let r = call(
        "DELETE",
        "/api/serve/applications/",
        &Value::Null,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(r.status, 200);
    conforms(&doc, "DELETE", "/api/serve/applications/", &r);
    // What is not documented is not served.
    let r = call(
        "GET",
        "/api/serve/deployments/",
        &Value::Null,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(r.status, 404);
    let mut problems = Vec::new();
    check(
        &doc,
        &json!({ "$ref": "#/components/schemas/Error" }),
        &serde_json::from_str(&r.body).unwrap(),
        "",
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
}
