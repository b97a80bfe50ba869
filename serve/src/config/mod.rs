//! The serve config file: Ray Serve 2.60's schema (`ServeDeploySchema`),
//! as YAML or JSON, checked field by field with Ray's domains
//! (`foreign.rs` for Ray's fields Troupe has no mechanism for).
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
//!   - name: chain                    # default "default"
//!     route_prefix: /chain           # null: reachable only by handle
//!     import_path: models.text:chain # names the registered builder `chain` (see builder_of_import_path)
//!     # app: chain                   # or Troupe's name for it
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
mod foreign;
#[cfg(test)]
mod ray_domains;

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
    /// The registered application builder (resolved from `import_path`
    /// when the config names it that way).
    pub app: String,
    /// Ray's name for the builder, as the config gave it (`module:chain`
    /// names builder `chain`: see [`builder_of_import_path`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_path: Option<String>,
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
const APP_FIELDS: &[&str] = &[
    "name",
    "route_prefix",
    "app",
    "import_path",
    "args",
    "deployments",
    "host",
    "port",
];
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
    /// Whether the builder was named well (else the schema said why).
    has_builder: bool,
    /// The field that named the builder: `app` or `import_path`.
    builder_field: &'static str,
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
                    builder_field: "app",
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
            v.unknown_field(key, known);
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
    let Some(n) = foreign::integral(value) else {
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

/// A number of seconds >= 0 (Ray's `NonNegativeFloat`, `ge=0`).
fn seconds_or_zero(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<f64> {
    let n = number(v, map, field)?;
    if !(n.is_finite() && n >= 0.0) {
        v.field(field, |v| {
            v.error(format!("must be a number of seconds >= 0, got {n}"))
        });
        return None;
    }
    Some(n)
}

/// The fields of a mapping given as null count as left out (pydantic's
/// `Optional`): `map` without them.
fn without_nulls(map: Map<String, Value>, nullable: &[&str]) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, val)| !(val.is_null() && nullable.contains(&k.as_str())))
        .collect()
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
                if http_use == HttpOptionsUse::Fixed {
                    refuse_http_options(v, h);
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

/// Why an application name Ray takes can be refused.
const NAMES_DIFFER: &str = "Troupe is stricter than Ray here, deliberately: the name is part of the control store's keys and of replica names";

/// Ray's default application name (`SERVE_DEFAULT_APP_NAME`).
pub const DEFAULT_APP_NAME: &str = "default";

/// The application builder an `import_path` names: the whole path if it
/// has no `:` or `.`, else its last component after the last `:` or `.`
/// (`chain`, `module:chain`, `pkg.module:chain` and `pkg.module.chain`
/// all name builder `chain`). Ray's form is checked by
/// [`check_import_path`].
pub fn builder_of_import_path(import_path: &str) -> &str {
    import_path.rsplit([':', '.']).next().unwrap_or(import_path)
}

/// Ray's checks of an `import_path` (`ServeApplicationSchema`): at most one
/// colon, neither first nor last; without a colon, no leading or trailing
/// dot. A bare name (`chain`, which Ray refuses) is accepted as Troupe's
/// shorthand for the builder.
pub fn check_import_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty; name a registered application builder, e.g. `module:chain` for builder `chain`".into());
    }
    let colons = path.matches(':').count();
    if colons > 1 {
        return Err(format!("{path:?} has more than one colon; an import path may have at most one (`module.path:builder`)"));
    }
    let (sep, what) = if colons == 1 {
        (':', "colon")
    } else {
        ('.', "dot")
    };
    if path.starts_with(sep) || path.ends_with(sep) {
        return Err(format!(
            "{path:?} starts or ends with a {what}; write `module.path:builder`"
        ));
    }
    if builder_of_import_path(path).is_empty() {
        return Err(format!(
            "{path:?} names no builder after its last `:` or `.`"
        ));
    }
    Ok(())
}

/// Ray's checks of a route prefix: starts with `/`, does not end with one
/// (unless it is `/`), no `{` or `}`.
fn check_route_prefix(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("must start with '/', got {p:?}"));
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err(format!(
            "must not end with '/' unless it is just \"/\", got {p:?}; write {:?}",
            p.trim_end_matches('/')
        ));
    }
    if p.contains(['{', '}']) {
        return Err(format!(
            "cannot contain wildcards ('{{' or '}}'), got {p:?}"
        ));
    }
    Ok(())
}

