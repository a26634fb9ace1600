//! The fast path of JSON input: one pass over the text that reads the registered fields of an
//! event in the shape events usually have, and hands anything else back to serde_json.
//!
//! serde_json stays the authority: it decides every event this scan does not take, and writes
//! every error. The scan takes an event only when it can read it exactly as the serde_json walk
//! would, and gives up ([`Scan::Declined`]) on anything else: a string with an escape or a
//! control character, a number outside the range where parsing is exact in both (more than
//! 2^53 as an integer, or a power of ten beyond 10^22), nesting deeper than
//! [`MAX_DEPTH`], or anything that is not JSON. A test walks thousands of generated and damaged
//! events both ways and requires the same fields from both wherever the scan takes one, down to
//! the bits of each number and the text it keeps of it (the audit snapshot copies that text).
//!
//! Keys in the order the events before had them are checked against those byte for byte
//! instead of being scanned and looked up ([`super::memo`]).
//!
//! It also records which top-level members the audit snapshot may copy as they stand, in
//! runs of consecutive ones ([`EventFields::verbatim`]): a member it took is valid JSON with
//! nothing escaped, so the snapshot's text can hold it as the input wrote it.
//!
//! Why a scan of its own: serde_json spends about 300 instructions per key and value walking
//! an event through serde's visitor, and the JSON parsers measured in its place spend more
//! (`BENCHMARKS.md`, sessions 9 and 11); a 200-byte event has 9 of each, and the hot path's
//! target leaves about 7,000 instructions for everything an event needs.

use super::extract::PathTree;
use super::memo::KeyMemo;
use crate::fields::{EventFields, FieldValue};
use std::borrow::Cow;
use tollgate_schemas::json::{first_escape, first_flagged};

/// Deeper nesting is left to serde_json (which refuses past 128 levels).
pub(super) const MAX_DEPTH: usize = 64;

/// What the scan made of an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// Valid JSON, every registered field read.
    Read,
    /// Not taken: serde_json decides (the fields may be partly set).
    Declined,
}

/// Exact powers of ten an `f64` holds: a product or quotient of one of them and an integer up
/// to 2^53 is rounded once, so it is the correctly rounded value, as serde_json computes it.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Reads the registered fields of the JSON object `text` (the whole record, surrounding
/// whitespace trimmed) into `fields`, checking its keys against those of the events before
/// (`keys`) and remembering them for the next.
pub(super) fn scan<'a>(tree: &PathTree, text: &'a str, fields: &mut EventFields<'a>, keys: &mut KeyMemo) -> Scan {
    // One scan with the memo and one without (while it rests), so that the one without costs
    // what a scan with no memo would.
    if keys.begin(tree) {
        let read = Cursor::<true> { text, bytes: text.as_bytes(), at: 0, keys }.read(tree, fields);
        keys.end();
        read
    } else {
        Cursor::<false> { text, bytes: text.as_bytes(), at: 0, keys }.read(tree, fields)
    }
}

/// The scan's place in the text; `MEMO`: whether it uses the memo of keys.
struct Cursor<'a, 'm, const MEMO: bool> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    keys: &'m mut KeyMemo,
}

/// `None` throughout: the scan declines.
type Step<T = ()> = Option<T>;

