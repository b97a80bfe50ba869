//! Reading a scenario: YAML → generic value → [`Scenario`], every problem
//! reported with its path.
//!
//! As with the serve config (`troupe_serve::config`), the text becomes a
//! [`serde_json::Value`] walked with a [`Validator`]: a problem is recorded
//! and the walk goes on, so one run shows everything to fix
//! (`faults.timeline[2].target: ...`, `workloads[1].rate: ...`); unknown
//! fields get a "did you mean", wrong types say what was expected. What the
//! fields mean is on the types in `mod.rs`; their defaults are set here.
//!
//! `parse/fault.rs` reads the `faults` section; `parse/values.rs` has the
//! small typed readers everything is built from.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use troupe_core::config::{ConfigError, Validator};

use super::{
    ActorWorkload, Checks, ClientMode, ClusterSpec, FaultPlan, GcsWorkload, HttpWorkload,
    NetworkMode, Scenario, Workload,
};

mod fault;
mod values;

use fault::read_faults;
use values::{
    error_at, kind, list, number_where, object, one_of, positive, require, string, unsigned,
};

#[rustfmt::skip]
const TOP_FIELDS: &[&str] = &[
    "name", "description", "duration_s", "seed", "cluster", "serve_config", "workloads",
    "faults", "checks",
];
#[rustfmt::skip]
const CLUSTER_FIELDS: &[&str] = &[
    "binary", "nodes", "gcs_members", "num_cpus", "node_ttl_s", "actor_threads", "network",
    "extra_args",
];
#[rustfmt::skip]
const WORKLOAD_FIELDS: &[&str] = &[
    "name", "kind", "path", "method", "body", "rate", "timeout_s", "client", "proxies",
    "clients", "keys", "actors", "max_restarts", "max_task_retries",
];
const HTTP_ONLY: &[&str] = &["path", "method", "body", "client", "proxies"];
const GCS_ONLY: &[&str] = &["clients", "keys"];
const ACTOR_ONLY: &[&str] = &["actors", "max_restarts", "max_task_retries"];
#[rustfmt::skip]
const CHECK_FIELDS: &[&str] = &[
    "min_success", "max_gap_s", "converge_within_s", "window_tail_s", "linearizable",
    "min_known_gcs_ops", "no_lost_writes", "single_placement", "no_panics",
];

/// Parses a scenario's YAML text; relative paths (`serve_config`) resolve
/// against `base_dir`.
pub fn parse_yaml(text: &str, base_dir: &Path) -> Result<Scenario, ConfigError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        ConfigError::single(
            "",
            format!("not valid YAML: {e}; check the indentation and quoting near that line"),
        )
    })?;
    let mut v = Validator::new();
    let scenario = read_scenario(&mut v, &value, base_dir);
    v.finish()?;
    Ok(scenario)
}

/// Reads and parses the scenario file at `path`; returns it with its text.
/// Relative paths in it resolve against the file's folder.
pub fn load(path: &Path) -> Result<(Scenario, String), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single("", format!("cannot read {}: {e}", path.display())))?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let scenario = parse_yaml(&text, base_dir)?;
    Ok((scenario, text))
}

/// What fault entries are checked against: `None` where that part of the
/// scenario is itself invalid (so its dependents are not reported too).
struct Context {
    duration_s: Option<f64>,
    nodes: Option<usize>,
    gcs_members: Option<usize>,
    loopback: bool,
}

