//! A fixed-size set of small integers, hashed as part of the search cache.

/// A set of `0..bits`, one bit per member in 64-bit words.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bitset(Box<[u64]>);

impl Bitset {
    /// The empty set of `0..bits`.
    pub(crate) fn new(bits: usize) -> Self {
        Self(vec![0; bits.div_ceil(64)].into_boxed_slice())
    }

    pub(crate) fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    pub(crate) fn clear(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }

    /// True if every member of `self` is in `other` (same size).
    pub(crate) fn is_subset_of(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Bitset;

    #[test]
    fn set_clear_subset() {
        let mut a = Bitset::new(130);
        let mut b = Bitset::new(130);
        for bit in [0, 63, 64, 129] {
            a.set(bit);
            b.set(bit);
        }
        b.set(70);
        assert!(a.is_subset_of(&b) && !b.is_subset_of(&a));
        b.clear(70);
        assert_eq!(a, b);
        a.clear(0);
        assert!(a.is_subset_of(&b) && !b.is_subset_of(&a));
    }
}
