//! What the JSON scan remembers of the events before: the keys each object on a registered
//! path had, in their order, with the node each led to. Events of one stream are written by
//! one producer and have their keys in the same order, so the scan checks the next key's bytes
//! and its colon against the remembered ones and skips the string scan, the key look-up and
//! the search for the colon (about 150 instructions a key) when they are the same.
//!
//! A remembered key was read by the scan's own key reader, so it has no escape, control
//! character or quote between its quotes; input bytes equal to it and its colon are a key the
//! reader would read as the same bytes, followed by the colon. Any other key is read and looked
//! up as before, and is remembered in that position from then on. Keys with space before their
//! colon are not remembered.
//!
//! A miss costs a check and a copy on top of the read: events that each order their keys
//! another way would cost 15% more instructions each (the hot path bench's
//! `json_logistic20_shuffled`). So the memo rests when it does not pay: after [`STRIKES`] events
//! in a row that missed more keys than they recalled, it is left unused for [`REST`] events,
//! then learns again; those events then cost about 1% more than with no memo.

use super::extract::PathTree;

/// The longest key remembered, its quotes and colon included; longer ones are always read.
const MAX_KEY: usize = 32;
/// The keys remembered per object; the members after them are always read.
const MAX_KEYS: usize = 64;
/// Events in a row missing more keys than they recall, after which the memo rests.
const STRIKES: u8 = 8;
/// Events the memo rests for before it learns again.
const REST: u32 = 1024;

/// One remembered key: its bytes with their quotes and the colon after them, and the node it
/// leads to.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// 0: nothing remembered (a key with its quotes and colon has at least 3 bytes).
    len: u8,
    /// The bytes, zero after `len`, as little-endian words.
    words: [u64; WORDS],
    /// Per word, the bits of the bytes that are the key's.
    masks: [u64; WORDS],
    child: Option<usize>,
}

const WORDS: usize = MAX_KEY / 8;

/// The keys of the objects at each node of one path tree, by their position in the object.
#[derive(Debug, Default)]
pub struct KeyMemo {
    /// The [`PathTree::id`] remembered for (0: none yet).
    tree: u64,
    nodes: Vec<Vec<Slot>>,
    /// The event's keys recalled and missed so far.
    hits: u32,
    misses: u32,
    /// Events in a row that missed more keys than they recalled.
    strikes: u8,
    /// Events left to rest for.
    rest: u32,
    /// How many keys were recalled, so tests can tell that they exercised the memo.
    #[cfg(test)]
    pub(super) recalled: usize,
}

impl KeyMemo {
    /// Starts an event read with `tree`: whether the memo is to be used for it (not while it
    /// rests). Call [`KeyMemo::end`] after an event it was used for.
    #[inline]
    pub(super) fn begin(&mut self, tree: &PathTree) -> bool {
        self.use_tree(tree);
        if self.rest > 0 {
            self.rest -= 1;
            return false;
        }
        self.hits = 0;
        self.misses = 0;
        true
    }

    /// Ends an event the memo was used for, and rests it when it has missed more than it
    /// recalled [`STRIKES`] events in a row.
    #[inline]
    pub(super) fn end(&mut self) {
        if self.misses <= self.hits {
            self.strikes = 0;
            return;
        }
        self.strikes += 1;
        if self.strikes >= STRIKES {
            self.strikes = 0;
            self.rest = REST;
        }
    }

    /// Readies the memo for `tree`, forgetting what it remembered for another tree (a policy
    /// reload builds a new one, whose nodes are numbered anew).
    #[inline]
    fn use_tree(&mut self, tree: &PathTree) {
        if self.tree != tree.id() {
            self.tree = tree.id();
            self.nodes.clear();
            self.nodes.resize_with(tree.nodes(), Vec::new);
        }
    }

