//! Laid-out JSON encodings of the two records written for every event, the routed record and
//! the audit record, and of the resolved record written for every review decision.
//!
//! Also [`write_str`] and [`write_number`], the value writers they use (in `text.rs`), for other
//! hand-written JSON.
//!
//! serde_json's derived encoding escapes every field name of every record, since it cannot know
//! they are constants; on the router's hot path that was most of the encoding time. These
//! writers put the same bytes with the field names as constants and escape only the values.
//! The tests check them byte for byte against serde_json's encoding, which matters beyond speed:
//! the audit chain hashes the canonical encoding, and verification recomputes it with
//! serde_json ([`AuditRecord::digest`]), so a difference would show as a broken chain.

use crate::audit::AuditRecord;
use crate::decision::ReviewAction;
use crate::review::ResolvedEvent;
use crate::routed::{Contribution, EventFormat, RoutedRecord, ScoreTexts};
use crate::Route;

mod floats;
mod text;

pub use floats::FloatTexts;
pub use text::{first_escape, first_flagged, number_len, write_nested_str, write_number, write_str, JsonNumber};

/// A field name as [`Object`]'s writers take it: `"name":`.
macro_rules! field {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}

/// How an [`Object`] writes its floats: formatted each time ([`Formatted`]), or kept for the
/// event's other records ([`FloatTexts`]). A type parameter, not a branch per float: the
/// writers that keep nothing compile as they would without it.
pub(crate) trait Floats {
    fn write(&mut self, value: f64, out: &mut Vec<u8>);
}

/// Every float formatted where it is written.
pub(crate) struct Formatted;

impl Floats for Formatted {
    #[inline]
    fn write(&mut self, value: f64, out: &mut Vec<u8>) {
        write_number(out, &value);
    }
}

impl Floats for FloatTexts {
    #[inline]
    fn write(&mut self, value: f64, out: &mut Vec<u8>) {
        FloatTexts::write(self, value, out);
    }
}

impl<F: Floats + ?Sized> Floats for &mut F {
    #[inline]
    fn write(&mut self, value: f64, out: &mut Vec<u8>) {
        (**self).write(value, out);
    }
}

/// One JSON object being written, its floats by `F`.
struct Object<'o, F: Floats = Formatted> {
    out: &'o mut Vec<u8>,
    first: bool,
    floats: F,
}

impl<'o> Object<'o> {
    fn begin(out: &'o mut Vec<u8>) -> Self {
        Self::begin_with(out, Formatted)
    }
}

impl<'o, F: Floats> Object<'o, F> {
    fn begin_with(out: &'o mut Vec<u8>, floats: F) -> Self {
        out.push(b'{');
        Object { out, first: true, floats }
    }

    /// A field's name, given as `"name":` ([`field!`] writes it at compile time: names are
    /// plain ASCII identifiers, nothing to escape). Inlined, so each name is copied as a
    /// constant of known length.
    #[inline]
    fn key(&mut self, quoted: &'static str) -> &mut Vec<u8> {
        debug_assert!(quoted.starts_with('"') && quoted.ends_with("\":"));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(quoted.as_bytes());
        self.out
    }

    fn str(&mut self, name: &'static str, value: &str) {
        write_str(self.key(name), value);
    }

    fn opt_str(&mut self, name: &'static str, value: Option<&str>) {
        match value {
            Some(v) => self.str(name, v),
            None => self.key(name).extend_from_slice(b"null"),
        }
    }

