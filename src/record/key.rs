//! The packed key of a series: its labels as small integers in one `u64`, so that finding
//! its counters costs one integer hash. Each family lays out its own [`Field`]s.

/// The labels of one series (or, in a guard, of one call in flight), packed as its
/// family's fields say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key(pub(crate) u64);

/// One field of a family's keys: `bits` bits from bit `shift`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    shift: u32,
    mask: u64,
}

impl Field {
    /// The first field of a layout, `bits` wide.
    pub(crate) const fn first(bits: u32) -> Self {
        Self::at(0, bits)
    }

    /// The field of `bits` bits that follows `previous`.
    pub(crate) const fn after(previous: Self, bits: u32) -> Self {
        Self::at(previous.end(), bits)
    }

    const fn at(shift: u32, bits: u32) -> Self {
        assert!(
            bits > 0 && bits < 64 && shift + bits <= 64,
            "a field fits in the key"
        );
        Self {
            shift,
            mask: (1 << bits) - 1,
        }
    }

    /// The bit after the field's last: where the next field starts.
    pub(crate) const fn end(self) -> u32 {
        self.shift + (64 - self.mask.leading_zeros())
    }

    /// The largest value the field holds.
    pub(crate) const fn max(self) -> u64 {
        self.mask
    }

    /// The field's value in `key`.
    #[inline]
    pub(crate) const fn get(self, key: Key) -> u64 {
        key.0 >> self.shift & self.mask
    }

    /// `key` with the field set to `value` (its low bits, if it is too large).
    #[inline]
    pub(crate) const fn set(self, key: Key, value: u64) -> Key {
        Key(key.0 & !(self.mask << self.shift) | (value & self.mask) << self.shift)
    }

    /// `key` with the field cleared.
    #[inline]
    pub(crate) const fn clear(self, key: Key) -> Key {
        Key(key.0 & !(self.mask << self.shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_each_other_and_keep_to_their_bits() {
        const A: Field = Field::first(4);
        const B: Field = Field::after(A, 10);
        const C: Field = Field::after(B, 32);
        assert_eq!((A.end(), B.end(), C.end()), (4, 14, 46));
        assert_eq!(B.max(), 1023);
        let key = C.set(B.set(A.set(Key(0), 9), 1000), u64::from(u32::MAX));
        assert_eq!(
            (A.get(key), B.get(key), C.get(key)),
            (9, 1000, u64::from(u32::MAX))
        );
        // A value too large keeps to its field: the neighbours are untouched.
        let key = B.set(key, 5000);
        assert_eq!(
            (A.get(key), B.get(key), C.get(key)),
            (9, 5000 & 1023, u64::from(u32::MAX))
        );
        let key = B.clear(key);
        assert_eq!((A.get(key), B.get(key)), (9, 0));
    }
}
