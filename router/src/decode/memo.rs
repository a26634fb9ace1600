//! What the JSON scan remembers of the events before: the keys each object on a registered
//! path had, in their order, with the node each led to. Events of one stream are written by
//! one producer and have their keys in the same order, so the scan checks the next key's bytes
//! and its colon against the remembered ones and skips the string scan, the key look-up and
//! the search for the colon (about 150 instructions a key) when they are the same.
//!
//! A remembered key was read by the scan's own key reader, so it has no escape, control
//! character or quote between its quotes; input bytes equal to it and its colon are a key the
//! reader would read as the same bytes, followed by the colon. Any other key is read and looked
//! up as before. Keys with space before their colon are not recalled.
//!
//! Events often leave out a key that others have (a serializer that omits nulls), or have one
//! the others lack. So the scan follows the remembered keys as a sequence: a key that is not
//! the next one remembered is tried against the one after it (the event lacks one key); a key
//! that is neither is read, and the next key is tried against the same remembered one (the
//! event has one key more). Keys are remembered as the first event of a shape has them, and
//! learnt again after the memo has rested (below).
//!
//! A miss costs two checks on top of the read. So the memo rests when it does not pay: after
//! [`STRIKES`] events in a row that missed more keys than they recalled, it is left unused for
//! [`REST`] events, then learns again. The hot path bench measures both sides: keys left out
//! and added (`json_logistic20_optional`) cost 3–5% less time than with no memo; events whose
//! keys are rotated by another amount each, every other one reversed
//! (`json_logistic20_shuffled`), 3% more (a rotation keeps most keys' successors, so about two
//! thirds are still recalled and the memo does not rest).

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
    /// 0: a place that recalls nothing (a key with its quotes and colon has at least 3 bytes).
    len: u8,
    /// The bytes, zero after `len`, as little-endian words.
    words: [u64; WORDS],
    /// Per word, the bits of the bytes that are the key's.
    masks: [u64; WORDS],
    child: Option<usize>,
}

const WORDS: usize = MAX_KEY / 8;

/// The keys of the objects at each node of one path tree, in their order.
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

    /// Ends an event the memo was used for, and rests it when it has missed more keys than it
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
            // Learnt again from the first event after the rest.
            self.nodes.iter_mut().for_each(Vec::clear);
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

    /// When `input` starts with the key remembered at `next` in the object at `node`, or with
    /// the one after it: how many bytes it takes (its quotes and colon included), the node it
    /// leads to, and how far `next` moves on (1, or 2 past a key the event lacks).
    #[inline]
    pub(super) fn recall(&mut self, node: usize, next: usize, input: &[u8]) -> Option<(usize, Option<usize>, usize)> {
        let slots = self.nodes.get(node)?;
        let (slot, step) = match slots.get(next) {
            Some(slot) if slot.starts(input) => (slot, 1),
            _ => match slots.get(next + 1) {
                Some(slot) if slot.starts(input) => (slot, 2),
                _ => return None,
            },
        };
        self.hits += 1;
        #[cfg(test)]
        {
            self.recalled += 1;
        }
        Some((usize::from(slot.len), slot.child, step))
    }

    /// Counts `key` (read without its quotes) as missed at `next` in the object at `node`,
    /// and remembers it there when nothing is remembered from `next` on (an event of a new
    /// shape being learnt); a key with space before its colon (not `adjacent`) is remembered
    /// as a place that recalls nothing. How far `next` moves on: 1 when remembered, else 0
    /// (the event has a key the others lack).
    pub(super) fn remember(
        &mut self,
        node: usize,
        next: usize,
        key: &[u8],
        adjacent: bool,
        child: Option<usize>,
    ) -> usize {
        self.misses += 1;
        let Some(slots) = self.nodes.get_mut(node) else { return 0 };
        if next >= MAX_KEYS || next != slots.len() {
            return 0;
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
        slots.push(slot);
        1
    }
}

