//! One walk of a decoded record, in any serde data format: it reads the registered fields and,
//! when asked, writes the record's JSON form on the way.
//!
//! JSON input walks its text with serde_json and skips what no path names without building a
//! tree. Avro input walks its datum with `serde_avro_fast` against the writer schema, and, when
//! the routed record is JSON, writes the event's JSON form in the same walk: no `Value` tree, and
//! strings and field text are borrowed from the record. That walk also records which top-level
//! members of the JSON form the audit snapshot may copy as they stand
//! ([`EventFields::verbatim`]), so it formats no float a second time.

use super::keys::Keys;
use crate::fields::{EventFields, FieldId, FieldRegistry, FieldValue};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate_schemas::json::{number_len, write_number, write_str};

/// The registered paths as a tree of map keys, so a walk follows only the keys that lead to a
/// registered path, looking each up once.
#[derive(Debug)]
pub struct PathTree {
    /// The root (index 0) is the record itself.
    nodes: Vec<Node>,
    /// Unique in the process (from 1), so what is remembered of one tree's nodes
    /// ([`super::memo::KeyMemo`]) is not applied to another's.
    id: u64,
}

#[derive(Debug, Default)]
struct Node {
    /// The fields whose path ends at this value.
    ends: Vec<usize>,
    /// The keys of this value that lead to a registered path, with their nodes.
    children: Keys,
    /// The field whose top-level member the audit snapshot may copy as the input wrote it
    /// (see [`PathTree::with_verbatim`]).
    verbatim: Option<usize>,
}

impl PathTree {
    /// The tree of `registry`'s paths, with no member copied verbatim.
    pub fn new(registry: &FieldRegistry) -> Self {
        Self::with_verbatim(registry, None)
    }

    /// The tree of `registry`'s paths whose JSON scan records which top-level members the audit
    /// snapshot may copy as the input wrote them ([`EventFields::verbatim`]): those of fields
    /// whose path is one key, the only field there, and not in `redacted` (shown redacted, so
    /// never copied). `None`: none.
    pub fn with_verbatim(registry: &FieldRegistry, redacted: Option<&[FieldId]>) -> Self {
        let mut nodes = vec![Node::default()];
        for (field, path) in registry.paths().iter().enumerate() {
            let mut at = 0;
            for segment in path.segments() {
                at = match nodes[at].children.get(segment.as_bytes()) {
                    Some(next) => next,
                    None => {
                        nodes.push(Node::default());
                        let next = nodes.len() - 1;
                        nodes[at].children.insert(segment, next);
                        next
                    }
                };
            }
            nodes[at].ends.push(field);
        }
        for (field, path) in registry.paths().iter().enumerate() {
            let copied = redacted.is_some_and(|r| !r.contains(&FieldId(field)));
            if let ([key], true) = (path.segments(), copied) {
                if let Some(node) = nodes[0].children.get(key.as_bytes()).filter(|&n| nodes[n].ends == [field]) {
                    nodes[node].verbatim = Some(field);
                }
            }
        }
        static TREES: AtomicU64 = AtomicU64::new(1);
        PathTree { nodes, id: TREES.fetch_add(1, Ordering::Relaxed) }
    }

    /// This tree's number, unique in the process.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// How many nodes the tree has (the root is node 0).
    pub(super) fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// After a member whose key led to `node`, at `start..end` of the text it was read in:
    /// extends `run`, the run of members being built for the audit snapshot to copy, with it
    /// when its field is one the snapshot may copy (only top-level members have one) and its
    /// value is a scalar (`scalar`, asked only then); or else ends `run`
    /// ([`EventFields::verbatim_next`]). For the JSON scan and the Avro walk alike, when the
    /// runs are wanted ([`EventFields`]'s `verbatim_wanted`).
    #[inline]
    pub(super) fn member_read(
        &self,
        node: Option<usize>,
        fields: &mut EventFields<'_>,
        scalar: impl FnOnce() -> bool,
        run: &mut Option<(usize, usize)>,
        (start, end): (usize, usize),
    ) {
        let taken =
            node.and_then(|n| self.nodes[n].verbatim).is_some_and(|field| fields.verbatim_member(field, scalar()));
        fields.verbatim_next(run, taken, start, end);
    }

    /// The node below `node` by `key`.
    #[inline]
    pub(super) fn child(&self, node: usize, key: &[u8]) -> Option<usize> {
        self.nodes[node].children.get(key)
    }

    /// Sets every field whose path ends at `node` (none below any registered path) to `value`.
    #[inline]
    pub(super) fn set<'a>(&self, node: Option<usize>, fields: &mut EventFields<'a>, value: FieldValue<'a>) {
        let Some(node) = node else { return };
        match self.nodes[node].ends.as_slice() {
            [] => {}
            [one] => fields.set(*one, value),
            many => {
                for &field in many {
                    fields.set(field, value.clone());
                }
            }
        }
    }

    /// Sets every number field whose path ends at `node` to `value`, with the number's text
    /// when `text` finds one (asked only when some field ends there).
    #[inline]
    pub(super) fn set_number<'a>(
        &self,
        node: Option<usize>,
        fields: &mut EventFields<'a>,
        value: f64,
        text: impl FnOnce(&EventFields<'a>) -> Option<&'a str>,
    ) {
        let Some(node) = node else { return };
        let ends = self.nodes[node].ends.as_slice();
        if ends.is_empty() {
            return;
        }
        let text = text(fields);
        match ends {
            // Most paths: one field, set inline.
            [one] => fields.set_number(*one, value, text),
            many => {
                for &field in many {
                    fields.set_number(field, value, text);
                }
            }
        }
    }
}

