//! The one tracing setup that binaries call.
//!
//! Libraries only emit events and spans; a binary installs the global
//! subscriber once, at the start of `main`:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use troupe_core::config::ProcessEnv;
//! use troupe_core::telemetry::{self, LogConfig};
//!
//! telemetry::init(&LogConfig::from_env(&ProcessEnv)?)?;
//! # Ok(())
//! # }
//! ```
//!
//! Logs go to stderr, so stdout stays free for a command's own output.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use thiserror::Error;
use tracing::Dispatch;
use tracing_subscriber::fmt::writer::MakeWriter;
use tracing_subscriber::fmt::TestWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{env_or, ConfigError, EnvSource, ProcessEnv};

/// The variable holding the log filter, as everywhere in the tracing world.
pub const ENV_LOG_FILTER: &str = "RUST_LOG";
/// The variable choosing the log format: `text` or `json`.
pub const ENV_LOG_FORMAT: &str = "TROUPE_LOG_FORMAT";
/// The filter used when [`ENV_LOG_FILTER`] is unset or empty.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// What to show a person fixing a filter.
const VALID_FILTER_HINT: &str = "use a level (error, warn, info, debug, trace) or \
    comma-separated directives such as \"info,troupe_gcs=debug,openraft=warn\"";

/// Everything that can go wrong setting up tracing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TelemetryError {
    /// The filter string does not parse.
    #[error("invalid log filter {filter:?}: {reason}; {VALID_FILTER_HINT}")]
    InvalidFilter {
        /// The rejected filter.
        filter: String,
        /// What the parser objected to.
        reason: String,
    },
    /// A log format other than `text` or `json`.
    #[error("unknown log format {format:?}; use \"text\" or \"json\"")]
    UnknownFormat {
        /// The rejected format name.
        format: String,
    },
    /// A global subscriber was installed before.
    #[error(
        "a global tracing subscriber is already installed; \
         call telemetry::init once, at the start of main"
    )]
    AlreadyInitialized,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    /// `text` or `json`, ignoring case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            t if t.eq_ignore_ascii_case("text") => Ok(Self::Text),
            t if t.eq_ignore_ascii_case("json") => Ok(Self::Json),
            _ => Err(TelemetryError::UnknownFormat {
                format: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// How a binary logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// An [`EnvFilter`] directive string, e.g. `info,troupe_gcs=debug`.
    pub filter: String,
    /// Whether to colour text output with ANSI escapes.
    pub ansi: bool,
}

impl Default for LogConfig {
    /// Text lines; the filter from `RUST_LOG`, else `info`; colour when
    /// stderr is a terminal and `NO_COLOR` is unset.
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: filter_from(&ProcessEnv),
            ansi: ansi_from(&ProcessEnv),
        }
    }
}

impl LogConfig {
    /// Like [`LogConfig::default`] read from `source`, plus the format from
    /// [`ENV_LOG_FORMAT`]; an unknown format is an error, not ignored.
    pub fn from_env(source: &(impl EnvSource + ?Sized)) -> Result<Self, ConfigError> {
        Ok(Self {
            format: env_or(source, ENV_LOG_FORMAT, LogFormat::Text)?,
            filter: filter_from(source),
            ansi: ansi_from(source),
        })
    }
}

/// The filter from [`ENV_LOG_FILTER`], or [`DEFAULT_LOG_FILTER`] if unset or
/// blank. Not validated here: [`init`] reports a bad filter.
fn filter_from(source: &(impl EnvSource + ?Sized)) -> String {
    source
        .var(ENV_LOG_FILTER)
        .filter(|filter| !filter.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned())
}