impl Slot {
    /// Whether `input` starts with the remembered bytes (never for a place that recalls
    /// nothing): the first [`MAX_KEY`] bytes compared a word at a time under the key's masks,
    /// with no branch on its length (a comparison of the length's bytes, `==` on slices, calls
    /// `memcmp`, which costs more than the whole check).
    #[inline]
    fn starts(&self, input: &[u8]) -> bool {
        if self.len == 0 {
            return false;
        }
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

    /// `"key":` followed by `tail`.
    fn member(key: &[u8], tail: &[u8]) -> Vec<u8> {
        [b"\"".as_slice(), key, b"\":", tail].concat()
    }

    #[test]
    fn a_remembered_key_is_recalled_only_for_the_same_bytes() {
        let t = tree(&["a", "b.c"]);
        let mut memo = KeyMemo::default();
        assert!(memo.begin(&t));
        for n in 0..=MAX_KEY - 3 {
            let key: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            // Nothing is remembered past the end of what is remembered.
            assert_eq!(memo.remember(0, 1, &key, true, Some(7)), 0);
            assert_eq!(memo.remember(0, 0, &key, true, Some(7)), 1, "length {n}");
            // Near the end of the text, and with a whole window of text after the key.
            for tail in [b" 1".as_slice(), &[b'7'; MAX_KEY]] {
                let mut input = member(&key, tail);
                assert_eq!(memo.recall(0, 0, &input), Some((n + 3, Some(7), 1)), "length {n}");
                assert_eq!(memo.recall(1, 0, &input), None, "another node");
                assert_eq!(memo.recall(0, 1, &input), None, "past the keys remembered");
                assert_eq!(memo.recall(0, 0, &input[..n + 2]), None, "cut short");
                for at in 0..n + 3 {
                    input[at] ^= 0x20;
                    assert_eq!(memo.recall(0, 0, &input), None, "length {n}, byte {at} changed");
                    input[at] ^= 0x20;
                }
            }
            memo.nodes[0].clear();
        }
    }

    /// A key the event lacks is stepped over, one the others lack is read and not remembered.
    #[test]
    fn the_keys_are_followed_as_a_sequence() {
        let t = tree(&["a"]);
        let mut memo = KeyMemo::default();
        assert!(memo.begin(&t));
        for (next, key) in [b"a".as_slice(), b"b", b"c"].into_iter().enumerate() {
            assert_eq!(memo.recall(0, next, &member(key, b"1")), None);
            assert_eq!(memo.remember(0, next, key, true, Some(next)), 1);
        }
        assert_eq!(memo.recall(0, 0, &member(b"a", b"1")), Some((4, Some(0), 1)));
        // "b" left out: "c" is the one after the next.
        assert_eq!(memo.recall(0, 1, &member(b"c", b"1")), Some((4, Some(2), 2)));
        // "x" added before "b": read, not remembered, and "b" is still the next.
        assert_eq!(memo.recall(0, 1, &member(b"x", b"1")), None);
        assert_eq!(memo.remember(0, 1, b"x", true, None), 0);
        assert_eq!(memo.recall(0, 1, &member(b"b", b"1")), Some((4, Some(1), 1)));
        // Two left out: not found.
        assert_eq!(memo.recall(0, 0, &member(b"c", b"1")), None);
        // A key spaced before its colon holds its place and recalls nothing.
        assert_eq!(memo.remember(0, 3, b"d", false, None), 1);
        assert_eq!(memo.recall(0, 3, &member(b"d", b"1")), None);
        assert_eq!(memo.recall(0, 3, b"\"d\" :1"), None);
    }

    #[test]
    fn long_keys_and_far_positions_are_not_recalled() {
        let t = tree(&["a"]);
        let mut memo = KeyMemo::default();
        assert!(memo.begin(&t));
        let long = vec![b'k'; MAX_KEY - 2];
        assert_eq!(memo.remember(0, 0, &long, true, None), 1);
        assert_eq!(memo.recall(0, 0, &member(&long, b"")), None);
        for next in 1..MAX_KEYS + 5 {
            let remembered = memo.remember(0, next, b"a", true, Some(1));
            assert_eq!(remembered, usize::from(next < MAX_KEYS), "{next}");
        }
        assert_eq!(memo.nodes[0].len(), MAX_KEYS);
        assert_eq!(memo.recall(0, MAX_KEYS - 1, b"\"a\":"), Some((4, Some(1), 1)));
    }

    #[test]
    fn the_memo_rests_after_events_that_miss_more_than_they_recall_then_learns_again() {
        let t = tree(&["a", "b"]);
        let mut memo = KeyMemo::default();
        // One event: its keys, each recalled or else read (and remembered where new); whether
        // the memo was used.
        let event = |memo: &mut KeyMemo, keys: &[&[u8]]| {
            if !memo.begin(&t) {
                return false;
            }
            let mut next = 0;
            for &key in keys {
                match memo.recall(0, next, &member(key, b"1")) {
                    Some((_, _, step)) => next += step,
                    None => next += memo.remember(0, next, key, true, None),
                }
            }
            memo.end();
            true
        };
        assert!(event(&mut memo, &[b"a", b"b", b"c"]));
        // One key of two recalled: no strike, however many such events.
        for _ in 0..3 * STRIKES {
            assert!(event(&mut memo, &[b"a", b"x"]));
        }
        // One of three recalled, STRIKES times in a row: it rests, then learns again.
        for i in 0..STRIKES {
            assert!(event(&mut memo, &[b"a", b"y", b"z"]), "event {i}");
        }
        for _ in 0..REST {
            assert!(!event(&mut memo, &[b"a", b"b", b"c"]));
        }
        assert!(event(&mut memo, &[b"y", b"z"]));
        assert!(memo.begin(&t));
        assert!(memo.recall(0, 0, &member(b"y", b"1")).is_some(), "learnt from the first event after the rest");
        assert!(memo.recall(0, 0, &member(b"a", b"1")).is_none());
    }

    #[test]
    fn another_tree_starts_a_new_memo() {
        let (first, second) = (tree(&["a"]), tree(&["a"]));
        let mut memo = KeyMemo::default();
        assert!(memo.begin(&first));
        memo.remember(0, 0, b"a", true, Some(1));
        assert!(memo.begin(&first));
        assert_eq!(memo.recall(0, 0, b"\"a\":"), Some((4, Some(1), 1)));
        assert!(memo.begin(&second));
        assert_eq!(memo.recall(0, 0, b"\"a\":"), None);
    }
}
