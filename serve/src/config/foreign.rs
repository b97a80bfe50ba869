//! Ray Serve 2.60's config fields that Troupe has no equivalent for, at
//! every level of the config (top, `http_options`, `logging_config`, an
//! application, a deployment, `ray_actor_options`): each is checked
//! against Ray's own domain (so a value Ray refuses is refused here too),
//! then accepted when it is *neutral* (the value under which Ray behaves
//! as Troupe does: `runtime_env: {}`, `grpc_options` without servicers,
//! `target_capacity: 100`, ...) and refused otherwise, with why and what
//! to write instead. A neutral field changes nothing and is not kept.
//! Pure.

use serde_json::{Map, Value};
use troupe_core::config::Validator;

use super::fields::value_kind;

/// What Ray accepts for a field (pydantic's type and bounds).
#[derive(Debug, Clone, Copy)]
pub(super) enum Domain {
    /// A mapping (`Dict`).
    Map,
    /// A list.
    List,
    /// A string.
    Str,
    /// `true` or `false`.
    Bool,
    /// A number >= 0.
    NonNegative,
    /// A number in (0, 1].
    Fraction,
    /// An integer within the bounds.
    Int(i64, i64),
    /// A number within the bounds.
    Number(f64, f64),
}

/// Which values of a field change nothing in Troupe.
#[derive(Debug, Clone, Copy)]
pub(super) enum Neutral {
    /// Only null (or the field left out).
    Null,
    /// Null, `{}` or `[]`.
    Empty,
    /// Null or `false`.
    False,
    /// Null, `{}`, or a mapping with `enabled: false`.
    Disabled,
    /// Null or this number.
    Is(f64),
    /// Null or this string.
    Text(&'static str),
    /// Every value in the domain: Troupe has no such mechanism and
    /// behaves the same whatever it is.
    Any,
}

/// One Ray field Troupe does not implement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Foreign {
    pub field: &'static str,
    pub domain: Domain,
    pub neutral: Neutral,
    /// Why Troupe refuses a value that is not neutral, and what to do.
    pub why: &'static str,
}

const fn f(field: &'static str, domain: Domain, neutral: Neutral, why: &'static str) -> Foreign {
    Foreign {
        field,
        domain,
        neutral,
        why,
    }
}

/// Top level (`ServeDeploySchema`). `grpc_options` is checked by
/// [`check_grpc_options`].
pub(super) const TOP: &[Foreign] = &[
    f("controller_options", Domain::Map, Neutral::Empty, "Troupe's serve controller runs inside every GCS node (the GCS leader's is active) with the node's own environment; there is no controller actor to configure"),
    f("tracing_config", Domain::Map, Neutral::Disabled, "Troupe has no tracing exporter; use each answer's x-request-id and the access log"),
    f("target_capacity", Domain::Number(0.0, 100.0), Neutral::Is(100.0), "Troupe runs each deployment's num_replicas (or its autoscaler's target) in full; scale with num_replicas instead"),
];

/// `http_options` (`HTTPOptionsSchema`).
pub(super) const HTTP: &[Foreign] = &[
    f("root_path", Domain::Str, Neutral::Text(""), "Troupe's proxy serves applications at their route_prefix from the root; put the prefix in route_prefix instead"),
    f("keep_alive_timeout_s", Domain::Int(i64::MIN, i64::MAX), Neutral::Any, ""),
    f("ssl_keyfile", Domain::Str, Neutral::Null, "Troupe's proxy serves plain HTTP; terminate TLS in front of it (a load balancer or reverse proxy)"),
    f("ssl_certfile", Domain::Str, Neutral::Null, "Troupe's proxy serves plain HTTP; terminate TLS in front of it (a load balancer or reverse proxy)"),
    f("ssl_keyfile_password", Domain::Str, Neutral::Null, "Troupe's proxy serves plain HTTP; terminate TLS in front of it (a load balancer or reverse proxy)"),
    f("ssl_ca_certs", Domain::Str, Neutral::Null, "Troupe's proxy serves plain HTTP; terminate TLS in front of it (a load balancer or reverse proxy)"),
];

/// `logging_config` (`LoggingConfig`).
pub(super) const LOGGING: &[Foreign] = &[
    f(
        "logs_dir",
        Domain::Str,
        Neutral::Null,
        "Troupe's nodes log to stderr (`troupe start` redirects it where you want the log)",
    ),
    f(
        "additional_log_standard_attrs",
        Domain::List,
        Neutral::Empty,
        "these are Python logging record attributes; Troupe's log lines have fixed fields",
    ),
];