    /// When `input` starts with the key remembered at `position` of the object at `node`: how
    /// many bytes it takes (its quotes and colon included) and the node it leads to.
    #[inline]
    pub(super) fn recall(&mut self, node: usize, position: usize, input: &[u8]) -> Option<(usize, Option<usize>)> {
        let slot = self.nodes.get(node)?.get(position)?;
        let n = usize::from(slot.len);
        if n == 0 || !slot.starts(input) {
            return None;
        }
        self.hits += 1;
        #[cfg(test)]
        {
            self.recalled += 1;
        }
        Some((n, slot.child))
    }

    /// Remembers `key` (read without its quotes) at `position` of the object at `node`; only
    /// its position when its colon was not `adjacent` to it (whitespace between), so that
    /// nothing is recalled there.
    pub(super) fn remember(&mut self, node: usize, position: usize, key: &[u8], adjacent: bool, child: Option<usize>) {
        self.misses += 1;
        let Some(slots) = self.nodes.get_mut(node) else { return };
        if position >= MAX_KEYS || position > slots.len() {
            return;
        }
        let mut slot = Slot { len: 0, words: [0; WORDS], masks: [0; WORDS], child };
        let n = key.len();
        if adjacent && n + 3 <= MAX_KEY {
            let mut bytes = [0; MAX_KEY];
            bytes[0] = b'"';
            bytes[1..=n].copy_from_slice(key);
            bytes[n + 1..n + 3].copy_from_slice(b"\":");
            slot.len = (n + 3) as u8;
            slot.words = words(&bytes);
            let mut ones = [0; MAX_KEY];
            ones[..n + 3].fill(0xff);
            slot.masks = words(&ones);
        }
        match slots.get_mut(position) {
            Some(kept) => *kept = slot,
            None => slots.push(slot),
        }
    }
}

impl Slot {
    /// Whether `input` starts with the remembered bytes: the first [`MAX_KEY`] bytes compared a
    /// word at a time under the key's masks, with no branch on its length (a comparison of the
    /// length's bytes, `==` on slices, calls `memcmp`, which costs more than the whole check).
    #[inline]
    fn starts(&self, input: &[u8]) -> bool {
        let window = match input.first_chunk::<MAX_KEY>() {
            Some(window) => *window,
            // Near the end of the text: what is left, padded.
            None => {
                let mut padded = [0; MAX_KEY];
                let Some(found) = input.get(..usize::from(self.len)) else { return false };
                padded[..found.len()].copy_from_slice(found);
                padded
            }
        };
        let found = words(&window);
        (0..WORDS).fold(0, |differ, k| differ | ((found[k] ^ self.words[k]) & self.masks[k])) == 0
    }
}

