//! Small readers, as in `troupe_serve::config`: each takes a mapping and a
//! field, records its own problem at that field (`must be a number, got a
//! string`) and returns `None` then, or when the field is absent.

use serde_json::{Map, Value};
use troupe_core::config::{suggest, Validator};

/// Records `message` at `field` of the current path.
pub(super) fn error_at(v: &mut Validator, field: &str, message: impl Into<String>) {
    v.field(field, |v| v.error(message));
}

/// The mapping at the validator's path (null: empty), unknown fields
/// reported.
pub(super) fn object(
    v: &mut Validator,
    value: &Value,
    known: &[&str],
) -> Option<Map<String, Value>> {
    match value {
        Value::Null => Some(Map::new()),
        Value::Object(map) => {
            for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
                v.unknown_field(key, known);
            }
            Some(map.clone())
        }
        other => {
            v.error(format!("must be a mapping, got {}", kind(other)));
            None
        }
    }
}

/// What a value is, for messages (`a string`, `a list`): serve's, so both
/// parsers word it alike.
pub(super) use troupe_serve::config::value_kind as kind;

/// Records `missing field "<field>"<hint>` at the mapping's path if absent.
pub(super) fn require(v: &mut Validator, map: &Map<String, Value>, field: &str, hint: &str) {
    if !map.contains_key(field) {
        v.error(format!("missing field {field:?}{hint}"));
    }
}

/// A string.
pub(super) fn string(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<String> {
    match map.get(field)? {
        Value::String(s) => Some(s.clone()),
        other => {
            let message = format!("must be a string, got {}", kind(other));
            error_at(v, field, message);
            None
        }
    }
}

/// A finite number.
pub(super) fn number(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<f64> {
    let value = map.get(field)?;
    let n = value.as_f64().filter(|n| n.is_finite());
    if n.is_none() {
        let message = format!("must be a number, got {}", kind(value));
        error_at(v, field, message);
    }
    n
}

/// A number for which `ok` holds; else `must be <rule>, got <n>`.
pub(super) fn number_where(
    v: &mut Validator,
    map: &Map<String, Value>,
    field: &str,
    ok: impl Fn(f64) -> bool,
    rule: &str,
) -> Option<f64> {
    let n = number(v, map, field)?;
    if !ok(n) {
        error_at(v, field, format!("must be {rule}, got {n}"));
        return None;
    }
    Some(n)
}

/// A number > 0.
pub(super) fn positive(v: &mut Validator, map: &Map<String, Value>, field: &str) -> Option<f64> {
    number_where(v, map, field, |n| n > 0.0, "> 0")
}

/// An integer >= `min`.
pub(super) fn unsigned(
    v: &mut Validator,
    map: &Map<String, Value>,
    field: &str,
    min: u64,
) -> Option<u64> {
    let value = map.get(field)?;
    let message = match (value.as_u64(), value.as_i64(), value.as_f64()) {
        (Some(n), _, _) if n >= min => return Some(n),
        (Some(n), _, _) => format!("must be >= {min}, got {n}"),
        (None, Some(n), _) => format!("must be >= {min}, got {n}"),
        (None, None, Some(f)) => format!("must be an integer, got {f}"),
        _ => format!("must be an integer, got {}", kind(value)),
    };
    error_at(v, field, message);
    None
}

/// One of `allowed` (ignoring case), as spelled in `allowed`.
pub(super) fn one_of(
    v: &mut Validator,
    map: &Map<String, Value>,
    field: &str,
    allowed: &[&'static str],
) -> Option<&'static str> {
    let given = string(v, map, field)?;
    if let Some(found) = allowed.iter().find(|a| a.eq_ignore_ascii_case(&given)) {
        return Some(found);
    }
    let hint = suggest(&given, allowed).map_or(String::new(), |c| format!("; did you mean {c:?}?"));
    let message = format!("must be one of {}, got {given:?}{hint}", allowed.join(", "));
    error_at(v, field, message);
    None
}

/// Runs `item` on each element of the list `field`, at its index; nothing
/// if the field is absent or null, an error if it is not a list.
pub(super) fn list(
    v: &mut Validator,
    map: &Map<String, Value>,
    field: &str,
    mut item: impl FnMut(&mut Validator, &Value),
) {
    match map.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => v.field(field, |v| {
            for (i, value) in items.iter().enumerate() {
                v.index(i, |v| item(v, value));
            }
        }),
        Some(other) => error_at(v, field, format!("must be a list, got {}", kind(other))),
    }
}
