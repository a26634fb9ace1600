//! The decode stage: input bytes to [`Decoded`] (the registered fields plus the event body).

mod avro;
mod json;

use crate::fields::{EventFields, FieldRegistry};
use crate::reject::{RejectReason, Rejection};
use apache_avro::Schema;

pub use avro::AvroInput;

/// One decoded input event.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The registered fields.
    pub fields: EventFields<'a>,
    /// The event body, kept for the routed record.
    pub body: Body<'a>,
}

/// The decoded body of an event.
#[derive(Debug)]
pub enum Body<'a> {
    /// A JSON input: the record's text (validated, surrounding whitespace trimmed), embedded
    /// unchanged in the routed record.
    Json(&'a str),
    /// An Avro input, decoded.
    Avro(apache_avro::types::Value),
}

/// Decodes input records of one configured format.
#[derive(Debug)]
pub enum Decoder {
    /// One JSON object per record.
    Json { registry: FieldRegistry, top: json::TopLevel },
    /// One Avro datum (of the configured schema) per record, plain or Confluent-framed.
    Avro(Box<AvroInput>),
}

impl Decoder {
    /// A decoder of JSON objects.
    pub fn json(registry: FieldRegistry) -> Self {
        let top = json::TopLevel::new(&registry);
        Decoder::Json { registry, top }
    }

    /// A decoder of Avro datums. `confluent` expects the Confluent wire format (magic byte 0 and a
    /// 4-byte schema id); `accepted_ids` (when not empty) lists the schema ids accepted.
    pub fn avro(registry: FieldRegistry, schema: Schema, confluent: bool, accepted_ids: Vec<u32>) -> Self {
        Decoder::Avro(Box::new(AvroInput::new(registry, schema, confluent, accepted_ids)))
    }

    /// Decodes one record value.
    pub fn decode<'a>(&self, payload: &'a [u8]) -> Result<Decoded<'a>, Rejection> {
        if payload.is_empty() {
            return Err(Rejection::new(RejectReason::EmptyPayload, "the record has no value"));
        }
        match self {
            Decoder::Json { registry, top } => json::decode(registry, top, payload),
            Decoder::Avro(input) => input.decode(payload),
        }
    }
}
