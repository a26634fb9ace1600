//! The scan against serde_json, on generated and damaged events, and the runs it records for
//! the audit snapshot.

use super::super::json::walk;
use super::*;
use crate::fields::{FieldBuffer, FieldId, FieldRegistry};

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

/// An object's members in order, repeated keys kept (a map keeps the last).
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The field the differential test's tree never copies, as a redacted one.
const REDACTED: usize = 1;

/// The runs the scan recorded for the snapshot, parsed as the members of one object, are the
/// members of the fields it marks as copied, each once and with the value serde_json read
/// (`expected`); never the redacted field's.
fn runs_agree(fields: &EventFields<'_>, expected: &EventFields<'_>) -> Result<(), String> {
    let runs: Vec<&str> = fields
        .verbatim(fields.input().as_bytes())
        .map(|runs| runs.map(|run| std::str::from_utf8(run).unwrap()).collect())
        .unwrap_or_default();
    let text = format!("{{{}}}", runs.join(","));
    let members: Members = serde_json::from_str(&text).map_err(|e| format!("the runs are no object: {e}: {text}"))?;
    let marked: Vec<usize> = (0..PATHS.len()).filter(|&i| fields.is_verbatim(FieldId(i))).collect();
    if members.0.len() != marked.len() {
        return Err(format!("{} members for the fields {marked:?}: {text}", members.0.len()));
    }
    for (key, value) in &members.0 {
        let id = PATHS.iter().position(|p| p == key).ok_or_else(|| format!("`{key}` is no field: {text}"))?;
        let agrees = match (expected.get(FieldId(id)), value) {
            (FieldValue::Number(x), serde_json::Value::Number(n)) => n.as_f64().map(f64::to_bits) == Some(x.to_bits()),
            (FieldValue::Text(x), serde_json::Value::String(s)) => x == s,
            (FieldValue::Bool(x), serde_json::Value::Bool(b)) => x == b,
            _ => false,
        };
        if !agrees || !marked.contains(&id) || id == REDACTED {
            return Err(format!("`{key}`: {value} against {:?}: {text}", expected.get(FieldId(id))));
        }
    }
    Ok(())
}

/// Every event the scan takes is valid JSON to serde_json, and reads to the same fields;
/// and the scan takes a good share of valid events, so this cannot pass by declining them.
/// One memo of keys serves all events, as in a routing loop: half of them come in runs
/// sharing their keys (eight key sets, one per run), so most of their keys are recalled,
/// damage in a key included; the other half have keys of their own. The runs of members it
/// records for the snapshot hold what serde_json read, or are voided by a repeated key.
#[test]
fn the_scan_reads_what_serde_json_reads_or_declines() {
    let mut registry = FieldRegistry::default();
    for path in PATHS {
        registry.register(path).unwrap();
    }
    let tree = PathTree::with_verbatim(&registry, Some(&[FieldId(REDACTED)]));
    let (mut buffer, mut reference) = (FieldBuffer::default(), FieldBuffer::default());
    buffer.verbatim_wanted = true;
    // Events taken whose runs were used, and voided.
    let (mut copied, mut voided) = (0, 0);
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
            if fields.verbatim(fields.input().as_bytes()).is_some() {
                runs_agree(&fields, &expected).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                copied += 1;
            } else if (0..PATHS.len()).any(|i| fields.is_verbatim(FieldId(i))) {
                voided += 1;
            }
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
    assert!(copied > 1_000 && voided > 100, "events with runs copied: {copied}, voided: {voided}");
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

/// The runs: consecutive members of copied fields, with the input's separators; a member of a
/// field below the top level, redacted, not a scalar or not registered ends one; a repeated
/// key voids them unless its first member was not taken.
#[test]
fn the_runs_hold_consecutive_top_level_members() {
    let mut registry = FieldRegistry::default();
    for path in ["a", "b", "c.d", "list", "e"] {
        registry.register(path).unwrap();
    }
    let tree = PathTree::with_verbatim(&registry, Some(&[FieldId(1)]));
    for (text, runs) in [
        (r#"{"a":1,"x":2,"b":"s","c":{"d":3},"list":[1],"e":true}"#, Some(vec![r#""a":1"#, r#""e":true"#])),
        (r#"{"a" : 1 ,"e":"t" , "list":false}"#, Some(vec![r#""a" : 1 ,"e":"t" , "list":false"#])),
        (r#"{"e":null,"a":-2.5e1,"b":1,"list":"l"}"#, Some(vec![r#""a":-2.5e1"#, r#""list":"l""#])),
        (r#"{"a":null,"a":1}"#, Some(vec![r#""a":1"#])),
        (r#"{"a":1,"a":2}"#, None),
        (r#"{"a":1,"e":2,"a":null}"#, None),
        (r#"{"x":{"a":1},"c":{"d":2}}"#, None),
    ] {
        let mut buffer = FieldBuffer::default();
        buffer.verbatim_wanted = true;
        let mut fields = buffer.take(5);
        assert_eq!(scan(&tree, text, &mut fields, &mut KeyMemo::default()), Scan::Read, "{text}");
        let runs = runs.map(|runs| runs.into_iter().map(str::as_bytes).collect::<Vec<_>>());
        assert_eq!(fields.verbatim(text.as_bytes()).map(Iterator::collect::<Vec<_>>), runs, "{text}");
        // Not wanted: none recorded.
        let mut fields = FieldBuffer::default().take(5);
        scan(&tree, text, &mut fields, &mut KeyMemo::default());
        assert_eq!(fields.verbatim(text.as_bytes()).map(|r| r.count()), None, "{text}");
    }
}
