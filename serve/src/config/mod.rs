//! The serve config file: YAML close to Ray Serve's schema.
//!
//! ```yaml
//! proxy_location: EveryNode          # EveryNode | HeadOnly | Disabled
//! http_options:
//!   host: 127.0.0.1
//!   port: 8000
//!   request_timeout_s: 60
//!   max_body_bytes: 10485760
//! logging_config:                    # `logging` is accepted too
//!   log_level: INFO                  # ERROR | WARN | INFO | DEBUG | TRACE
//!   encoding: TEXT                   # TEXT | JSON
//!   enable_access_log: true
//! applications:
//!   - name: chain
//!     route_prefix: /chain           # null: reachable only by handle
//!     app: chain                     # a builder registered in the binary (Ray's import_path)
//!     args: {}                       # handed to the builder
//!     deployments:                   # overrides of the builder's options
//!       - name: count
//!         num_replicas: 2
//!         max_ongoing_requests: 5
//!         max_queued_requests: -1
//!         actor_options: { num_cpus: 0.5, num_gpus: 0, resources: {} }   # `ray_actor_options` is accepted too
//!         user_config: { threshold: 0.5 }
//!         health_check_period_s: 10
//!         health_check_timeout_s: 30
//!         graceful_shutdown_timeout_s: 20
//!         retry_lost_requests: true  # resend a request lost with its replica's node (Troupe's)
//!         # or `num_replicas: auto` and/or an autoscaling_config (Ray's
//!         # names and defaults: see the `autoscaling` module); checked,
//!         # refused at deploy until the autoscaler is wired in
//! ```
//!
//! [`parse_yaml`] / [`parse_value`] check a whole file and report every
//! problem with its path (`applications[1].deployments[0].num_replicas:
//! must be >= 1, got 0`), spelled as the file spells it
//! (`ray_actor_options.num_cpus` where it says `ray_actor_options`);
//! unknown fields are errors with a "did you mean". [`build_specs`] turns
//! a valid config into the application specs to deploy, with the binary's
//! [`Catalog`]; [`check_yaml`] / [`check_value`] do both in one pass, so
//! one answer lists the schema's problems, unknown builders and
//! deployments, and refusals together (what every front door uses:
//! `serve deploy`, `serve run`, the admin API's PUT); [`describe`] goes
//! the other way for `troupe serve build`. All pure: deploying is
//! [`crate::declarative`]'s job.

mod autoscaling;
mod build;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use troupe_core::config::{suggest, ConfigError, Validator};
use troupe_core::resources::Resources;

use crate::catalog::Catalog;
use crate::spec::{check_name, AppSpec};

pub use autoscaling::{AutoscalingConfig, NumReplicas};
pub use build::{build_specs, deployment_config, describe, BuildError};

/// A whole serve config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeConfig {
    pub proxy_location: ProxyLocation,
    pub http_options: HttpOptions,
    pub logging_config: LoggingConfig,
    pub applications: Vec<AppConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            proxy_location: ProxyLocation::EveryNode,
            http_options: HttpOptions::default(),
            logging_config: LoggingConfig::default(),
            applications: Vec::new(),
        }
    }
}

/// Which nodes run an HTTP proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyLocation {
    EveryNode,
    HeadOnly,
    Disabled,
}

impl ProxyLocation {
    const NAMES: [&'static str; 3] = ["EveryNode", "HeadOnly", "Disabled"];

    fn parse(name: &str) -> Option<Self> {
        match name {
            "EveryNode" => Some(ProxyLocation::EveryNode),
            "HeadOnly" => Some(ProxyLocation::HeadOnly),
            "Disabled" => Some(ProxyLocation::Disabled),
            _ => None,
        }
    }
}

/// The HTTP proxies' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpOptions {
    pub host: String,
    pub port: u16,
    /// Longer requests get 408.
    pub request_timeout_s: f64,
    /// Larger bodies get 413.
    pub max_body_bytes: u64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            host: "127.0.0.1".into(),
            port: 8000,
            request_timeout_s: 60.0,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Log settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingConfig {
    pub log_level: String,
    /// `TEXT` or `JSON`.
    pub encoding: String,
    /// One line per HTTP request: request id, app, deployment, replica,
    /// status, latency.
    pub enable_access_log: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            log_level: "INFO".into(),
            encoding: "TEXT".into(),
            enable_access_log: true,
        }
    }
}