/// An application (`ServeApplicationSchema`).
pub(super) const APP: &[Foreign] = &[
    f("runtime_env", Domain::Map, Neutral::Empty, "Troupe's applications are compiled into the binary every node runs; there is no Python environment to set up, so ship a new binary instead"),
    f("autoscaling_policy", Domain::Map, Neutral::Null, "Troupe autoscales each deployment by its own autoscaling_config; set it per deployment"),
    f("logging_config", Domain::Map, Neutral::Null, "Troupe's log settings are cluster-wide; set logging_config at the top level of the config"),
    f("external_scaler_enabled", Domain::Bool, Neutral::False, "Troupe has no external scaling API; set num_replicas (deploy again to change it) or autoscaling_config"),
];

/// A deployment (`DeploymentSchema`).
pub(super) const DEPLOYMENT: &[Foreign] = &[
    f("graceful_shutdown_wait_loop_s", Domain::NonNegative, Neutral::Any, ""),
    f("backpressure_config", Domain::Map, Neutral::Empty, "Troupe answers a request refused by max_queued_requests with 503; remove backpressure_config"),
    f("placement_group_bundles", Domain::List, Neutral::Null, "Troupe places each replica by its ray_actor_options resources alone, spreading a deployment's replicas over the nodes; remove placement groups"),
    f("placement_group_strategy", Domain::Str, Neutral::Null, "Troupe places each replica by its ray_actor_options resources alone, spreading a deployment's replicas over the nodes; remove placement groups"),
    f("placement_group_bundle_label_selector", Domain::List, Neutral::Null, "Troupe places each replica by its ray_actor_options resources alone, spreading a deployment's replicas over the nodes; remove placement groups"),
    f("max_replicas_per_node", Domain::Int(1, 100), Neutral::Null, "Troupe spreads a deployment's replicas over the nodes on its own; to bound them per node, give each replica a custom resource in ray_actor_options.resources that each node has a limited amount of"),
    f("logging_config", Domain::Map, Neutral::Null, "Troupe's log settings are cluster-wide; set logging_config at the top level of the config"),
    f("request_router_config", Domain::Map, Neutral::Empty, "Troupe's routers always send a request to the least loaded of two replicas chosen at random (Ray's default router); remove request_router_config"),
    f("gang_scheduling_config", Domain::Map, Neutral::Null, "Troupe starts and places replicas one by one; remove gang_scheduling_config"),
    f("deployment_actors", Domain::List, Neutral::Null, "Troupe has no deployment-scoped actors; spawn them from the application (the actor API) instead"),
    f("rolling_update_percentage", Domain::Fraction, Neutral::Is(1.0), "Troupe replaces all of a deployment's replicas in one step, starting the new ones before the old ones drain"),
    f("max_surge_percent", Domain::Int(0, 100), Neutral::Is(100.0), "Troupe starts all of a deployment's new replicas before the old ones drain (a 100% surge)"),
];

/// `autoscaling_config` (`AutoscalingConfig`).
pub(super) const AUTOSCALING: &[Foreign] = &[
    f("aggregation_function", Domain::Str, Neutral::Text("mean"), "Troupe's autoscaler averages the load over look_back_period_s"),
    f("policy", Domain::Map, Neutral::Empty, "Troupe's autoscaling policy is built in (see `serve/src/autoscale`); custom Python policies cannot run in it"),
];

/// `ray_actor_options` (`RayActorOptionsSchema`).
pub(super) const ACTOR: &[Foreign] = &[
    f("runtime_env", Domain::Map, Neutral::Empty, "Troupe's replicas run in the node's own process; there is no per-replica environment to set up"),
    f("memory", Domain::NonNegative, Neutral::Is(0.0), "Troupe schedules by CPUs, GPUs and custom resources only; express memory as a custom resource in `resources`"),
    f("accelerator_type", Domain::Str, Neutral::Null, "Troupe has no accelerator types; give the nodes with that accelerator a custom resource and ask for it in `resources`"),
    f("label_selector", Domain::Map, Neutral::Empty, "Troupe places replicas by resources only; give the chosen nodes a custom resource and ask for it in `resources`"),
    f("fallback_strategy", Domain::List, Neutral::Null, "Troupe places replicas by resources only; remove fallback_strategy"),
];

