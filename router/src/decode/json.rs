//! JSON input: one object per record.

use super::extract::{Extract, PathTree};
use super::memo::KeyMemo;
use super::scan::{scan, Scan};
use super::{Body, Decoded};
use crate::fields::{EventFields, FieldBuffer, FieldRegistry};
use crate::reject::{RejectReason, Rejection};
use serde::de::DeserializeSeed;

/// Decodes one JSON object in a single pass: the parser validates the whole record while it
/// reads the registered fields and skips everything else without building a tree. Events in
/// the usual shape take the scan ([`super::scan`]); serde_json reads the others.
pub(super) fn decode<'a>(
    registry: &FieldRegistry,
    tree: &PathTree,
    payload: &'a [u8],
    buffer: &mut FieldBuffer,
    keys: &mut KeyMemo,
) -> Result<Decoded<'a>, Rejection> {
    let malformed = |e: serde_json::Error| Rejection::new(RejectReason::MalformedJson, format!("invalid JSON: {e}"));
    // UTF-8 once for the whole record, so the parser (and the routed record that embeds the
    // text) can rely on it.
    let text = std::str::from_utf8(payload.trim_ascii())
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, format!("invalid JSON: not UTF-8: {e}")))?;
    if !text.starts_with('{') {
        return Err(Rejection::new(RejectReason::MalformedJson, "the event must be a JSON object"));
    }
    let mut fields = buffer.take(registry.paths().len());
    if scan(tree, text, &mut fields, keys) == Scan::Read {
        return Ok(Decoded { fields, body: Body::Json(text) });
    }
    // Declined: serde_json reads the event from the start, and accepts it or says what is
    // wrong with it.
    fields.reset();
    walk(tree, text, &mut fields).map_err(malformed)?;
    Ok(Decoded { fields, body: Body::Json(text) })
}

