//! The `faults` section: the timeline, the random part, and each fault
//! (its kind's fields, its target).

use serde_json::{Map, Value};
use troupe_core::config::{suggest, Validator};

use super::values::{
    error_at, list, number, number_where, object, one_of, positive, require, string, unsigned,
};
use super::{node_index, Context};
use crate::scenario::{
    FaultKind, FaultPlan, FaultSpec, PartitionMode, RandomFaults, TargetRole, TargetSpec,
    TimedFault,
};

const FAULTS_FIELDS: &[&str] = &["timeline", "random"];
const RANDOM_FIELDS: &[&str] = &["every_s", "from_s", "until_s", "choices"];
#[rustfmt::skip]
const FAULT_FIELDS: &[&str] = &[
    "at_s", "kind", "target", "count", "within_ms", "heal_after_s", "class", "mode",
    "delay_ms", "jitter_ms", "loss_pct", "app", "deployment", "set", "app_args",
];
/// Fields that only one fault kind takes, with that kind.
const KIND_ONLY: &[(&str, &str)] = &[
    ("mode", "partition"),
    ("delay_ms", "degrade"),
    ("jitter_ms", "degrade"),
    ("loss_pct", "degrade"),
    ("app", "update"),
    ("deployment", "update"),
    ("set", "update"),
    ("app_args", "update"),
];
const FAULT_KINDS: &[&str] = &["kill", "pause", "partition", "degrade", "wipe", "update"];
#[rustfmt::skip]
const SET_FIELDS: &[&str] = &[
    "num_replicas", "user_config", "max_ongoing_requests", "max_queued_requests",
    "ray_actor_options", "actor_options", "health_check_period_s", "health_check_timeout_s",
    "graceful_shutdown_timeout_s",
];
#[rustfmt::skip]
const TARGET_NAMES: &[&str] = &[
    "gcs_leader", "gcs_follower", "gcs_member", "gcs_majority", "any", "none",
];
const TARGET_HELP: &str =
    "gcs_leader, gcs_follower, gcs_member, gcs_majority, any, none, node:N, hosting:DEPLOYMENT";

/// Reads the fault plan into `out`; the random part's `until_s` if the
/// file gives it (else the caller sets the default, which needs `checks`).
pub(super) fn read_faults(
    v: &mut Validator,
    value: &Value,
    ctx: &Context,
    out: &mut FaultPlan,
) -> Option<f64> {
    let map = object(v, value, FAULTS_FIELDS)?;
    list(v, &map, "timeline", |v, item| {
        if let Some((at_s, fault)) = read_fault(v, item, ctx, true) {
            out.timeline.push(TimedFault { at_s, fault });
        }
    });
    let random = map.get("random").filter(|r| !r.is_null())?;
    let mut until = None;
    v.field("random", |v| {
        let Some(map) = object(v, random, RANDOM_FIELDS) else {
            return;
        };
        let every_s = match map.get("every_s") {
            None => {
                require(
                    v,
                    &map,
                    "every_s",
                    " (the gap between faults: [min, max] seconds)",
                );
                (1.0, 1.0)
            }
            Some(Value::Array(pair)) if pair.len() == 2 && pair.iter().all(Value::is_number) => {
                let (min, max) = (
                    pair[0].as_f64().unwrap_or(0.0),
                    pair[1].as_f64().unwrap_or(0.0),
                );
                if !(min > 0.0 && min <= max) {
                    error_at(
                        v,
                        "every_s",
                        format!("must have 0 < min <= max, got [{min}, {max}]"),
                    );
                }
                (min, max)
            }
            Some(other) => {
                let message = format!("must be two numbers [min, max] of seconds, got {other}");
                error_at(v, "every_s", message);
                (1.0, 1.0)
            }
        };
        let explicit_from = map.contains_key("from_s");
        let from_s = number_where(v, &map, "from_s", |n| n >= 0.0, ">= 0").unwrap_or(10.0);
        if let Some(d) = ctx.duration_s.filter(|&d| from_s >= d) {
            let default = if explicit_from { "" } else { " (the default)" };
            let message = format!("must be < duration_s ({d}), got {from_s}{default}");
            error_at(v, "from_s", message);
        }
        until = number(v, &map, "until_s");
        if let Some(u) = until {
            let problem = match ctx.duration_s {
                Some(d) if u > d => Some(format!("must be <= duration_s ({d}), got {u}")),
                _ if u < from_s => Some(format!("must be >= from_s ({from_s}), got {u}")),
                _ => None,
            };
            if let Some(message) = problem {
                error_at(v, "until_s", message);
            }
        }
        let mut choices = Vec::new();
        list(v, &map, "choices", |v, item| {
            if let Some((_, fault)) = read_fault(v, item, ctx, false) {
                choices.push(fault);
            }
        });
        match map.get("choices") {
            None => require(v, &map, "choices", " (the faults to draw from)"),
            Some(Value::Null) => error_at(v, "choices", "must list at least one fault"),
            Some(Value::Array(items)) if items.is_empty() => {
                error_at(v, "choices", "must list at least one fault")
            }
            Some(_) => {}
        }
        out.random = Some(RandomFaults {
            every_s,
            from_s,
            until_s: until.unwrap_or(0.0),
            choices,
        });
    });
    until
}

