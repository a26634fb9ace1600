//! Laid-out JSON encodings of the two records written for every event, the routed record and
//! the audit record, and of the resolved record written for every review decision.
//!
//! Also [`write_str`] and [`write_number`], the value writers they use, for other hand-written
//! JSON.
//!
//! serde_json's derived encoding escapes every field name of every record, since it cannot know
//! they are constants; on the router's hot path that was most of the encoding time. These
//! writers put the same bytes with the field names as constants and escape only the values.
//! The tests check them byte for byte against serde_json's encoding, which matters beyond speed:
//! the audit chain hashes the canonical encoding, and verification recomputes it with
//! serde_json ([`AuditRecord::digest`]), so a difference would show as a broken chain.

use crate::audit::AuditRecord;
use crate::decision::ReviewAction;
use crate::review::ResolvedEvent;
use crate::routed::{Contribution, RoutedRecord, ScoreTexts};

/// A field name as [`Object`]'s writers take it: `"name":`.
macro_rules! field {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}

/// One JSON object being written.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    fn begin(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// A field's name, given as `"name":` ([`field!`] writes it at compile time: names are
    /// plain ASCII identifiers, nothing to escape). Inlined, so each name is copied as a
    /// constant of known length.
    #[inline]
    fn key(&mut self, quoted: &'static str) -> &mut Vec<u8> {
        debug_assert!(quoted.starts_with('"') && quoted.ends_with("\":"));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(quoted.as_bytes());
        self.out
    }

    fn str(&mut self, name: &'static str, value: &str) {
        write_str(self.key(name), value);
    }

    fn opt_str(&mut self, name: &'static str, value: Option<&str>) {
        match value {
            Some(v) => self.str(name, v),
            None => self.key(name).extend_from_slice(b"null"),
        }
    }

    fn bool(&mut self, name: &'static str, value: bool) {
        self.key(name).extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn f64(&mut self, name: &'static str, value: f64) {
        write_number(self.key(name), &value);
    }

    fn opt_f64(&mut self, name: &'static str, value: Option<f64>) {
        write_number(self.key(name), &value);
    }

    fn i64(&mut self, name: &'static str, value: i64) {
        write_number(self.key(name), &value);
    }

    fn opt_i64(&mut self, name: &'static str, value: Option<i64>) {
        write_number(self.key(name), &value);
    }

    fn explanation(&mut self, name: &'static str, items: &[Contribution<'_>]) {
        let out = self.key(name);
        out.push(b'[');
        for (i, c) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut item = Object::begin(out);
            item.str(field!("feature"), &c.feature);
            item.f64(field!("contribution"), c.contribution);
            item.end();
        }
        out.push(b']');
    }

    /// Already-encoded JSON text as the value.
    fn raw(&mut self, name: &'static str, json: &[u8]) {
        self.key(name).extend_from_slice(json);
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// Appends `value` as a JSON string, exactly as serde_json writes it: runs of plain text are
/// copied whole, and only `"`, `\\` and control characters are escaped (the short forms where
/// JSON has them, else `\u00XX` in lowercase hex).
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.push(b'"');
    match first_escape(bytes) {
        // Most values: nothing to escape.
        None => out.extend_from_slice(bytes),
        Some(at) => write_escaped(out, bytes, at),
    }
    out.push(b'"');
}

/// The body of a string with something to escape, the first at `at`.
///
/// Past the first escape, the text is staged eight bytes at a time in a buffer on the stack:
/// a word with nothing to escape is staged whole; one with an escape is staged up to it (the
/// position comes from the same word test as [`first_escape`]), then the escape is staged. A
/// string that holds JSON text, such as the audit record's input snapshot, has an escape every
/// few bytes; copying each run between two escapes into `out` on its own cost a call per run.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8], at: usize) {
    const STAGE: usize = 256;
    out.extend_from_slice(&bytes[..at]);
    let mut stage = [0u8; STAGE];
    let mut n = 0;
    let mut i = at;
    while i < bytes.len() {
        // Room for what one step stages: a word (eight bytes), or up to seven bytes of one
        // and then an escape (at most six).
        if n > STAGE - 16 {
            out.extend_from_slice(&stage[..n]);
            n = 0;
        }
        let byte = match bytes.get(i..i + 8) {
            Some(chunk) => {
                let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                stage[n..n + 8].copy_from_slice(chunk);
                match first_flagged(word) {
                    None => {
                        n += 8;
                        i += 8;
                        continue;
                    }
                    Some(run) => {
                        n += run;
                        i += run;
                        bytes[i]
                    }
                }
            }
            // The last few bytes, one by one.
            None => {
                let byte = bytes[i];
                if !escaped(byte) {
                    stage[n] = byte;
                    n += 1;
                    i += 1;
                    continue;
                }
                byte
            }
        };
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let unicode = [b'\\', b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
                stage[n..n + 6].copy_from_slice(&unicode);
                n += 6;
                i += 1;
                continue;
            }
        };
        stage[n..n + escape.len()].copy_from_slice(escape);
        n += escape.len();
        i += 1;
    }
    out.extend_from_slice(&stage[..n]);
}

