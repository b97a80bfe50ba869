//! A deployment's `num_replicas` (a count or `auto`) and its
//! `autoscaling_config`, with Ray Serve's names, defaults and checks, and
//! [`AutoscalingConfig::policy`]: the effective numbers the autoscaler
//! ([`crate::autoscale`]) works with.
//!
//! ```yaml
//! num_replicas: auto                 # Ray's: min 1, max 100, target 2, then autoscaling_config's fields
//! autoscaling_config:
//!   min_replicas: 0                  # default 1
//!   max_replicas: 8                  # default 1 (100 with num_replicas: auto)
//!   initial_replicas: 1              # default min_replicas
//!   target_ongoing_requests: 2       # queued + in flight per replica
//!   upscale_delay_s: 30
//!   downscale_delay_s: 600
//!   downscale_to_zero_delay_s: 600   # default downscale_delay_s
//!   look_back_period_s: 30
//!   metrics_interval_s: 10
//!   upscaling_factor: 1              # gain on each step
//!   downscaling_factor: 1
//! ```
//!
//! Ray 2.x still accepts `smoothing_factor`, `upscale_smoothing_factor`
//! and `downscale_smoothing_factor` (deprecated); so does Troupe, folded
//! into the factors the way Ray reads them: `upscaling_factor`, else
//! `upscale_smoothing_factor`, else `smoothing_factor` (and likewise
//! down). A config printed back spells only the current names.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use troupe_core::config::Validator;

use super::fields::{integer, number, object};
use crate::autoscale::AutoscalingPolicy;

/// A deployment's `num_replicas`: a fixed count, or `auto` (autoscaling
/// with Ray's defaults for it, see [`AutoscalingConfig::auto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumReplicas {
    Fixed(u32),
    Auto,
}