/// Reads the registered fields of the JSON text `text` with serde_json, which checks all of it.
/// Numbers whose key the input writes without escapes keep their text, as the scan keeps it.
pub(super) fn walk<'a>(tree: &PathTree, text: &'a str, fields: &mut EventFields<'a>) -> Result<(), serde_json::Error> {
    fields.set_input(text);
    let mut de = serde_json::Deserializer::from_str(text);
    Extract::<false>::record(tree, fields, None).deserialize(&mut de).and_then(|()| de.end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{FieldId, FieldValue};
    use std::borrow::Cow;

    fn registry() -> FieldRegistry {
        let mut r = FieldRegistry::default();
        for p in ["event_id", "amount", "card.country", "flag", "nested"] {
            r.register(p).unwrap();
        }
        r
    }

    /// `payload` decoded with `r`'s paths, in fresh buffers.
    fn decode_new<'a>(r: &FieldRegistry, payload: &'a [u8]) -> Result<Decoded<'a>, Rejection> {
        decode(r, &PathTree::new(r), payload, &mut FieldBuffer::default(), &mut KeyMemo::default())
    }

    #[test]
    fn extracts_nested_and_scalar_fields() {
        let r = registry();
        let payload = br#"{"event_id":"e1","amount":12.5,"card":{"country":"DE"},"flag":true,"nested":{"a":1}}"#;
        let d = decode_new(&r, payload).unwrap();
        let get = |p: &str| {
            d.fields.get(r.paths().iter().position(|x| x.as_str() == p).map(crate::fields::FieldId).unwrap()).clone()
        };
        assert_eq!(get("event_id"), FieldValue::Text("e1".into()));
        assert_eq!(get("amount"), FieldValue::Number(12.5));
        assert_eq!(get("card.country"), FieldValue::Text("DE".into()));
        assert_eq!(get("flag"), FieldValue::Bool(true));
        assert_eq!(get("nested"), FieldValue::Other);
        match d.body {
            Body::Json(text) => assert_eq!(text.as_bytes(), payload),
            Body::Avro(_) => panic!("expected a JSON body"),
        }
    }

    /// Paths sharing a prefix, a path ending at an object others go through, and a key that
    /// names a registered path's segment at another depth (which must not match).
    #[test]
    fn paths_are_followed_by_their_keys_at_their_depth() {
        let mut r = FieldRegistry::default();
        for p in ["card", "card.country", "card.bin", "a.b.c", "country"] {
            r.register(p).unwrap();
        }
        let payload = br#"{"other":{"card":{"country":"no"},"country":"no"},"card":{"x":{"country":"no"},"country":"DE","bin":"4111"},"a":{"b":{"c":true,"d":1}},"a2":[{"b":2}]}"#;
        let d = decode_new(&r, payload).unwrap();
        let get = |p: &str| {
            d.fields.get(r.paths().iter().position(|x| x.as_str() == p).map(crate::fields::FieldId).unwrap()).clone()
        };
        assert_eq!(get("card"), FieldValue::Other);
        assert_eq!(get("card.country"), FieldValue::Text("DE".into()));
        assert_eq!(get("card.bin"), FieldValue::Text("4111".into()));
        assert_eq!(get("a.b.c"), FieldValue::Bool(true));
        assert_eq!(get("country"), FieldValue::Missing);
    }

    #[test]
    fn text_without_escapes_is_borrowed_and_whitespace_trimmed() {
        let r = registry();
        let d = decode_new(&r, b" {\"event_id\":\"e1\",\"amount\":\"a\\\"b\"}\n").unwrap();
        assert!(matches!(d.fields.get(crate::fields::FieldId(0)), FieldValue::Text(Cow::Borrowed("e1"))));
        assert!(matches!(d.fields.get(crate::fields::FieldId(1)), FieldValue::Text(Cow::Owned(s)) if s == "a\"b"));
        assert!(matches!(d.body, Body::Json(t) if t.starts_with('{') && t.ends_with('}')));
    }

    /// A number keeps its text as written, wherever the key sits and however it is spaced;
    /// a number whose key was escaped, or that sits in an array, has its value only. A repeated
    /// key leaves no stale text behind.
    #[test]
    fn numbers_keep_their_input_text() {
        let mut r = FieldRegistry::default();
        for p in ["a", "b", "c.d", "e", "f", "g", "h"] {
            r.register(p).unwrap();
        }
        let payload = concat!(
            r#"{"a" : 12.50 ,"b":-2E+3,"c":{ "d"	:"#,
            "\n7}",
            r#","\u0065":1.0,"f":[1.5],"g":3,"g":4.25e-1,"h":1,"\u0068":2}"#
        );
        let d = decode_new(&r, payload.as_bytes()).unwrap();
        let at = |i: usize| (d.fields.get(FieldId(i)).clone(), d.fields.number_text(FieldId(i)));
        assert_eq!(at(0), (FieldValue::Number(12.5), Some("12.50")));
        assert_eq!(at(1), (FieldValue::Number(-2000.0), Some("-2E+3")));
        assert_eq!(at(2), (FieldValue::Number(7.0), Some("7")));
        assert_eq!(at(3), (FieldValue::Number(1.0), None), "escaped key");
        assert_eq!(at(4), (FieldValue::Other, None), "array");
        assert_eq!(at(5), (FieldValue::Number(0.425), Some("4.25e-1")), "the last of a repeated key");
        assert_eq!(at(6), (FieldValue::Number(2.0), None), "repeated by an escaped key");
    }

    #[test]
    fn absent_and_null_are_missing() {
        let r = registry();
        let d = decode_new(&r, br#"{"event_id":null}"#).unwrap();
        assert_eq!(d.fields.get(crate::fields::FieldId(0)), &FieldValue::Missing);
        assert_eq!(d.fields.get(crate::fields::FieldId(2)), &FieldValue::Missing);
    }

    #[test]
    fn malformed_input_is_rejected_with_a_reason() {
        let r = registry();
        let bad_utf8_in_skipped_value = b"{\"event_id\":\"e\",\"skipped\":\"\xff\"}";
        for bad in [
            &b"{"[..],
            b"[1,2]",
            b"\"text\"",
            b"{\"a\":NaN}",
            b"\xff\xfe",
            b"{\"a\":1} trailing",
            b"{\"a\":1}{\"b\":2}",
            b"{\"a\":[1,}",
            bad_utf8_in_skipped_value,
        ] {
            let err = decode_new(&r, bad).unwrap_err();
            assert_eq!(err.reason, RejectReason::MalformedJson, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