/// One application: a registered builder, its arguments, and overrides of
/// its deployments' options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppConfig {
    pub name: String,
    /// `None`: reachable only by handle.
    pub route_prefix: Option<String>,
    /// The registered application builder.
    pub app: String,
    /// Handed to the builder; fields left out keep the builder's defaults.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    pub deployments: Vec<DeploymentConfig>,
}

/// Overrides of one deployment's options; what is left out keeps the value
/// the application's code gave it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentConfig {
    pub name: String,
    /// A count, or `auto` (autoscaling with Ray's defaults for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_replicas: Option<NumReplicas>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ongoing_requests: Option<u32>,
    /// `-1`: without limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_requests: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_options: Option<ActorOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_period_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_shutdown_timeout_s: Option<f64>,
    /// Troupe's: resend a request lost with its replica (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_lost_requests: Option<bool>,
    /// With `num_replicas: auto`, the effective config (Ray's defaults
    /// for `auto`, overridden by the fields the file gives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_config: Option<AutoscalingConfig>,
}

/// What one replica needs (Ray's `ray_actor_options`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorOptions {
    pub num_cpus: f64,
    pub num_gpus: f64,
    pub resources: BTreeMap<String, f64>,
}

const TOP_FIELDS: &[&str] = &[
    "proxy_location",
    "http_options",
    "logging_config",
    "applications",
];
const HTTP_FIELDS: &[&str] = &["host", "port", "request_timeout_s", "max_body_bytes"];
const LOGGING_FIELDS: &[&str] = &["log_level", "encoding", "enable_access_log"];
const LOG_LEVELS: &[&str] = &["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
const ENCODINGS: &[&str] = &["TEXT", "JSON"];
const APP_FIELDS: &[&str] = &["name", "route_prefix", "app", "args", "deployments"];
const DEPLOYMENT_FIELDS: &[&str] = &[
    "name",
    "num_replicas",
    "max_ongoing_requests",
    "max_queued_requests",
    "actor_options",
    "user_config",
    "health_check_period_s",
    "health_check_timeout_s",
    "graceful_shutdown_timeout_s",
    "retry_lost_requests",
    "autoscaling_config",
];
const ACTOR_FIELDS: &[&str] = &["num_cpus", "num_gpus", "resources"];

/// Fields accepted under a second name (Ray Serve's spelling).
const ALIASES: &[(&str, &str)] = &[
    ("logging", "logging_config"),
    ("ray_actor_options", "actor_options"),
];

/// Parses and checks a YAML config (its schema only; [`check_yaml`]
/// checks it against a binary too).
pub fn parse_yaml(text: &str) -> Result<ServeConfig, ConfigError> {
    parse_value(&yaml_value(text)?)
}

fn yaml_value(text: &str) -> Result<Value, ConfigError> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        ConfigError::single(
            "",
            format!("not valid YAML: {e}; check the indentation and quoting near that line"),
        )
    })
}

/// Checks a config given as a JSON value (the admin API's PUT body, or a
/// parsed YAML file): its schema only.
pub fn parse_value(value: &Value) -> Result<ServeConfig, ConfigError> {
    let mut v = Validator::new();
    let (config, _) = read_config(&mut v, value, HttpOptionsUse::Applied);
    v.finish()?;
    Ok(config)
}

/// What the HTTP proxies that will serve a config do with its
/// `http_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpOptionsUse {
    /// The proxy starts from this config (`troupe serve run CONFIG` on its
    /// embedded node): every value is applied.
    Applied,
    /// The proxies already run (a cluster: `serve deploy`, `serve run
    /// --address`, the admin API's PUT) and keep what they were started
    /// with, so a value other than the default is refused rather than
    /// stored and ignored.
    Fixed,
}

/// [`check_value`] of a YAML text.
pub fn check_yaml(
    text: &str,
    catalog: &Catalog,
    http: HttpOptionsUse,
) -> Result<(ServeConfig, Vec<AppSpec>), ConfigError> {
    check_value(&yaml_value(text)?, catalog, http)
}