impl Serialize for NumReplicas {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            NumReplicas::Fixed(n) => serializer.serialize_u32(*n),
            NumReplicas::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for NumReplicas {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Count;
        impl Visitor<'_> for Count {
            type Value = NumReplicas;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of replicas or \"auto\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<NumReplicas, E> {
                u32::try_from(n)
                    .map(NumReplicas::Fixed)
                    .map_err(|_| E::custom(format!("{n} replicas is too many")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<NumReplicas, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("must be >= 0, got {n}")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<NumReplicas, E> {
                match s {
                    "auto" => Ok(NumReplicas::Auto),
                    other => Err(E::custom(format!(
                        "must be a number or \"auto\", got {other:?}"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Count)
    }
}

/// Ray Serve's `autoscaling_config`, with its defaults filled in where Ray
/// has one ([`AutoscalingConfig::default`]) and `None` where Ray's
/// default is "unset" (then [`AutoscalingConfig::policy`] says what
/// applies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoscalingConfig {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// `None`: start with `min_replicas`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_replicas: Option<u32>,
    /// Ongoing requests (queued plus in flight) per replica to aim for.
    pub target_ongoing_requests: f64,
    pub upscale_delay_s: f64,
    pub downscale_delay_s: f64,
    /// `None`: `downscale_delay_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downscale_to_zero_delay_s: Option<f64>,
    pub look_back_period_s: f64,
    pub metrics_interval_s: f64,
    /// `None`: 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upscaling_factor: Option<f64>,
    /// `None`: 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downscaling_factor: Option<f64>,
}

impl Default for AutoscalingConfig {
    /// Ray Serve's defaults.
    fn default() -> Self {
        AutoscalingConfig {
            min_replicas: 1,
            max_replicas: 1,
            initial_replicas: None,
            target_ongoing_requests: 2.0,
            upscale_delay_s: 30.0,
            downscale_delay_s: 600.0,
            downscale_to_zero_delay_s: None,
            look_back_period_s: 30.0,
            metrics_interval_s: 10.0,
            upscaling_factor: None,
            downscaling_factor: None,
        }
    }
}

impl AutoscalingConfig {
    /// What `num_replicas: auto` means before its `autoscaling_config`'s
    /// fields apply (Ray's `AutoscalingConfig.default()`): min 1, max 100,
    /// target 2, the rest as [`AutoscalingConfig::default`].
    pub fn auto() -> Self {
        AutoscalingConfig {
            min_replicas: 1,
            max_replicas: 100,
            target_ongoing_requests: 2.0,
            ..AutoscalingConfig::default()
        }
    }

    /// The effective numbers, every default applied, times in ms.
    /// Every problem with these values, as the config file's checks report
    /// them (`min_replicas: must be <= max_replicas (2), got 3`), for
    /// options given in code.
    pub fn check(&self) -> Result<(), String> {
        let value = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let mut v = Validator::new();
        read_autoscaling(&mut v, &value, &AutoscalingConfig::default());
        v.finish().map_err(|e| e.to_string())
    }

    pub fn policy(&self) -> AutoscalingPolicy {
        let ms = |s: f64| (s * 1000.0).round().max(0.0) as u64;
        let downscale_delay_ms = ms(self.downscale_delay_s);
        AutoscalingPolicy {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas.max(self.min_replicas),
            initial_replicas: self
                .initial_replicas
                .unwrap_or(self.min_replicas)
                .clamp(self.min_replicas, self.max_replicas.max(self.min_replicas)),
            target_ongoing_requests: self.target_ongoing_requests,
            upscale_delay_ms: ms(self.upscale_delay_s),
            downscale_delay_ms,
            downscale_to_zero_delay_ms: self
                .downscale_to_zero_delay_s
                .map_or(downscale_delay_ms, ms),
            look_back_ms: ms(self.look_back_period_s).max(1),
            metrics_interval_ms: ms(self.metrics_interval_s).max(1),
            upscaling_factor: self.upscaling_factor.unwrap_or(1.0),
            downscaling_factor: self.downscaling_factor.unwrap_or(1.0),
        }
    }
}

impl From<&AutoscalingPolicy> for AutoscalingConfig {
    /// The config that gives `policy` (every value spelled out).
    fn from(policy: &AutoscalingPolicy) -> Self {
        let s = |ms: u64| ms as f64 / 1000.0;
        AutoscalingConfig {
            min_replicas: policy.min_replicas,
            max_replicas: policy.max_replicas,
            initial_replicas: Some(policy.initial_replicas),
            target_ongoing_requests: policy.target_ongoing_requests,
            upscale_delay_s: s(policy.upscale_delay_ms),
            downscale_delay_s: s(policy.downscale_delay_ms),
            downscale_to_zero_delay_s: Some(s(policy.downscale_to_zero_delay_ms)),
            look_back_period_s: s(policy.look_back_ms),
            metrics_interval_s: s(policy.metrics_interval_ms),
            upscaling_factor: Some(policy.upscaling_factor),
            downscaling_factor: Some(policy.downscaling_factor),
        }
    }
}

/// The fields `autoscaling_config` accepts (the deprecated ones last).
pub(super) const AUTOSCALING_FIELDS: &[&str] = &[
    "min_replicas",
    "max_replicas",
    "initial_replicas",
    "target_ongoing_requests",
    "upscale_delay_s",
    "downscale_delay_s",
    "downscale_to_zero_delay_s",
    "look_back_period_s",
    "metrics_interval_s",
    "upscaling_factor",
    "downscaling_factor",
    "smoothing_factor",
    "upscale_smoothing_factor",
    "downscale_smoothing_factor",
];

/// `num_replicas` at `map`, if given: a count >= 0 or `"auto"` (0 is
/// refused by the caller, with why).
pub(super) fn read_num_replicas(
    v: &mut Validator,
    map: &Map<String, Value>,
) -> Option<NumReplicas> {
    match map.get("num_replicas")? {
        Value::String(s) if s == "auto" => Some(NumReplicas::Auto),
        Value::String(s) => {
            v.field("num_replicas", |v| {
                v.error(format!(
                    "must be a number of replicas or \"auto\" (autoscaling), got {s:?}"
                ))
            });
            None
        }
        // Ray's check sees the value before pydantic converts it: a
        // float, even 2.0, is refused.
        Value::Number(n) if n.is_f64() => {
            v.field("num_replicas", |v| {
                v.error(format!("must be an integer or \"auto\", got {n}"))
            });
            None
        }
        _ => integer(v, map, "num_replicas", 0, u32::MAX as i64)
            .map(|n| NumReplicas::Fixed(n as u32)),
    }
}

/// The `autoscaling_config` at `value`, each field not given taken from
/// `defaults` ([`AutoscalingConfig::default`], or
/// [`AutoscalingConfig::auto`] with `num_replicas: auto`).
pub(super) fn read_autoscaling(
    v: &mut Validator,
    value: &Value,
    defaults: &AutoscalingConfig,
) -> Option<AutoscalingConfig> {
    let known = super::foreign::with_names(AUTOSCALING_FIELDS, super::foreign::AUTOSCALING);
    let map = object(v, value, &known)?;
    super::foreign::check_all(v, &map, super::foreign::AUTOSCALING);
    // Ray's `Optional` fields: null is the same as left out.
    let map = super::fields::without_nulls(
        map,
        &[
            "initial_replicas",
            "target_ongoing_requests",
            "downscale_to_zero_delay_s",
            "upscaling_factor",
            "downscaling_factor",
            "upscale_smoothing_factor",
            "downscale_smoothing_factor",
        ],
    );
    let min = integer(v, &map, "min_replicas", 0, u32::MAX as i64)
        .map_or(defaults.min_replicas, |n| n as u32);
    let max = integer(v, &map, "max_replicas", 1, u32::MAX as i64)
        .map_or(defaults.max_replicas, |n| n as u32);
    if min > max {
        v.field("min_replicas", |v| {
            v.error(format!("must be <= max_replicas ({max}), got {min}"))
        });
    }
    let initial = integer(v, &map, "initial_replicas", 0, u32::MAX as i64)
        .map(|n| n as u32)
        .or(defaults.initial_replicas);
    if let Some(n) = initial.filter(|&n| n < min || n > max) {
        v.field("initial_replicas", |v| {
            v.error(format!(
                "must be between min_replicas ({min}) and max_replicas ({max}), got {n}"
            ))
        });
    }
    let positive = |v: &mut Validator, field: &str, what: &str| -> Option<f64> {
        let n = number(v, &map, field)?;
        if n.is_finite() && n > 0.0 {
            return Some(n);
        }
        v.field(field, |v| v.error(format!("must be {what} > 0, got {n}")));
        None
    };
    let non_negative = |v: &mut Validator, field: &str| -> Option<f64> {
        let n = number(v, &map, field)?;
        if n.is_finite() && n >= 0.0 {
            return Some(n);
        }
        v.field(field, |v| {
            v.error(format!("must be a number of seconds >= 0, got {n}"))
        });
        None
    };
    let target = positive(v, "target_ongoing_requests", "a number")
        .unwrap_or(defaults.target_ongoing_requests);
    let look_back = positive(v, "look_back_period_s", "a number of seconds")
        .unwrap_or(defaults.look_back_period_s);
    let interval = positive(v, "metrics_interval_s", "a number of seconds")
        .unwrap_or(defaults.metrics_interval_s);
    let smoothing = positive(v, "smoothing_factor", "a number");
    let up_smoothing = positive(v, "upscale_smoothing_factor", "a number");
    let down_smoothing = positive(v, "downscale_smoothing_factor", "a number");
    let up = positive(v, "upscaling_factor", "a number");
    let down = positive(v, "downscaling_factor", "a number");
    Some(AutoscalingConfig {
        min_replicas: min,
        max_replicas: max,
        initial_replicas: initial,
        target_ongoing_requests: target,
        upscale_delay_s: non_negative(v, "upscale_delay_s").unwrap_or(defaults.upscale_delay_s),
        downscale_delay_s: non_negative(v, "downscale_delay_s")
            .unwrap_or(defaults.downscale_delay_s),
        downscale_to_zero_delay_s: non_negative(v, "downscale_to_zero_delay_s")
            .or(defaults.downscale_to_zero_delay_s),
        look_back_period_s: look_back,
        metrics_interval_s: interval,
        upscaling_factor: up
            .or(up_smoothing)
            .or(smoothing)
            .or(defaults.upscaling_factor),
        downscaling_factor: down
            .or(down_smoothing)
            .or(smoothing)
            .or(defaults.downscaling_factor),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, to_yaml, DeploymentConfig};

    fn deployment(fields: &str) -> Result<DeploymentConfig, String> {
        let text = format!(
            "applications:\n  - name: a\n    app: x\n    deployments:\n      - name: d\n{fields}"
        );
        parse_yaml(&text)
            .map(|c| c.applications[0].deployments[0].clone())
            .map_err(|e| e.to_string())
    }

    const AT: &str = "applications[0].deployments[0]";

    #[test]
    fn an_empty_autoscaling_config_has_rays_defaults() {
        let d = deployment("        autoscaling_config: {}\n").unwrap();
        assert_eq!(d.autoscaling_config, Some(AutoscalingConfig::default()));
        let p = d.autoscaling_config.unwrap().policy();
        assert_eq!(p, AutoscalingPolicy::default());
        assert_eq!(
            (p.upscale_delay_ms, p.downscale_to_zero_delay_ms),
            (30_000, 600_000)
        );
        assert_eq!((p.look_back_ms, p.metrics_interval_ms), (30_000, 10_000));
    }

    #[test]
    fn every_field_is_read_and_printed_back() {
        let d = deployment(
            "        autoscaling_config:\n          min_replicas: 0\n          max_replicas: 8\n          initial_replicas: 2\n          target_ongoing_requests: 1.5\n          upscale_delay_s: 2\n          downscale_delay_s: 20\n          downscale_to_zero_delay_s: 0\n          look_back_period_s: 5\n          metrics_interval_s: 0.5\n          upscaling_factor: 2\n          downscaling_factor: 0.5\n",
        )
        .unwrap();
        let a = d.autoscaling_config.clone().unwrap();
        let p = a.policy();
        assert_eq!(
            p,
            AutoscalingPolicy {
                min_replicas: 0,
                max_replicas: 8,
                initial_replicas: 2,
                target_ongoing_requests: 1.5,
                upscale_delay_ms: 2_000,
                downscale_delay_ms: 20_000,
                downscale_to_zero_delay_ms: 0,
                look_back_ms: 5_000,
                metrics_interval_ms: 500,
                upscaling_factor: 2.0,
                downscaling_factor: 0.5,
            }
        );
        let text = to_yaml(&crate::config::ServeConfig {
            applications: vec![crate::config::AppConfig {
                name: "a".into(),
                route_prefix: Some("/".into()),
                app: "x".into(),
                import_path: None,
                args: Value::Null,
                deployments: vec![d.clone()],
            }],
            ..Default::default()
        });
        let again = parse_yaml(&text).unwrap();
        assert_eq!(again.applications[0].deployments[0], d);
    }

    #[test]
    fn num_replicas_auto_is_rays_default_config_overridden_by_the_given_fields() {
        let d = deployment("        num_replicas: auto\n").unwrap();
        assert_eq!(d.num_replicas, Some(NumReplicas::Auto));
        let a = d.autoscaling_config.unwrap();
        assert_eq!(
            (a.min_replicas, a.max_replicas, a.target_ongoing_requests),
            (1, 100, 2.0)
        );
        let d = deployment("        num_replicas: auto\n        autoscaling_config: {max_replicas: 8, upscale_delay_s: 2}\n").unwrap();
        let a = d.autoscaling_config.clone().unwrap();
        assert_eq!(
            (a.min_replicas, a.max_replicas, a.upscale_delay_s),
            (1, 8, 2.0)
        );
        assert_eq!(a.downscale_delay_s, 600.0);
        // As JSON (the admin API, the stored config) it reads back the same.
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["num_replicas"], "auto");
        let back: DeploymentConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn deprecated_smoothing_factors_are_read_as_ray_reads_them() {
        let d = deployment("        autoscaling_config: {smoothing_factor: 0.5, downscale_smoothing_factor: 0.25}\n").unwrap();
        let a = d.autoscaling_config.unwrap();
        assert_eq!(
            (a.upscaling_factor, a.downscaling_factor),
            (Some(0.5), Some(0.25))
        );
        let d = deployment("        autoscaling_config: {upscaling_factor: 2, upscale_smoothing_factor: 3, smoothing_factor: 4}\n").unwrap();
        assert_eq!(d.autoscaling_config.unwrap().upscaling_factor, Some(2.0));
    }

    #[test]
    fn every_bad_value_is_reported_at_its_path() {
        let cases = [
            ("num_replicas: 2\n        autoscaling_config: {max_replicas: 3}", vec!["num_replicas: set num_replicas or autoscaling_config, not both (or `num_replicas: auto` with autoscaling_config, which overrides auto's defaults)"]),
            ("num_replicas: sometimes", vec!["num_replicas: must be a number of replicas or \"auto\" (autoscaling), got \"sometimes\""]),
            ("autoscaling_config: {min_replicas: 3, max_replicas: 2}", vec!["autoscaling_config.min_replicas: must be <= max_replicas (2), got 3"]),
            ("autoscaling_config: {max_replicas: 0}", vec!["autoscaling_config.max_replicas: must be >= 1, got 0"]),
            ("autoscaling_config: {max_replicas: 4, initial_replicas: 5}", vec!["autoscaling_config.initial_replicas: must be between min_replicas (1) and max_replicas (4), got 5"]),
            ("autoscaling_config: {target_ongoing_requests: 0}", vec!["autoscaling_config.target_ongoing_requests: must be a number > 0, got 0"]),
            ("autoscaling_config: {upscale_delay_s: -1, downscale_delay_s: -2, downscale_to_zero_delay_s: -3}", vec![
                "autoscaling_config.upscale_delay_s: must be a number of seconds >= 0, got -1",
                "autoscaling_config.downscale_delay_s: must be a number of seconds >= 0, got -2",
                "autoscaling_config.downscale_to_zero_delay_s: must be a number of seconds >= 0, got -3",
            ]),
            ("autoscaling_config: {metrics_interval_s: 0, look_back_period_s: -5}", vec![
                "autoscaling_config.look_back_period_s: must be a number of seconds > 0, got -5",
                "autoscaling_config.metrics_interval_s: must be a number of seconds > 0, got 0",
            ]),
            ("autoscaling_config: {upscaling_factor: 0, downscaling_factor: -1, smoothing_factor: 0}", vec![
                "autoscaling_config.smoothing_factor: must be a number > 0, got 0",
                "autoscaling_config.upscaling_factor: must be a number > 0, got 0",
                "autoscaling_config.downscaling_factor: must be a number > 0, got -1",
            ]),
            ("autoscaling_config: {upscale_delay: 2}", vec!["autoscaling_config.upscale_delay: unknown field; did you mean \"upscale_delay_s\"?"]),
        ];
        for (fields, expected) in cases {
            let got = deployment(&format!("        {fields}\n")).unwrap_err();
            let expected: Vec<String> = expected.iter().map(|e| format!("{AT}.{e}")).collect();
            assert_eq!(got, expected.join("\n"), "for {fields}");
        }
    }
}
