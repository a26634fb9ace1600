//! One walk of a decoded record, in any serde data format: it reads the registered fields and,
//! when asked, writes the record's JSON form on the way.
//!
//! JSON input walks its text with serde_json and skips what no path names without building a
//! tree. Avro input walks its datum with `serde_avro_fast` against the writer schema, and, when
//! the routed record is JSON, writes the event's JSON form in the same walk: no `Value` tree, and
//! strings and field text are borrowed from the record.

use crate::fields::{FieldRegistry, FieldValue};
use fnv::FnvHashMap;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use tollgate_schemas::json::{write_number, write_str};

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

/// The JSON form of a record, written while it is walked.
#[derive(Debug, Default)]
pub struct JsonOut {
    pub text: Vec<u8>,
    /// A NaN or infinity was met. JSON cannot carry it; it is written as `null` and the caller
    /// decides whether the record has a JSON form.
    pub non_finite: bool,
}

impl JsonOut {
    fn float(&mut self, v: f64) {
        if v.is_finite() {
            write_number(&mut self.text, &v);
        } else {
            self.non_finite = true;
            self.text.extend_from_slice(b"null");
        }
    }
}

/// Reads the registered paths below one value: `candidates` are the paths whose first `depth`
/// segments lead here; at the top, `top` finds them by key. With `WRITE` (a constant, so the
/// walk that only reads fields carries no writing code), the value's JSON form is appended to
/// `out`.
pub struct Extract<'r, 'v, 'o, 'de, const WRITE: bool> {
    pub registry: &'r FieldRegistry,
    pub depth: usize,
    pub candidates: &'r [usize],
    pub top: Option<&'r TopLevel>,
    pub values: &'v mut Vec<FieldValue<'de>>,
    pub out: Option<&'o mut JsonOut>,
}

impl<'de, const WRITE: bool> Extract<'_, '_, '_, 'de, WRITE> {
    /// Sets every path that ends here.
    fn set(&mut self, value: FieldValue<'de>) {
        for &i in self.candidates {
            if self.registry.paths()[i].segments().len() == self.depth {
                self.values[i] = value.clone();
            }
        }
    }

    fn write(&mut self, json: impl FnOnce(&mut JsonOut)) {
        if WRITE {
            if let Some(out) = self.out.as_deref_mut() {
                json(out);
            }
        }
    }

    /// Whether a registered path ends at this value.
    fn ends_here(&self) -> bool {
        self.candidates.iter().any(|&i| self.registry.paths()[i].segments().len() == self.depth)
    }

    /// The walker of a value below this one, following `candidates`.
    fn child<'c>(&'c mut self, candidates: &'c [usize]) -> Extract<'c, 'c, 'c, 'de, WRITE> {
        Extract {
            registry: self.registry,
            depth: self.depth + 1,
            candidates,
            top: None,
            values: self.values,
            out: self.out.as_deref_mut(),
        }
    }
}

impl<'de, const WRITE: bool> DeserializeSeed<'de> for Extract<'_, '_, '_, 'de, WRITE> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An element of an array: a comma before all but the first.
struct Element<'r, 'v, 'o, 'de, const WRITE: bool> {
    first: bool,
    value: Extract<'r, 'v, 'o, 'de, WRITE>,
}

impl<'de, const WRITE: bool> DeserializeSeed<'de> for Element<'_, '_, '_, 'de, WRITE> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(mut self, deserializer: D) -> Result<(), D::Error> {
        if !self.first {
            self.value.write(|o| o.text.push(b','));
        }
        self.value.deserialize(deserializer)
    }
}

/// Where a map key leads: the paths found by the top-level index, or those left in `below`.
enum Next<'r> {
    Top(&'r [usize]),
    Below,
}

/// Reads one map key without keeping it (so a key the format hands over as a temporary does
/// not cost an allocation): finds the paths it leads to and writes it to the JSON form.
struct KeySeed<'s, 'r, 'v, 'o, 'de, const WRITE: bool> {
    map: &'s mut Extract<'r, 'v, 'o, 'de, WRITE>,
    below: &'s mut Vec<usize>,
    first: bool,
}

impl<'de, 'r, const WRITE: bool> DeserializeSeed<'de> for KeySeed<'_, 'r, '_, '_, '_, WRITE> {
    type Value = Next<'r>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Next<'r>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'r, const WRITE: bool> Visitor<'de> for KeySeed<'_, 'r, '_, '_, '_, WRITE> {
    type Value = Next<'r>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Next<'r>, E> {
        let map = self.map;
        let first = self.first;
        map.write(|out| {
            if !first {
                out.text.push(b',');
            }
            write_str(&mut out.text, key);
            out.text.push(b':');
        });
        Ok(match map.top {
            Some(top) => Next::Top(top.0.get(key).map_or(&[], Vec::as_slice)),
            None => {
                self.below.clear();
                let (registry, depth) = (map.registry, map.depth);
                self.below.extend(
                    map.candidates
                        .iter()
                        .copied()
                        .filter(|&i| registry.paths()[i].segments().get(depth).is_some_and(|s| s == key)),
                );
                Next::Below
            }
        })
    }
}

impl<'de, const WRITE: bool> Visitor<'de> for Extract<'_, '_, '_, 'de, WRITE> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        // Paths ending at this object see it as a non-scalar.
        self.set(FieldValue::Other);
        self.write(|o| o.text.push(b'{'));
        let mut below = Vec::new();
        let mut first = true;
        loop {
            let key = KeySeed { map: &mut self, below: &mut below, first };
            let next: &[usize] = match map.next_key_seed(key)? {
                None => break,
                Some(Next::Top(paths)) => paths,
                Some(Next::Below) => &below,
            };
            first = false;
            if next.is_empty() && !WRITE {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(self.child(next))?;
            }
        }
        self.write(|o| o.text.push(b'}'));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.set(FieldValue::Other);
        if !WRITE {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        self.write(|o| o.text.push(b'['));
        let mut first = true;
        while seq.next_element_seed(Element { first, value: self.child(&[]) })?.is_some() {
            first = false;
        }
        self.write(|o| o.text.push(b']'));
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.set(FieldValue::Text(Cow::Borrowed(v)));
        self.write(|o| write_str(&mut o.text, v));
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if self.ends_here() {
            self.set(FieldValue::Text(Cow::Owned(v.to_owned())));
        }
        self.write(|o| write_str(&mut o.text, v));
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.set(FieldValue::Number(v));
        self.write(|o| o.float(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.set(FieldValue::Number(v as f64));
        self.write(|o| write_number(&mut o.text, &v));
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.set(FieldValue::Number(v as f64));
        self.write(|o| write_number(&mut o.text, &v));
        Ok(())
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.set(FieldValue::Bool(v));
        self.write(|o| o.text.extend_from_slice(if v { b"true" } else { b"false" }));
        Ok(())
    }

    fn visit_bytes<E: de::Error>(mut self, v: &[u8]) -> Result<(), E> {
        // Bytes (and Avro fixed) have no JSON type; like apache_avro's JSON form, an array of
        // the byte values.
        self.set(FieldValue::Other);
        self.write(|o| {
            o.text.push(b'[');
            for (i, b) in v.iter().enumerate() {
                if i > 0 {
                    o.text.push(b',');
                }
                write_number(&mut o.text, b);
            }
            o.text.push(b']');
        });
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.set(FieldValue::Missing);
        self.write(|o| o.text.extend_from_slice(b"null"));
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}