/// The names of `list`'s fields, after `own`.
pub(super) fn with_names(own: &[&'static str], list: &[Foreign]) -> Vec<&'static str> {
    own.iter()
        .copied()
        .chain(list.iter().map(|f| f.field))
        .collect()
}

/// Checks every field of `list` that `map` has.
pub(super) fn check_all(v: &mut Validator, map: &Map<String, Value>, list: &[Foreign]) {
    for foreign in list {
        if let Some(value) = map.get(foreign.field) {
            v.field(foreign.field, |v| check(v, foreign, value));
        }
    }
}

fn check(v: &mut Validator, foreign: &Foreign, value: &Value) {
    if value.is_null() {
        return;
    }
    if let Err(e) = in_domain(foreign.domain, value) {
        v.error(e);
        return;
    }
    let neutral = match foreign.neutral {
        Neutral::Null => false,
        Neutral::Empty => match value {
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        },
        Neutral::False => value == &Value::Bool(false),
        Neutral::Disabled => value
            .as_object()
            .is_some_and(|m| m.is_empty() || m.get("enabled") == Some(&Value::Bool(false))),
        Neutral::Is(n) => value.as_f64() == Some(n),
        Neutral::Text(s) => value.as_str().is_some_and(|v| v.eq_ignore_ascii_case(s)),
        Neutral::Any => true,
    };
    if !neutral {
        let instead = match foreign.neutral {
            Neutral::Null => "leave it out".to_owned(),
            Neutral::Empty => "leave it out (or give it empty)".to_owned(),
            Neutral::False => "leave it out (or give false)".to_owned(),
            Neutral::Disabled => "leave it out (or give `enabled: false`)".to_owned(),
            Neutral::Is(n) => format!("leave it out (or give {n})"),
            Neutral::Text(s) => format!("leave it out (or give {s:?})"),
            Neutral::Any => unreachable!("every value in the domain is neutral"),
        };
        v.error(format!(
            "Ray Serve's `{}` is not supported by Troupe (deliberately): {}; {instead}",
            foreign.field, foreign.why
        ));
    }
}

/// Whether `value` is in Ray's domain `domain`; Ray's complaint if not.
pub(super) fn in_domain(domain: Domain, value: &Value) -> Result<(), String> {
    let kind = value_kind(value);
    match domain {
        Domain::Map if !value.is_object() => Err(format!("must be a mapping, got {kind}")),
        Domain::List if !value.is_array() => Err(format!("must be a list, got {kind}")),
        Domain::Str if !value.is_string() => Err(format!("must be a string, got {kind}")),
        Domain::Bool if !value.is_boolean() => Err(format!("must be true or false, got {kind}")),
        Domain::NonNegative => match value.as_f64() {
            Some(n) if n >= 0.0 && n.is_finite() => Ok(()),
            Some(n) => Err(format!("must be >= 0, got {n}")),
            None => Err(format!("must be a number, got {kind}")),
        },
        Domain::Fraction => match value.as_f64() {
            Some(n) if n > 0.0 && n <= 1.0 => Ok(()),
            Some(n) => Err(format!("must be > 0 and <= 1, got {n}")),
            None => Err(format!("must be a number, got {kind}")),
        },
        Domain::Int(min, max) => match integral(value) {
            Some(n) if n < min => Err(format!("must be >= {min}, got {n}")),
            Some(n) if n > max => Err(format!("must be <= {max}, got {n}")),
            Some(_) => Ok(()),
            None => Err(format!("must be an integer, got {}", shown(value))),
        },
        Domain::Number(min, max) => match value.as_f64() {
            Some(n) if n < min => Err(format!("must be >= {min}, got {n}")),
            Some(n) if n > max => Err(format!("must be <= {max}, got {n}")),
            Some(_) => Ok(()),
            None => Err(format!("must be a number, got {kind}")),
        },
        _ => Ok(()),
    }
}

/// `value` as an integer the way pydantic's `int` reads a JSON number:
/// an integer, or a float without a fraction (`5.0`).
pub(super) fn integral(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// A number as the user wrote it, else what it is.
fn shown(value: &Value) -> String {
    match value.as_f64() {
        Some(f) => format!("{f}"),
        None => value_kind(value).to_owned(),
    }
}

/// `grpc_options` (`gRPCOptionsSchema`): accepted with Ray's domain when
/// it names no servicer functions (then Ray starts no gRPC server either).
pub(super) fn check_grpc_options(v: &mut Validator, value: &Value) {
    let Value::Object(map) = value else {
        if !value.is_null() {
            v.error(format!("must be a mapping, got {}", value_kind(value)));
        }
        return;
    };
    const FIELDS: &[&str] = &[
        "port",
        "grpc_servicer_functions",
        "request_timeout_s",
        "enable_reflection",
    ];
    for (key, item) in map {
        let domain = match key.as_str() {
            "port" => Domain::Int(i64::MIN, i64::MAX),
            "grpc_servicer_functions" => Domain::List,
            "request_timeout_s" => Domain::Number(f64::MIN, f64::MAX),
            "enable_reflection" => Domain::Bool,
            _ => {
                v.unknown_field(key, FIELDS);
                continue;
            }
        };
        if item.is_null() && key == "request_timeout_s" {
            continue;
        }
        v.field(key, |v| {
            if let Err(e) = in_domain(domain, item) {
                return v.error(e);
            }
            if key == "grpc_servicer_functions" && item.as_array().is_some_and(|a| !a.is_empty()) {
                v.error("Ray Serve's gRPC proxy is not supported by Troupe (deliberately): its proxies serve HTTP only; call the applications over HTTP, and leave grpc_servicer_functions empty");
            }
        });
    }
}