/// One fault (a timeline entry when `timed`, with its `at_s`; else a
/// random choice, `at_s` 0).
fn read_fault(
    v: &mut Validator,
    value: &Value,
    ctx: &Context,
    timed: bool,
) -> Option<(f64, FaultSpec)> {
    let map = object(v, value, FAULT_FIELDS)?;
    let mut at_s = 0.0;
    if timed {
        at_s = number_where(v, &map, "at_s", |n| n >= 0.0, ">= 0").unwrap_or(0.0);
        require(v, &map, "at_s", " (seconds after the load started)");
        if let Some(d) = ctx.duration_s.filter(|&d| at_s >= d) {
            error_at(v, "at_s", format!("must be < duration_s ({d}), got {at_s}"));
        }
    } else if map.contains_key("at_s") {
        error_at(
            v,
            "at_s",
            "`at_s` applies only to timeline faults; random ones are timed by `every_s`",
        );
    }
    let name = one_of(v, &map, "kind", FAULT_KINDS);
    require(
        v,
        &map,
        "kind",
        " (kill, pause, partition, degrade, wipe or update)",
    );
    for &(field, owner) in KIND_ONLY {
        if map.contains_key(field) && name.is_some_and(|k| k != owner) {
            error_at(
                v,
                field,
                format!("`{field}` applies only to {owner} faults"),
            );
        }
    }
    if ctx.loopback && matches!(name, Some("partition" | "degrade")) {
        let message = format!(
            "{} faults need network namespaces, but cluster.network is loopback",
            name.unwrap_or_default()
        );
        error_at(v, "kind", message);
    }
    let is_update = name == Some("update");
    let role = match string(v, &map, "target") {
        Some(text) => {
            let mut role = None;
            v.field("target", |v| role = read_target(v, &text, ctx, is_update));
            role
        }
        None if is_update && !map.contains_key("target") => Some(TargetRole::None),
        None => {
            if name.is_some() {
                require(v, &map, "target", &format!(" ({TARGET_HELP})"));
            }
            None
        }
    };
    let count = unsigned(v, &map, "count", 1).unwrap_or(1) as usize;
    if let Some(role) = &role {
        let limit = match role {
            TargetRole::Any | TargetRole::Hosting(_) => ctx.nodes.map(|n| (n, "cluster.nodes")),
            TargetRole::GcsLeader | TargetRole::GcsMember => {
                ctx.gcs_members.map(|g| (g, "cluster.gcs_members"))
            }
            TargetRole::GcsFollower => ctx
                .gcs_members
                .map(|g| (g - 1, "the followers, cluster.gcs_members - 1")),
            TargetRole::Node(_) => Some((1, "a node:N target is one node")),
            TargetRole::GcsMajority | TargetRole::None => None,
        };
        if let Some((limit, why)) = limit.filter(|&(limit, _)| count > limit) {
            error_at(
                v,
                "count",
                format!("must be <= {limit} ({why}), got {count}"),
            );
        }
    }
    let target = TargetSpec {
        role: role.unwrap_or(TargetRole::Any),
        count,
        within_ms: unsigned(v, &map, "within_ms", 0).unwrap_or(0),
    };
    let heal_after_s = match map.get("heal_after_s") {
        None | Some(Value::Null) => None,
        Some(_) => positive(v, &map, "heal_after_s"),
    };
    let kind = read_kind(v, &map, name?);
    let class = match string(v, &map, "class") {
        Some(class) if class.trim().is_empty() => {
            error_at(v, "class", "must not be empty");
            class
        }
        Some(class) => class,
        None => match &kind {
            FaultKind::Partition { mode } => {
                format!(
                    "partition-{}-{}",
                    mode_name(*mode),
                    target_text(&target.role)
                )
            }
            FaultKind::Update {
                app, deployment, ..
            } => format!("update-{app}/{deployment}"),
            other => format!("{}-{}", other.name(), target_text(&target.role)),
        },
    };
    Some((
        at_s,
        FaultSpec {
            kind,
            target,
            heal_after_s,
            class,
        },
    ))
}