/// The JSON form of a record, written while it is walked.
#[derive(Debug, Default)]
pub struct JsonOut {
    pub text: Vec<u8>,
    /// A NaN or infinity was met. JSON cannot carry it; it is written as `null` and the caller
    /// decides whether the record has a JSON form.
    pub non_finite: bool,
    /// The value written last is one the audit snapshot writes as this form does: a string, a
    /// finite float or a boolean (not an integer, which the snapshot writes as a float).
    pub(crate) scalar: bool,
}

impl JsonOut {
    fn float(&mut self, v: f64) {
        self.scalar = v.is_finite();
        if v.is_finite() {
            write_number(&mut self.text, &v);
        } else {
            self.non_finite = true;
            self.text.extend_from_slice(b"null");
        }
    }

    /// Writes a value the snapshot writes otherwise (or not at all).
    fn other(&mut self, json: impl FnOnce(&mut Vec<u8>)) {
        self.scalar = false;
        json(&mut self.text);
    }

    /// Writes a value the snapshot writes the same way.
    fn same(&mut self, json: impl FnOnce(&mut Vec<u8>)) {
        self.scalar = true;
        json(&mut self.text);
    }
}

/// Reads the registered paths below one value: `node` is where the value sits in the path tree
/// (`None` below any registered path, where the walk only writes). With `WRITE` (a constant,
/// so the walk that only reads fields carries no writing code), the value's JSON form is
/// appended to `out`.
pub struct Extract<'r, 'v, 'o, 'de, const WRITE: bool> {
    pub tree: &'r PathTree,
    pub node: Option<usize>,
    pub fields: &'v mut EventFields<'de>,
    pub out: Option<&'o mut JsonOut>,
    /// For the value of a map key read straight from a JSON input's text (the fields' input),
    /// the offset just past that key, where the number's text is found; 0 otherwise.
    key_end: usize,
}

impl<'r, 'v, 'o, 'de, const WRITE: bool> Extract<'r, 'v, 'o, 'de, WRITE> {
    /// The walker of a whole record, reading the registered fields into `fields` (and, with
    /// `WRITE`, its JSON form into `out`).
    pub fn record(tree: &'r PathTree, fields: &'v mut EventFields<'de>, out: Option<&'o mut JsonOut>) -> Self {
        Extract { tree, node: Some(0), fields, out, key_end: 0 }
    }
}

impl<'de, const WRITE: bool> Extract<'_, '_, '_, 'de, WRITE> {
    /// Sets every number field whose path ends here, with the number's text when the input
    /// has one.
    fn set_number(&mut self, value: f64) {
        let key_end = self.key_end;
        self.tree.set_number(self.node, self.fields, value, |fields| match key_end {
            0 => None,
            at => number_text(fields.input(), at),
        });
    }

    /// Sets every field whose path ends here.
    fn set(&mut self, value: FieldValue<'de>) {
        self.tree.set(self.node, self.fields, value);
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
        self.node.is_some_and(|n| !self.tree.nodes[n].ends.is_empty())
    }

    /// How much of the JSON form is written (0 without one).
    fn written(&self) -> usize {
        self.out.as_deref().map_or(0, |o| o.text.len())
    }

    /// After the top-level member that started at `start` of the JSON form, whose key led to
    /// `node`: extends `run` with it when the snapshot may copy it, or else ends `run`.
    fn member_written(&mut self, node: Option<usize>, start: usize, run: &mut Option<(usize, usize)>) {
        let (end, scalar) = self.out.as_deref().map_or((0, false), |o| (o.text.len(), o.scalar));
        self.tree.member_read(node, self.fields, || scalar, run, (start, end));
    }

    /// The walker of a value below this one, at `node`.
    fn child(&mut self, node: Option<usize>) -> Extract<'_, '_, '_, 'de, WRITE> {
        Extract { tree: self.tree, node, fields: self.fields, out: self.out.as_deref_mut(), key_end: 0 }
    }

    /// The walker of the value of the map key just read, which ended at input offset `key_end`
    /// when it was read straight from the JSON input (0 otherwise).
    fn value(&mut self, node: Option<usize>, key_end: usize) -> Extract<'_, '_, '_, 'de, WRITE> {
        Extract { key_end, ..self.child(node) }
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

/// Reads one map key without keeping it (so a key the format hands over as a temporary does
/// not cost an allocation): finds the node it leads to and writes it to the JSON form.
struct KeySeed<'s, 'r, 'v, 'o, 'de, const WRITE: bool> {
    map: &'s mut Extract<'r, 'v, 'o, 'de, WRITE>,
    first: bool,
}

