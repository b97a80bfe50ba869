//! Resources: exact fractional CPU and GPU, memory in bytes, custom resources.
//!
//! Fractional amounts are fixed-point [`Amount`]s in units of 1/10000, so
//! bookkeeping is exact: taking 0.3 GPU three times and 0.1 once leaves
//! exactly 1 GPU taken, never 0.9999999. Arithmetic is checked and never
//! clamps: going below zero or overflowing is an error that names the
//! resource.
//!
//! Serde form: a map of resource name to number, like Ray's resource dicts,
//! e.g. `{"CPU": 0.5, "GPU": 0.3, "memory": 1073741824, "accel": 2}`. Zero
//! entries are left out and deserialization validates every value. Binary
//! formats such as bincode get the same map with amounts as integer units,
//! so they round-trip exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Name of the built-in CPU resource in the serde form and in messages.
pub const CPU: &str = "CPU";
/// Name of the built-in GPU resource in the serde form and in messages.
pub const GPU: &str = "GPU";
/// Name of the built-in memory resource (bytes) in the serde form and in messages.
pub const MEMORY: &str = "memory";

mod amount;
mod error;

use amount::AmountSeed;
pub use amount::{Amount, AmountProblem};
pub use error::ResourceError;

/// A resource by name, borrowed: the uniform view the arithmetic runs on.
/// Every kind is counted in integer units: 1/10000ths, or bytes for memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    Cpu,
    Gpu,
    Memory,
    Custom(&'a str),
}

impl<'a> Key<'a> {
    /// The key for `name`, rejecting custom names that are empty or would be
    /// confused with a built-in resource.
    fn parse(name: &'a str) -> Result<Self, ResourceError> {
        match name {
            CPU => Ok(Self::Cpu),
            GPU => Ok(Self::Gpu),
            MEMORY => Ok(Self::Memory),
            custom => check_custom_name(custom).map(|()| Self::Custom(custom)),
        }
    }

    fn name(self) -> &'a str {
        match self {
            Self::Cpu => CPU,
            Self::Gpu => GPU,
            Self::Memory => MEMORY,
            Self::Custom(name) => name,
        }
    }

    /// The option a user sets to request this resource.
    fn option(self) -> String {
        match self {
            Self::Cpu => "num_cpus".to_owned(),
            Self::Gpu => "num_gpus".to_owned(),
            Self::Memory => MEMORY.to_owned(),
            Self::Custom(name) => format!("resources[{name:?}]"),
        }
    }

    /// `units` of this resource for people: `0.5 GPU`, `1024 bytes of memory`.
    fn describe(self, units: u64) -> String {
        match self {
            Self::Memory => format!("{units} bytes of memory"),
            _ => format!("{} {}", Amount(units), self.name()),
        }
    }
}

/// The built-in resource a would-be custom name means, compared
/// case-insensitively: `cpu`, `num_gpus`, `mem` and the like.
fn builtin_meant_by(name: &str) -> Option<Key<'static>> {
    match name.to_ascii_lowercase().as_str() {
        "cpu" | "cpus" | "num_cpus" => Some(Key::Cpu),
        "gpu" | "gpus" | "num_gpus" => Some(Key::Gpu),
        "memory" | "mem" | "memory_bytes" => Some(Key::Memory),
        _ => None,
    }
}

