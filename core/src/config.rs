//! Config helpers: validation that reports every problem with its path,
//! "did you mean" suggestions, and environment variables with defaults.
//!
//! The config schemas themselves live with the crates that own them; they
//! implement [`Validate`] and are checked with [`validate`]:
//!
//! ```
//! # use troupe_core::config::{validate, Validate, Validator};
//! struct Deployment { num_replicas: i64 }
//!
//! impl Validate for Deployment {
//!     fn validate(&self, v: &mut Validator) {
//!         let n = self.num_replicas;
//!         v.field("num_replicas", |v| v.check(n >= 0, format!("must be >= 0, got {n}")));
//!     }
//! }
//!
//! let deployments = vec![Deployment { num_replicas: 1 }, Deployment { num_replicas: -2 }];
//! let err = validate(&deployments).unwrap_err();
//! assert_eq!(err.to_string(), "[1].num_replicas: must be >= 0, got -2");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// One problem in a config, at a path such as
/// `applications[1].deployments[0].num_replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where the problem is; empty for the config as a whole.
    pub path: String,
    /// What is wrong, ideally with what to do about it.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A config that is invalid, with every problem found (never none).
///
/// Displays one `path: message` line per problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigError {
    issues: Vec<ConfigIssue>,
}

impl ConfigError {
    /// An error with a single problem.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            issues: vec![ConfigIssue {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    /// Every problem, in the order found.
    pub fn issues(&self) -> &[ConfigIssue] {
        &self.issues
    }
}

impl From<ConfigIssue> for ConfigError {
    fn from(issue: ConfigIssue) -> Self {
        Self {
            issues: vec![issue],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// A config section that can check itself.
///
/// Implementations record problems on the [`Validator`] instead of stopping
/// at the first one, so a user sees everything to fix at once.
pub trait Validate {
    /// Records every problem in `self` on `v`, at `v`'s current path.
    fn validate(&self, v: &mut Validator);
}

impl<T: Validate> Validate for [T] {
    /// Validates each item under its index: `[0]`, `[1]`, ...
    fn validate(&self, v: &mut Validator) {
        for (i, item) in self.iter().enumerate() {
            v.index(i, |v| item.validate(v));
        }
    }
}

impl<T: Validate> Validate for Vec<T> {
    fn validate(&self, v: &mut Validator) {
        self.as_slice().validate(v);
    }
}

impl<T: Validate> Validate for Option<T> {
    /// Validates the value if present; absence is not a problem.
    fn validate(&self, v: &mut Validator) {
        if let Some(value) = self {
            value.validate(v);
        }
    }
}

/// Validates `value`, returning every problem found.
pub fn validate<T: Validate + ?Sized>(value: &T) -> Result<(), ConfigError> {
    let mut v = Validator::new();
    value.validate(&mut v);
    v.finish()
}

/// Collects [`ConfigIssue`]s while walking a config, tracking the path.
#[derive(Debug, Default)]
pub struct Validator {
    path: String,
    issues: Vec<ConfigIssue>,
}

impl Validator {
    /// A validator at the root, with no problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `check` with the path extended by `.name`.
    pub fn field(&mut self, name: &str, check: impl FnOnce(&mut Self)) {
        let len = self.path.len();
        if len > 0 {
            self.path.push('.');
        }
        self.path.push_str(name);
        check(self);
        self.path.truncate(len);
    }

    /// Runs `check` with the path extended by `[index]`.
    pub fn index(&mut self, index: usize, check: impl FnOnce(&mut Self)) {
        let len = self.path.len();
        self.path.push_str(&format!("[{index}]"));
        check(self);
        self.path.truncate(len);
    }

    /// Validates `value` as field `name`: shorthand for
    /// `v.field(name, |v| value.validate(v))`.
    pub fn nested<T: Validate + ?Sized>(&mut self, name: &str, value: &T) {
        self.field(name, |v| value.validate(v));
    }

    /// Records a problem at the current path.
    pub fn error(&mut self, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            path: self.path.clone(),
            message: message.into(),
        });
    }

    /// Records `message` at the current path unless `ok`.
    ///
    /// The message is built even when `ok`; that is cheap next to parsing
    /// the config it describes.
    pub fn check(&mut self, ok: bool, message: impl Into<String>) {
        if !ok {
            self.error(message);
        }
    }

    /// Records that field `name` is not one of `known`, suggesting the
    /// closest known name if there is one (see [`suggest`]).
    pub fn unknown_field(&mut self, name: &str, known: &[&str]) {
        let message = match suggest(name, known) {
            Some(close) => format!("unknown field; did you mean {close:?}?"),
            None if known.is_empty() => "unknown field; no fields are allowed here".to_owned(),
            None => {
                let quoted: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
                format!("unknown field; expected one of {}", quoted.join(", "))
            }
        };
        self.field(name, |v| v.error(message));
    }

    /// The current path; empty at the root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether any problem has been recorded.
    pub fn has_issues(&self) -> bool {
        !self.issues.is_empty()
    }

    /// `Ok` if nothing was recorded, else every problem.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                issues: self.issues,
            })
        }
    }
}

