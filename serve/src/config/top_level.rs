//! The top of a config file: `proxy_location`, `http_options` (and the
//! warnings for those a running cluster's proxies do not apply),
//! `logging_config` with Ray's
//! log level names, and the walk over `applications` (unique names and
//! route prefixes).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use troupe_core::config::{suggest, ConfigIssue, Validator};

use super::application::read_app;
use super::fields::{
    integer, object, one_of, seconds, spelling, string, value_kind, without_nulls,
};
use super::layout::{AppLayout, Layout};
use super::{foreign, AppConfig, HttpOptions, ProxyLocation, ServeConfig};

const TOP_FIELDS: &[&str] = &[
    "proxy_location",
    "http_options",
    "logging_config",
    "applications",
];
const HTTP_FIELDS: &[&str] = &["host", "port", "request_timeout_s", "max_body_bytes"];
const LOGGING_FIELDS: &[&str] = &["log_level", "encoding", "enable_access_log"];
const LOG_LEVELS: &[&str] = &["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
/// Ray's log level names (Python's) and numbers, and Troupe's level for
/// each: Python has no TRACE (Troupe's own), nor Troupe CRITICAL.
const RAY_LOG_LEVELS: &[(&str, i64, &str)] = &[
    ("CRITICAL", 50, "ERROR"),
    ("FATAL", 50, "ERROR"),
    ("ERROR", 40, "ERROR"),
    ("WARNING", 30, "WARN"),
    ("WARN", 30, "WARN"),
    ("INFO", 20, "INFO"),
    ("DEBUG", 10, "DEBUG"),
    ("NOTSET", 0, "TRACE"),
    ("TRACE", -1, "TRACE"),
];

/// `log_level`: Troupe's names, or Ray's (Python's names, or their
/// numbers 0, 10, .. 50), as Troupe's level.
fn log_level(v: &mut Validator, map: &Map<String, Value>, default: &str) -> String {
    let Some(given) = map.get("log_level") else {
        return default.to_owned();
    };
    let found = match given {
        Value::String(s) => RAY_LOG_LEVELS
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(s)),
        Value::Number(_) => foreign::integral(given).and_then(|n| {
            RAY_LOG_LEVELS
                .iter()
                .find(|(_, num, _)| *num == n && n >= 0)
        }),
        _ => None,
    };
    if let Some((_, _, level)) = found {
        return (*level).to_owned();
    }
    let hint = given
        .as_str()
        .and_then(|s| suggest(s, LOG_LEVELS))
        .map_or(String::new(), |c| format!("; did you mean {c:?}?"));
    v.field("log_level", |v| {
        v.error(format!(
            "must be one of {} (or Ray's CRITICAL, FATAL, WARNING, NOTSET, or a Python level number 0, 10, 20, 30, 40, 50), got {given}{hint}",
            LOG_LEVELS.join(", ")
        ))
    });
    default.to_owned()
}
const ENCODINGS: &[&str] = &["TEXT", "JSON"];

/// The options of `given` that differ from the defaults, each as a
/// warning at its path under `http_options`: a running cluster's proxies
/// keep what they were started with. Pure.
pub(super) fn unapplied_http_options(given: &HttpOptions) -> Vec<ConfigIssue> {
    let default = HttpOptions::default();
    let listen = "each node's HTTP proxy listens where `troupe start --http-listen HOST:PORT` put it when the node started; to move it, restart that node with another --http-listen";
    let only_serve_run = "a running cluster's proxies keep the default; only `troupe serve run CONFIG` (one embedded node) applies another value";
    let mut out = Vec::new();
    let mut note = |field: &str, message: String| {
        out.push(ConfigIssue {
            path: format!("http_options.{field}"),
            message,
        })
    };
    if given.host != default.host {
        note(
            "host",
            format!("{:?} is not applied to a running cluster (accepted and ignored, as Ray Serve does): {listen}", given.host),
        );
    }
    if given.port != default.port {
        note(
            "port",
            format!("{} is not applied to a running cluster (accepted and ignored, as Ray Serve does): {listen}", given.port),
        );
    }
    if given.request_timeout_s != default.request_timeout_s {
        note(
            "request_timeout_s",
            format!(
                "{} is not applied: {only_serve_run}",
                given.request_timeout_s
            ),
        );
    }
    if given.max_body_bytes != default.max_body_bytes {
        note(
            "max_body_bytes",
            format!("{} is not applied: {only_serve_run}", given.max_body_bytes),
        );
    }
    out
}