/// Rejects custom names that are empty or would be confused with a built-in.
fn check_custom_name(name: &str) -> Result<(), ResourceError> {
    let reason = if name.is_empty() {
        "must not be empty".to_owned()
    } else if let Some(builtin) = builtin_meant_by(name) {
        format!(
            "it means the built-in {:?} resource; use {:?} (or {}) instead",
            builtin.name(),
            builtin.name(),
            builtin.option()
        )
    } else {
        return Ok(());
    };
    Err(ResourceError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// An amount of each resource: what a task needs, or what a node has.
///
/// Custom resources never hold zero entries, so two values with the same
/// amounts compare equal however they were built.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    cpus: Amount,
    gpus: Amount,
    memory_bytes: u64,
    custom: BTreeMap<String, Amount>,
}

impl Resources {
    /// No resources at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the CPU amount, e.g. `0.5`.
    pub fn with_cpus(mut self, cpus: f64) -> Result<Self, ResourceError> {
        self.cpus = Amount::from_f64_for(CPU, cpus)?;
        Ok(self)
    }

    /// Sets the GPU amount, e.g. `0.3`.
    pub fn with_gpus(mut self, gpus: f64) -> Result<Self, ResourceError> {
        self.gpus = Amount::from_f64_for(GPU, gpus)?;
        Ok(self)
    }

    /// Sets the memory in bytes.
    pub fn with_memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// Sets a custom resource, e.g. `("accel", 2.0)`. The name must not be
    /// empty or mean a built-in resource (`cpu`, `num_gpus`, `mem`, ...).
    pub fn with_custom(
        mut self,
        name: impl Into<String>,
        amount: f64,
    ) -> Result<Self, ResourceError> {
        let name = name.into();
        check_custom_name(&name)?;
        let amount = Amount::from_f64_for(&name, amount)?;
        self.set(Key::Custom(&name), amount.0);
        Ok(self)
    }

    /// The CPU amount.
    pub fn cpus(&self) -> Amount {
        self.cpus
    }

    /// The GPU amount.
    pub fn gpus(&self) -> Amount {
        self.gpus
    }

    /// The memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The amount of custom resource `name`; zero if absent.
    pub fn custom(&self, name: &str) -> Amount {
        self.custom.get(name).copied().unwrap_or_default()
    }

    /// The non-zero custom resources, by name.
    pub fn custom_resources(&self) -> impl Iterator<Item = (&str, Amount)> + '_ {
        self.custom
            .iter()
            .map(|(name, amount)| (name.as_str(), *amount))
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.entries().all(|(_, units)| units == 0)
    }

    /// The sum of both, or [`ResourceError::Overflow`].
    pub fn checked_add(&self, other: &Resources) -> Result<Resources, ResourceError> {
        let mut sum = self.clone();
        for (key, units) in other.entries() {
            let total = sum
                .get(key)
                .checked_add(units)
                .ok_or_else(|| ResourceError::Overflow {
                    resource: key.name().to_owned(),
                })?;
            sum.set(key, total);
        }
        Ok(sum)
    }

    /// `self - other`, or [`ResourceError::Insufficient`] naming the first
    /// resource that would go below zero.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, ResourceError> {
        let mut rest = self.clone();
        for (key, units) in other.entries() {
            let available = rest.get(key);
            let left = available
                .checked_sub(units)
                .ok_or_else(|| ResourceError::Insufficient {
                    resource: key.name().to_owned(),
                    requested: key.describe(units),
                    available: key.describe(available),
                })?;
            rest.set(key, left);
        }
        Ok(rest)
    }

    /// Whether every amount here is at most the same amount in `available`.
    pub fn fits_in(&self, available: &Resources) -> bool {
        self.entries()
            .all(|(key, units)| units <= available.get(key))
    }

    /// Every resource with its units: the three built-ins (even at zero),
    /// then the custom ones by name.
    fn entries(&self) -> impl Iterator<Item = (Key<'_>, u64)> + '_ {
        [
            (Key::Cpu, self.cpus.0),
            (Key::Gpu, self.gpus.0),
            (Key::Memory, self.memory_bytes),
        ]
        .into_iter()
        .chain(
            self.custom
                .iter()
                .map(|(name, amount)| (Key::Custom(name), amount.0)),
        )
    }

    fn get(&self, key: Key<'_>) -> u64 {
        match key {
            Key::Cpu => self.cpus.0,
            Key::Gpu => self.gpus.0,
            Key::Memory => self.memory_bytes,
            Key::Custom(name) => self.custom(name).0,
        }
    }

    /// Sets one resource, keeping the no-zero-custom-entries invariant.
    fn set(&mut self, key: Key<'_>, units: u64) {
        match key {
            Key::Cpu => self.cpus = Amount(units),
            Key::Gpu => self.gpus = Amount(units),
            Key::Memory => self.memory_bytes = units,
            Key::Custom(name) if units == 0 => {
                self.custom.remove(name);
            }
            Key::Custom(name) => {
                self.custom.insert(name.to_owned(), Amount(units));
            }
        }
    }
}