/// The candidate closest to `unknown`, if it is close enough to be the
/// likely intent: at most `max(1, len / 3)` single-character edits away
/// (`len` in characters of `unknown`), ignoring case. Ties go to the
/// earliest candidate.
pub fn suggest<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_lowercase();
    let threshold = (unknown.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|&candidate| {
            (
                edit_distance(&unknown, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|&(distance, _)| distance <= threshold)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance in characters: the fewest single-character
/// insertions, deletions and substitutions that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // previous[j]: distance between the prefix of `a` seen so far and b[..j].
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, &b_char) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(a_char != b_char);
            let delete = previous[j + 1] + 1;
            let insert = current[j] + 1;
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Where environment variables come from: the process, or a map in tests.
pub trait EnvSource {
    /// The value of `key`, or `None` if it is not set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
///
/// A value that is not valid UTF-8 is passed on lossily, so parsing it
/// fails with the value shown rather than it being silently ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var_os(key).map(|value| value.to_string_lossy().into_owned())
    }
}

/// A fixed environment, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapEnv(BTreeMap<String, String>);

impl MapEnv {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// This environment with `key` set to `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl EnvSource for MapEnv {
    fn var(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// Reads and parses `key`, or `None` if it is unset.
///
/// Surrounding whitespace is trimmed, and a variable set to the empty
/// string counts as unset (as `FOO= cmd` usually intends).
pub fn env_opt<T>(source: &(impl EnvSource + ?Sized), key: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let Some(raw) = source.var(key) else {
        return Ok(None);
    };
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|err| {
        ConfigError::single(
            format!("environment variable {key}"),
            format!("invalid value {raw:?}: {err}; set a valid value or unset it"),
        )
    })
}

/// Reads and parses `key`, or returns `default` if it is unset or empty;
/// the `ENV_*` / `DEFAULT_*` pattern:
///
/// ```
/// # use troupe_core::config::{env_or, MapEnv};
/// const ENV_HTTP_PORT: &str = "TROUPE_HTTP_PORT";
/// const DEFAULT_HTTP_PORT: u16 = 8000;
///
/// let env = MapEnv::new().with(ENV_HTTP_PORT, "8080");
/// assert_eq!(env_or(&env, ENV_HTTP_PORT, DEFAULT_HTTP_PORT).unwrap(), 8080);
/// assert_eq!(env_or(&MapEnv::new(), ENV_HTTP_PORT, DEFAULT_HTTP_PORT).unwrap(), 8000);
/// ```
pub fn env_or<T>(
    source: &(impl EnvSource + ?Sized),
    key: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(env_opt(source, key)?.unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Deployment {
        name: String,
        num_replicas: i64,
    }

    struct Application {
        deployments: Vec<Deployment>,
        route_prefix: Option<String>,
    }

    impl Validate for Deployment {
        fn validate(&self, v: &mut Validator) {
            v.field("name", |v| {
                v.check(!self.name.is_empty(), "must not be empty")
            });
            let n = self.num_replicas;
            v.field("num_replicas", |v| {
                v.check(n >= 0, format!("must be >= 0, got {n}"))
            });
        }
    }

    impl Validate for Application {
        fn validate(&self, v: &mut Validator) {
            v.nested("deployments", &self.deployments);
            if let Some(prefix) = &self.route_prefix {
                v.field("route_prefix", |v| {
                    v.check(prefix.starts_with('/'), "must start with \"/\"")
                });
            }
        }
    }

    fn deployment(name: &str, num_replicas: i64) -> Deployment {
        Deployment {
            name: name.to_owned(),
            num_replicas,
        }
    }

    #[test]
    fn reports_every_issue_with_its_path() {
        let apps = vec![
            Application {
                deployments: vec![deployment("a", 1)],
                route_prefix: Some("/".to_owned()),
            },
            Application {
                deployments: vec![deployment("b", -2), deployment("", 1)],
                route_prefix: Some("api".to_owned()),
            },
        ];
        let mut v = Validator::new();
        v.nested("applications", &apps);
        assert!(v.has_issues());
        let err = v.finish().unwrap_err();
        assert_eq!(err.issues().len(), 3);
        assert_eq!(
            err.to_string(),
            "applications[1].deployments[0].num_replicas: must be >= 0, got -2\n\
             applications[1].deployments[1].name: must not be empty\n\
             applications[1].route_prefix: must start with \"/\""
        );
    }

    #[test]
    fn valid_config_passes() {
        let app = Application {
            deployments: vec![deployment("a", 0)],
            route_prefix: None,
        };
        assert_eq!(validate(&app), Ok(()));
        assert_eq!(validate(&Some(app)), Ok(()));
        assert_eq!(validate(&Option::<Deployment>::None), Ok(()));
    }

    #[test]
    fn path_is_restored_after_each_scope() {
        let mut v = Validator::new();
        v.field("a", |v| {
            v.index(3, |v| {
                v.field("b", |v| assert_eq!(v.path(), "a[3].b"));
                assert_eq!(v.path(), "a[3]");
            });
            v.index(4, |v| v.index(0, |v| assert_eq!(v.path(), "a[4][0]")));
        });
        assert_eq!(v.path(), "");
        v.error("whole config is wrong");
        let err = v.finish().unwrap_err();
        assert_eq!(err.to_string(), "whole config is wrong");
    }

    #[test]
    fn single_issue_errors_display_one_line() {
        let err = ConfigError::single("http_options.port", "must be > 0");
        assert_eq!(err.to_string(), "http_options.port: must be > 0");
        let issue = ConfigIssue {
            path: String::new(),
            message: "empty file".into(),
        };
        assert_eq!(ConfigError::from(issue).to_string(), "empty file");
    }

    #[test]
    fn unknown_field_suggests_or_lists_the_known_names() {
        let known = ["num_replicas", "max_ongoing_requests"];
        let mut v = Validator::new();
        v.field("deployments", |v| {
            v.index(0, |v| {
                v.unknown_field("num_replica", &known);
                v.unknown_field("colour", &known);
                v.unknown_field("x", &[]);
            })
        });
        let lines: Vec<String> = v
            .finish()
            .unwrap_err()
            .to_string()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            lines,
            [
                "deployments[0].num_replica: unknown field; did you mean \"num_replicas\"?",
                "deployments[0].colour: unknown field; expected one of \"num_replicas\", \
                 \"max_ongoing_requests\"",
                "deployments[0].x: unknown field; no fields are allowed here",
            ]
        );
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("héllo", "hello"), 1);
    }

    #[test]
    fn suggest_finds_close_names_only() {
        let fields = ["num_replicas", "route_prefix", "user_config", "name"];
        assert_eq!(suggest("num_replica", &fields), Some("num_replicas"));
        assert_eq!(suggest("route_prefx", &fields), Some("route_prefix"));
        assert_eq!(suggest("User_Config", &fields), Some("user_config"));
        assert_eq!(suggest("nam", &fields), Some("name"));
        assert_eq!(suggest("nmae", &fields), None, "a swap is two edits");
        assert_eq!(suggest("replicas", &fields), None);
        assert_eq!(suggest("completely_different", &fields), None);
        assert_eq!(suggest("x", &fields), None);
        assert_eq!(suggest("anything", &[]), None);
    }

    #[test]
    fn suggest_prefers_the_closest_then_the_first() {
        assert_eq!(suggest("cat", &["cut", "cart"]), Some("cut"));
        assert_eq!(suggest("cat", &["cart", "cut"]), Some("cart"));
        assert_eq!(suggest("abcdef", &["abcxef", "abcdxf"]), Some("abcxef"));
        assert_eq!(suggest("abcdef", &["abcxyf", "abcdxf"]), Some("abcdxf"));
    }

    #[test]
    fn env_or_uses_the_default_when_unset_or_empty() {
        let env = MapEnv::new().with("EMPTY", "").with("BLANK", "  ");
        assert_eq!(env_or(&env, "MISSING", 8000_u16), Ok(8000));
        assert_eq!(env_or(&env, "EMPTY", 8000_u16), Ok(8000));
        assert_eq!(env_or(&env, "BLANK", 8000_u16), Ok(8000));
        assert_eq!(env_opt::<u16>(&env, "MISSING"), Ok(None));
    }

    #[test]
    fn env_or_parses_set_values() {
        let env: MapEnv = [("PORT", " 8080 "), ("NAME", "head")].into_iter().collect();
        assert_eq!(env_or(&env, "PORT", 8000_u16), Ok(8080));
        assert_eq!(env_or(&env, "NAME", String::new()), Ok("head".to_owned()));
        let dynamic: &dyn EnvSource = &env;
        assert_eq!(env_opt(dynamic, "PORT"), Ok(Some(8080_u32)));
    }

    #[test]
    fn env_errors_name_the_variable_and_the_value() {
        let env = MapEnv::new().with("TROUPE_HTTP_PORT", "eighty");
        let err = env_or(&env, "TROUPE_HTTP_PORT", 8000_u16).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable TROUPE_HTTP_PORT: invalid value \"eighty\": \
             invalid digit found in string; set a valid value or unset it"
        );
    }

    #[test]
    fn process_env_reports_unset_variables_as_none() {
        let key = "TROUPE_CORE_TEST_VARIABLE_THAT_IS_NEVER_SET";
        assert_eq!(ProcessEnv.var(key), None);
        assert_eq!(env_or(&ProcessEnv, key, 7_u8), Ok(7));
    }
}
