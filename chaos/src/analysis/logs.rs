//! Reading a node's log: panics, and actor instances starting and
//! stopping (tracing-subscriber's JSON lines).

use serde_json::Value;

use crate::record::InstanceEvent;

/// The longest panic line kept, in characters.
const MAX_PANIC_CHARS: usize = 300;

/// What a node's log says: panics and instance lifecycle events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogScan {
    /// Lines reporting a panic.
    pub panics: Vec<String>,
    /// Instance starts and stops.
    pub events: Vec<InstanceEvent>,
}

/// Scans node `node`'s log text; wall-clock timestamps map onto the run's
/// clock through `origin_unix_ms` (the origin as Unix time, ms).
///
/// A line containing `panicked at` (the panic hook's plain-text message)
/// is a panic, kept trimmed and cut to 300 characters. A JSON line whose
/// message is `instance started` or `instance stopped`, with an `actor`,
/// an `incarnation` (number or string) and a parsable timestamp, is an
/// event at `unix_ms - origin_unix_ms` (0 if earlier). Anything else is
/// ignored.
pub fn scan_log(node: usize, text: &str, origin_unix_ms: u64) -> LogScan {
    let mut scan = LogScan::default();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("panicked at") {
            scan.panics
                .push(line.chars().take(MAX_PANIC_CHARS).collect());
            continue;
        }
        if line.starts_with('{') {
            if let Some(event) = instance_event(node, line, origin_unix_ms) {
                scan.events.push(event);
            }
        }
    }
    scan
}

/// The instance event a JSON log line reports, if it is one.
fn instance_event(node: usize, line: &str, origin_unix_ms: u64) -> Option<InstanceEvent> {
    let json: Value = serde_json::from_str(line).ok()?;
    // Fields nest under `fields` by default, or sit at the top level with
    // `flatten_event(true)`.
    let field = |name: &str| {
        json.get("fields")
            .and_then(|f| f.get(name))
            .or_else(|| json.get(name))
    };
    let started = match field("message")?.as_str()? {
        "instance started" => true,
        "instance stopped" => false,
        _ => return None,
    };
    let actor = field("actor")?.as_str()?.to_string();
    let incarnation = match field("incarnation")? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let unix_ms = parse_rfc3339_ms(json.get("timestamp")?.as_str()?)?;
    Some(InstanceEvent {
        node,
        actor,
        incarnation,
        started,
        at_ms: unix_ms.saturating_sub(origin_unix_ms),
    })
}

/// Parses an RFC 3339 timestamp (`2026-12-06T18:40:00.123456Z`: 0 to 9
/// fractional digits, `Z` or a `±HH:MM` offset) to Unix time in ms,
/// truncating sub-millisecond digits. `None` if malformed or before 1970.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])? as i64;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return None;
        }
        let mut scaled = fraction[..len.min(3)].to_vec();
        scaled.resize(3, b'0');
        millis = digits(&scaled)?;
        rest = &fraction[len..];
    }
    let offset_s: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let magnitude = (h * 3600 + m * 60) as i64;
            if *sign == b'+' {
                magnitude
            } else {
                -magnitude
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset_s;
    let ms = seconds.checked_mul(1000)? + millis as i64;
    u64::try_from(ms).ok()
}

/// The decimal number `bytes` spells (ASCII digits only).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: u64) -> u64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year-month-day` (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let (month, day) = (month as i64, day as i64);
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