/// Checks a config whole against `catalog` (this binary's builders) and
/// returns it with the application specs it builds, or every problem in
/// one answer: the schema's, unknown application builders, unknown
/// deployment names, and refusals (`num_replicas: 0`, autoscaling,
/// `http_options` the proxies would not apply), each at its path as the
/// config spells it. A part the schema already rejected is not checked
/// again (an application whose `app` is missing is not looked up).
pub fn check_value(
    value: &Value,
    catalog: &Catalog,
    http: HttpOptionsUse,
) -> Result<(ServeConfig, Vec<AppSpec>), ConfigError> {
    let mut v = Validator::new();
    let (config, layout) = read_config(&mut v, value, http);
    let schema = v.finish().err();
    let built = build::build_laid_out(&config, &layout, catalog);
    match merge(schema, built.as_ref().err()) {
        None => Ok((config, built.unwrap_or_default())),
        Some(e) => Err(e),
    }
}

/// The schema's problems, then the build's at paths the schema had no
/// problem at (one problem per place: a field the schema rejected is not
/// reported again by the build).
fn merge(schema: Option<ConfigError>, built: Option<&ConfigError>) -> Option<ConfigError> {
    let schema_issues = schema.as_ref().map_or(&[][..], |e| e.issues());
    let built_issues = built.map_or(&[][..], |e| e.issues());
    let mut v = Validator::new();
    let seen: BTreeSet<&str> = schema_issues.iter().map(|i| i.path.as_str()).collect();
    let kept = built_issues
        .iter()
        .filter(|i| !seen.contains(i.path.as_str()));
    for issue in schema_issues.iter().chain(kept) {
        v.field(&issue.path, |v| v.error(issue.message.clone()));
    }
    v.finish().err()
}

/// Refuses each of `given`'s options that differs from the default: a
/// running cluster's proxies do not take them from a deployed config.
fn refuse_http_options(v: &mut Validator, given: &HttpOptions) {
    let default = HttpOptions::default();
    let listen = "each node's HTTP proxy listens where `troupe start --http-listen HOST:PORT` put it when the node started; to move it, restart that node with another --http-listen";
    if given.host != default.host {
        v.field("host", |v| {
            v.error(format!(
                "{:?} is not applied to a running cluster: {listen}. Remove `http_options` from the config (or keep the default {:?})",
                given.host, default.host
            ))
        });
    }
    if given.port != default.port {
        v.field("port", |v| {
            v.error(format!(
                "{} is not applied to a running cluster: {listen}. Remove `http_options` from the config (or keep the default {})",
                given.port, default.port
            ))
        });
    }
    let only_serve_run = "a running cluster's proxies keep the default; only `troupe serve run CONFIG` (one embedded node) applies another value. Remove it from the config";
    if given.request_timeout_s != default.request_timeout_s {
        v.field("request_timeout_s", |v| {
            v.error(format!(
                "{} is not applied: {only_serve_run} (or keep {})",
                given.request_timeout_s, default.request_timeout_s
            ))
        });
    }
    if given.max_body_bytes != default.max_body_bytes {
        v.field("max_body_bytes", |v| {
            v.error(format!(
                "{} is not applied: {only_serve_run} (or keep {})",
                given.max_body_bytes, default.max_body_bytes
            ))
        });
    }
}

/// Where the parts of a parsed config were in the file, so that problems
/// found later (by the build) are reported at the user's paths.
#[derive(Debug, Clone, Default)]
struct Layout {
    /// One per application of the parsed config, in its order.
    apps: Vec<AppLayout>,
}

#[derive(Debug, Clone)]
struct AppLayout {
    /// The application's index in the file's `applications`.
    index: usize,
    /// Whether `app` was given as a string (else the schema said why).
    has_builder: bool,
    /// One per deployment of the parsed application, in its order.
    deployments: Vec<DeploymentLayout>,
}

#[derive(Debug, Clone)]
struct DeploymentLayout {
    /// The deployment's index in the file's `deployments`.
    index: usize,
    /// Whether `name` was given as a string (else the schema said why).
    has_name: bool,
    /// How the file spells `actor_options` (`ray_actor_options` too).
    actor_options: &'static str,
}