fn read_scenario(v: &mut Validator, value: &Value, base_dir: &Path) -> Scenario {
    let mut s = Scenario {
        name: String::new(),
        description: String::new(),
        duration_s: 0.0,
        seed: 1,
        cluster: ClusterSpec::default(),
        serve_config: None,
        workloads: Vec::new(),
        faults: FaultPlan::default(),
        checks: Checks::default(),
    };
    if value.is_null() {
        v.error("the scenario is empty; it needs at least `name`, `duration_s` and `workloads`");
        return s;
    }
    let Some(top) = object(v, value, TOP_FIELDS) else {
        return s;
    };
    match string(v, &top, "name") {
        Some(name) if name.trim().is_empty() => error_at(v, "name", "must not be empty"),
        Some(name) => s.name = name,
        None => require(v, &top, "name", ""),
    }
    s.description = string(v, &top, "description").unwrap_or_default();
    let duration_s = positive(v, &top, "duration_s");
    require(v, &top, "duration_s", " (how long the load runs, seconds)");
    s.duration_s = duration_s.unwrap_or(0.0);
    s.seed = unsigned(v, &top, "seed", 0).unwrap_or(1);
    let mut ctx = Context {
        duration_s,
        nodes: Some(3),
        gcs_members: Some(3),
        loopback: false,
    };
    if let Some(cluster) = top.get("cluster") {
        v.field("cluster", |v| {
            read_cluster(v, cluster, &mut s.cluster, &mut ctx)
        });
    }
    if let Some(config) = top.get("serve_config") {
        v.field("serve_config", |v| {
            s.serve_config = read_serve_config(v, config, base_dir)
        });
    }
    let mut all_read = false;
    match top.get("workloads") {
        None => v.error("missing field \"workloads\" (a list of at least one workload)"),
        Some(list) => v.field("workloads", |v| {
            all_read = read_workloads(v, list, ctx.nodes, &mut s.workloads);
        }),
    }
    let mut random_until = None;
    if let Some(faults) = top.get("faults") {
        v.field("faults", |v| {
            random_until = read_faults(v, faults, &ctx, &mut s.faults);
        });
    }
    let has_gcs = all_read.then(|| s.workloads.iter().any(|w| matches!(w, Workload::Gcs(_))));
    let checks = top.get("checks").unwrap_or(&Value::Null);
    v.field("checks", |v| read_checks(v, checks, has_gcs, &mut s.checks));
    if let (Some(random), None) = (&mut s.faults.random, random_until) {
        random.until_s = (s.duration_s - s.checks.converge_within_s).max(random.from_s);
    }
    s
}

fn read_cluster(v: &mut Validator, value: &Value, c: &mut ClusterSpec, ctx: &mut Context) {
    let Some(map) = object(v, value, CLUSTER_FIELDS) else {
        (ctx.nodes, ctx.gcs_members) = (None, None);
        return;
    };
    if !matches!(map.get("binary"), None | Some(Value::Null)) {
        match string(v, &map, "binary") {
            Some(b) if b.is_empty() => error_at(v, "binary", "must not be empty"),
            b => c.binary = b,
        }
    }
    if map.contains_key("nodes") {
        ctx.nodes = unsigned(v, &map, "nodes", 1).map(|n| n as usize);
        c.nodes = ctx.nodes.unwrap_or(3);
    }
    c.gcs_members = c.nodes.min(3);
    ctx.gcs_members = ctx.nodes.map(|n| n.min(3));
    if map.contains_key("gcs_members") {
        ctx.gcs_members = match unsigned(v, &map, "gcs_members", 1).map(|g| g as usize) {
            Some(g) if ctx.nodes.is_some_and(|n| g > n) => {
                let n = c.nodes;
                error_at(v, "gcs_members", format!("must be <= nodes ({n}), got {g}"));
                None
            }
            g => g,
        };
        c.gcs_members = ctx.gcs_members.unwrap_or(c.gcs_members);
    }
    if let Some(n) = number_where(v, &map, "num_cpus", |n| n > 0.0, "> 0") {
        c.num_cpus = n;
    }
    if let Some(n) = number_where(v, &map, "node_ttl_s", |n| n >= 0.3, ">= 0.3") {
        c.node_ttl_s = n;
    }
    if let Some(n) = unsigned(v, &map, "actor_threads", 1) {
        c.actor_threads = n as usize;
    }
    c.network = match one_of(v, &map, "network", &["auto", "namespaces", "loopback"]) {
        Some("namespaces") => NetworkMode::Namespaces,
        Some("loopback") => NetworkMode::Loopback,
        _ => NetworkMode::Auto,
    };
    ctx.loopback = c.network == NetworkMode::Loopback;
    list(v, &map, "extra_args", |v, arg| match arg {
        Value::String(a) => c.extra_args.push(a.clone()),
        other => v.error(format!("must be a string, got {} (quote it)", kind(other))),
    });
}