/// `bytes` as little-endian words.
#[inline]
fn words(bytes: &[u8; MAX_KEY]) -> [u64; WORDS] {
    std::array::from_fn(|k| u64::from_le_bytes(bytes[8 * k..8 * k + 8].try_into().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldRegistry;

    fn tree(paths: &[&str]) -> PathTree {
        let mut r = FieldRegistry::default();
        for p in paths {
            r.register(p).unwrap();
        }
        PathTree::new(&r)
    }

    #[test]
    fn a_remembered_key_is_recalled_only_for_the_same_bytes() {
        let t = tree(&["a", "b.c"]);
        let mut memo = KeyMemo::default();
        assert!(memo.begin(&t));
        for n in 0..=MAX_KEY - 3 {
            let key: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            memo.remember(0, 3, &key, true, Some(7));
            // Nothing remembered before position 3 was reached in order.
            assert_eq!(memo.recall(0, 3, &key), None);
            for position in 0..=3 {
                memo.remember(0, position, &key, true, Some(position));
            }
            // Near the end of the text, and with a whole window of text after the key.
            for tail in [b" 1".as_slice(), &[b'7'; MAX_KEY]] {
                let mut input = [b"\"".as_slice(), &key, b"\":", tail].concat();
                assert_eq!(memo.recall(0, 2, &input), Some((n + 3, Some(2))), "length {n}");
                assert_eq!(memo.recall(1, 2, &input), None, "another node");
                assert_eq!(memo.recall(0, 4, &input), None, "another position");
                assert_eq!(memo.recall(0, 2, &input[..n + 2]), None, "cut short");
                for at in 0..n + 3 {
                    input[at] ^= 0x20;
                    assert_eq!(memo.recall(0, 2, &input), None, "length {n}, byte {at} changed");
                    input[at] ^= 0x20;
                }
            }
            let input = [b"\"".as_slice(), &key, b"\":1"].concat();
            memo.remember(0, 2, &key, false, Some(2));
            assert_eq!(memo.recall(0, 2, &input), None, "length {n}, colon not adjacent");
            memo.nodes[0].clear();
        }
    }

    #[test]
    fn long_keys_and_far_positions_are_not_remembered() {
        let t = tree(&["a"]);
        let mut memo = KeyMemo::default();
        assert!(memo.begin(&t));
        let long = vec![b'k'; MAX_KEY - 2];
        memo.remember(0, 0, &long, true, None);
        assert_eq!(memo.recall(0, 0, &[b"\"".as_slice(), &long, b"\":"].concat()), None);
        for position in 0..MAX_KEYS + 5 {
            memo.remember(0, position, b"a", true, Some(1));
        }
        assert_eq!(memo.nodes[0].len(), MAX_KEYS);
        assert_eq!(memo.recall(0, MAX_KEYS - 1, b"\"a\":"), Some((4, Some(1))));
        // Another key in a remembered position replaces it.
        memo.remember(0, 1, b"b", true, None);
        assert_eq!(memo.recall(0, 1, b"\"a\":"), None);
        assert_eq!(memo.recall(0, 1, b"\"b\":"), Some((4, None)));
    }

    #[test]
    fn the_memo_rests_after_events_that_miss_more_than_they_recall() {
        let t = tree(&["a", "b"]);
        let mut memo = KeyMemo::default();
        // An event recalling one key of two pays: no strike.
        let event = |memo: &mut KeyMemo, first: &[u8]| {
            if !memo.begin(&t) {
                return false;
            }
            if memo.recall(0, 0, &[b"\"".as_slice(), first, b"\":"].concat()).is_none() {
                memo.remember(0, 0, first, true, None);
            }
            if memo.recall(0, 1, b"\"b\":").is_none() {
                memo.remember(0, 1, b"b", true, None);
            }
            memo.end();
            true
        };
        for _ in 0..3 * STRIKES {
            assert!(event(&mut memo, b"a"));
            assert!(event(&mut memo, b"c"));
        }
        // Two misses of two, STRIKES times in a row: it rests, then learns again.
        let shuffled = [b"b".as_slice(), b"a"];
        for i in 0..usize::from(STRIKES) {
            assert!(memo.begin(&t), "event {i}");
            for (position, key) in shuffled.iter().cycle().skip(i % 2).take(2).enumerate() {
                let input = [b"\"".as_slice(), key, b"\":"].concat();
                if memo.recall(0, position, &input).is_none() {
                    memo.remember(0, position, key, true, None);
                }
            }
            memo.end();
        }
        for _ in 0..REST {
            assert!(!event(&mut memo, b"a"));
        }
        assert!(event(&mut memo, b"a"));
    }

    #[test]
    fn another_tree_starts_a_new_memo() {
        let (first, second) = (tree(&["a"]), tree(&["a"]));
        let mut memo = KeyMemo::default();
        assert!(memo.begin(&first));
        memo.remember(0, 0, b"a", true, Some(1));
        assert!(memo.begin(&first));
        assert_eq!(memo.recall(0, 0, b"\"a\":"), Some((4, Some(1))));
        assert!(memo.begin(&second));
        assert_eq!(memo.recall(0, 0, b"\"a\":"), None);
    }
}