/// Checks that `request` could ever be placed on one of the nodes, whose
/// total (not currently free) resources are `node_totals`.
///
/// This only rules out impossible requests, with an error that says what to
/// change; choosing among feasible nodes is the scheduler's job. With no
/// nodes at all, every request is infeasible.
pub fn check_feasible(request: &Resources, node_totals: &[Resources]) -> Result<(), ResourceError> {
    if node_totals.is_empty() {
        return Err(ResourceError::NoNodes {
            requested: request.to_string(),
        });
    }
    if node_totals.iter().any(|node| request.fits_in(node)) {
        return Ok(());
    }
    for (key, units) in request.entries() {
        let largest = node_totals
            .iter()
            .map(|node| node.get(key))
            .max()
            .unwrap_or(0);
        if units <= largest {
            continue;
        }
        return Err(ResourceError::Infeasible {
            resource: key.name().to_owned(),
            requested: key.describe(units),
            largest: key.describe(largest),
            option: key.option(),
        });
    }
    Err(ResourceError::NoSingleNodeFits {
        requested: request.to_string(),
    })
}

impl fmt::Display for Resources {
    /// The non-zero amounts: `{CPU: 0.5, GPU: 1, memory: 1024, accel: 2}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let nonzero = self.entries().filter(|(_, units)| *units > 0);
        for (i, (key, units)) in nonzero.enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            match key {
                Key::Memory => write!(f, "{separator}{}: {units}", key.name())?,
                _ => write!(f, "{separator}{}: {}", key.name(), Amount(units))?,
            }
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources{self}")
    }
}