/// The serve config as JSON, from a file (relative to `base_dir`) or
/// inline, checked by the serve config's own parser.
fn read_serve_config(v: &mut Validator, value: &Value, base_dir: &Path) -> Option<Value> {
    let (config, file) = match value {
        Value::Null => return None,
        Value::String(relative) => {
            let path = base_dir.join(relative);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| v.error(format!("cannot read {}: {e}", path.display())))
                .ok()?;
            let config = serde_yaml_ng::from_str::<Value>(&text)
                .map_err(|e| v.error(format!("{} is not valid YAML: {e}", path.display())))
                .ok()?;
            (config, format!(" (in {})", path.display()))
        }
        Value::Object(_) => (value.clone(), String::new()),
        other => {
            v.error(format!(
                "must be the path of a serve config file or an inline mapping, got {}",
                kind(other)
            ));
            return None;
        }
    };
    if let Err(e) = troupe_serve::config::parse_value(&config) {
        for issue in e.issues() {
            let message = format!("{}{file}", issue.message);
            match issue.path.as_str() {
                "" => v.error(message),
                path => error_at(v, path, message),
            }
        }
    }
    Some(config)
}

/// Reads the workload list into `out`; whether every entry could be read.
fn read_workloads(
    v: &mut Validator,
    value: &Value,
    nodes: Option<usize>,
    out: &mut Vec<Workload>,
) -> bool {
    let Value::Array(items) = value else {
        v.error(format!("must be a list, got {}", kind(value)));
        return false;
    };
    if items.is_empty() {
        v.error("must list at least one workload");
    }
    let mut names = BTreeSet::new();
    let mut all_read = true;
    for (i, item) in items.iter().enumerate() {
        v.index(i, |v| match read_workload(v, item, nodes) {
            Some(w) => {
                if !names.insert(w.name().to_owned()) {
                    let message = format!(
                        "workload name {:?} is used twice; names must be unique",
                        w.name()
                    );
                    error_at(v, "name", message);
                }
                out.push(w);
            }
            None => all_read = false,
        });
    }
    all_read
}

fn read_workload(v: &mut Validator, value: &Value, nodes: Option<usize>) -> Option<Workload> {
    let map = object(v, value, WORKLOAD_FIELDS)?;
    let name = match string(v, &map, "name") {
        Some(name) if name.trim().is_empty() => {
            error_at(v, "name", "must not be empty");
            name
        }
        Some(name) => name,
        None => {
            require(v, &map, "name", "");
            String::new()
        }
    };
    let workload_kind = one_of(v, &map, "kind", &["http", "gcs", "actor"]);
    require(v, &map, "kind", " (http, gcs or actor)");
    let rate = positive(v, &map, "rate").unwrap_or(0.0);
    require(v, &map, "rate", " (requests or operations per second)");
    let timeout_s = positive(v, &map, "timeout_s");
    let this = workload_kind?;
    for (other, fields) in [
        ("http", HTTP_ONLY),
        ("gcs", GCS_ONLY),
        ("actor", ACTOR_ONLY),
    ] {
        if other == this {
            continue;
        }
        for &field in fields.iter().filter(|f| map.contains_key(**f)) {
            error_at(
                v,
                field,
                format!("`{field}` applies only to {other} workloads"),
            );
        }
    }
    if this == "actor" {
        let limit = |v: &mut Validator, field: &str, default: i64| match map.get(field) {
            None => default,
            Some(value) => match value.as_i64() {
                Some(n) if n >= -1 => n,
                _ => {
                    error_at(
                        v,
                        field,
                        format!("must be an integer >= -1 (-1: no limit), got {value}"),
                    );
                    default
                }
            },
        };
        return Some(Workload::Actor(ActorWorkload {
            name,
            rate,
            actors: unsigned(v, &map, "actors", 1).unwrap_or(3) as usize,
            timeout_s: timeout_s.unwrap_or(5.0),
            max_restarts: limit(v, "max_restarts", -1),
            max_task_retries: limit(v, "max_task_retries", 0),
        }));
    }
    if this == "gcs" {
        return Some(Workload::Gcs(GcsWorkload {
            name,
            rate,
            clients: unsigned(v, &map, "clients", 1).unwrap_or(4) as usize,
            keys: unsigned(v, &map, "keys", 1).unwrap_or(3) as usize,
            timeout_s: timeout_s.unwrap_or(3.0),
        }));
    }
    let path = string(v, &map, "path").unwrap_or_default();
    require(v, &map, "path", " (the URL path, such as /chain)");
    if map.contains_key("path") && !path.starts_with('/') {
        error_at(v, "path", format!("must start with '/', got {path:?}"));
    }
    let body = match map.get("body") {
        None => String::new(),
        Some(Value::String(body)) => body.clone(),
        Some(json @ (Value::Object(_) | Value::Array(_))) => json.to_string(),
        Some(other) => {
            let message = format!(
                "must be a string (or a mapping or list, sent as JSON), got {}",
                kind(other)
            );
            error_at(v, "body", message);
            String::new()
        }
    };
    let mut proxies = Vec::new();
    list(v, &map, "proxies", |v, item| {
        if let Some(node) = node_index(v, item, nodes) {
            proxies.push(node);
        }
    });
    Some(Workload::Http(HttpWorkload {
        name,
        path,
        method: one_of(v, &map, "method", &["GET", "POST"])
            .unwrap_or("POST")
            .to_owned(),
        body,
        rate,
        timeout_s: timeout_s.unwrap_or(5.0),
        client: match one_of(v, &map, "client", &["fixed", "balanced"]) {
            Some("fixed") => ClientMode::Fixed,
            _ => ClientMode::Balanced,
        },
        proxies,
    }))
}

