//! JSON text at the byte level: strings escaped as serde_json escapes them, numbers formatted as
//! serde_json formats them, and the scans that find where a string or a number ends. Eight
//! bytes at a time where it counts: these run on every value of every record the router reads
//! and writes.

/// Appends `value` as a JSON string, exactly as serde_json writes it: runs of plain text are
/// copied whole, and only `"`, `\\` and control characters are escaped (the short forms where
/// JSON has them, else `\u00XX` in lowercase hex). May be inlined: most values are short and
/// have nothing to escape, and out of line the call was about a quarter of their cost.
#[inline]
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

/// Appends the JSON string of `value` as it stands inside another JSON string: what
/// [`write_str`] writes for the text [`write_str`] writes for `value`, less the outer quotes
/// (`\"` … `\"`). A JSON text carried in a string field (the audit record's input snapshot)
/// can be written this way straight from its parts, instead of written and then escaped whole.
pub fn write_nested_str(out: &mut Vec<u8>, value: &str) {
    let mut bytes = value.as_bytes();
    out.extend_from_slice(b"\\\"");
    while let Some(at) = first_escape(bytes) {
        out.extend_from_slice(&bytes[..at]);
        let byte = bytes[at];
        // The inner escape's backslash, escaped; then the rest of the inner escape, itself
        // escaped where it is a quote or a backslash.
        out.extend_from_slice(b"\\\\");
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.push(b'n'),
            b'\r' => out.push(b'r'),
            b'\t' => out.push(b't'),
            0x08 => out.push(b'b'),
            0x0c => out.push(b'f'),
            _ => {
                out.extend_from_slice(&[b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
            }
        }
        bytes = &bytes[at + 1..];
    }
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\\\"");
}

/// The digits of a `\u00XX` escape, lowercase as serde_json writes them.
const HEX: &[u8; 16] = b"0123456789abcdef";

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
/// of every record the router reads and writes. Always inlined: out of line, its call cost
/// about a tenth of a short string's write (session 24, callgrind).
#[inline(always)]
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

#[cfg(test)]
mod tests {
    /// Numbers of every kind the records carry, byte for byte against serde_json: floats of
    /// every magnitude and sign, whole, subnormal and not finite, and integers to their limits.
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

    /// A string inside a string, for every byte value at every position and for runs of
    /// escapes, against serde_json writing the string of the string.
    #[test]
    fn nested_strings_are_what_serde_json_writes_for_a_string_of_a_string() {
        let mut texts: Vec<String> = Vec::new();
        for len in 1..=10 {
            for at in 0..len {
                for byte in 0..0x80u8 {
                    let mut text = "a".repeat(len);
                    text.replace_range(at..=at, &char::from(byte).to_string());
                    texts.push(text);
                }
            }
        }
        texts.extend(["", "é€😀", "\"\"\\\\\n\u{1}\u{1f}", "Café \"Zur Post\"\\"].map(String::from));
        for text in texts {
            let mut out = b"x".to_vec();
            super::write_nested_str(&mut out, &text);
            let outer = serde_json::to_vec(&serde_json::to_string(&text).unwrap()).unwrap();
            assert_eq!(&out[1..], &outer[1..outer.len() - 1], "{text:?}");
        }
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
}
