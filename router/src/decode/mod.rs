//! The decode stage: input bytes to [`Decoded`] (the registered fields plus the event body).

mod avro;
mod extract;
mod json;
mod keys;
mod memo;
mod scan;

use crate::fields::{EventFields, FieldBuffer, FieldId, FieldRegistry};
use crate::reject::{RejectReason, Rejection};

pub use avro::AvroInput;
pub use extract::JsonOut;

/// One decoded input event.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The registered fields.
    pub fields: EventFields<'a>,
    /// The event body, kept for the routed record.
    pub body: Body<'a>,
}

impl Decoded<'_> {
    /// The text the fields' runs for the audit snapshot were recorded in
    /// ([`EventFields::verbatim`]): a JSON event's text, or an Avro event's JSON form (empty
    /// when it has none).
    pub fn verbatim_source(&self) -> &[u8] {
        match &self.body {
            Body::Json(text) => text.as_bytes(),
            Body::Avro(Some(json)) => &json.text,
            Body::Avro(None) => b"",
        }
    }
}

/// The decoded body of an event.
#[derive(Debug)]
pub enum Body<'a> {
    /// A JSON input: the record's text (validated, surrounding whitespace trimmed), embedded
    /// unchanged in the routed record.
    Json(&'a str),
    /// An Avro input: its JSON form when the routed record is JSON (`None` when it is Avro and
    /// embeds the datum as it is).
    Avro(Option<JsonOut>),
}

/// Decodes input records of one configured format.
#[derive(Debug)]
pub enum Decoder {
    /// One JSON object per record.
    Json { registry: FieldRegistry, tree: extract::PathTree },
    /// One Avro datum (of the configured schema) per record, plain or Confluent-framed.
    Avro(Box<AvroInput>),
}

impl Decoder {
    /// A decoder of JSON objects, which records the top-level members of fields not in
    /// `redacted` for the audit snapshot to copy as the input wrote them
    /// ([`EventFields::verbatim`]).
    pub fn json(registry: FieldRegistry, redacted: &[FieldId]) -> Self {
        let tree = extract::PathTree::with_verbatim(&registry, Some(redacted));
        Decoder::Json { registry, tree }
    }

    /// A decoder of Avro datums. `confluent` expects the Confluent wire format (magic byte 0 and a
    /// 4-byte schema id); `accepted_ids` (when not empty) lists the schema ids accepted;
    /// `json_body` writes each event's JSON form (for a JSON routed record), and records in it
    /// the top-level members of fields not in `redacted` for the audit snapshot to copy.
    pub fn avro(
        registry: FieldRegistry,
        schema: serde_avro_fast::Schema,
        confluent: bool,
        accepted_ids: Vec<u32>,
        json_body: bool,
        redacted: &[FieldId],
    ) -> Self {
        Decoder::Avro(Box::new(AvroInput::new(registry, schema, confluent, accepted_ids, json_body, redacted)))
    }

    /// Decodes one record value, in buffers kept from earlier events (`reuse`; give the event
    /// back with [`Reuse::recycle`]).
    pub fn decode<'a>(&self, payload: &'a [u8], reuse: &mut Reuse) -> Result<Decoded<'a>, Rejection> {
        if payload.is_empty() {
            return Err(Rejection::new(RejectReason::EmptyPayload, "the record has no value"));
        }
        match self {
            Decoder::Json { registry, tree } => {
                json::decode(registry, tree, payload, &mut reuse.fields, &mut reuse.keys)
            }
            Decoder::Avro(input) => input.decode(payload, reuse),
        }
    }
}

/// What decoding keeps between events, so that an event allocates nothing once the buffers
/// have grown to the events' size: the vector of fields and an Avro event's JSON form; and the
/// keys of the JSON events before, in their order.
#[derive(Debug, Default)]
pub struct Reuse {
    fields: FieldBuffer,
    json: Vec<u8>,
    keys: memo::KeyMemo,
}

impl Reuse {
    /// Whether the next events' JSON scans record the runs the audit snapshot copies
    /// ([`EventFields::verbatim`]).
    pub fn want_verbatim(&mut self, wanted: bool) {
        self.fields.verbatim_wanted = wanted;
    }

    /// Takes back the buffers of an event that is done with.
    pub fn recycle(&mut self, decoded: Decoded<'_>) {
        self.fields.put_back(decoded.fields);
        if let Body::Avro(Some(json)) = decoded.body {
            self.json = json.text;
        }
    }
}