fn read_app(v: &mut Validator, value: &Value) -> Option<(AppConfig, AppLayout)> {
    let known = foreign::with_names(APP_FIELDS, foreign::APP);
    let map = object(v, value, &known)?;
    foreign::check_all(v, &map, foreign::APP);
    for field in ["host", "port"] {
        if map.contains_key(field) {
            v.field(field, |v| {
                v.error(format!("{field} is set for one application; remove it and set http_options.{field} at the top level of the config only (as Ray Serve requires)"))
            });
        }
    }
    let name = match string(v, &map, "name") {
        Some(name) => {
            if let Err(e) = check_name("application name", &name) {
                v.field("name", |v| v.error(format!("{e} ({NAMES_DIFFER})")));
            }
            name
        }
        None if map.contains_key("name") => String::new(),
        None => DEFAULT_APP_NAME.to_owned(),
    };
    let import_path = string(v, &map, "import_path");
    if let Some(path) = &import_path {
        if let Err(e) = check_import_path(path) {
            v.field("import_path", |v| v.error(e));
        }
    }
    let app = string(v, &map, "app");
    let (builder, builder_field) = match (app, &import_path) {
        (Some(app), None) => (app, "app"),
        (None, Some(path)) => (builder_of_import_path(path).to_owned(), "import_path"),
        (Some(app), Some(path)) => {
            if builder_of_import_path(path) != app {
                v.field("import_path", |v| {
                    v.error(format!(
                        "names builder {:?}, but `app` names {app:?}; give one of them",
                        builder_of_import_path(path)
                    ))
                });
            }
            (app, "app")
        }
        (None, None) => {
            if !map.contains_key("app") && !map.contains_key("import_path") {
                v.error("missing field \"import_path\" (Ray's `module:builder`) or \"app\" (the registered application builder; `troupe serve build` lists them)");
            }
            (String::new(), "app")
        }
    };
    let route_prefix = match map.get("route_prefix") {
        None => Some("/".to_owned()),
        Some(Value::Null) => None,
        Some(Value::String(p)) => {
            if let Err(e) = check_route_prefix(p) {
                v.field("route_prefix", |v| v.error(e));
            }
            Some(p.clone())
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
    let args = match map.get("args") {
        None | Some(Value::Null) => Value::Null,
        Some(a @ Value::Object(_)) => a.clone(),
        Some(other) => {
            v.field("args", |v| {
                v.error(format!(
                    "must be a mapping of the builder's arguments, got {}",
                    value_kind(other)
                ))
            });
            Value::Null
        }
    };
    let mut deployments = Vec::new();
    let mut laid = AppLayout {
        index: 0,
        has_builder: !builder.is_empty()
            && match builder_field {
                "app" => matches!(map.get("app"), Some(Value::String(_))),
                _ => import_path
                    .as_deref()
                    .is_some_and(|p| check_import_path(p).is_ok()),
            },
        builder_field,
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
        app: builder,
        import_path,
        args,
        deployments,
    };
    Some((app, laid))
}

fn read_deployment(
    v: &mut Validator,
    value: &Value,
) -> Option<(DeploymentConfig, DeploymentLayout)> {
    let known = foreign::with_names(DEPLOYMENT_FIELDS, foreign::DEPLOYMENT);
    let map = object(v, value, &known)?;
    foreign::check_all(v, &map, foreign::DEPLOYMENT);
    // Ray's `Optional` fields: null is the same as left out.
    let map = without_nulls(map, &["num_replicas", "user_config", "autoscaling_config"]);
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
    d.max_queued_requests = max_queued_requests(v, &map);
    d.health_check_period_s = seconds(v, &map, "health_check_period_s");
    d.health_check_timeout_s = seconds(v, &map, "health_check_timeout_s");
    d.graceful_shutdown_timeout_s = seconds_or_zero(v, &map, "graceful_shutdown_timeout_s");
    if let Some(b) = map.get("retry_lost_requests") {
        match b.as_bool() {
            Some(b) => d.retry_lost_requests = Some(b),
            None => v.field("retry_lost_requests", |v| {
                v.error(format!("must be true or false, got {}", value_kind(b)))
            }),
        }
    }
    match map.get("user_config") {
        None => {}
        Some(u @ Value::Object(_)) => d.user_config = Some(u.clone()),
        Some(other) => v.field("user_config", |v| {
            v.error(format!(
                "must be a mapping (handed to the deployment's reconfigure), got {}",
                value_kind(other)
            ))
        }),
    }
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

/// `max_queued_requests`: Ray's `StrictInt`, -1 (no limit) or >= 1.
fn max_queued_requests(v: &mut Validator, map: &Map<String, Value>) -> Option<i64> {
    let value = map.get("max_queued_requests")?;
    let n = match value.as_i64() {
        Some(n) => n,
        None => {
            v.field("max_queued_requests", |v| {
                v.error(format!(
                    "must be an integer (-1 for no limit), got {}",
                    value
                ))
            });
            return None;
        }
    };
    if n == -1 || (1..=i64::from(u32::MAX)).contains(&n) {
        return Some(n);
    }
    v.field("max_queued_requests", |v| {
        v.error(format!(
            "must be -1 (no limit) or a positive integer up to {}, got {n}",
            u32::MAX
        ))
    });
    None
}

/// Why a deployment with no replicas is refused.
const NO_REPLICAS_WHY: &str = "a deployment without replicas cannot answer (its requests would wait for a replica until they time out); to scale to zero when idle, set autoscaling_config with min_replicas: 0 instead";

/// What `num_replicas: 0` gets.
fn no_replicas() -> String {
    format!("must be >= 1, got 0: {NO_REPLICAS_WHY}")
}

fn read_actor_options(v: &mut Validator, value: &Value) -> Option<ActorOptions> {
    let known = foreign::with_names(ACTOR_FIELDS, foreign::ACTOR);
    let map = object(v, value, &known)?;
    foreign::check_all(v, &map, foreign::ACTOR);
    let map = without_nulls(map, &["num_cpus", "num_gpus"]);
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
