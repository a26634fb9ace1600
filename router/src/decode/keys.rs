//! The map keys a node of the path tree leads on by: looked up once for every key of every
//! event, so the lookup is built for a small, fixed set of short keys.

/// A node's keys: a small open-addressing table hashed on a key's length and three of its
/// bytes. The key set is fixed at start-up and map keys in events are short, so this costs a
/// fraction of a general-purpose hash map's lookup, which the walk makes for every key.
#[derive(Debug, Default)]
pub(super) struct Keys {
    /// Power-of-two many slots, at most a quarter used; an empty key marks a free slot (path
    /// segments are never empty).
    slots: Vec<(Box<str>, usize)>,
    len: usize,
}

impl Keys {
    #[inline]
    fn start(&self, key: &[u8]) -> usize {
        let n = key.len();
        let (first, mid, last) = match n {
            0 => (0, 0, 0),
            _ => (key[0], key[n / 2], key[n - 1]),
        };
        let packed = n as u64 | (first as u64) << 16 | (mid as u64) << 32 | (last as u64) << 48;
        // A folded multiply, so every input bit reaches the low bits the mask keeps.
        let product = u128::from(packed) * 0x9E37_79B9_7F4A_7C15;
        ((product >> 64) as u64 ^ product as u64) as usize & (self.slots.len() - 1)
    }

    /// The node of `key` (its bytes: a key read from JSON text need not be sliced as `str`).
    #[inline]
    pub(super) fn get(&self, key: &[u8]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = self.start(key);
        loop {
            let (k, node) = &self.slots[at];
            if k.is_empty() {
                return None;
            }
            if same(k.as_bytes(), key) {
                return Some(*node);
            }
            at = (at + 1) & mask;
        }
    }

    pub(super) fn insert(&mut self, key: &str, node: usize) {
        debug_assert!(!key.is_empty() && self.get(key.as_bytes()).is_none());
        if (self.len + 1) * 4 > self.slots.len() {
            let old = std::mem::take(&mut self.slots);
            let size = ((self.len + 1) * 4).next_power_of_two();
            self.slots = (0..size).map(|_| (Box::<str>::default(), 0)).collect();
            self.len = 0;
            for (k, n) in old.into_iter().filter(|(k, _)| !k.is_empty()) {
                self.insert(&k, n);
            }
        }
        let mask = self.slots.len() - 1;
        let mut at = self.start(key.as_bytes());
        while !self.slots[at].0.is_empty() {
            at = (at + 1) & mask;
        }
        self.slots[at] = (key.into(), node);
        self.len += 1;
    }
}

/// Byte equality, comparing keys of 4 to 16 bytes as two overlapping words each, and shorter
/// ones by their first, middle and last byte, which are all of theirs (`==` on slices calls
/// `memcmp`, which costs more than the rest of a lookup).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_found_and_no_other() {
        // Keys sharing length, first, middle and last byte (one start slot), short and long
        // keys, and enough of them to grow the table several times.
        let mut keys: Vec<String> =
            ["a", "ab", "abc", "axc", "ayc", "event_id", "merchant_category"].into_iter().map(str::to_owned).collect();
        keys.extend((0..200).map(|i| format!("f{i:03}")));
        keys.extend((0..50).map(|i| format!("k{}k", "x".repeat(i))));
        let mut table = Keys::default();
        assert_eq!(table.get(b"a"), None);
        for (node, key) in keys.iter().enumerate() {
            table.insert(key, node);
        }
        for (node, key) in keys.iter().enumerate() {
            assert_eq!(table.get(key.as_bytes()), Some(node), "{key}");
        }
        for absent in ["", "b", "abd", "event_iD", "f200", "f0000", "kyk", "merchant_categorY", "é"] {
            assert_eq!(table.get(absent.as_bytes()), None, "{absent}");
        }
    }

    #[test]
    fn same_is_byte_equality_at_every_length() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same(&a, &a.clone()));
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "length {n}, byte {at}");
            }
            let mut longer = a.clone();
            longer.push(b'z');
            assert!(!same(&a, &longer));
        }
    }
}