/// Whether JSON escapes `byte` in a string: a control character, `"` or `\\`.
const fn escaped(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// High bit set in the bytes of `x` below `n`. A borrow only reaches past a byte that was
/// itself below `n`, so the lowest flagged byte is always a true one.
const fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * n as u64) & !x & HIGH
}

/// The first byte of the eight in `x` (little-endian: the lowest set bit is the first byte)
/// that JSON escapes.
#[inline]
pub fn first_flagged(x: u64) -> Option<usize> {
    let found = below(x, 0x20) | below(x ^ (ONES * b'"' as u64), 1) | below(x ^ (ONES * b'\\' as u64), 1);
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

/// The position of the first byte that is a control character, `"` or `\\`: what a JSON string
/// escapes, and what ends a run of plain text when reading one. Eight bytes at a time: a
/// byte-by-byte scan with an early exit does not vectorise, and this runs on every string value
/// of every record the router reads and writes.
#[inline]
pub fn first_escape(bytes: &[u8]) -> Option<usize> {
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()));
    let n = bytes.len();
    match n {
        // Short strings, most field values: no byte-by-byte tail. Two words (or halves) that
        // overlap cover every byte; the overlap was found clean the first time, so a byte
        // flagged in the second is past it.
        8.. => {
            let mut at = 0;
            while at + 8 <= n {
                if let Some(i) = first_flagged(word(at)) {
                    return Some(at + i);
                }
                at += 8;
            }
            if at == n {
                None
            } else {
                first_flagged(word(n - 8)).map(|i| n - 8 + i)
            }
        }
        4..=7 => match first_flagged(half(0) | half(n - 4) << 32) {
            Some(i) if i < 4 => Some(i),
            Some(i) => Some(i + n - 8),
            None => None,
        },
        _ => bytes.iter().position(|&b| escaped(b)),
    }
}