impl<'a, const MEMO: bool> Cursor<'a, '_, MEMO> {
    /// The whole text as one value.
    fn read(&mut self, tree: &PathTree, fields: &mut EventFields<'a>) -> Scan {
        fields.set_input(self.text);
        match self.value(tree, Some(0), fields, 0).map(|()| self.skip_whitespace()) {
            Some(()) if self.at == self.bytes.len() => Scan::Read,
            _ => Scan::Declined,
        }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Step<u8> {
        self.bytes.get(self.at).copied()
    }

    /// One value at `node` of the path tree (`None`: below no registered path), not the
    /// whitespace after it (where a member ends, for the snapshot's runs). Inlined into the
    /// object and array loops (and so into itself one level down): a call per member cost 1.4%
    /// of a 20-feature event's instructions.
    #[inline(always)]
    fn value(&mut self, tree: &PathTree, node: Option<usize>, fields: &mut EventFields<'a>, depth: usize) -> Step {
        let value = match self.peek()? {
            b'"' => FieldValue::Text(Cow::Borrowed(self.string()?)),
            b'{' => {
                self.object(tree, node, fields, depth + 1)?;
                FieldValue::Other
            }
            b'[' => {
                self.array(tree, fields, depth + 1)?;
                FieldValue::Other
            }
            b't' => self.literal(b"true", FieldValue::Bool(true))?,
            b'f' => self.literal(b"false", FieldValue::Bool(false))?,
            b'n' => self.literal(b"null", FieldValue::Missing)?,
            _ => {
                let start = self.at;
                let value = self.number()?;
                let text = self.text.get(start..self.at)?;
                tree.set_number(node, fields, value, |_| Some(text));
                return Some(());
            }
        };
        tree.set(node, fields, value);
        Some(())
    }

    fn literal(&mut self, word: &[u8], value: FieldValue<'a>) -> Step<FieldValue<'a>> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| {
            self.at = end;
            value
        })
    }

    /// A string without escapes or control characters (the text between its quotes).
    #[inline]
    fn string(&mut self) -> Step<&'a str> {
        let (start, end) = self.string_span()?;
        // Between two quotes of a text checked as UTF-8: on character boundaries.
        self.text.get(start..end)
    }

    /// A map key: the bytes of a string as [`Cursor::string`] reads it. Only looked up, so not
    /// sliced as `str` (which checks both ends for character boundaries).
    #[inline]
    fn key(&mut self) -> Step<&'a [u8]> {
        let (start, end) = self.string_span()?;
        self.bytes.get(start..end)
    }

    /// Where the text of a string without escapes or control characters starts and ends.
    #[inline]
    fn string_span(&mut self) -> Step<(usize, usize)> {
        let start = self.at + 1;
        // Eight bytes at a time while eight are left, then what is left in one go.
        let mut end = start;
        let end = loop {
            match self.bytes.get(end..end + 8) {
                Some(word) => match first_flagged(u64::from_le_bytes(word.try_into().ok()?)) {
                    Some(i) => break end + i,
                    None => end += 8,
                },
                None => break end + first_escape(self.bytes.get(end..)?)?,
            }
        };
        // The first byte a JSON string escapes must be its closing quote.
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    /// Steps into an object or array (opened by the byte at the cursor) one level down:
    /// `true` when it closes with `close` at once.
    #[inline]
    fn open(&mut self, close: u8, depth: usize) -> Step<bool> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.skip_whitespace();
        let empty = self.peek()? == close;
        if empty {
            self.at += 1;
        }
        Some(empty)
    }

    /// After a member or element: `true` when `close` ends the object or array, `false` when a
    /// comma says another follows.
    #[inline]
    fn after_item(&mut self, close: u8) -> Step<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.skip_whitespace();
                Some(false)
            }
            byte if byte == close => {
                self.at += 1;
                Some(true)
            }
            _ => None,
        }
    }

    fn object(&mut self, tree: &PathTree, node: Option<usize>, fields: &mut EventFields<'a>, depth: usize) -> Step {
        if self.open(b'}', depth)? {
            return Some(());
        }
        // The next remembered key of this object.
        let mut next = 0;
        // The run of members taken for the snapshot to copy that the last member ended.
        let mut run: Option<(usize, usize)> = None;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let start = self.at;
            let recalled = match node {
                Some(n) if MEMO => self.keys.recall(n, next, self.bytes.get(self.at..)?),
                _ => None,
            };
            let child = match recalled {
                // The key and its colon, as the events before had them.
                Some((len, child, step)) => {
                    self.at += len;
                    next += step;
                    child
                }
                None => {
                    let key = self.key()?;
                    let adjacent = self.peek() == Some(b':');
                    self.skip_whitespace();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.at += 1;
                    let child = node.and_then(|n| tree.child(n, key));
                    if let (Some(n), true) = (node, MEMO) {
                        next += self.keys.remember(n, next, key, adjacent, child);
                    }
                    child
                }
            };
            self.skip_whitespace();
            let value_at = self.at;
            self.value(tree, child, fields, depth)?;
            if fields.verbatim_wanted {
                let scalar = || !matches!(self.bytes.get(value_at), Some(b'{' | b'[' | b'n'));
                tree.member_read(child, fields, scalar, &mut run, (start, self.at));
            }
            self.skip_whitespace();
            if self.after_item(b'}')? {
                fields.verbatim_run(run);
                return Some(());
            }
        }
    }

    /// An array: no registered path goes into one.
    fn array(&mut self, tree: &PathTree, fields: &mut EventFields<'a>, depth: usize) -> Step {
        if self.open(b']', depth)? {
            return Some(());
        }
        loop {
            self.value(tree, None, fields, depth)?;
            self.skip_whitespace();
            if self.after_item(b']')? {
                return Some(());
            }
        }
    }

    /// A JSON number whose value both this scan and serde_json compute exactly: an integer
    /// part, fraction and exponent as JSON writes them, at most 2^53 as an integer with the
    /// point removed, times or over a power of ten up to 10^22.
    #[inline]
    fn number(&mut self) -> Step<f64> {
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let mut significand: u64 = 0;
        let mut digits = 0;
        // The integer part: `0`, or digits not starting with `0`.
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    significand = significand.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    digits += 1;
                    self.at += 1;
                }
            }
            _ => return None,
        }
        let mut exponent: i64 = 0;
        if self.peek() == Some(b'.') {
            self.at += 1;
            let start = self.at;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                significand = significand.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                self.at += 1;
            }
            let fraction = self.at - start;
            if fraction == 0 {
                return None;
            }
            digits += fraction;
            exponent -= fraction as i64;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            let negative_exponent = match self.peek()? {
                b'-' => {
                    self.at += 1;
                    true
                }
                b'+' => {
                    self.at += 1;
                    false
                }
                _ => false,
            };
            let start = self.at;
            let mut explicit: i64 = 0;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                explicit = explicit * 10 + i64::from(d - b'0');
                self.at += 1;
                if self.at - start > 4 {
                    return None;
                }
            }
            if self.at == start {
                return None;
            }
            exponent += if negative_exponent { -explicit } else { explicit };
        }
        // Nineteen digits cannot overflow; beyond 2^53 the integer itself is rounded.
        if digits > 19 || significand > 1 << 53 {
            return None;
        }
        let magnitude = significand as f64;
        let value = match exponent {
            0 => magnitude,
            1..=22 => magnitude * POW10[exponent as usize],
            -22..=-1 => magnitude / POW10[exponent.unsigned_abs() as usize],
            _ => return None,
        };
        // As serde_json: `-0` is the float -0.0; other integers convert exactly.
        Some(if negative { -value } else { value })
    }
}

#[cfg(test)]
mod tests;