/// The node a key leads to, and the input offset just past the key when it was read straight
/// from a JSON input's text (0 otherwise).
type KeyRead = (Option<usize>, usize);

impl<'de, const WRITE: bool> DeserializeSeed<'de> for KeySeed<'_, '_, '_, '_, 'de, WRITE> {
    type Value = KeyRead;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<KeyRead, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, const WRITE: bool> KeySeed<'_, '_, '_, '_, 'de, WRITE> {
    #[inline]
    fn read<E: de::Error>(self, key: &str, key_end: usize) -> Result<KeyRead, E> {
        let map = self.map;
        let first = self.first;
        map.write(|out| {
            if !first {
                out.text.push(b',');
            }
            write_str(&mut out.text, key);
            out.text.push(b':');
        });
        Ok((map.node.and_then(|n| map.tree.child(n, key.as_bytes())), key_end))
    }
}

impl<'de, const WRITE: bool> Visitor<'de> for KeySeed<'_, '_, '_, '_, 'de, WRITE> {
    type Value = KeyRead;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    /// A key borrowed from the input: when that is a JSON input's text, where the key ends is
    /// known.
    #[inline]
    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<KeyRead, E> {
        let input = self.map.fields.input();
        let at = (key.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
        let key_end = if at < input.len() && at + key.len() < input.len() { at + key.len() } else { 0 };
        self.read(key, key_end)
    }

    #[inline]
    fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyRead, E> {
        self.read(key, 0)
    }
}

/// The text of the JSON number that follows offset `key_end` (just past a key's last
/// character): past the key's closing quote, the colon and any whitespace, up to the first
/// byte that may follow a number. The parser has read a valid number there; `None` if no key
/// ends at `key_end` or no number starts past it.
fn number_text(input: &str, key_end: usize) -> Option<&str> {
    let bytes = input.as_bytes();
    if bytes.get(key_end) != Some(&b'"') {
        return None;
    }
    let mut start = key_end + 1;
    while bytes.get(start).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b':')) {
        start += 1;
    }
    let rest = bytes.get(start..).filter(|rest| matches!(rest.first(), Some(b'-' | b'0'..=b'9')))?;
    input.get(start..start + number_len(rest))
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
        // The record's members the audit snapshot may copy from the JSON form, in runs.
        let runs = WRITE && self.node == Some(0) && self.fields.verbatim_wanted;
        let mut run = None;
        let mut first = true;
        loop {
            // Past the comma the key's writer puts before all members but the first.
            let start = self.written() + usize::from(!first);
            let Some((next, key_end)) = map.next_key_seed(KeySeed { map: &mut self, first })? else { break };
            first = false;
            if next.is_none() && !WRITE {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(self.value(next, key_end))?;
            }
            if runs {
                self.member_written(next, start, &mut run);
            }
        }
        self.fields.verbatim_run(run);
        self.write(|o| o.other(|t| t.push(b'}')));
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
        while seq.next_element_seed(Element { first, value: self.child(None) })?.is_some() {
            first = false;
        }
        self.write(|o| o.other(|t| t.push(b']')));
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.set(FieldValue::Text(Cow::Borrowed(v)));
        self.write(|o| o.same(|t| write_str(t, v)));
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if self.ends_here() {
            self.set(FieldValue::Text(Cow::Owned(v.to_owned())));
        }
        self.write(|o| o.same(|t| write_str(t, v)));
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.set_number(v);
        self.write(|o| o.float(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.set_number(v as f64);
        self.write(|o| o.other(|t| write_number(t, &v)));
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.set_number(v as f64);
        self.write(|o| o.other(|t| write_number(t, &v)));
        Ok(())
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.set(FieldValue::Bool(v));
        self.write(|o| o.same(|t| t.extend_from_slice(if v { b"true" } else { b"false" })));
        Ok(())
    }

    fn visit_bytes<E: de::Error>(mut self, v: &[u8]) -> Result<(), E> {
        // Bytes (and Avro fixed) have no JSON type; like apache_avro's JSON form, an array of
        // the byte values.
        self.set(FieldValue::Other);
        self.write(|o| {
            o.other(|t| {
                t.push(b'[');
                for (i, b) in v.iter().enumerate() {
                    if i > 0 {
                        t.push(b',');
                    }
                    write_number(t, b);
                }
                t.push(b']');
            })
        });
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.set(FieldValue::Missing);
        self.write(|o| o.other(|t| t.extend_from_slice(b"null")));
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_text_is_found_past_its_key() {
        let input = r#"{"a":1.5,"b" :	-2e3}"#;
        assert_eq!(number_text(input, 3), Some("1.5"));
        assert_eq!(number_text(input, 11), Some("-2e3"), "spaced");
        assert_eq!(number_text(input, 2), None, "not at a closing quote");
        assert_eq!(number_text(r#"{"a":"x"}"#, 3), None, "not a number");
        assert_eq!(number_text(r#"{"a":7"#, 3), Some("7"), "at the end of the input");
    }
}