/// The length of the JSON number `bytes` starts with: up to the first byte that may follow a
/// number in a JSON text (whitespace, `,`, `]` or `}`), or to the end. `bytes` must start with
/// a number a parser has read, which is what makes finding its end enough. Eight bytes at a
/// time: the router takes the text of every number field of every JSON event this way.
#[inline]
pub fn number_len(bytes: &[u8]) -> usize {
    let ends = |x: u64| {
        below(x, 0x21)
            | below(x ^ (ONES * b',' as u64), 1)
            | below(x ^ (ONES * b']' as u64), 1)
            | below(x ^ (ONES * b'}' as u64), 1)
    };
    let mut at = 0;
    while let Some(word) = bytes.get(at..at + 8) {
        let found = ends(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        if found != 0 {
            return at + found.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + bytes[at..].iter().position(|&b| b <= b' ' || matches!(b, b',' | b']' | b'}')).unwrap_or(bytes.len() - at)
}

/// Appends a number (or `null`) exactly as serde_json writes it (non-finite floats are `null`).
pub fn write_number<T: JsonNumber + ?Sized>(out: &mut Vec<u8>, value: &T) {
    value.write_json(out);
}

/// A number as JSON text, written with the formatters serde_json itself uses (`zmij` for
/// floats, `itoa` for integers) but without a serializer around each number: the records of
/// every event carry several.
pub trait JsonNumber {
    fn write_json(&self, out: &mut Vec<u8>);
}

impl JsonNumber for f64 {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        if self.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(*self).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
}

macro_rules! integer_json {
    ($($t:ty),*) => {$(
        impl JsonNumber for $t {
            #[inline]
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
integer_json!(u8, i32, i64, u64);

impl<T: JsonNumber> JsonNumber for Option<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl AuditRecord<'_> {
    /// Appends the JSON encoding (what serde_json writes for the record).
    pub(crate) fn lay_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.str(field!("event_id"), &self.event_id);
        o.str(field!("timestamp"), &self.timestamp);
        o.str(field!("actor"), &self.actor);
        o.opt_str(field!("actor_role"), self.actor_role.as_deref());
        o.str(field!("action"), &self.action);
        o.str(field!("decision"), &self.decision);
        o.opt_str(field!("rule"), self.rule.as_deref());
        o.bool(field!("guardrail"), self.guardrail);
        o.opt_str(field!("policy_version"), self.policy_version.as_deref());
        o.opt_str(field!("model_version"), self.model_version.as_deref());
        o.opt_f64(field!("risk_score"), self.risk_score);
        o.opt_f64(field!("confidence"), self.confidence);
        o.explanation(field!("explanation"), &self.explanation);
        o.str(field!("input_snapshot"), &self.input_snapshot);
        o.opt_str(field!("rationale"), self.rationale.as_deref());
        o.opt_i64(field!("sla_expected_ms"), self.sla_expected_ms);
        o.opt_i64(field!("sla_actual_ms"), self.sla_actual_ms);
        o.str(field!("source_topic"), &self.source_topic);
        o.i64(field!("source_partition"), i64::from(self.source_partition));
        o.i64(field!("source_offset"), self.source_offset);
        o.opt_i64(field!("chain_seq"), self.chain_seq);
        o.opt_str(field!("chain_prev"), self.chain_prev.as_deref());
        o.opt_str(field!("chain_hash"), self.chain_hash.as_deref());
        o.end();
    }
}

impl RoutedRecord<'_, ()> {
    /// Appends the JSON encoding with `event` (JSON text) as the event, and the scores as
    /// `scores` gives their text (formatted where it gives none).
    pub(crate) fn lay_json(&self, event: &[u8], scores: ScoreTexts<'_>, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.str(field!("event_id"), &self.event_id);
        o.str(field!("route"), self.route.as_str());
        o.str(field!("rule"), &self.rule);
        o.bool(field!("guardrail"), self.guardrail);
        match scores.risk {
            Some(text) => o.raw(field!("risk_score"), text.as_bytes()),
            None => o.f64(field!("risk_score"), self.risk_score),
        }
        match scores.confidence {
            Some(text) => o.raw(field!("confidence"), text.as_bytes()),
            None => o.f64(field!("confidence"), self.confidence),
        }
        o.str(field!("model_version"), &self.model_version);
        o.str(field!("policy_version"), &self.policy_version);
        o.explanation(field!("explanation"), &self.explanation);
        o.i64(field!("routed_at"), self.routed_at);
        o.opt_i64(field!("sla_deadline"), self.sla_deadline);
        o.str(field!("event_format"), self.event_format.as_str());
        o.raw(field!("event"), event);
        o.end();
    }
}

impl ResolvedEvent<'_, ()> {
    /// Appends the JSON encoding with `event` (JSON text) as the event.
    pub(crate) fn lay_json(&self, event: &[u8], out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.str(field!("event_id"), &self.event_id);
        o.str(field!("queue"), self.queue.as_str());
        o.str(field!("rule"), &self.rule);
        o.str(field!("recommendation"), self.recommendation.as_str());
        o.opt_str(field!("action"), self.action.map(ReviewAction::as_str));
        o.str(field!("outcome"), self.outcome.as_str());
        o.str(field!("actor"), &self.actor);
        o.opt_str(field!("actor_role"), self.actor_role.as_deref());
        o.str(field!("rationale"), &self.rationale);
        o.opt_str(field!("second_signoff"), self.second_signoff.as_deref());
        o.bool(field!("overridden"), self.overridden);
        o.i64(field!("review_latency_ms"), self.review_latency_ms);
        o.bool(field!("sla_met"), self.sla_met);
        o.i64(field!("tier"), i64::from(self.tier));
        o.i64(field!("decided_at"), self.decided_at);
        o.bool(field!("rollback"), self.rollback);
        o.f64(field!("risk_score"), self.risk_score);
        o.f64(field!("confidence"), self.confidence);
        o.str(field!("policy_version"), &self.policy_version);
        o.str(field!("model_version"), &self.model_version);
        o.str(field!("event_format"), self.event_format.as_str());
        o.raw(field!("event"), event);
        o.end();
    }
}

#[cfg(test)]
mod tests {
    use crate::routed::{Contribution, EventFormat, RoutedRecord};
    use crate::Route;

    /// Numbers of every kind the records carry, byte for byte against serde_json: floats of
    /// every magnitude and sign, whole, subnormal and not finite, and integers to their limits.
    /// Every number serde_json writes, of 1 to 24 bytes, followed by each byte that may end
    /// one and by text that holds another, or by nothing.
    #[test]
    fn a_number_ends_where_json_lets_one_end() {
        let mut numbers: Vec<String> = vec![
            "0".into(),
            "-0".into(),
            "1e5".into(),
            "-2.5E-300".into(),
            "7E+2".into(),
            "1.7976931348623157e308".into(),
            "5e-324".into(),
        ];
        numbers.extend((0..400u64).map(|i| {
            serde_json::to_string(
                &(f64::from_bits(0x3FF0_0000_0000_0000 ^ (i.wrapping_mul(0x9E37_79B9_7F4A_7C15u64) >> 12))),
            )
            .unwrap()
        }));
        numbers.extend((0..60).map(|i| (-1i64).wrapping_shl(i).to_string()));
        let lengths: std::collections::BTreeSet<usize> = numbers.iter().map(String::len).collect();
        assert!(lengths.iter().any(|&n| n < 8) && lengths.iter().any(|&n| n > 16), "{lengths:?}");
        for number in &numbers {
            for end in ["", ",", "}", "]", " ", "\t", "\n", "\r", ",\"a\":1}", "}]", " ,"] {
                let text = format!("{number}{end}");
                assert_eq!(super::number_len(text.as_bytes()), number.len(), "{text:?}");
            }
        }
    }

    #[test]
    fn numbers_are_written_exactly_as_serde_json_writes_them() {
        let mut floats = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.99,
            12.5,
            1e15,
            1e16,
            1e21,
            1e22,
            123456789012345680.0,
            1e-7,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        // Spread over the whole range of bit patterns (a fixed-step walk, so no two runs differ).
        let mut bits = 0x0123_4567_89ab_cdefu64;
        for _ in 0..20_000 {
            bits = bits.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            floats.push(f64::from_bits(bits));
            floats.push((bits % 1_000_000) as f64 / 1000.0);
        }
        for v in floats {
            let mut out = Vec::new();
            super::write_number(&mut out, &v);
            assert_eq!(out, serde_json::to_vec(&v).unwrap(), "{v:e}");
            let (mut some, mut none) = (Vec::new(), Vec::new());
            super::write_number(&mut some, &Some(v));
            super::write_number(&mut none, &None::<f64>);
            assert_eq!((some, none), (serde_json::to_vec(&Some(v)).unwrap(), b"null".to_vec()));
        }
        for v in [0, 1, -1, 9, 10, 99, 100, i64::MAX, i64::MIN, 1_763_000_000_000] {
            let mut out = Vec::new();
            super::write_number(&mut out, &v);
            super::write_number(&mut out, &Some(v));
            super::write_number(&mut out, &(v as i32));
            super::write_number(&mut out, &(v as u64));
            super::write_number(&mut out, &(v as u8));
            let expected = [
                serde_json::to_vec(&v).unwrap(),
                serde_json::to_vec(&Some(v)).unwrap(),
                serde_json::to_vec(&(v as i32)).unwrap(),
                serde_json::to_vec(&(v as u64)).unwrap(),
                serde_json::to_vec(&(v as u8)).unwrap(),
            ]
            .concat();
            assert_eq!(out, expected, "{v}");
        }
    }

    /// Every byte value at every position of a word and of the tail, against serde_json.
    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        for len in 1..=19 {
            for at in 0..len {
                for byte in (0..=0x7f).chain([0xc3]) {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = byte;
                    if byte == 0xc3 {
                        // A two-byte character (é), to cover bytes above ASCII.
                        bytes.insert(at + 1, 0xa9);
                    }
                    let text = std::str::from_utf8(&bytes).unwrap();
                    let mut out = Vec::new();
                    super::write_str(&mut out, text);
                    assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
                    let escaped = byte < 0x20 || byte == b'"' || byte == b'\\';
                    assert_eq!(super::first_escape(&bytes).is_some(), escaped, "{text:?}");
                }
            }
        }
    }

    /// Strings with many escapes, next to each other and between runs of plain text of every
    /// length, with characters of two, three and four bytes; short and long.
    #[test]
    fn runs_and_escapes_are_written_exactly_as_serde_json_writes_them() {
        let alphabet: Vec<char> = (0u8..0x80).map(char::from).chain(['é', '€', '😀']).collect();
        // Long strings too: their escaped form fills the stage buffer, at every phase.
        let lengths = (0..=40).chain([127, 128, 129, 255, 256, 257, 300, 511, 700, 1500]);
        for step in 1..=13 {
            for len in lengths.clone() {
                let text: String = (0..len).map(|i| alphabet[(i * step * 7 + len) % alphabet.len()]).collect();
                let mut out = b"prefix".to_vec();
                super::write_str(&mut out, &text);
                assert_eq!(&out[6..], serde_json::to_vec(&text).unwrap(), "{text:?}");
            }
        }
        let snapshot = r#"{"amount":12.5,"note":"a \"quoted\" word\n","tab":"\t"}"#;
        let mut out = Vec::new();
        super::write_str(&mut out, snapshot);
        assert_eq!(out, serde_json::to_vec(snapshot).unwrap());
    }

    /// The first of two escaped bytes is found wherever the two fall, past any bytes above
    /// ASCII (a borrow in the eight-byte check must not flag an earlier byte).
    #[test]
    fn the_first_escaped_byte_is_found() {
        for len in 2..=19 {
            for first in 0..len {
                for second in first + 1..len {
                    for (a, b) in [(b'"', b'\\'), (0x1f, b'"'), (b'\\', 0x00), (0x7f, b'"'), (0xff, 0x01)] {
                        let mut bytes = vec![0xe9; len];
                        bytes[first] = a;
                        bytes[second] = b;
                        let expected = [(first, a), (second, b)]
                            .into_iter()
                            .find(|&(_, x)| x < 0x20 || x == b'"' || x == b'\\')
                            .map(|(at, _)| at);
                        assert_eq!(super::first_escape(&bytes), expected, "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn audit_records_lay_out_as_serde_json_encodes_them() {
        for record in crate::fixtures::audit_records() {
            let mut laid = Vec::new();
            record.lay_json(&mut laid);
            assert_eq!(String::from_utf8(laid).unwrap(), serde_json::to_string(&record).unwrap());
        }
    }

    #[test]
    fn routed_records_lay_out_as_serde_json_encodes_them() {
        let event = serde_json::json!({"amount": 12.5, "note": "a \"b\""});
        for (i, text) in crate::fixtures::texts().iter().take(4).enumerate() {
            let record = RoutedRecord {
                event_id: text.clone().into(),
                route: Route::ALL[i],
                rule: text.clone().into(),
                guardrail: i % 2 == 1,
                risk_score: [0.93, f64::NAN, 0.0, 1e300][i],
                confidence: 0.5,
                model_version: text.clone().into(),
                policy_version: "p".into(),
                explanation: if i == 0 {
                    vec![]
                } else {
                    vec![Contribution { feature: text.clone().into(), contribution: -0.5 }]
                },
                routed_at: 1_790_000_000_000,
                sla_deadline: [None, Some(5)][i % 2],
                event_format: [EventFormat::Json, EventFormat::Avro][i % 2],
                event: (),
            };
            let mut laid = Vec::new();
            record.lay_json(event.to_string().as_bytes(), crate::routed::ScoreTexts::default(), &mut laid);
            assert_eq!(String::from_utf8(laid).unwrap(), serde_json::to_string(&record.with_event(&event)).unwrap());
        }
    }

    #[test]
    fn resolved_records_lay_out_as_serde_json_encodes_them() {
        use crate::decision::ReviewAction;
        use crate::review::{ResolvedEvent, ReviewOutcome};
        let event = serde_json::json!({"amount": 12.5, "note": "a \"b\""});
        let actions = [None, Some(ReviewAction::Approve), Some(ReviewAction::Reject), Some(ReviewAction::RequestInfo)];
        for (i, text) in crate::fixtures::texts().iter().take(4).enumerate() {
            let outcome = [ReviewOutcome::Approved, ReviewOutcome::Rejected][i % 2];
            let record = ResolvedEvent {
                event_id: text.clone().into(),
                queue: Route::ALL[i],
                rule: text.clone().into(),
                recommendation: [ReviewOutcome::Rejected, ReviewOutcome::Approved][i % 2],
                action: actions[i],
                outcome,
                actor: text.clone().into(),
                actor_role: [None, Some(text.clone().into())][i % 2].clone(),
                rationale: text.clone().into(),
                second_signoff: [Some(text.clone().into()), None][i % 2].clone(),
                overridden: i % 2 == 0,
                review_latency_ms: [0, -1, i64::MAX, 42][i],
                sla_met: i % 2 == 1,
                tier: [1, 2, 3, i32::MAX][i],
                decided_at: 1_790_000_000_000,
                rollback: i == 3,
                risk_score: [0.93, f64::NAN, 0.0, 1e300][i],
                confidence: [0.5, 1.0, f64::INFINITY, 1e-7][i],
                policy_version: text.clone().into(),
                model_version: "m".into(),
                event_format: [EventFormat::Json, EventFormat::Avro][i % 2],
                event: (),
            };
            let mut laid = Vec::new();
            record.lay_json(event.to_string().as_bytes(), &mut laid);
            assert_eq!(String::from_utf8(laid).unwrap(), serde_json::to_string(&record.with_event(&event)).unwrap());
        }
    }
}
