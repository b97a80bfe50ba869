//! One application of a config: its name, `import_path` or `app` (Ray's
//! form checked, the builder it names), `route_prefix`, `args`, and the
//! list of its deployments' overrides.

use std::collections::BTreeSet;

use serde_json::Value;
use troupe_core::config::Validator;

use super::deployment::read_deployment;
use super::fields::{object, string, value_kind};
use super::layout::AppLayout;
use super::{foreign, AppConfig};
use crate::spec::check_name;

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

pub(super) fn read_app(v: &mut Validator, value: &Value) -> Option<(AppConfig, AppLayout)> {
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
