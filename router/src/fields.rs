//! Event fields: the paths the router reads out of an event, and the values found there.
//!
//! Every stage declares the paths it needs in a [`FieldRegistry`] at start-up and gets back a
//! [`FieldId`]; the decoder then extracts exactly those fields once per event into an
//! [`EventFields`], so the later stages index a slice instead of walking the event again.

use crate::recycle::recycle;
use std::borrow::Cow;
use std::fmt;

/// Index of a field in [`EventFields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldId(pub(crate) usize);

/// A dotted path into an event (`amount`, `payment.card.country`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses a dotted path. Empty paths and empty segments are refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field path may not be empty".into());
        }
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("field path `{text}` has an empty segment"));
        }
        Ok(FieldPath { text: text.to_owned(), segments })
    }

    /// The path's segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The path as written in configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The set of paths the configured stages read. Registering a path twice returns the same id.
#[derive(Debug, Default, Clone)]
pub struct FieldRegistry {
    paths: Vec<FieldPath>,
}

impl FieldRegistry {
    /// Registers `path` and returns its id.
    pub fn register(&mut self, path: &str) -> Result<FieldId, String> {
        if let Some(i) = self.paths.iter().position(|p| p.as_str() == path) {
            return Ok(FieldId(i));
        }
        self.paths.push(FieldPath::parse(path)?);
        Ok(FieldId(self.paths.len() - 1))
    }

    /// All registered paths, in id order.
    pub fn paths(&self) -> &[FieldPath] {
        &self.paths
    }

    /// The path of `id`.
    pub fn path(&self, id: FieldId) -> &FieldPath {
        &self.paths[id.0]
    }
}

/// A scalar value read from an event. Text is borrowed from the input record when it has no
/// escapes, so reading a field does not allocate.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// Absent, or explicitly null.
    Missing,
    Number(f64),
    Text(Cow<'a, str>),
    Bool(bool),
    /// Present but not a scalar (an object, array or bytes).
    Other,
}

impl FieldValue<'_> {
    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            FieldValue::Missing => "missing",
            FieldValue::Number(_) => "number",
            FieldValue::Text(_) => "string",
            FieldValue::Bool(_) => "boolean",
            FieldValue::Other => "non-scalar",
        }
    }

    /// The value as text, for string comparisons and identifiers (numbers print without a
    /// fractional part when they are whole).
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            FieldValue::Text(s) => Some(Cow::Borrowed(s)),
            FieldValue::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{}", *n as i64).into()),
            FieldValue::Number(n) => Some(n.to_string().into()),
            FieldValue::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
            FieldValue::Missing | FieldValue::Other => None,
        }
    }
}

/// The registered fields of one event, indexed by [`FieldId`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFields<'a> {
    values: Vec<FieldValue<'a>>,
    /// Per field: a number's text as the JSON input wrote it (empty when there is none), so
    /// the audit snapshot copies it instead of formatting the number again.
    number_texts: Vec<&'a str>,
    /// The JSON input's text the number texts are read from (empty for other inputs).
    input: &'a str,
    /// What the audit snapshot may copy as it stands: runs of consecutive top-level members
    /// (`"key":value`, with the separators between them), as `(start, end)` byte offsets of
    /// the text they were read in (a JSON event's text, or an Avro event's JSON form), in its
    /// order.
    verbatim: Vec<(usize, usize)>,
    /// Per field: its member is in one of the runs.
    in_verbatim: Vec<bool>,
    /// A key of a verbatim field met twice: the runs are not to be used.
    verbatim_void: bool,
    /// Whether the runs are recorded: not when every audit record of the event will carry the
    /// snapshot in a JSON string, whose runs would need escaping.
    pub(crate) verbatim_wanted: bool,
}

impl<'a> EventFields<'a> {
    /// Builds the fields from values in registry order.
    pub fn from_values(values: Vec<FieldValue<'a>>) -> Self {
        let number_texts = vec![""; values.len()];
        let in_verbatim = vec![false; values.len()];
        let verbatim = Vec::new();
        EventFields {
            values,
            number_texts,
            input: "",
            verbatim,
            in_verbatim,
            verbatim_void: false,
            verbatim_wanted: false,
        }
    }