impl Serialize for Resources {
    /// A map of the non-zero amounts; see the module docs.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let nonzero: Vec<_> = self.entries().filter(|(_, units)| *units > 0).collect();
        let mut map = serializer.serialize_map(Some(nonzero.len()))?;
        for (key, units) in nonzero {
            match key {
                Key::Memory => map.serialize_entry(key.name(), &units)?,
                _ => map.serialize_entry(key.name(), &Amount(units))?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Resources {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResourcesVisitor)
    }
}

struct ResourcesVisitor;

impl<'de> Visitor<'de> for ResourcesVisitor {
    type Value = Resources;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a map of resource name to amount, e.g. {"CPU": 0.5, "GPU": 1, "memory": 1073741824}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resources, A::Error> {
        let mut resources = Resources::new();
        let mut seen = BTreeSet::new();
        while let Some(name) = map.next_key::<String>()? {
            let key = Key::parse(&name).map_err(de::Error::custom)?;
            let units = match key {
                Key::Memory => map.next_value::<u64>()?,
                _ => map.next_value_seed(AmountSeed(&name))?.0,
            };
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format_args!(
                    "duplicate resource {name:?}"
                )));
            }
            resources.set(key, units);
        }
        Ok(resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::value::{Error as ValueError, MapDeserializer};

    /// Resources from `(name, amount)` pairs, memory in bytes.
    fn res(pairs: &[(&str, f64)]) -> Resources {
        let add = |r: Resources, &(name, x): &(&str, f64)| match name {
            CPU => r.with_cpus(x),
            GPU => r.with_gpus(x),
            MEMORY => Ok(r.with_memory_bytes(x as u64)),
            custom => r.with_custom(custom, x),
        };
        pairs.iter().try_fold(Resources::new(), add).unwrap()
    }

    fn gpus(amount: f64) -> Resources {
        res(&[(GPU, amount)])
    }

    /// Deserializes from a human-readable map of `name -> value`.
    fn from_map<V>(entries: Vec<(&str, V)>) -> Result<Resources, ValueError>
    where
        V: for<'de> de::IntoDeserializer<'de, ValueError>,
    {
        Resources::deserialize(MapDeserializer::new(entries.into_iter()))
    }

    /// Renders `value` through serde's human-readable `Formatter` serializer.
    fn human<T: Serialize>(value: T) -> String {
        struct Human<T>(T);
        impl<T: Serialize> fmt::Display for Human<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.serialize(f)
            }
        }
        Human(value).to_string()
    }

    #[test]
    fn fractional_sums_are_exact() {
        let third_of_gpu = gpus(0.3);
        let mut taken = Resources::new();
        for _ in 0..3 {
            taken = taken.checked_add(&third_of_gpu).unwrap();
        }
        taken = taken.checked_add(&gpus(0.1)).unwrap();
        assert_eq!(taken, gpus(1.0));
        assert_eq!(taken.gpus().to_f64(), 1.0);

        let unit = Amount::from_f64(0.0001).unwrap();
        let total = (0..10_000).fold(Amount::ZERO, |sum, _| sum.checked_add(unit).unwrap());
        assert_eq!(total, Amount::from_whole(1));
    }

    #[test]
    fn from_f64_rounds_to_the_nearest_unit() {
        assert_eq!(Amount::from_f64(0.3).unwrap().units(), 3000);
        assert_eq!(Amount::from_f64(0.12344).unwrap().units(), 1234);
        assert_eq!(Amount::from_f64(0.00005).unwrap().units(), 1);
        assert_eq!(Amount::from_f64(0.0).unwrap(), Amount::ZERO);
        assert_eq!(Amount::from_f64(-0.0).unwrap(), Amount::ZERO);
        assert_eq!(Amount::from_f64(8.0).unwrap(), Amount::from_whole(8));
        assert_eq!(Amount::from_units(3000).to_f64(), 0.3);
    }

    #[test]
    fn from_f64_rejects_invalid_numbers() {
        let cases = [
            (f64::NAN, AmountProblem::NotANumber),
            (f64::INFINITY, AmountProblem::Infinite),
            (f64::NEG_INFINITY, AmountProblem::Infinite),
            (-0.5, AmountProblem::Negative),
            (0.00001, AmountProblem::BelowSmallestUnit),
            (2e15, AmountProblem::TooLarge),
        ];
        for (value, expected) in cases {
            match Amount::from_f64(value) {
                Err(ResourceError::InvalidAmount { problem, .. }) => {
                    assert_eq!(problem, expected, "{value}")
                }
                other => panic!("{value}: expected {expected:?}, got {other:?}"),
            }
        }
        assert_eq!(
            Amount::from_f64(0.00001).unwrap_err().to_string(),
            "invalid resource amount 0.00001: rounds to 0 at the smallest unit 0.0001; \
             use 0 or at least 0.0001"
        );
    }

    #[test]
    fn builder_errors_name_the_resource() {
        let err = Resources::new().with_gpus(-1.0).unwrap_err();
        assert_eq!(err.to_string(), "invalid GPU amount -1: must be >= 0");
        let err = Resources::new().with_cpus(f64::NAN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CPU amount NaN: not a number; give a finite number >= 0"
        );
        let err = Resources::new().with_custom("accel", f64::INFINITY);
        let message = err.unwrap_err().to_string();
        assert!(message.starts_with("invalid accel amount inf: must be finite"));
    }

    #[test]
    fn custom_names_must_not_shadow_builtins() {
        for name in ["", "CPU", "cpu", "Num_Gpus", "memory", "MEM"] {
            let err = Resources::new().with_custom(name, 1.0).unwrap_err();
            assert!(matches!(err, ResourceError::InvalidName { .. }), "{name:?}");
        }
        let err = Resources::new().with_custom("gpus", 1.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid custom resource name \"gpus\": it means the built-in \"GPU\" resource; \
             use \"GPU\" (or num_gpus) instead"
        );
    }

    #[test]
    fn amount_display_has_no_float_noise() {
        let shown = |x: f64| Amount::from_f64(x).unwrap().to_string();
        assert_eq!(shown(0.3), "0.3");
        assert_eq!(shown(1.0), "1");
        assert_eq!(shown(0.0), "0");
        assert_eq!(shown(0.0001), "0.0001");
        assert_eq!(shown(12.0625), "12.0625");
        assert_eq!(shown(2.5), "2.5");
        assert_eq!(Amount::MAX.to_string(), "1844674407370955.1615");
    }

    #[test]
    fn resources_display_lists_nonzero_amounts() {
        let r = res(&[(CPU, 0.5), (MEMORY, 1024.0), ("accel", 2.0), ("zero", 0.0)]);
        assert_eq!(r.to_string(), "{CPU: 0.5, memory: 1024, accel: 2}");
        assert_eq!(
            format!("{r:?}"),
            "Resources{CPU: 0.5, memory: 1024, accel: 2}"
        );
        assert_eq!(Resources::new().to_string(), "{}");
    }

    #[test]
    fn sub_below_zero_names_the_resource() {
        let have = res(&[(GPU, 0.3), ("accel", 1.0)]);
        let err = have.checked_sub(&gpus(0.5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not enough GPU: requested 0.5 GPU but only 0.3 GPU is available; \
             wait for running work to release some or request less"
        );
        assert!(matches!(
            have.checked_sub(&res(&[("accel", 1.5)])),
            Err(ResourceError::Insufficient { resource, .. }) if resource == "accel"
        ));
        let err = Resources::new().checked_sub(&res(&[(MEMORY, 10.0)]));
        let message = err.unwrap_err().to_string();
        assert!(message.contains("requested 10 bytes of memory but only 0 bytes"));
    }

    #[test]
    fn sub_to_zero_drops_custom_entries() {
        let accel = res(&[("accel", 2.0)]);
        let rest = accel.checked_sub(&accel).unwrap();
        assert_eq!(rest, Resources::new());
        assert!(rest.is_zero());
        assert_eq!(rest.custom_resources().count(), 0);
    }

    #[test]
    fn add_overflow_is_an_error() {
        let huge = Resources::new().with_memory_bytes(u64::MAX);
        let err = huge.checked_add(&res(&[(MEMORY, 1.0)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory total overflowed; no real cluster has that much, so this is a bug"
        );
    }

    #[test]
    fn fits_in_checks_every_resource_including_custom() {
        let node = res(&[(CPU, 4.0), ("accel", 1.0)]);
        assert!(res(&[(CPU, 1.0)]).fits_in(&node));
        assert!(res(&[(CPU, 1.0), ("accel", 1.0)]).fits_in(&node));
        assert!(Resources::new().fits_in(&Resources::new()));
        assert!(node.fits_in(&node));
        assert!(!res(&[(CPU, 1.0), ("accel", 1.5)]).fits_in(&node));
        assert!(!res(&[("tpu", 0.1)]).fits_in(&node));
        assert!(!gpus(0.1).fits_in(&node));
        assert!(!node.is_zero());
    }

    #[test]
    fn infeasible_requests_say_what_to_do() {
        let nodes = [gpus(2.0), res(&[(GPU, 1.0), (CPU, 8.0)])];
        assert_eq!(check_feasible(&gpus(2.0), &nodes), Ok(()));
        assert_eq!(
            check_feasible(&gpus(3.0), &nodes).unwrap_err().to_string(),
            "requested 3 GPU but the largest node has 2 GPU in total; \
             add a node with at least 3 GPU or lower num_gpus"
        );
        assert_eq!(
            check_feasible(&res(&[("accel", 2.0)]), &nodes)
                .unwrap_err()
                .to_string(),
            "requested 2 accel but the largest node has 0 accel in total; \
             add a node with at least 2 accel or lower resources[\"accel\"]"
        );
        assert_eq!(
            check_feasible(&res(&[(GPU, 2.0), (CPU, 8.0)]), &nodes),
            Err(ResourceError::NoSingleNodeFits {
                requested: "{CPU: 8, GPU: 2}".into()
            })
        );
        assert!(matches!(
            check_feasible(&Resources::new(), &[]),
            Err(ResourceError::NoNodes { .. })
        ));
        assert_eq!(check_feasible(&Resources::new(), &nodes), Ok(()));
    }

    #[test]
    fn human_readable_serde_uses_plain_numbers() {
        assert_eq!(human(Amount::from_f64(0.3).unwrap()), "0.3");
        let pairs = [(CPU, 0.5), (GPU, 0.3), ("accel", 2.0)];
        assert_eq!(from_map(pairs.to_vec()).unwrap(), res(&pairs));
        let integers = from_map(vec![(GPU, 2_u64), (MEMORY, 1_073_741_824)]).unwrap();
        assert_eq!(integers, res(&[(GPU, 2.0), (MEMORY, 1_073_741_824.0)]));
    }

    #[test]
    fn deserialization_validates_every_value() {
        let rejects = |entries: Vec<(&str, f64)>, expected: &str| {
            let err = from_map(entries).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        };
        rejects(vec![("GPU", -1.0)], "invalid GPU amount -1: must be >= 0");
        rejects(vec![("CPU", f64::NAN)], "invalid CPU amount NaN");
        rejects(vec![("accel", f64::INFINITY)], "invalid accel amount inf");
        rejects(vec![("cpus", 1.0)], "use \"CPU\" (or num_cpus) instead");
        rejects(
            vec![("GPU", 1.0), ("GPU", 1.0)],
            "duplicate resource \"GPU\"",
        );
        let negative = from_map(vec![("memory", -5_i64)]).unwrap_err().to_string();
        assert!(negative.contains("-5"), "{negative}");
    }

    #[test]
    fn bincode_round_trip_is_exact() {
        let r = res(&[(GPU, 0.3), ("accel", 0.0001)]).with_memory_bytes(u64::MAX);
        let bytes = bincode::serialize(&r).unwrap();
        assert_eq!(bincode::deserialize::<Resources>(&bytes).unwrap(), r);
        let max = bincode::serialize(&Amount::MAX).unwrap();
        assert_eq!(bincode::deserialize::<Amount>(&max).unwrap(), Amount::MAX);
    }

    fn any_resources() -> impl Strategy<Value = Resources> {
        let units = 0..1_000_000_000_u64;
        let custom = prop::collection::btree_map(
            prop::sample::select(vec!["accel", "tpu", "disk"]),
            units.clone(),
            0..3,
        );
        (units.clone(), units.clone(), units, custom).prop_map(|(cpus, gpus, memory, custom)| {
            let mut r = Resources::new();
            r.set(Key::Cpu, cpus);
            r.set(Key::Gpu, gpus);
            r.set(Key::Memory, memory);
            for (name, units) in custom {
                r.set(Key::Custom(name), units);
            }
            r
        })
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in any_resources(), b in any_resources()) {
            let sum = a.checked_add(&b).unwrap();
            prop_assert!(a.fits_in(&sum) && b.fits_in(&sum));
            prop_assert_eq!(sum.checked_sub(&b).unwrap(), a);
        }

        #[test]
        fn add_is_commutative_and_associative(
            a in any_resources(), b in any_resources(), c in any_resources()
        ) {
            prop_assert_eq!(a.checked_add(&b).unwrap(), b.checked_add(&a).unwrap());
            let left = a.checked_add(&b).unwrap().checked_add(&c).unwrap();
            let right = a.checked_add(&b.checked_add(&c).unwrap()).unwrap();
            prop_assert_eq!(left, right);
        }

        #[test]
        fn sub_succeeds_exactly_when_it_fits(a in any_resources(), b in any_resources()) {
            prop_assert_eq!(a.checked_sub(&b).is_ok(), b.fits_in(&a));
        }

        #[test]
        fn bincode_round_trips(r in any_resources()) {
            let bytes = bincode::serialize(&r).unwrap();
            prop_assert_eq!(bincode::deserialize::<Resources>(&bytes).unwrap(), r);
        }

        #[test]
        fn four_decimal_floats_round_trip(units in 0..1_000_000_000_000_u64) {
            let amount = Amount::from_units(units);
            prop_assert_eq!(Amount::from_f64(amount.to_f64()).unwrap(), amount);
        }
    }
}
