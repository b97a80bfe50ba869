//! Measuring a node for placement: how much of it stays free, and what it
//! lacks for a request. Exact integer arithmetic throughout, so fractional
//! CPU and GPU amounts compare without rounding.

use std::cmp::Ordering;

use troupe_core::resources::{Amount, Resources, CPU, GPU, MEMORY};

use super::NodeView;

/// A non-negative fraction `num / den` with `den > 0`, compared exactly.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fraction {
    num: u128,
    den: u128,
}

impl Fraction {
    const ONE: Self = Self { num: 1, den: 1 };
}

impl Ord for Fraction {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.num * other.den).cmp(&(other.num * self.den))
    }
}

impl PartialOrd for Fraction {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Fraction {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Fraction {}

/// One resource kind, and how to read and print it.
#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    Cpu,
    Gpu,
    Memory,
    Custom(&'a str),
}

impl Kind<'_> {
    /// The amount of this kind in `r`, in integer units (1/10000ths, or bytes
    /// for memory).
    fn units(self, r: &Resources) -> u64 {
        match self {
            Self::Cpu => r.cpus().units(),
            Self::Gpu => r.gpus().units(),
            Self::Memory => r.memory_bytes(),
            Self::Custom(name) => r.custom(name).units(),
        }
    }

    /// `"0.1 of 1 GPU free"`, `"10 of 1024 bytes of memory free"`.
    fn free_of(self, available: u64, total: u64) -> String {
        let (name, available, total) = match self {
            Self::Memory => {
                let name = format!("bytes of {MEMORY}");
                (name, available.to_string(), total.to_string())
            }
            _ => {
                let name = match self {
                    Self::Cpu => CPU,
                    Self::Gpu => GPU,
                    Self::Custom(name) => name,
                    Self::Memory => unreachable!("handled above"),
                };
                let (a, t) = (Amount::from_units(available), Amount::from_units(total));
                (name.to_owned(), a.to_string(), t.to_string())
            }
        };
        format!("{available} of {total} {name} free")
    }
}

/// Every kind that `r` has a non-zero amount of.
fn kinds_in(r: &Resources) -> impl Iterator<Item = Kind<'_>> + '_ {
    [Kind::Cpu, Kind::Gpu, Kind::Memory]
        .into_iter()
        .chain(r.custom_resources().map(|(name, _)| Kind::Custom(name)))
        .filter(move |kind| kind.units(r) > 0)
}

/// The free share of the node's scarcest resource once `request` is taken
/// from it: the minimum over the kinds the node has of
/// `(available - request) / total`. A node with no resources at all counts
/// as fully free.
pub(super) fn free_fraction_after(node: &NodeView, request: &Resources) -> Fraction {
    kinds_in(&node.total)
        .map(|kind| {
            let left = kind
                .units(&node.available)
                .saturating_sub(kind.units(request));
            Fraction {
                num: u128::from(left),
                den: u128::from(kind.units(&node.total)),
            }
        })
        .min()
        .unwrap_or(Fraction::ONE)
}

/// What `node` lacks for `wanted`, one entry per short resource, e.g.
/// `["0.1 of 1 GPU free"]`.
pub(super) fn shortfalls(wanted: &Resources, node: &NodeView) -> Vec<String> {
    let short: Vec<String> = kinds_in(wanted)
        .filter(|kind| kind.units(wanted) > kind.units(&node.available))
        .map(|kind| kind.free_of(kind.units(&node.available), kind.units(&node.total)))
        .collect();
    if short.is_empty() {
        vec!["enough free".to_owned()]
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_core::id::NodeId;

    fn node(total: Resources, available: Resources) -> NodeView {
        NodeView {
            id: NodeId::new(1),
            total,
            available,
            alive: true,
            draining: false,
            groups: Default::default(),
        }
    }

    fn res(cpus: f64, gpus: f64) -> Resources {
        Resources::new()
            .with_cpus(cpus)
            .unwrap()
            .with_gpus(gpus)
            .unwrap()
    }

    #[test]
    fn fractions_compare_exactly() {
        let third = Fraction { num: 1, den: 3 };
        assert_eq!(third, Fraction { num: 2, den: 6 });
        assert!(
            third
                < Fraction {
                    num: 3334,
                    den: 10_000
                }
        );
        assert!(
            third
                > Fraction {
                    num: 3333,
                    den: 10_000
                }
        );
    }

    #[test]
    fn score_is_the_scarcest_resource_share() {
        let n = node(res(8.0, 1.0), res(8.0, 1.0));
        // 0.3 of 1 GPU leaves 0.7; CPU stays at 1.
        assert_eq!(
            free_fraction_after(&n, &res(0.0, 0.3)),
            Fraction { num: 7, den: 10 }
        );
        // 6 of 8 CPUs leaves 0.25, scarcer than the untouched GPU.
        assert_eq!(
            free_fraction_after(&n, &res(6.0, 0.0)),
            Fraction { num: 1, den: 4 }
        );
        let empty = node(Resources::new(), Resources::new());
        assert_eq!(
            free_fraction_after(&empty, &Resources::new()),
            Fraction::ONE
        );
    }

    #[test]
    fn shortfalls_name_each_missing_resource() {
        let n = node(
            res(4.0, 1.0).with_memory_bytes(1024),
            res(0.5, 0.1).with_memory_bytes(10),
        );
        let wanted = res(0.5, 0.3).with_memory_bytes(100);
        assert_eq!(
            shortfalls(&wanted, &n),
            ["0.1 of 1 GPU free", "10 of 1024 bytes of memory free"]
        );
        let accel = Resources::new().with_custom("accel", 1.0).unwrap();
        assert_eq!(shortfalls(&accel, &n), ["0 of 0 accel free"]);
    }
}