fn node_index(v: &mut Validator, item: &Value, nodes: Option<usize>) -> Option<usize> {
    let Some(node) = item.as_u64().map(|n| n as usize) else {
        v.error(format!(
            "must be a node index (an integer >= 0), got {item}"
        ));
        return None;
    };
    match nodes {
        Some(n) if node >= n => {
            v.error(format!(
                "node {node} does not exist: cluster.nodes is {n} (indexes 0 to {})",
                n - 1
            ));
            None
        }
        _ => Some(node),
    }
}

/// The checks, from `Checks::default()` and what the file sets. Without a
/// gcs workload (`has_gcs` is `Some(false)`) the GCS checks are turned off,
/// and asking for them explicitly is an error.
fn read_checks(v: &mut Validator, value: &Value, has_gcs: Option<bool>, c: &mut Checks) {
    let Some(map) = object(v, value, CHECK_FIELDS) else {
        return;
    };
    if let Some(n) = number_where(
        v,
        &map,
        "min_success",
        |n| (0.0..=1.0).contains(&n),
        "between 0 and 1",
    ) {
        c.min_success = n;
    }
    if !matches!(map.get("max_gap_s"), None | Some(Value::Null)) {
        c.max_gap_s = positive(v, &map, "max_gap_s");
    }
    c.converge_within_s = positive(v, &map, "converge_within_s").unwrap_or(c.converge_within_s);
    c.window_tail_s =
        number_where(v, &map, "window_tail_s", |n| n >= 0.0, ">= 0").unwrap_or(c.window_tail_s);
    let flags = [
        ("linearizable", &mut c.linearizable),
        ("no_lost_writes", &mut c.no_lost_writes),
        ("single_placement", &mut c.single_placement),
        ("no_panics", &mut c.no_panics),
    ];
    for (field, slot) in flags {
        match map.get(field) {
            None => {}
            Some(Value::Bool(b)) => *slot = *b,
            Some(other) => {
                let message = format!("must be true or false, got {}", kind(other));
                error_at(v, field, message);
            }
        }
    }
    let min_known = unsigned(v, &map, "min_known_gcs_ops", 0);
    c.min_known_gcs_ops = min_known.map_or(c.min_known_gcs_ops, |n| n as usize);
    if has_gcs == Some(false) {
        const NEEDS: &str = "needs a workload of kind gcs; add one or remove this line";
        if map.get("linearizable") == Some(&Value::Bool(true)) {
            error_at(v, "linearizable", NEEDS);
        }
        if min_known.is_some_and(|n| n > 0) {
            error_at(v, "min_known_gcs_ops", NEEDS);
        }
        c.linearizable = false;
        c.min_known_gcs_ops = 0;
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "parse_error_tests.rs"]
mod error_tests;
