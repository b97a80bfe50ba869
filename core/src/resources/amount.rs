//! [`Amount`]: a non-negative fixed-point quantity, exact to 1/10000.

use std::fmt;

use serde::de::{self, DeserializeSeed};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ResourceError;

/// A non-negative fractional amount of a resource, exact to 1/10000.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(pub(super) u64);

impl Amount {
    /// Units per whole: an [`Amount`] counts 1/10000ths.
    pub const UNITS_PER_WHOLE: u64 = 10_000;
    /// Nothing.
    pub const ZERO: Self = Self(0);
    /// The largest representable amount.
    pub const MAX: Self = Self(u64::MAX);

    /// An amount of `units` 1/10000ths.
    pub const fn from_units(units: u64) -> Self {
        Self(units)
    }

    /// A whole amount, e.g. `Amount::from_whole(2)` for 2 GPUs.
    pub const fn from_whole(whole: u32) -> Self {
        Self(whole as u64 * Self::UNITS_PER_WHOLE)
    }

    /// The amount in 1/10000ths.
    pub const fn units(self) -> u64 {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Converts a float, rounding to the nearest 1/10000.
    ///
    /// Rejects NaN, infinities, negative values, values too large to
    /// represent, and non-zero values that would round to zero (such as
    /// `0.00001`), rather than silently turning a request into nothing.
    pub fn from_f64(value: f64) -> Result<Self, ResourceError> {
        Self::from_f64_for("resource", value)
    }

    /// [`Amount::from_f64`] with errors naming `resource`.
    pub(super) fn from_f64_for(resource: &str, value: f64) -> Result<Self, ResourceError> {
        let invalid = |problem| ResourceError::InvalidAmount {
            resource: resource.to_owned(),
            value,
            problem,
        };
        if value.is_nan() {
            return Err(invalid(AmountProblem::NotANumber));
        }
        if value.is_infinite() {
            return Err(invalid(AmountProblem::Infinite));
        }
        if value < 0.0 {
            return Err(invalid(AmountProblem::Negative));
        }
        let units = (value * Self::UNITS_PER_WHOLE as f64).round();
        // 2^64 is exact as an f64; every smaller integral f64 fits in a u64.
        if units >= 18_446_744_073_709_551_616.0 {
            return Err(invalid(AmountProblem::TooLarge));
        }
        if units == 0.0 && value != 0.0 {
            return Err(invalid(AmountProblem::BelowSmallestUnit));
        }
        Ok(Self(units as u64))
    }

    /// The nearest float; exact for whole amounts and for every amount that
    /// came from a float with at most four decimal places.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / Self::UNITS_PER_WHOLE as f64
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// `self - other`, or `None` if that would be negative.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }
}

impl fmt::Display for Amount {
    /// Shortest exact decimal: `0.3`, `1`, `12.0625`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::UNITS_PER_WHOLE;
        let fraction = self.0 % Self::UNITS_PER_WHOLE;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:04}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Amount {
    /// A number (`0.3`) in human-readable formats, integer units in binary ones.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_f64(self.to_f64())
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        AmountSeed("resource").deserialize(deserializer)
    }
}

/// Deserializes an [`Amount`], naming the resource in validation errors.
pub(super) struct AmountSeed<'a>(pub(super) &'a str);

impl<'de> DeserializeSeed<'de> for AmountSeed<'_> {
    type Value = Amount;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Amount, D::Error> {
        if deserializer.is_human_readable() {
            let value = f64::deserialize(deserializer)?;
            Amount::from_f64_for(self.0, value).map_err(de::Error::custom)
        } else {
            u64::deserialize(deserializer).map(Amount)
        }
    }
}

/// Why a number is not a valid resource amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountProblem {
    /// The value is NaN.
    NotANumber,
    /// The value is infinite.
    Infinite,
    /// The value is below zero.
    Negative,
    /// The value is non-zero but smaller than half of 1/10000.
    BelowSmallestUnit,
    /// The value exceeds [`Amount::MAX`].
    TooLarge,
}

impl fmt::Display for AmountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotANumber => f.write_str("not a number; give a finite number >= 0"),
            Self::Infinite => f.write_str("must be finite; give a finite number >= 0"),
            Self::Negative => f.write_str("must be >= 0"),
            Self::BelowSmallestUnit => {
                f.write_str("rounds to 0 at the smallest unit 0.0001; use 0 or at least 0.0001")
            }
            Self::TooLarge => write!(f, "exceeds the largest amount {}", Amount::MAX),
        }
    }
}