/// The kind named `name` with its own fields.
fn read_kind(v: &mut Validator, map: &Map<String, Value>, name: &str) -> FaultKind {
    match name {
        "kill" => FaultKind::Kill,
        "pause" => FaultKind::Pause,
        "wipe" => FaultKind::Wipe,
        "partition" => {
            let mode = one_of(v, map, "mode", &["isolate", "split", "one_way"]);
            require(v, map, "mode", " (isolate, split or one_way)");
            FaultKind::Partition {
                mode: match mode {
                    Some("split") => PartitionMode::Split,
                    Some("one_way") => PartitionMode::OneWay,
                    _ => PartitionMode::Isolate,
                },
            }
        }
        "degrade" => FaultKind::Degrade {
            delay_ms: unsigned(v, map, "delay_ms", 0).unwrap_or(100),
            jitter_ms: unsigned(v, map, "jitter_ms", 0).unwrap_or(0),
            loss_pct: number_where(
                v,
                map,
                "loss_pct",
                |n| (0.0..=100.0).contains(&n),
                "between 0 and 100",
            )
            .unwrap_or(0.0),
        },
        _ => {
            let mut names = [String::new(), String::new()];
            for (field, slot) in ["app", "deployment"].into_iter().zip(&mut names) {
                match string(v, map, field) {
                    Some(text) if text.trim().is_empty() => error_at(v, field, "must not be empty"),
                    Some(text) => *slot = text,
                    None => require(v, map, field, ""),
                }
            }
            let [app, deployment] = names;
            let set = match map.get("set") {
                None | Some(Value::Null) => Map::new(),
                Some(set) => {
                    let mut out = None;
                    v.field("set", |v| out = object(v, set, SET_FIELDS));
                    out.unwrap_or_default()
                }
            };
            let app_args = map.get("app_args").filter(|a| !a.is_null()).cloned();
            FaultKind::Update {
                app,
                deployment,
                set,
                app_args,
            }
        }
    }
}

/// A target's text (`gcs_leader`, `node:2`, `hosting:chain/normalize`).
fn read_target(
    v: &mut Validator,
    text: &str,
    ctx: &Context,
    is_update: bool,
) -> Option<TargetRole> {
    let role = match text.split_once(':') {
        Some(("node", index)) => match index.trim().parse::<usize>() {
            Ok(i) => node_index(v, &Value::from(i), ctx.nodes).map(TargetRole::Node)?,
            Err(_) => {
                v.error(format!(
                    "the node index must be an integer >= 0, got {text:?}"
                ));
                return None;
            }
        },
        Some(("hosting", deployment)) => {
            let deployment = deployment.trim();
            if deployment.is_empty() || deployment.starts_with('/') || deployment.ends_with('/') {
                v.error(format!(
                    "must be hosting:DEPLOYMENT or hosting:APP/DEPLOYMENT, got {text:?}"
                ));
                return None;
            }
            TargetRole::Hosting(deployment.to_owned())
        }
        _ => match text {
            "gcs_leader" => TargetRole::GcsLeader,
            "gcs_follower" => TargetRole::GcsFollower,
            "gcs_member" => TargetRole::GcsMember,
            "gcs_majority" => TargetRole::GcsMajority,
            "any" => TargetRole::Any,
            "none" => TargetRole::None,
            _ => {
                let hint = suggest(text, TARGET_NAMES)
                    .map_or(String::new(), |c| format!("; did you mean {c:?}?"));
                v.error(format!("must be one of {TARGET_HELP}, got {text:?}{hint}"));
                return None;
            }
        },
    };
    if is_update && role != TargetRole::None {
        v.error("an update targets no node; remove `target` or write `none`");
        return None;
    }
    if !is_update && role == TargetRole::None {
        v.error("`none` targets no node; only update faults may use it");
        return None;
    }
    if role == TargetRole::GcsFollower && ctx.gcs_members == Some(1) {
        v.error("there are no GCS followers: cluster.gcs_members is 1");
        return None;
    }
    Some(role)
}

fn target_text(role: &TargetRole) -> String {
    match role {
        TargetRole::GcsLeader => "gcs_leader".into(),
        TargetRole::GcsFollower => "gcs_follower".into(),
        TargetRole::GcsMember => "gcs_member".into(),
        TargetRole::GcsMajority => "gcs_majority".into(),
        TargetRole::Hosting(d) => format!("hosting:{d}"),
        TargetRole::Node(i) => format!("node:{i}"),
        TargetRole::Any => "any".into(),
        TargetRole::None => "none".into(),
    }
}

fn mode_name(mode: PartitionMode) -> &'static str {
    match mode {
        PartitionMode::Isolate => "isolate",
        PartitionMode::Split => "split",
        PartitionMode::OneWay => "one_way",
    }
}
