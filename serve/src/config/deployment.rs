//! One deployment's overrides in a config: `num_replicas` (a count or
//! `auto`, never 0), request limits, health-check and shutdown seconds,
//! `user_config`, `actor_options` (Ray's `ray_actor_options`) and
//! `autoscaling_config`.

use serde_json::{Map, Value};
use troupe_core::config::Validator;
use troupe_core::resources::Resources;

use super::fields::{
    integer, number, object, seconds, seconds_or_zero, spelling, string, value_kind, without_nulls,
};
use super::layout::DeploymentLayout;
use super::{autoscaling, foreign, ActorOptions, AutoscalingConfig, DeploymentConfig, NumReplicas};

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

pub(super) fn read_deployment(
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
pub(super) const NO_REPLICAS_WHY: &str = "a deployment without replicas cannot answer (its requests would wait for a replica until they time out); to scale to zero when idle, set autoscaling_config with min_replicas: 0 instead";

/// What `num_replicas: 0` gets.
pub(super) fn no_replicas() -> String {
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
