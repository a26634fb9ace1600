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
        match self.value(tree, Some(0), fields, 0) {
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

    /// One value at `node` of the path tree (`None`: below no registered path), then the
    /// whitespace after it. Inlined into the object and array loops (and so into itself one
    /// level down): a call per member cost 1.4% of a 20-feature event's instructions.
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
                self.skip_whitespace();
                return Some(());
            }
        };
        tree.set(node, fields, value);
        self.skip_whitespace();
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
        loop {
            if self.peek()? != b'"' {
                return None;
            }
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
            self.value(tree, child, fields, depth)?;
            if self.after_item(b'}')? {
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
mod tests {
    use super::super::json::walk;
    use super::*;
    use crate::fields::{FieldBuffer, FieldRegistry};

    /// A small deterministic generator (xorshift), so a failure is reproducible by its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
            from[self.below(from.len())]
        }
    }

    const PATHS: [&str; 8] = ["a", "b", "c.d", "c.e", "f", "g.h.i", "list", "é"];
    /// The escaped key last.
    const KEYS: [&str; 14] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "list", "x", "", "é", "a\\u0062"];
    const NUMBERS: [&str; 30] = [
        "0",
        "-0",
        "1",
        "-1",
        "12.50",
        "1e5",
        "1E+2",
        "-2.5e-3",
        "0.1",
        "3.14159",
        "-0.0",
        "1.0e-22",
        "1e22",
        "1e23",
        "9007199254740992",
        "9007199254740993",
        "-9007199254740993",
        "12345678901234567890",
        "123456789012345.678",
        "1.7976931348623157e308",
        "1e400",
        "5e-324",
        "0.30000000000000004",
        "1e-7",
        "2.2250738585072014e-308",
        "100000000000000000000000",
        "0.000001",
        "4.35",
        "99.99",
        "1e0000",
    ];
    const STRINGS: [&str; 13] = [
        "\"a string longer than sixteen bytes\"",
        "\"sixteen bytes an\\\"d an escape after them\"",
        "\"fifteen bytes!!\"",
        "\"\"",
        "\"plain\"",
        "\"é ü 🦀\"",
        "\"q\\\"uote\"",
        "\"tab\\t\"",
        "\"\\u0041\"",
        "\"raw\tcontrol\"",
        "\"\x7f\"",
        "\"pay-0001\"",
        "\"a/b\"",
    ];
    const SPACE: [&str; 6] = ["", "", "", " ", "\n", "\t\r "];

    fn value(rng: &mut Rng, keys: &KeyGen, depth: usize, out: &mut String) {
        let kind = if depth >= 4 { rng.below(4) } else { rng.below(7) };
        match kind {
            0 => out.push_str(rng.pick(&NUMBERS)),
            1 => {
                // A random decimal, sometimes with an exponent.
                let n = rng.next();
                out.push_str(&format!("{}{}.{}", if n & 1 == 1 { "-" } else { "" }, n % 100_000, (n >> 20) % 1000));
                if n & 2 == 2 {
                    out.push_str(&format!("e{}", (n >> 40) % 30));
                }
            }
            2 => out.push_str(rng.pick(&STRINGS)),
            3 => out.push_str(rng.pick(&["true", "false", "null"])),
            4 | 5 => object(rng, keys, depth + 1, out),
            _ => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(rng.pick(&SPACE));
                    value(rng, keys, depth + 1, out);
                }
                out.push(']');
            }
        }
    }

    /// Where an event's member counts and keys come from.
    struct KeyGen {
        seed: u64,
        names: &'static [&'static str],
        /// The space a key may have before its colon.
        spaces: &'static [&'static str],
    }

    /// An object whose members' count, keys and space before each colon come from `keys`,
    /// everything else from `rng`: events generated with the same `keys` share their keys, as a
    /// stream's events do.
    fn object(rng: &mut Rng, keys: &KeyGen, depth: usize, out: &mut String) {
        // The same keys at the same depth for the same seed.
        let mut names = Rng((keys.seed ^ (depth as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        out.push('{');
        for i in 0..names.below(7) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(rng.pick(&SPACE));
            out.push_str(&format!("\"{}\"", names.pick(keys.names)));
            out.push_str(names.pick(keys.spaces));
            out.push(':');
            out.push_str(rng.pick(&SPACE));
            value(rng, keys, depth, out);
            out.push_str(rng.pick(&SPACE));
        }
        out.push('}');
    }

    /// Damage of the kinds a broken producer makes: a byte removed, replaced or added, or the
    /// text cut short (ASCII bytes only, so the text stays UTF-8 as the decoder requires).
    fn damage(rng: &mut Rng, text: &mut String) {
        const BYTES: &[u8] = b"{}[]:,\" \\-+.eE019tfnx\t\x01";
        let at = rng.below(text.len() + 1);
        let at = (at..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        let byte = char::from(BYTES[rng.below(BYTES.len())]);
        match rng.below(4) {
            0 if at < text.len() => {
                text.remove(at);
            }
            1 if at < text.len() => {
                text.remove(at);
                text.insert(at, byte);
            }
            2 => text.insert(at, byte),
            _ => text.truncate(at),
        }
    }

    /// Fields equal, numbers to the bit (so `-0` and `0` differ) and with the same text.
    fn same(a: &EventFields<'_>, b: &EventFields<'_>, count: usize) -> bool {
        (0..count).all(|i| {
            let id = crate::fields::FieldId(i);
            let values = match (a.get(id), b.get(id)) {
                (FieldValue::Number(x), FieldValue::Number(y)) => x.to_bits() == y.to_bits(),
                (x, y) => x == y,
            };
            values && a.number_text(id) == b.number_text(id)
        })
    }

    /// Every event the scan takes is valid JSON to serde_json, and reads to the same fields;
    /// and the scan takes a good share of valid events, so this cannot pass by declining them.
    /// One memo of keys serves all events, as in a routing loop: half of them come in runs
    /// sharing their keys (eight key sets, one per run), so most of their keys are recalled,
    /// damage in a key included; the other half have keys of their own.
    #[test]
    fn the_scan_reads_what_serde_json_reads_or_declines() {
        let mut registry = FieldRegistry::default();
        for path in PATHS {
            registry.register(path).unwrap();
        }
        let tree = PathTree::new(&registry);
        let (mut buffer, mut reference) = (FieldBuffer::default(), FieldBuffer::default());
        let mut memo = KeyMemo::default();
        // By whether the event shares its keys: valid events, those of them the scan took.
        let (mut valid, mut taken, mut damaged_taken) = ([0; 2], [0; 2], 0);
        for seed in 1..=30_000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            // Runs of 2,000 events: a key set shared by the run, then keys of their own (over
            // which the memo rests most of the time).
            let run = seed / 2_000;
            let shared = usize::from(run % 2 == 0);
            // Shared key sets leave out the escaped key, which the scan always declines, and
            // have fewer keys spaced before their colon, which the memo does not recall.
            let keys = match shared {
                1 => KeyGen {
                    seed: (run / 2 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
                    names: &KEYS[..13],
                    spaces: &SPACE[..4],
                },
                _ => KeyGen { seed: rng.next(), names: &KEYS, spaces: &SPACE },
            };
            let mut text = String::new();
            object(&mut rng, &keys, 0, &mut text);
            let damaged = rng.below(3) == 0;
            if damaged {
                damage(&mut rng, &mut text);
            }
            let text = text.trim_ascii();
            if !text.starts_with('{') {
                continue;
            }
            let mut fields = buffer.take(PATHS.len());
            let read = scan(&tree, text, &mut fields, &mut memo);
            let mut expected = reference.take(PATHS.len());
            let accepted = walk(&tree, text, &mut expected).is_ok();
            valid[shared] += usize::from(accepted && !damaged);
            if read == Scan::Read {
                assert!(accepted, "seed {seed}: the scan took what serde_json refuses: {text}");
                assert!(same(&fields, &expected, PATHS.len()), "seed {seed}: {text}\n{fields:?}\n{expected:?}");
                taken[shared] += usize::from(!damaged);
                damaged_taken += usize::from(damaged);
            }
            buffer.put_back(fields);
            reference.put_back(expected);
        }
        // Many generated events hold an escape or a number it leaves to serde_json.
        for (half, name) in ["with keys of their own", "sharing keys"].iter().enumerate() {
            let (taken, valid) = (taken[half], valid[half]);
            assert!(taken * 3 > valid, "the scan took {taken} of {valid} valid events {name}");
        }
        assert!(damaged_taken > 100, "damaged events still valid were taken too: {damaged_taken}");
        assert!(memo.recalled > 10_000, "keys recalled: {}", memo.recalled);
    }

    #[test]
    fn the_reference_sample_is_read_by_the_scan() {
        let mut registry = FieldRegistry::default();
        for path in ["event_id", "amount", "currency", "country", "risk_score", "model_confidence", "model_version"] {
            registry.register(path).unwrap();
        }
        let tree = PathTree::new(&registry);
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/payments/sample.jsonl");
        let mut memo = KeyMemo::default();
        for line in std::fs::read_to_string(sample).unwrap().lines() {
            let (mut fields, mut expected) = (FieldBuffer::default().take(7), FieldBuffer::default().take(7));
            assert_eq!(scan(&tree, line, &mut fields, &mut memo), Scan::Read, "{line}");
            walk(&tree, line, &mut expected).unwrap();
            assert!(same(&fields, &expected, 7), "{line}");
        }
    }

    #[test]
    fn the_scan_declines_what_it_cannot_read_exactly() {
        let mut registry = FieldRegistry::default();
        registry.register("a").unwrap();
        let tree = PathTree::new(&registry);
        let nested = format!("{{\"a\":{}1{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for text in [
            r#"{"a":"x\"y"}"#,
            r#"{"a\u0062":1}"#,
            r#"{"a":9007199254740993}"#,
            r#"{"a":1e23}"#,
            r#"{"a":0.00000000000000000000001}"#,
            r#"{"a":1} x"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            "{\"a\":\"tab\tinside\"}",
            nested.as_str(),
        ] {
            let mut fields = FieldBuffer::default().take(1);
            assert_eq!(scan(&tree, text, &mut fields, &mut KeyMemo::default()), Scan::Declined, "{text}");
        }
        let mut fields = FieldBuffer::default().take(1);
        let text = r#" {"a" : -12.50e-1 , "b":[{"a":2}]}"#.trim();
        assert_eq!(scan(&tree, text, &mut fields, &mut KeyMemo::default()), Scan::Read);
        assert_eq!(fields.get(crate::fields::FieldId(0)), &FieldValue::Number(-1.25));
    }
}