/// The config at `value` as far as it is valid, and where its parts are.
pub(super) fn read_config(v: &mut Validator, value: &Value) -> (ServeConfig, Layout) {
    let mut config = ServeConfig::default();
    let mut layout = Layout::default();
    if value.is_null() {
        v.error("the config is empty; it needs at least `applications: []`");
        return (config, layout);
    }
    let known = foreign::with_names(TOP_FIELDS, foreign::TOP);
    let Some(top) = object(v, value, &[&known[..], &["grpc_options"]].concat()) else {
        return (config, layout);
    };
    foreign::check_all(v, &top, foreign::TOP);
    if let Some(grpc) = top.get("grpc_options") {
        v.field("grpc_options", |v| foreign::check_grpc_options(v, grpc));
    }
    if let Some(name) = string(v, &top, "proxy_location") {
        match ProxyLocation::parse(&name) {
            Some(p) => config.proxy_location = p,
            None => {
                let hint = suggest(&name, &ProxyLocation::NAMES)
                    .map_or(String::new(), |c| format!("; did you mean {c:?}?"));
                v.field("proxy_location", |v| {
                    v.error(format!(
                        "must be one of {}, got {name:?}{hint}",
                        ProxyLocation::NAMES.join(", ")
                    ))
                });
            }
        }
    }
    if let Some(http) = top.get("http_options") {
        v.field("http_options", |v| {
            let known = foreign::with_names(HTTP_FIELDS, foreign::HTTP);
            if let Some(map) = object(v, http, &known) {
                foreign::check_all(v, &map, foreign::HTTP);
                // Ray's `request_timeout_s: null`: no timeout asked for.
                let map = without_nulls(map, &["request_timeout_s"]);
                let h = &mut config.http_options;
                if let Some(host) = string(v, &map, "host") {
                    match host.is_empty() {
                        true => v.field("host", |v| v.error("must not be empty")),
                        false => h.host = host,
                    }
                }
                if let Some(port) = integer(v, &map, "port", 0, 65535) {
                    h.port = port as u16;
                }
                if let Some(s) = seconds(v, &map, "request_timeout_s") {
                    h.request_timeout_s = s;
                }
                if let Some(n) = integer(v, &map, "max_body_bytes", 1, i64::MAX) {
                    h.max_body_bytes = n as u64;
                }
            }
        });
    }
    if let Some(logging) = top.get("logging_config") {
        v.field(spelling(value, "logging_config"), |v| {
            let known = foreign::with_names(LOGGING_FIELDS, foreign::LOGGING);
            if let Some(map) = object(v, logging, &known) {
                foreign::check_all(v, &map, foreign::LOGGING);
                let l = &mut config.logging_config;
                l.log_level = log_level(v, &map, &l.log_level);
                l.encoding = one_of(v, &map, "encoding", ENCODINGS, &l.encoding);
                if let Some(b) = map.get("enable_access_log") {
                    match b.as_bool() {
                        Some(b) => l.enable_access_log = b,
                        None => v.field("enable_access_log", |v| {
                            v.error(format!("must be true or false, got {}", value_kind(b)))
                        }),
                    }
                }
            }
        });
    }
    match top.get("applications") {
        None => v.error("missing field \"applications\" (a list; `[]` for none)"),
        Some(Value::Array(apps)) => v.field("applications", |v| {
            for (i, app) in apps.iter().enumerate() {
                v.index(i, |v| {
                    if let Some((app, mut laid)) = read_app(v, app) {
                        laid.index = i;
                        config.applications.push(app);
                        layout.apps.push(laid);
                    }
                });
            }
            check_unique_apps(v, &config.applications, &layout.apps);
        }),
        Some(other) => v.field("applications", |v| {
            v.error(format!("must be a list, got {}", value_kind(other)))
        }),
    }
    (config, layout)
}

fn check_unique_apps(v: &mut Validator, apps: &[AppConfig], laid: &[AppLayout]) {
    let mut names = BTreeSet::new();
    let mut prefixes = BTreeMap::new();
    for (app, at) in apps.iter().zip(laid) {
        v.index(at.index, |v| {
            if !names.insert(app.name.as_str()) {
                v.field("name", |v| {
                    v.error(format!(
                        "application name {:?} is used twice; names must be unique",
                        app.name
                    ))
                });
            }
            if let Some(prefix) = &app.route_prefix {
                if let Some(other) = prefixes.insert(prefix.as_str(), app.name.as_str()) {
                    v.field("route_prefix", |v| {
                        v.error(format!(
                            "route_prefix {prefix:?} is also application {other:?}'s; prefixes must be unique"
                        ))
                    });
                }
            }
        });
    }
}
