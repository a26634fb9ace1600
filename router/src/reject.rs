//! Why an input record was refused: the reasons are a small fixed set, used as the
//! `tollgate_dead_letter_total{reason}` label and the dead-letter `tollgate.error.reason` header.

use std::fmt;

/// A fixed reason for sending a record to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The record had no value.
    EmptyPayload,
    /// The value is not a JSON object.
    MalformedJson,
    /// The value does not decode with the configured Avro schema.
    AvroDecode,
    /// Confluent framing is wrong (magic byte) or names a schema id that is not accepted.
    SchemaMismatch,
    /// A required field (event id, score, feature) is absent or null.
    MissingField,
    /// A field has the wrong type (a string where a number is required, ...).
    InvalidField,
    /// A score or feature is NaN or infinite.
    NonFiniteScore,
    /// A risk score or confidence is outside [0, 1].
    ScoreOutOfRange,
    /// The routed record could not be encoded (e.g. an Avro input that has no JSON form).
    EncodeFailed,
    /// The event, or a record written for it, is larger than the router's producer takes
    /// (its `message.max.bytes`, less room for keys and headers).
    EventTooLarge,
}

impl RejectReason {
    /// Every reason, to pre-register metric label values.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::EmptyPayload,
        RejectReason::MalformedJson,
        RejectReason::AvroDecode,
        RejectReason::SchemaMismatch,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::NonFiniteScore,
        RejectReason::ScoreOutOfRange,
        RejectReason::EncodeFailed,
        RejectReason::EventTooLarge,
    ];

    /// The reason's label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::EmptyPayload => "empty_payload",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::AvroDecode => "avro_decode",
            RejectReason::SchemaMismatch => "schema_mismatch",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::NonFiniteScore => "non_finite_score",
            RejectReason::ScoreOutOfRange => "score_out_of_range",
            RejectReason::EncodeFailed => "encode_failed",
            RejectReason::EventTooLarge => "event_too_large",
        }
    }

    /// Index into [`RejectReason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// An input record refused by a pipeline stage, with a description for the dead-letter header.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Rejection { reason, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_all() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
