//! JSON input: one object per record.

use super::{Body, Decoded};
use crate::fields::{EventFields, FieldRegistry, FieldValue};
use crate::reject::{RejectReason, Rejection};
use fnv::FnvHashMap;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// The registered paths by their first segment, so a top-level key finds its paths at once.
#[derive(Debug, Default)]
pub struct TopLevel(FnvHashMap<String, Vec<usize>>);

impl TopLevel {
    pub fn new(registry: &FieldRegistry) -> Self {
        let mut map: FnvHashMap<String, Vec<usize>> = FnvHashMap::default();
        for (i, path) in registry.paths().iter().enumerate() {
            if let Some(first) = path.segments().first() {
                map.entry(first.clone()).or_default().push(i);
            }
        }
        TopLevel(map)
    }
}

/// Decodes one JSON object in a single pass: the parser validates the whole record while it
/// reads the registered fields and skips everything else without building a tree.
pub(super) fn decode<'a>(
    registry: &FieldRegistry,
    top: &TopLevel,
    payload: &'a [u8],
) -> Result<Decoded<'a>, Rejection> {
    let malformed = |e: serde_json::Error| Rejection::new(RejectReason::MalformedJson, format!("invalid JSON: {e}"));
    // UTF-8 once for the whole record, so the parser (and the routed record that embeds the
    // text) can rely on it.
    let text = std::str::from_utf8(payload.trim_ascii())
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, format!("invalid JSON: not UTF-8: {e}")))?;
    if !text.starts_with('{') {
        return Err(Rejection::new(RejectReason::MalformedJson, "the event must be a JSON object"));
    }
    let mut values = vec![FieldValue::Missing; registry.paths().len()];
    let mut de = serde_json::Deserializer::from_str(text);
    Extract { registry, depth: 0, candidates: &[], top: Some(top), values: &mut values }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(malformed)?;
    Ok(Decoded { fields: EventFields::from_values(values), body: Body::Json(text) })
}

/// Reads the registered paths below one JSON value: `candidates` are the paths whose first
/// `depth` segments lead here; at the top, `top` finds them by key.
struct Extract<'r, 'v, 'de> {
    registry: &'r FieldRegistry,
    depth: usize,
    candidates: &'r [usize],
    top: Option<&'r TopLevel>,
    values: &'v mut Vec<FieldValue<'de>>,
}

impl<'de> Extract<'_, '_, 'de> {
    /// Sets every path that ends here.
    fn set(&mut self, value: FieldValue<'de>) {
        for &i in self.candidates {
            if self.registry.paths()[i].segments().len() == self.depth {
                self.values[i] = value.clone();
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Extract<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for Extract<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        // Paths ending at this object see it as a non-scalar.
        self.set(FieldValue::Other);
        let mut below = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let next: &[usize] = match self.top {
                Some(top) => top.0.get(key.as_ref()).map_or(&[], Vec::as_slice),
                None => {
                    below.clear();
                    below.extend(self.candidates.iter().copied().filter(|&i| {
                        self.registry.paths()[i].segments().get(self.depth).is_some_and(|s| s.as_str() == key)
                    }));
                    &below
                }
            };
            if next.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Extract {
                    registry: self.registry,
                    depth: self.depth + 1,
                    candidates: next,
                    top: None,
                    values: self.values,
                })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.set(FieldValue::Other);
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.set(FieldValue::Text(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.set(FieldValue::Text(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.set(FieldValue::Number(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.set(FieldValue::Number(v as f64));
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.set(FieldValue::Number(v as f64));
        Ok(())
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.set(FieldValue::Bool(v));
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.set(FieldValue::Missing);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> FieldRegistry {
        let mut r = FieldRegistry::default();
        for p in ["event_id", "amount", "card.country", "flag", "nested"] {
            r.register(p).unwrap();
        }
        r
    }

    #[test]
    fn extracts_nested_and_scalar_fields() {
        let r = registry();
        let payload = br#"{"event_id":"e1","amount":12.5,"card":{"country":"DE"},"flag":true,"nested":{"a":1}}"#;
        let d = decode(&r, &TopLevel::new(&r), payload).unwrap();
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

    #[test]
    fn text_without_escapes_is_borrowed_and_whitespace_trimmed() {
        let r = registry();
        let d = decode(&r, &TopLevel::new(&r), b" {\"event_id\":\"e1\",\"amount\":\"a\\\"b\"}\n").unwrap();
        assert!(matches!(d.fields.get(crate::fields::FieldId(0)), FieldValue::Text(Cow::Borrowed("e1"))));
        assert!(matches!(d.fields.get(crate::fields::FieldId(1)), FieldValue::Text(Cow::Owned(s)) if s == "a\"b"));
        assert!(matches!(d.body, Body::Json(t) if t.starts_with('{') && t.ends_with('}')));
    }

    #[test]
    fn absent_and_null_are_missing() {
        let r = registry();
        let d = decode(&r, &TopLevel::new(&r), br#"{"event_id":null}"#).unwrap();
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
            let err = decode(&r, &TopLevel::new(&r), bad).unwrap_err();
            assert_eq!(err.reason, RejectReason::MalformedJson, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
