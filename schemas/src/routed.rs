//! The routed record: what the router publishes on a route topic for every event it routes.

use crate::route::Route;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// One feature's share of a score, as shown to reviewers and auditors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution<'a> {
    /// Feature name (for one-hot categorical features, `name=value`).
    pub feature: Cow<'a, str>,
    /// Signed contribution to the score's log-odds (or as reported upstream). JSON writes a
    /// non-finite one as `null` (serde_json's way), which reads back as NaN.
    #[serde(deserialize_with = "number_or_null")]
    pub contribution: f64,
}

/// A JSON number, or `null` for a number that was not finite: what the writers give.
fn number_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The risk score and confidence of a routed record as an input wrote them (JSON number text),
/// when they were read from it: a JSON record then copies them instead of formatting the
/// numbers again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreTexts<'a> {
    pub risk: Option<&'a str>,
    pub confidence: Option<&'a str>,
}

/// How the original event inside a routed record is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// The input was JSON.
    Json,
    /// The input was Avro (plain datum, or Confluent-framed: the framing is kept).
    Avro,
}

impl EventFormat {
    /// The format's name in records.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventFormat::Json => "json",
            EventFormat::Avro => "avro",
        }
    }
}

/// The record published on `tollgate.auto-commit`, `tollgate.async-review`, `tollgate.sync-review`
/// and `tollgate.auto-reject`.
///
/// `E` is the original event: in the JSON encoding it is the event as a JSON value (an Avro input
/// is converted); in the Avro encoding it is [`AvroBytes`], the original bytes unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "E: Deserialize<'de>"))]
pub struct RoutedRecord<'a, E> {
    pub event_id: Cow<'a, str>,
    pub route: Route,
    /// Name of the rule that matched, or `default` when none did.
    pub rule: Cow<'a, str>,
    /// True when a guardrail rule forced the route, whatever the score.
    pub guardrail: bool,
    pub risk_score: f64,
    pub confidence: f64,
    pub model_version: Cow<'a, str>,
    pub policy_version: Cow<'a, str>,
    /// Top feature contributions, largest magnitude first.
    pub explanation: Vec<Contribution<'a>>,
    /// When the router decided, in milliseconds since the Unix epoch.
    pub routed_at: i64,
    /// For review routes: when the first review tier's SLA runs out (ms since the epoch).
    pub sla_deadline: Option<i64>,
    pub event_format: EventFormat,
    pub event: E,
}

impl<'a, E> RoutedRecord<'a, E> {
    /// The same record with another representation of the event.
    pub fn with_event<F>(self, event: F) -> RoutedRecord<'a, F> {
        RoutedRecord {
            event_id: self.event_id,
            route: self.route,
            rule: self.rule,
            guardrail: self.guardrail,
            risk_score: self.risk_score,
            confidence: self.confidence,
            model_version: self.model_version,
            policy_version: self.policy_version,
            explanation: self.explanation,
            routed_at: self.routed_at,
            sla_deadline: self.sla_deadline,
            event_format: self.event_format,
            event,
        }
    }
}

/// Raw bytes that serialize as an Avro `bytes` value (serde's default for `[u8]` is a sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroBytes<'a>(pub Cow<'a, [u8]>);

impl Serialize for AvroBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de, 'a> Deserialize<'de> for AvroBytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_bytes(BytesVisitor).map(|v| AvroBytes(Cow::Owned(v)))
    }
}