/// Colour only for a terminal, and never when `NO_COLOR` is set
/// (<https://no-color.org>).
fn ansi_from(source: &(impl EnvSource + ?Sized)) -> bool {
    let no_color = source.var("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Installs the global subscriber described by `config`, writing to stderr.
///
/// Fails, installing nothing, if the filter is invalid; fails if a global
/// subscriber is already installed (by an earlier call or anyone else).
pub fn init(config: &LogConfig) -> Result<(), TelemetryError> {
    let dispatch = dispatch(config, std::io::stderr)?;
    tracing::dispatcher::set_global_default(dispatch)
        .map_err(|_| TelemetryError::AlreadyInitialized)
}

/// For tests: installs a text subscriber writing through libtest's capture
/// (so output shows only for failing tests), filtered by `RUST_LOG` or
/// `info`. Idempotent: if any global subscriber is already installed, it
/// keeps that one and returns `Ok`. Fails only on an invalid `RUST_LOG`.
pub fn try_init_for_tests() -> Result<(), TelemetryError> {
    let config = LogConfig {
        format: LogFormat::Text,
        filter: filter_from(&ProcessEnv),
        ansi: false,
    };
    let dispatch = dispatch(&config, TestWriter::default())?;
    // Losing the race to another subscriber is fine: one is installed.
    let _already_installed = tracing::dispatcher::set_global_default(dispatch);
    Ok(())
}

/// Builds the subscriber for `config`, writing to `writer`, without
/// installing it.
fn dispatch<W>(config: &LogConfig, writer: W) -> Result<Dispatch, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(parse_filter(&config.filter)?)
        .with_ansi(config.ansi)
        .with_writer(writer);
    Ok(match config.format {
        LogFormat::Text => Dispatch::new(builder.finish()),
        LogFormat::Json => Dispatch::new(builder.json().finish()),
    })
}

/// Parses a filter strictly: any bad directive fails the whole filter
/// instead of being skipped, and an empty filter is rejected rather than
/// silently meaning "errors only".
fn parse_filter(filter: &str) -> Result<EnvFilter, TelemetryError> {
    let invalid = |reason: String| TelemetryError::InvalidFilter {
        filter: filter.to_owned(),
        reason,
    };
    if filter.trim().is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    EnvFilter::try_new(filter).map_err(|err| invalid(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// A writer whose output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs `emit` under a subscriber built from `format` and `filter`, and
    /// returns what it wrote.
    fn capture(format: LogFormat, filter: &str, emit: impl FnOnce()) -> String {
        let config = LogConfig {
            format,
            filter: filter.to_owned(),
            ansi: false,
        };
        let out = Captured::default();
        let writer = out.clone();
        let dispatch = dispatch(&config, move || writer.clone()).unwrap();
        tracing::dispatcher::with_default(&dispatch, emit);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn log_format_parses_case_insensitively() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("JSON".parse(), Ok(LogFormat::Json));
        assert_eq!(" Json\n".parse(), Ok(LogFormat::Json));
        assert_eq!(LogFormat::Json.to_string().parse(), Ok(LogFormat::Json));
        assert_eq!(LogFormat::Text.to_string(), "text");
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown log format \"yaml\"; use \"text\" or \"json\""
        );
    }

    #[test]
    fn invalid_filters_are_errors_that_show_a_valid_one() {
        for filter in ["info,troupe=loud", "=", "", "  "] {
            let config = LogConfig {
                filter: filter.to_owned(),
                ..LogConfig::default()
            };
            let err = init(&config).unwrap_err();
            assert!(
                matches!(&err, TelemetryError::InvalidFilter { filter: f, .. } if f == filter),
                "{filter:?}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains("info,troupe_gcs=debug"), "{message}");
        }
    }

    #[test]
    fn second_init_is_an_error_not_a_panic() {
        // Whichever test in this binary gets there first installs the global
        // subscriber; after this line one is installed for sure.
        assert_eq!(try_init_for_tests(), Ok(()));
        assert_eq!(try_init_for_tests(), Ok(()));
        let config = LogConfig {
            ansi: false,
            ..LogConfig::default()
        };
        assert_eq!(init(&config), Err(TelemetryError::AlreadyInitialized));
    }

    #[test]
    fn text_format_respects_the_filter() {
        let out = capture(LogFormat::Text, "info,chatty=debug", || {
            tracing::info!(replica = 3, "replica started");
            tracing::debug!("hidden detail");
            tracing::debug!(target: "chatty", "shown detail");
        });
        assert!(out.contains("INFO"), "{out}");
        assert!(out.contains("replica started replica=3"), "{out}");
        assert!(out.contains("shown detail"), "{out}");
        assert!(!out.contains("hidden detail"), "{out}");
        assert!(!out.contains('\u{1b}'), "no ANSI escapes when ansi is off");
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let out = capture(LogFormat::Json, "info", || {
            tracing::info!(replica = 3, "replica started");
            tracing::warn!("slow");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines.iter().all(|l| l.starts_with('{') && l.ends_with('}')));
        assert!(lines[0].contains(r#""level":"INFO""#), "{out}");
        assert!(lines[0].contains(r#""message":"replica started""#), "{out}");
        assert!(lines[0].contains(r#""replica":3"#), "{out}");
    }

    #[test]
    fn config_reads_filter_format_and_no_color_from_the_env() {
        let env = MapEnv::new()
            .with(ENV_LOG_FILTER, "warn,troupe_gcs=debug")
            .with(ENV_LOG_FORMAT, "JSON")
            .with("NO_COLOR", "1");
        let config = LogConfig::from_env(&env).unwrap();
        assert_eq!(
            config,
            LogConfig {
                format: LogFormat::Json,
                filter: "warn,troupe_gcs=debug".to_owned(),
                ansi: false,
            }
        );
        let defaults = LogConfig::from_env(&MapEnv::new().with(ENV_LOG_FILTER, " ")).unwrap();
        assert_eq!(defaults.format, LogFormat::Text);
        assert_eq!(defaults.filter, DEFAULT_LOG_FILTER);
    }

    #[test]
    fn config_rejects_an_unknown_format() {
        let env = MapEnv::new().with(ENV_LOG_FORMAT, "xml");
        let err = LogConfig::from_env(&env).unwrap_err();
        assert_eq!(
            err.issues()[0].path,
            "environment variable TROUPE_LOG_FORMAT"
        );
        assert!(
            err.to_string().contains("use \"text\" or \"json\""),
            "{err}"
        );
    }
}