    fn bool(&mut self, name: &'static str, value: bool) {
        self.key(name).extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn f64(&mut self, name: &'static str, value: f64) {
        self.key(name);
        self.floats.write(value, self.out);
    }

    fn opt_f64(&mut self, name: &'static str, value: Option<f64>) {
        match value {
            Some(value) => self.f64(name, value),
            None => self.key(name).extend_from_slice(b"null"),
        }
    }

    fn i64(&mut self, name: &'static str, value: i64) {
        write_number(self.key(name), &value);
    }

    fn opt_i64(&mut self, name: &'static str, value: Option<i64>) {
        write_number(self.key(name), &value);
    }

    fn explanation(&mut self, name: &'static str, items: &[Contribution<'_>]) {
        self.key(name).push(b'[');
        for (i, c) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let mut item = Object::begin_with(self.out, &mut self.floats);
            item.str(field!("feature"), &c.feature);
            item.f64(field!("contribution"), c.contribution);
            item.end();
        }
        self.out.push(b']');
    }

    /// Already-encoded JSON text as the value.
    fn raw(&mut self, name: &'static str, json: &[u8]) {
        self.key(name).extend_from_slice(json);
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

impl AuditRecord<'_> {
    /// Appends the JSON encoding (what serde_json writes for the record).
    pub(crate) fn lay_json(&self, out: &mut Vec<u8>) {
        let mut o = self.lay_json_head(out, None, Formatted);
        o.opt_i64(field!("chain_seq"), self.chain_seq);
        o.opt_str(field!("chain_prev"), self.chain_prev.as_deref());
        o.opt_str(field!("chain_hash"), self.chain_hash.as_deref());
        o.end();
    }

    /// Appends the JSON encoding up to the chain fields, ending with the name of the first,
    /// `"chain_seq":` (see [`crate::unsealed`]). `snapshot`, when given, is the input snapshot
    /// already written as a JSON string, in place of `input_snapshot`; its floats through
    /// `floats` when given.
    pub(crate) fn lay_unsealed(&self, snapshot: Option<&[u8]>, floats: impl Floats, out: &mut Vec<u8>) {
        self.lay_json_head(out, snapshot, floats).key(field!("chain_seq"));
    }

    /// Opens the object and writes every field before the chain fields, which come last; the
    /// input snapshot as `snapshot` gives it written, or else from `input_snapshot`.
    fn lay_json_head<'o, F: Floats>(&self, out: &'o mut Vec<u8>, snapshot: Option<&[u8]>, floats: F) -> Object<'o, F> {
        let mut o = Object::begin_with(out, floats);
        o.str(field!("event_id"), &self.event_id);
        o.str(field!("timestamp"), &self.timestamp);
        o.str(field!("actor"), &self.actor);
        o.opt_str(field!("actor_role"), self.actor_role.as_deref());
        o.str(field!("action"), &self.action);
        o.str(field!("decision"), &self.decision);
        o.opt_str(field!("rule"), self.rule.as_deref());
        o.bool(field!("guardrail"), self.guardrail);
        o.opt_str(field!("policy_version"), self.policy_version.as_deref());
        o.opt_str(field!("model_version"), self.model_version.as_deref());
        o.opt_f64(field!("risk_score"), self.risk_score);
        o.opt_f64(field!("confidence"), self.confidence);
        o.explanation(field!("explanation"), &self.explanation);
        match snapshot {
            Some(written) => o.raw(field!("input_snapshot"), written),
            None => o.str(field!("input_snapshot"), &self.input_snapshot),
        }
        o.opt_str(field!("rationale"), self.rationale.as_deref());
        o.opt_i64(field!("sla_expected_ms"), self.sla_expected_ms);
        o.opt_i64(field!("sla_actual_ms"), self.sla_actual_ms);
        o.str(field!("source_topic"), &self.source_topic);
        o.i64(field!("source_partition"), i64::from(self.source_partition));
        o.i64(field!("source_offset"), self.source_offset);
        o
    }
}

impl RoutedRecord<'_, ()> {
    /// Appends the JSON encoding with `event` (JSON text) as the event, and the scores as
    /// `scores` gives their text (formatted where it gives none, through `floats` when given).
    pub(crate) fn lay_json(&self, event: &[u8], scores: ScoreTexts<'_>, floats: impl Floats, out: &mut Vec<u8>) {
        let mut o = Object::begin_with(out, floats);
        o.str(field!("event_id"), &self.event_id);
        o.raw(field!("route"), quoted_route(self.route));
        o.str(field!("rule"), &self.rule);
        o.bool(field!("guardrail"), self.guardrail);
        match scores.risk {
            Some(text) => o.raw(field!("risk_score"), text.as_bytes()),
            None => o.f64(field!("risk_score"), self.risk_score),
        }
        match scores.confidence {
            Some(text) => o.raw(field!("confidence"), text.as_bytes()),
            None => o.f64(field!("confidence"), self.confidence),
        }
        o.str(field!("model_version"), &self.model_version);
        o.str(field!("policy_version"), &self.policy_version);
        o.explanation(field!("explanation"), &self.explanation);
        o.i64(field!("routed_at"), self.routed_at);
        o.opt_i64(field!("sla_deadline"), self.sla_deadline);
        o.raw(field!("event_format"), quoted_format(self.event_format));
        o.raw(field!("event"), event);
        o.end();
    }
}

/// The JSON string of a route's name ([`Route::as_str`], nothing to escape), as a constant:
/// copied, not scanned for escapes, in every routed record.
fn quoted_route(route: Route) -> &'static [u8] {
    match route {
        Route::AutoCommit => b"\"auto_commit\"",
        Route::AsyncReview => b"\"async_review\"",
        Route::SyncReview => b"\"sync_review\"",
        Route::AutoReject => b"\"auto_reject\"",
    }
}

/// The JSON string of an event format's name ([`EventFormat::as_str`]), as a constant.
fn quoted_format(format: EventFormat) -> &'static [u8] {
    match format {
        EventFormat::Json => b"\"json\"",
        EventFormat::Avro => b"\"avro\"",
    }
}