impl Layout {
    /// The layout of `config` as built in code (no file): indices as they
    /// are, main spellings.
    fn of(config: &ServeConfig) -> Layout {
        Layout {
            apps: config
                .applications
                .iter()
                .enumerate()
                .map(|(index, app)| AppLayout {
                    index,
                    has_builder: true,
                    deployments: (0..app.deployments.len())
                        .map(|index| DeploymentLayout {
                            index,
                            has_name: true,
                            actor_options: "actor_options",
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The key `value` (a mapping) spells `main` with: an alias of it if the
/// mapping uses one, else `main`.
fn spelling(value: &Value, main: &'static str) -> &'static str {
    ALIASES
        .iter()
        .find(|(alias, m)| *m == main && value.get(alias).is_some())
        .map_or(main, |(alias, _)| alias)
}

/// The config as YAML (what `serve build` and `serve config` print).
pub fn to_yaml(config: &ServeConfig) -> String {
    serde_yaml_ng::to_string(config).expect("a config always serializes")
}

/// The object at the validator's path, with unknown fields reported.
/// Aliased fields are renamed to their main spelling.
fn object(v: &mut Validator, value: &Value, known: &[&str]) -> Option<Map<String, Value>> {
    let Value::Object(map) = value else {
        if !value.is_null() {
            v.error(format!("must be a mapping, got {}", value_kind(value)));
        }
        return if value.is_null() {
            Some(Map::new())
        } else {
            None
        };
    };
    let mut out = Map::new();
    for (key, item) in map {
        let main = ALIASES
            .iter()
            .find(|(alias, main)| alias == key && known.contains(main))
            .map_or(key.as_str(), |(_, main)| main);
        if !known.contains(&main) {
            if key == "import_path" && known.contains(&"app") {
                v.field(key, |v| {
                    v.error("use `app`: the name of an application registered in the binary (`troupe serve build` writes them all)")
                });
            } else {
                v.unknown_field(key, known);
            }
            continue;
        }
        if out.insert(main.to_owned(), item.clone()).is_some() {
            v.field(key, |v| v.error(format!("given twice (as {main:?} too)")));
        }
    }
    Some(out)
}

/// What a JSON/YAML value is, for error messages (`a string`, `a list`);
/// shared with other parsers that walk a generic value (the chaos
/// scenario's).
pub fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn string(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<String> {
    let value = map.get(field)?;
    match value {
        Value::String(s) => Some(s.clone()),
        other => {
            v.field(field, |v| {
                v.error(format!("must be a string, got {}", value_kind(other)))
            });
            None
        }
    }
}

fn number(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<f64> {
    let value = map.get(field)?;
    match value.as_f64() {
        Some(n) => Some(n),
        None => {
            v.field(field, |v| {
                v.error(format!("must be a number, got {}", value_kind(value)))
            });
            None
        }
    }
}

/// An integer field within `min..=max`.
fn integer(
    v: &mut Validator,
    map: &Map<String, Value>,
    field: &str,
    min: i64,
    max: i64,
) -> Option<i64> {
    let value = map.get(field)?;
    let Some(n) = value.as_i64() else {
        let got = match value.as_f64() {
            Some(f) => format!("{f}"),
            None => value_kind(value).to_owned(),
        };
        v.field(field, |v| v.error(format!("must be an integer, got {got}")));
        return None;
    };
    if n < min {
        v.field(field, |v| v.error(format!("must be >= {min}, got {n}")));
        return None;
    }
    if n > max {
        v.field(field, |v| v.error(format!("must be <= {max}, got {n}")));
        return None;
    }
    Some(n)
}

/// A number of seconds > 0.
fn seconds(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<f64> {
    let n = number(v, map, field)?;
    if !(n.is_finite() && n > 0.0) {
        v.field(field, |v| {
            v.error(format!("must be a positive number of seconds, got {n}"))
        });
        return None;
    }
    Some(n)
}

fn one_of(
    v: &mut Validator,
    map: &Map<String, Value>,
    field: &str,
    allowed: &[&str],
    default: &str,
) -> String {
    let Some(given) = string(v, map, field) else {
        return default.to_owned();
    };
    if let Some(found) = allowed.iter().find(|a| a.eq_ignore_ascii_case(&given)) {
        return (*found).to_owned();
    }
    let hint = match suggest(&given, allowed) {
        Some(close) => format!("; did you mean {close:?}?"),
        None => String::new(),
    };
    v.field(field, |v| {
        v.error(format!(
            "must be one of {}, got {given:?}{hint}",
            allowed.join(", ")
        ))
    });
    default.to_owned()
}

/// The config at `value` as far as it is valid, and where its parts are;
/// `http_options` are refused unless `http_use` applies them.
fn read_config(
    v: &mut Validator,
    value: &Value,
    http_use: HttpOptionsUse,
) -> (ServeConfig, Layout) {
    let mut config = ServeConfig::default();
    let mut layout = Layout::default();
    if value.is_null() {
        v.error("the config is empty; it needs at least `applications: []`");
        return (config, layout);
    }
    let Some(top) = object(v, value, TOP_FIELDS) else {
        return (config, layout);
    };
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
            if let Some(map) = object(v, http, HTTP_FIELDS) {
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
                if http_use == HttpOptionsUse::Fixed {
                    refuse_http_options(v, h);
                }
            }
        });
    }
    if let Some(logging) = top.get("logging_config") {
        v.field(spelling(value, "logging_config"), |v| {
            if let Some(map) = object(v, logging, LOGGING_FIELDS) {
                let l = &mut config.logging_config;
                l.log_level = one_of(v, &map, "log_level", LOG_LEVELS, &l.log_level);
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

fn read_app(v: &mut Validator, value: &Value) -> Option<(AppConfig, AppLayout)> {
    let map = object(v, value, APP_FIELDS)?;
    let name = match string(v, &map, "name") {
        Some(name) => {
            if let Err(e) = check_name("application name", &name) {
                v.field("name", |v| v.error(e));
            }
            name
        }
        None => {
            if !map.contains_key("name") {
                v.error("missing field \"name\"");
            }
            String::new()
        }
    };
    let app = match string(v, &map, "app") {
        Some(app) => app,
        None => {
            if !map.contains_key("app") {
                v.error("missing field \"app\" (the registered application builder; `troupe serve build` lists them)");
            }
            String::new()
        }
    };
    let route_prefix = match map.get("route_prefix") {
        None => Some("/".to_owned()),
        Some(Value::Null) => None,
        Some(Value::String(p)) => {
            if !p.starts_with('/') {
                v.field("route_prefix", |v| {
                    v.error(format!("must start with '/', got {p:?}"))
                });
            }
            let trimmed = p.trim_end_matches('/');
            Some(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
        }
        Some(other) => {
            v.field("route_prefix", |v| {
                v.error(format!(
                    "must be a path such as \"/app\" or null, got {}",
                    value_kind(other)
                ))
            });
            None
        }
    };
    let args = map.get("args").cloned().unwrap_or(Value::Null);
    let mut deployments = Vec::new();
    let mut laid = AppLayout {
        index: 0,
        has_builder: matches!(map.get("app"), Some(Value::String(_))),
        deployments: Vec::new(),
    };
    match map.get("deployments") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => v.field("deployments", |v| {
            let mut seen = BTreeSet::new();
            for (j, d) in list.iter().enumerate() {
                v.index(j, |v| {
                    if let Some((d, mut d_laid)) = read_deployment(v, d) {
                        if !seen.insert(d.name.clone()) {
                            v.field("name", |v| {
                                v.error(format!("deployment {:?} is listed twice", d.name))
                            });
                        }
                        d_laid.index = j;
                        deployments.push(d);
                        laid.deployments.push(d_laid);
                    }
                });
            }
        }),
        Some(other) => v.field("deployments", |v| {
            v.error(format!("must be a list, got {}", value_kind(other)))
        }),
    }
    let app = AppConfig {
        name,
        route_prefix,
        app,
        args,
        deployments,
    };
    Some((app, laid))
}

fn read_deployment(
    v: &mut Validator,
    value: &Value,
) -> Option<(DeploymentConfig, DeploymentLayout)> {
    let map = object(v, value, DEPLOYMENT_FIELDS)?;
    let mut d = DeploymentConfig::default();
    let laid = DeploymentLayout {
        index: 0,
        has_name: matches!(map.get("name"), Some(Value::String(_))),
        actor_options: spelling(value, "actor_options"),
    };
    match string(v, &map, "name") {
        Some(name) => d.name = name,
        None if !map.contains_key("name") => v.error("missing field \"name\""),
        None => {}
    }
    d.num_replicas = autoscaling::read_num_replicas(v, &map);
    if d.num_replicas == Some(NumReplicas::Fixed(0)) {
        v.field("num_replicas", |v| v.error(no_replicas()));
        d.num_replicas = None;
    }
    d.max_ongoing_requests =
        integer(v, &map, "max_ongoing_requests", 1, u32::MAX as i64).map(|n| n as u32);
    d.max_queued_requests = integer(v, &map, "max_queued_requests", -1, u32::MAX as i64);
    d.health_check_period_s = seconds(v, &map, "health_check_period_s");
    d.health_check_timeout_s = seconds(v, &map, "health_check_timeout_s");
    d.graceful_shutdown_timeout_s = seconds(v, &map, "graceful_shutdown_timeout_s");
    if let Some(b) = map.get("retry_lost_requests") {
        match b.as_bool() {
            Some(b) => d.retry_lost_requests = Some(b),
            None => v.field("retry_lost_requests", |v| {
                v.error(format!("must be true or false, got {}", value_kind(b)))
            }),
        }
    }
    d.user_config = map.get("user_config").filter(|u| !u.is_null()).cloned();
    if let Some(options) = map.get("actor_options") {
        v.field(laid.actor_options, |v| {
            d.actor_options = read_actor_options(v, options)
        });
    }
    let auto = d.num_replicas == Some(NumReplicas::Auto);
    let defaults = match auto {
        true => AutoscalingConfig::auto(),
        false => AutoscalingConfig::default(),
    };
    if let Some(given) = map.get("autoscaling_config").filter(|a| !a.is_null()) {
        v.field("autoscaling_config", |v| {
            d.autoscaling_config = autoscaling::read_autoscaling(v, given, &defaults)
        });
        if matches!(d.num_replicas, Some(NumReplicas::Fixed(_))) {
            v.field("num_replicas", |v| {
                v.error("set num_replicas or autoscaling_config, not both (or `num_replicas: auto` with autoscaling_config, which overrides auto's defaults)")
            });
        }
    } else if auto {
        d.autoscaling_config = Some(defaults);
    }
    Some((d, laid))
}

/// Why a deployment with no replicas is refused.
const NO_REPLICAS_WHY: &str = "a deployment without replicas cannot answer (its requests would wait for a replica until they time out); to scale to zero when idle, set autoscaling_config with min_replicas: 0 instead";

/// What `num_replicas: 0` gets.
fn no_replicas() -> String {
    format!("must be >= 1, got 0: {NO_REPLICAS_WHY}")
}

fn read_actor_options(v: &mut Validator, value: &Value) -> Option<ActorOptions> {
    let map = object(v, value, ACTOR_FIELDS)?;
    let mut options = ActorOptions::default();
    for (field, slot) in [
        ("num_cpus", &mut options.num_cpus),
        ("num_gpus", &mut options.num_gpus),
    ] {
        if let Some(n) = number(v, &map, field) {
            match n.is_finite() && n >= 0.0 {
                true => *slot = n,
                false => v.field(field, |v| v.error(format!("must be >= 0, got {n}"))),
            }
        }
    }
    match map.get("resources") {
        None | Some(Value::Null) => {}
        Some(Value::Object(resources)) => v.field("resources", |v| {
            for (name, amount) in resources {
                match amount.as_f64() {
                    Some(n) if n.is_finite() && n >= 0.0 => {
                        options.resources.insert(name.clone(), n);
                    }
                    _ => v.field(name, |v| {
                        v.error(format!("must be a number >= 0, got {amount}"))
                    }),
                }
            }
        }),
        Some(other) => v.field("resources", |v| {
            v.error(format!(
                "must be a mapping of resource name to amount, got {}",
                value_kind(other)
            ))
        }),
    }
    let check = Resources::new()
        .with_cpus(options.num_cpus)
        .and_then(|r| r.with_gpus(options.num_gpus));
    let check = options.resources.iter().fold(check, |r, (name, amount)| {
        r.and_then(|r| r.with_custom(name, *amount))
    });
    if let Err(e) = check {
        v.error(e.to_string());
    }
    Some(options)
}