    /// The text of number field `id` as the input wrote it, when the input is JSON text.
    pub fn number_text(&self, id: FieldId) -> Option<&'a str> {
        self.number_texts.get(id.0).copied().filter(|t| !t.is_empty())
    }

    /// The JSON input's text, whose numbers keep their text (empty for other inputs).
    #[inline]
    pub(crate) fn input(&self) -> &'a str {
        self.input
    }

    /// Makes `text` the JSON input's text the number texts are read from.
    pub(crate) fn set_input(&mut self, text: &'a str) {
        self.input = text;
    }

    /// Sets number field `id` (an index in registry order), with its text when the input has
    /// it.
    #[inline(always)]
    pub(crate) fn set_number(&mut self, id: usize, value: f64, text: Option<&'a str>) {
        self.values[id] = FieldValue::Number(value);
        self.number_texts[id] = text.unwrap_or_default();
    }

    /// The value of field `id`.
    pub fn get(&self, id: FieldId) -> &FieldValue<'a> {
        self.values.get(id.0).unwrap_or(&FieldValue::Missing)
    }

    /// Makes every field missing again, with no runs to copy.
    pub(crate) fn reset(&mut self) {
        self.values.fill(FieldValue::Missing);
        self.number_texts.fill("");
        self.verbatim.clear();
        self.in_verbatim.fill(false);
        self.verbatim_void = false;
    }

    /// Records that the top-level member of field `id` was read, its value set: the snapshot
    /// may copy it as it stands when it is a `scalar` (a string, number or boolean), and the
    /// caller then adds it to a run ([`EventFields::verbatim_run`]). A second member of the
    /// field voids the runs: the field holds the last one's value, and a run may hold the
    /// first. Returns `scalar`.
    #[inline]
    pub(crate) fn verbatim_member(&mut self, id: usize, scalar: bool) -> bool {
        let taken = &mut self.in_verbatim[id];
        self.verbatim_void |= *taken;
        *taken |= scalar;
        scalar
    }

    /// After a top-level member at `start..end`: extends `run`, the run being built, with it
    /// when it was `taken` ([`EventFields::verbatim_member`]), or else ends `run` and adds it.
    /// The caller adds the last run ([`EventFields::verbatim_run`]) when the object ends.
    #[inline]
    pub(crate) fn verbatim_next(&mut self, run: &mut Option<(usize, usize)>, taken: bool, start: usize, end: usize) {
        if taken {
            *run = Some((run.map_or(start, |(start, _)| start), end));
        } else {
            self.verbatim_run(run.take());
        }
    }

    /// Adds `run`, if any: members taken by [`EventFields::verbatim_member`], consecutive in
    /// the text, at `start..end` of it.
    #[inline]
    pub(crate) fn verbatim_run(&mut self, run: Option<(usize, usize)>) {
        if let Some(run) = run {
            self.verbatim.push(run);
        }
    }

    /// The runs the snapshot copies as they stand (`None` when there are none to use), cut
    /// from `source`, the text they were recorded in
    /// ([`crate::decode::Decoded::verbatim_source`]); the fields in them are those
    /// [`EventFields::is_verbatim`] names.
    #[inline]
    pub fn verbatim<'s>(&'s self, source: &'s [u8]) -> Option<impl Iterator<Item = &'s [u8]> + 's> {
        (!self.verbatim_void && !self.verbatim.is_empty())
            .then(|| self.verbatim.iter().map(move |&(start, end)| source.get(start..end).unwrap_or_default()))
    }

    /// Whether field `id`'s member is in the runs [`EventFields::verbatim`] gives.
    #[inline]
    pub fn is_verbatim(&self, id: FieldId) -> bool {
        self.in_verbatim.get(id.0).copied().unwrap_or(false)
    }

    /// Sets field `id` (an index in registry order).
    #[inline]
    pub(crate) fn set(&mut self, id: usize, value: FieldValue<'a>) {
        self.values[id] = value;
        // A key repeated in the input may have set a number here before.
        self.number_texts[id] = "";
    }
}

/// The vectors of an event's fields, kept between events so that decoding one allocates none.
#[derive(Debug, Default)]
pub struct FieldBuffer {
    values: Vec<FieldValue<'static>>,
    number_texts: Vec<&'static str>,
    verbatim: Vec<(usize, usize)>,
    in_verbatim: Vec<bool>,
    /// Given to each event's fields ([`EventFields`]'s `verbatim_wanted`).
    pub(crate) verbatim_wanted: bool,
}

impl FieldBuffer {
    /// `count` missing fields, for an event borrowing from its own record, in the kept vectors.
    pub(crate) fn take<'a>(&mut self, count: usize) -> EventFields<'a> {
        let mut values = recycle(std::mem::take(&mut self.values));
        values.resize(count, FieldValue::Missing);
        let mut number_texts = recycle(std::mem::take(&mut self.number_texts));
        number_texts.resize(count, "");
        let mut verbatim = std::mem::take(&mut self.verbatim);
        verbatim.clear();
        let mut in_verbatim = std::mem::take(&mut self.in_verbatim);
        in_verbatim.clear();
        in_verbatim.resize(count, false);
        let verbatim_wanted = self.verbatim_wanted;
        EventFields { values, number_texts, input: "", verbatim, in_verbatim, verbatim_void: false, verbatim_wanted }
    }

    /// Keeps the vectors of an event's fields for the next event.
    pub(crate) fn put_back(&mut self, fields: EventFields<'_>) {
        self.values = recycle(fields.values);
        self.number_texts = recycle(fields.number_texts);
        self.verbatim = fields.verbatim;
        self.in_verbatim = fields.in_verbatim;
    }

    /// The kept vector's capacity (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.values.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_deduplicates() {
        let mut r = FieldRegistry::default();
        let a = r.register("amount").unwrap();
        let b = r.register("card.country").unwrap();
        assert_eq!(r.register("amount").unwrap(), a);
        assert_ne!(a, b);
        assert_eq!(r.path(b).segments(), ["card", "country"]);
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse(".a").is_err());
    }

    #[test]
    fn the_field_vector_is_kept_between_events() {
        let mut buffer = FieldBuffer::default();
        let first = String::from("first");
        let mut fields = buffer.take(3);
        fields.set(1, FieldValue::Text(first.as_str().into()));
        let kept = fields.values.as_ptr().cast::<u8>();
        buffer.put_back(fields);
        drop(first);
        assert!(buffer.capacity() >= 3);
        let second = buffer.take(2);
        assert_eq!(second.values.as_ptr().cast::<u8>(), kept, "the same allocation");
        assert_eq!(second, EventFields::from_values(vec![FieldValue::Missing; 2]));
    }

    #[test]
    fn text_of_numbers() {
        assert_eq!(FieldValue::Number(42.0).as_text().unwrap(), "42");
        assert_eq!(FieldValue::Number(4.5).as_text().unwrap(), "4.5");
        assert_eq!(FieldValue::Missing.as_text(), None);
    }
}
