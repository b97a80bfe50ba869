//! The serve config file: Ray Serve 2.60's schema (`ServeDeploySchema`),
//! as YAML or JSON, checked field by field with Ray's domains
//! (`foreign.rs` for Ray's fields Troupe has no mechanism for).
//!
//! ```yaml
//! proxy_location: EveryNode          # EveryNode | HeadOnly | Disabled
//! http_options:                     # applied by `serve run CONFIG`; on a running
//!                                    # cluster set aside with a warning (as Ray does)
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
//!         # names and defaults: see the `autoscaling` module)
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
//!
//! # Layout
//!
//! - this file — the config's types and the entry points
//!   ([`parse_yaml`], [`parse_value`], [`check_yaml`], [`check_value`],
//!   [`to_yaml`]).
//! - `top_level.rs` — the top of the file: `proxy_location`,
//!   `http_options`, `logging_config`, the walk over `applications`.
//! - `application.rs` — one application (`import_path`, `route_prefix`,
//!   `args`, its deployments).
//! - `deployment.rs` — one deployment's overrides and `actor_options`.
//! - `autoscaling.rs` — `num_replicas: auto` and `autoscaling_config`.
//! - `foreign.rs` — Ray's fields Troupe has no mechanism for.
//! - `fields.rs` — typed fields read out of a generic value.
//! - `layout.rs` — where the parts were in the file, for the build's paths.
//! - `build.rs` — [`build_specs`] and [`describe`].
//! - `ray_domains.rs` — tests: every field's domain against Ray's.

mod application;
mod autoscaling;
mod build;
mod deployment;
mod fields;
mod foreign;
mod layout;
#[cfg(test)]
mod ray_domains;
mod top_level;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use troupe_core::config::{ConfigError, ConfigIssue, Validator};

use crate::catalog::Catalog;
use crate::spec::AppSpec;
use top_level::read_config;

pub use application::{builder_of_import_path, check_import_path, DEFAULT_APP_NAME};
pub use autoscaling::{AutoscalingConfig, NumReplicas};
pub use build::{build_specs, deployment_config, describe, BuildError};
pub use fields::value_kind;

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
    let (config, _) = read_config(&mut v, value);
    v.finish()?;
    Ok(config)
}

/// For a running cluster (`serve deploy`, `serve run --address`, the admin
/// API's PUT), whose proxies keep what `troupe start` gave them: puts the
/// defaults in place of the config's `http_options` and returns a warning
/// at its path for each value set aside. Ray Serve does the same (it
/// logs that a running instance's HTTP options cannot be updated, and
/// deploys), so configs from `serve build`, which write `host: 0.0.0.0`,
/// deploy unchanged. `troupe serve run CONFIG` on its embedded node
/// applies them instead. Pure.
pub fn set_aside_http_options(config: &mut ServeConfig) -> Vec<ConfigIssue> {
    let warnings = top_level::unapplied_http_options(&config.http_options);
    config.http_options = HttpOptions::default();
    warnings
}

/// [`check_value`] of a YAML text.
pub fn check_yaml(
    text: &str,
    catalog: &Catalog,
) -> Result<(ServeConfig, Vec<AppSpec>), ConfigError> {
    check_value(&yaml_value(text)?, catalog)
}

/// Checks a config whole against `catalog` (this binary's builders) and
/// returns it with the application specs it builds, or every problem in
/// one answer: the schema's, unknown application builders, unknown
/// deployment names, and refusals (`num_replicas: 0`, a count with
/// autoscaling), each at its path as the
/// config spells it. A part the schema already rejected is not checked
/// again (an application whose `app` is missing is not looked up).
pub fn check_value(
    value: &Value,
    catalog: &Catalog,
) -> Result<(ServeConfig, Vec<AppSpec>), ConfigError> {
    let mut v = Validator::new();
    let (config, layout) = read_config(&mut v, value);
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

/// The config as YAML (what `serve build` and `serve config` print).
pub fn to_yaml(config: &ServeConfig) -> String {
    serde_yaml_ng::to_string(config).expect("a config always serializes")
}
