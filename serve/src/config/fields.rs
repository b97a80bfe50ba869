//! Reading typed fields out of a generic (JSON/YAML) value at the
//! validator's path: mappings with unknown fields reported and Ray's
//! aliases renamed ([`object`]), strings, numbers, bounded integers,
//! seconds, one-of names, and the value kinds error messages name.

use serde_json::{Map, Value};
use troupe_core::config::{suggest, Validator};

use super::foreign;

/// Fields accepted under a second name (Ray Serve's spelling).
const ALIASES: &[(&str, &str)] = &[
    ("logging", "logging_config"),
    ("ray_actor_options", "actor_options"),
];

/// The key `value` (a mapping) spells `main` with: an alias of it if the
/// mapping uses one, else `main`.
pub(super) fn spelling(value: &Value, main: &'static str) -> &'static str {
    ALIASES
        .iter()
        .find(|(alias, m)| *m == main && value.get(alias).is_some())
        .map_or(main, |(alias, _)| alias)
}

/// The object at the validator's path, with unknown fields reported.
/// Aliased fields are renamed to their main spelling.
pub(super) fn object(
    v: &mut Validator,
    value: &Value,
    known: &[&str],
) -> Option<Map<String, Value>> {
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

pub(super) fn string(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<String> {
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

pub(super) fn number(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<f64> {
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
pub(super) fn integer(
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
pub(super) fn seconds(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<f64> {
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
pub(super) fn seconds_or_zero(
    v: &mut Validator,
    map: &Map<String, Value>,
    field: &str,
) -> Option<f64> {
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
pub(super) fn without_nulls(map: Map<String, Value>, nullable: &[&str]) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, val)| !(val.is_null() && nullable.contains(&k.as_str())))
        .collect()
}

pub(super) fn one_of(
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
