//! From a checked config to application specs ([`build_specs`]) and from
//! the binary's catalog to a config ([`describe`]). Pure.

use serde_json::Value;
use troupe_core::config::{suggest, ConfigError, Validator};
use troupe_core::resources::Resources;

use super::deployment::{no_replicas, NO_REPLICAS_WHY};
use super::layout::{AppLayout, Layout};
use super::{ActorOptions, AppConfig, DeploymentConfig, NumReplicas, ServeConfig};
use crate::catalog::Catalog;
use crate::spec::{check_name, AppSpec, DeploymentSpec};

/// The application specs `config` asks for, built with `catalog`'s
/// builders and the config's overrides, or every problem (with the
/// config's paths). Nothing is deployed here.
pub fn build_specs(config: &ServeConfig, catalog: &Catalog) -> Result<Vec<AppSpec>, ConfigError> {
    build_laid_out(config, &Layout::of(config), catalog)
}

/// [`build_specs`] with the problems at the paths of the file `config` was
/// parsed from (`layout`).
pub(super) fn build_laid_out(
    config: &ServeConfig,
    layout: &Layout,
    catalog: &Catalog,
) -> Result<Vec<AppSpec>, ConfigError> {
    let mut v = Validator::new();
    let mut specs = Vec::new();
    v.field("applications", |v| {
        for (app, laid) in config.applications.iter().zip(&layout.apps) {
            v.index(laid.index, |v| {
                if let Some(spec) = build_app(v, app, laid, catalog) {
                    specs.push(spec);
                }
            });
        }
    });
    v.finish()?;
    Ok(specs)
}

fn build_app(
    v: &mut Validator,
    config: &AppConfig,
    laid: &AppLayout,
    catalog: &Catalog,
) -> Option<AppSpec> {
    if !laid.has_builder {
        // The schema said what is wrong with `app`.
        return None;
    }
    let built = match catalog.build_app_with(&config.app, &config.args) {
        Ok(app) => app,
        Err(BuildError::Unknown) => {
            let known: Vec<&str> = catalog.app_names().collect();
            let hint = match suggest(&config.app, &known) {
                Some(close) => format!("did you mean {close:?}? "),
                None => String::new(),
            };
            let has = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            v.field(laid.builder_field, |v| match &config.import_path {
                Some(path) if laid.builder_field == "import_path" => v.error(format!(
                    "{path:?} names application builder {:?} (the last component after ':' or '.'), and this binary has none by that name; {hint}it has: {has} (write e.g. `import_path: module:{}`)",
                    config.app,
                    known.first().copied().unwrap_or("chain")
                )),
                _ => v.error(format!(
                    "no application builder named {:?} in this binary; {hint}it has: {has}",
                    config.app
                )),
            });
            return None;
        }
        Err(BuildError::Args(e)) => {
            v.field("args", |v| {
                v.error(format!(
                    "do not fit application builder {:?}: {e}",
                    config.app
                ))
            });
            return None;
        }
    };
    // Name and prefix are checked here at their own paths (the schema
    // checks them the same way; `check_value` reports each place once).
    let mut app = built;
    match check_name("application name", &config.name) {
        Ok(()) => app = app.renamed(&config.name),
        Err(e) => v.field("name", |v| v.error(e)),
    }
    match config.route_prefix.as_deref() {
        Some(p) if !p.starts_with('/') => v.field("route_prefix", |v| {
            v.error(format!("must start with '/', got {p:?}"))
        }),
        prefix => app = app.route_prefix(prefix),
    }
    let names: Vec<String> = app
        .spec()
        .deployments
        .iter()
        .map(|d| d.name.clone())
        .collect();
    v.field("deployments", |v| {
        for (d, d_laid) in config.deployments.iter().zip(&laid.deployments) {
            if !d_laid.has_name {
                continue;
            }
            v.index(d_laid.index, |v| match app.deployment_mut(&d.name) {
                Some(spec) => apply_overrides(v, spec, d, d_laid.actor_options),
                None => {
                    let known: Vec<&str> = names.iter().map(String::as_str).collect();
                    let hint = suggest(&d.name, &known)
                        .map_or(String::new(), |c| format!("did you mean {c:?}? "));
                    v.field("name", |v| {
                        v.error(format!(
                            "application {:?} has no deployment named {:?}; {hint}it has: {}",
                            config.app,
                            d.name,
                            known.join(", ")
                        ))
                    });
                }
            });
        }
    });
    match app.into_spec() {
        Ok(spec) => {
            refuse_no_replicas(v, &spec, config, laid);
            Some(spec)
        }
        Err(e) => {
            v.error(e);
            None
        }
    }
}

/// Refuses deployments left with no replicas by the application's code
/// (a config's `num_replicas: 0` is refused by the schema).
fn refuse_no_replicas(v: &mut Validator, spec: &AppSpec, config: &AppConfig, laid: &AppLayout) {
    let unscaled_empty = |d: &&DeploymentSpec| d.num_replicas == 0 && d.autoscaling.is_none();
    for d in spec.deployments.iter().filter(unscaled_empty) {
        let listed = config
            .deployments
            .iter()
            .zip(&laid.deployments)
            .find(|(c, _)| c.name == d.name);
        match listed {
            Some((c, at)) if c.num_replicas == Some(NumReplicas::Fixed(0)) => v.field("deployments", |v| {
                v.index(at.index, |v| {
                    v.field("num_replicas", |v| v.error(no_replicas()))
                })
            }),
            _ => v.field("deployments", |v| {
                v.error(format!(
                    "deployment {:?} has num_replicas 0 in application {:?}'s code: {NO_REPLICAS_WHY}; list it here with `num_replicas: 1` (or more)",
                    d.name, config.app
                ))
            }),
        }
    }
}