impl ResolvedEvent<'_, ()> {
    /// Appends the JSON encoding with `event` (JSON text) as the event.
    pub(crate) fn lay_json(&self, event: &[u8], out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.str(field!("event_id"), &self.event_id);
        o.raw(field!("queue"), quoted_route(self.queue));
        o.str(field!("rule"), &self.rule);
        o.str(field!("recommendation"), self.recommendation.as_str());
        o.opt_str(field!("action"), self.action.map(ReviewAction::as_str));
        o.str(field!("outcome"), self.outcome.as_str());
        o.str(field!("actor"), &self.actor);
        o.opt_str(field!("actor_role"), self.actor_role.as_deref());
        o.str(field!("rationale"), &self.rationale);
        o.opt_str(field!("second_signoff"), self.second_signoff.as_deref());
        o.bool(field!("overridden"), self.overridden);
        o.i64(field!("review_latency_ms"), self.review_latency_ms);
        o.bool(field!("sla_met"), self.sla_met);
        o.i64(field!("tier"), i64::from(self.tier));
        o.i64(field!("decided_at"), self.decided_at);
        o.bool(field!("rollback"), self.rollback);
        o.f64(field!("risk_score"), self.risk_score);
        o.f64(field!("confidence"), self.confidence);
        o.str(field!("policy_version"), &self.policy_version);
        o.str(field!("model_version"), &self.model_version);
        o.raw(field!("event_format"), quoted_format(self.event_format));
        o.raw(field!("event"), event);
        o.end();
    }
}

#[cfg(test)]
mod tests {
    use crate::routed::{Contribution, EventFormat, RoutedRecord};
    use crate::Route;

    #[test]
    fn quoted_names_are_the_json_strings_of_the_names() {
        for route in Route::ALL {
            assert_eq!(super::quoted_route(route), serde_json::to_string(&route).unwrap().as_bytes());
        }
        for format in [EventFormat::Json, EventFormat::Avro] {
            assert_eq!(super::quoted_format(format), serde_json::to_string(&format).unwrap().as_bytes());
        }
    }

    #[test]
    fn audit_records_lay_out_as_serde_json_encodes_them() {
        for record in crate::fixtures::audit_records() {
            let mut laid = Vec::new();
            record.lay_json(&mut laid);
            assert_eq!(String::from_utf8(laid).unwrap(), serde_json::to_string(&record).unwrap());
        }
    }

    #[test]
    fn routed_records_lay_out_as_serde_json_encodes_them() {
        let event = serde_json::json!({"amount": 12.5, "note": "a \"b\""});
        for (i, text) in crate::fixtures::texts().iter().take(4).enumerate() {
            let record = RoutedRecord {
                event_id: text.clone().into(),
                route: Route::ALL[i],
                rule: text.clone().into(),
                guardrail: i % 2 == 1,
                risk_score: [0.93, f64::NAN, 0.0, 1e300][i],
                confidence: 0.5,
                model_version: text.clone().into(),
                policy_version: "p".into(),
                explanation: if i == 0 {
                    vec![]
                } else {
                    vec![Contribution { feature: text.clone().into(), contribution: -0.5 }]
                },
                routed_at: 1_790_000_000_000,
                sla_deadline: [None, Some(5)][i % 2],
                event_format: [EventFormat::Json, EventFormat::Avro][i % 2],
                event: (),
            };
            let mut laid = Vec::new();
            let scores = crate::routed::ScoreTexts::default();
            record.lay_json(event.to_string().as_bytes(), scores, super::Formatted, &mut laid);
            assert_eq!(String::from_utf8(laid).unwrap(), serde_json::to_string(&record.with_event(&event)).unwrap());
        }
    }

    #[test]
    fn resolved_records_lay_out_as_serde_json_encodes_them() {
        use crate::decision::ReviewAction;
        use crate::review::{ResolvedEvent, ReviewOutcome};
        let event = serde_json::json!({"amount": 12.5, "note": "a \"b\""});
        let actions = [None, Some(ReviewAction::Approve), Some(ReviewAction::Reject), Some(ReviewAction::RequestInfo)];
        for (i, text) in crate::fixtures::texts().iter().take(4).enumerate() {
            let outcome = [ReviewOutcome::Approved, ReviewOutcome::Rejected][i % 2];
            let record = ResolvedEvent {
                event_id: text.clone().into(),
                queue: Route::ALL[i],
                rule: text.clone().into(),
                recommendation: [ReviewOutcome::Rejected, ReviewOutcome::Approved][i % 2],
                action: actions[i],
                outcome,
                actor: text.clone().into(),
                actor_role: [None, Some(text.clone().into())][i % 2].clone(),
                rationale: text.clone().into(),
                second_signoff: [Some(text.clone().into()), None][i % 2].clone(),
                overridden: i % 2 == 0,
                review_latency_ms: [0, -1, i64::MAX, 42][i],
                sla_met: i % 2 == 1,
                tier: [1, 2, 3, i32::MAX][i],
                decided_at: 1_790_000_000_000,
                rollback: i == 3,
                risk_score: [0.93, f64::NAN, 0.0, 1e300][i],
                confidence: [0.5, 1.0, f64::INFINITY, 1e-7][i],
                policy_version: text.clone().into(),
                model_version: "m".into(),
                event_format: [EventFormat::Json, EventFormat::Avro][i % 2],
                event: (),
            };
            let mut laid = Vec::new();
            record.lay_json(event.to_string().as_bytes(), &mut laid);
            assert_eq!(String::from_utf8(laid).unwrap(), serde_json::to_string(&record.with_event(&event)).unwrap());
        }
    }
}
