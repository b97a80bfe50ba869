//! Tests of the log scanner and its timestamp parser.

use super::*;
use crate::record::InstanceEvent;

#[test]
fn days_from_civil_known_dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(1970, 1, 2), 1);
    assert_eq!(days_from_civil(1969, 12, 31), -1);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    assert_eq!(days_from_civil(2026, 12, 6), 20_793);
}

#[test]
fn parses_rfc3339_with_any_fraction() {
    // 2026-12-06T18:40:00Z is 1_796_582_400 s.
    let base = 1_796_582_400_000;
    assert_eq!(parse_rfc3339_ms("2026-12-06T18:40:00Z"), Some(base));
    assert_eq!(parse_rfc3339_ms("2026-12-06T18:40:00.1Z"), Some(base + 100));
    assert_eq!(
        parse_rfc3339_ms("2026-12-06T18:40:00.12Z"),
        Some(base + 120)
    );
    assert_eq!(
        parse_rfc3339_ms("2026-12-06T18:40:00.123Z"),
        Some(base + 123)
    );
    assert_eq!(
        parse_rfc3339_ms("2026-12-06T18:40:00.123456Z"),
        Some(base + 123)
    );
    assert_eq!(
        parse_rfc3339_ms("2026-12-06T18:40:00.999999999Z"),
        Some(base + 999)
    );
    assert_eq!(
        parse_rfc3339_ms("2026-12-06T20:40:00.5+02:00"),
        Some(base + 500)
    );
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_ms("2000-02-29T23:59:59.001Z"),
        Some(951_868_799_001)
    );
}

#[test]
fn rejects_malformed_timestamps() {
    for bad in [
        "",
        "2026-12-06",
        "2026-12-06T18:40:00",
        "2026-12-06T18:40:00.Z",
        "2026-12-06T18:40:00.1234567891Z",
        "2026-13-06T18:40:00Z",
        "2026-02-29T18:40:00Z",
        "2026-12-06T24:40:00Z",
        "2026-12-06T18:40:00ZZ",
        "2026/12/06T18:40:00Z",
        "1969-12-31T23:59:59Z",
        "2026-12-06T18:4a:00Z",
    ] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
    }
}

/// A JSON log line as tracing-subscriber writes it.
fn line(timestamp: &str, message: &str, incarnation: &str) -> String {
    format!(
        r#"{{"timestamp":"{timestamp}","level":"INFO","fields":{{"message":"{message}","actor":"actor-00000000000000ab","incarnation":{incarnation}}},"target":"troupe_worker::instance"}}"#
    )
}

#[test]
fn scans_instance_events_and_panics() {
    let origin = 1_796_582_400_000; // 2026-12-06T18:40:00Z
    let panic = format!(
        "  thread 'tokio-runtime-worker' panicked at worker/src/x.rs:10:5:{}  ",
        "x".repeat(400)
    );
    let text = [
        line("2026-12-06T18:40:01.5Z", "instance started", "1"),
        "not json at all".to_string(),
        r#"{"timestamp":"2026-12-06T18:40:02Z","level":"INFO","fields":{"message":"serving"},"target":"t"}"#.into(),
        "{ broken json".into(),
        panic,
        line("2026-12-06T18:40:03.25Z", "instance stopped", "\"1\""),
        // Before the origin: clamped to 0.
        line("2026-12-06T18:39:59Z", "instance started", "2"),
        // Unparsable timestamp and incarnation: ignored.
        line("yesterday", "instance started", "3"),
        line("2026-12-06T18:40:04Z", "instance started", "\"three\""),
    ]
    .join("\n");
    let scan = scan_log(3, &text, origin);
    let event = |incarnation, started, at_ms| InstanceEvent {
        node: 3,
        actor: "actor-00000000000000ab".into(),
        incarnation,
        started,
        at_ms,
    };
    assert_eq!(
        scan.events,
        vec![
            event(1, true, 1500),
            event(1, false, 3250),
            event(2, true, 0)
        ]
    );
    assert_eq!(scan.panics.len(), 1);
    assert!(scan.panics[0].starts_with("thread 'tokio-runtime-worker' panicked at"));
    assert_eq!(scan.panics[0].chars().count(), 300);
}

#[test]
fn flattened_events_are_read_too() {
    let text = r#"{"timestamp":"2026-12-06T18:40:00.010Z","level":"INFO","message":"instance started","actor":"actor-1","incarnation":7}"#;
    let scan = scan_log(0, text, 1_796_582_400_000);
    assert_eq!(scan.events.len(), 1);
    assert_eq!((scan.events[0].incarnation, scan.events[0].at_ms), (7, 10));
    assert!(scan.panics.is_empty());
}

#[test]
fn empty_log() {
    assert_eq!(scan_log(0, "", 0), LogScan::default());
}