fn apply_overrides(
    v: &mut Validator,
    spec: &mut DeploymentSpec,
    d: &DeploymentConfig,
    actor_options: &str,
) {
    if let Some(NumReplicas::Fixed(n)) = d.num_replicas {
        spec.num_replicas = n;
    }
    if let Some(n) = d.max_ongoing_requests {
        spec.max_ongoing_requests = n;
    }
    if let Some(n) = d.max_queued_requests {
        spec.max_queued_requests = u32::try_from(n).ok();
    }
    if let Some(options) = &d.actor_options {
        let resources = Resources::new()
            .with_cpus(options.num_cpus)
            .and_then(|r| r.with_gpus(options.num_gpus));
        let resources = options
            .resources
            .iter()
            .fold(resources, |r, (name, amount)| {
                r.and_then(|r| r.with_custom(name, *amount))
            });
        match resources {
            Ok(r) => spec.resources = r,
            Err(e) => v.field(actor_options, |v| v.error(e.to_string())),
        }
    }
    if let Some(user_config) = &d.user_config {
        spec.user_config = Some(user_config.to_string());
    }
    let ms = |s: f64| (s * 1000.0).round().max(1.0) as u64;
    if let Some(s) = d.health_check_period_s {
        spec.health_check_period_ms = ms(s);
    }
    if let Some(s) = d.health_check_timeout_s {
        spec.health_check_timeout_ms = ms(s);
    }
    if let Some(s) = d.graceful_shutdown_timeout_s {
        // 0 (Ray's `ge=0`): stop at once, without waiting for requests.
        spec.graceful_shutdown_timeout_ms = (s * 1000.0).round().max(0.0) as u64;
    }
    if let Some(retry) = d.retry_lost_requests {
        spec.retry_lost_requests = retry;
    }
    // `num_replicas: auto` comes with its filled-in autoscaling_config;
    // either way the autoscaler sets the count, from the initial one.
    let autoscaling = match (&d.num_replicas, &d.autoscaling_config) {
        (_, Some(config)) => Some(config.policy()),
        (Some(NumReplicas::Auto), None) => Some(super::AutoscalingConfig::auto().policy()),
        _ => None,
    };
    if let Some(policy) = autoscaling {
        spec.num_replicas = policy.initial_replicas;
        spec.autoscaling = Some(policy);
    }
}

/// Why an application builder could not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no application builder by that name")]
    Unknown,
    #[error("its arguments do not fit: {0}")]
    Args(String),
}

/// A config with every registered application under its own name with
/// default arguments, and every deployment's options spelled out (what
/// `troupe serve build` writes). Route prefixes are `/<name>`, so the
/// applications do not collide.
pub fn describe(catalog: &Catalog) -> Result<ServeConfig, ConfigError> {
    let mut config = ServeConfig::default();
    let mut v = Validator::new();
    for name in catalog.app_names() {
        let args = catalog.default_args(name).unwrap_or(Value::Null);
        let app = match catalog.build_app_with(name, &args) {
            Ok(app) => app,
            Err(e) => {
                v.field(name, |v| {
                    v.error(format!("the builder fails with its default arguments: {e}"))
                });
                continue;
            }
        };
        config.applications.push(AppConfig {
            name: name.to_owned(),
            route_prefix: Some(format!("/{name}")),
            app: name.to_owned(),
            import_path: None,
            args,
            deployments: app
                .spec()
                .deployments
                .iter()
                .map(deployment_config)
                .collect(),
        });
    }
    v.finish()?;
    Ok(config)
}

/// Every option of `spec`, as config.
pub fn deployment_config(spec: &DeploymentSpec) -> DeploymentConfig {
    let resources = &spec.resources;
    DeploymentConfig {
        name: spec.name.clone(),
        num_replicas: match spec.autoscaling {
            Some(_) => None,
            None => Some(NumReplicas::Fixed(spec.num_replicas)),
        },
        max_ongoing_requests: Some(spec.max_ongoing_requests),
        max_queued_requests: Some(spec.max_queued_requests.map_or(-1, i64::from)),
        actor_options: Some(ActorOptions {
            num_cpus: resources.cpus().to_f64(),
            num_gpus: resources.gpus().to_f64(),
            resources: resources
                .custom_resources()
                .map(|(name, amount)| (name.to_owned(), amount.to_f64()))
                .collect(),
        }),
        user_config: spec
            .user_config
            .as_deref()
            .and_then(|u| serde_json::from_str(u).ok()),
        health_check_period_s: Some(spec.health_check_period_ms as f64 / 1000.0),
        health_check_timeout_s: Some(spec.health_check_timeout_ms as f64 / 1000.0),
        graceful_shutdown_timeout_s: Some(spec.graceful_shutdown_timeout_ms as f64 / 1000.0),
        retry_lost_requests: Some(spec.retry_lost_requests),
        autoscaling_config: spec
            .autoscaling
            .as_ref()
            .map(super::AutoscalingConfig::from),
    }
}
