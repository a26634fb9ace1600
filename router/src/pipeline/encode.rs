//! The records an event's verdict is written as: the routed record, the changelog entry of a
//! review, and the audit record with its snapshot. Each is written into a buffer the routing
//! loop keeps, with nothing allocated per event.

use super::snapshot::SnapshotForm;
use super::{millis, write_timestamp, AuditForm, Output, Pipeline, Source};
use crate::decode::{Body, Decoded};
use crate::recycle::recycle;
use crate::reject::{RejectReason, Rejection};
use crate::score::Score;
use std::borrow::Cow;
use std::time::SystemTime;
use tollgate_schemas::json::FloatTexts;
use tollgate_schemas::routed::AvroBytes;
use tollgate_schemas::{
    AuditAction, AuditRecord, ChangeState, Contribution, PendingChange, RecordFormat, Route, RoutedRecord,
};

/// The buffers a routed record is written with, kept from event to event: the vector its copy
/// of the explanation is built in and, when the event's audit record is JSON too, the texts of
/// the floats it formats, for that record to copy.
pub(super) struct RoutedBuffers<'b> {
    pub(super) explanation: &'b mut Vec<Contribution<'static>>,
    pub(super) floats: Option<&'b mut FloatTexts>,
}

/// What the records an event may get carry besides the score: its id, and its route (or an
/// audit sample's).
pub(super) struct RecordParts<'a> {
    pub(super) event_id: &'a str,
    pub(super) route: Route,
    pub(super) rule: &'a str,
    pub(super) guardrail: bool,
    pub(super) routed_at: i64,
    pub(super) deadline: Option<i64>,
}

impl Pipeline {
    /// Encodes the routed record of `record` (with the original event) into `into`.
    pub(super) fn write_routed(
        &self,
        record: &RecordParts<'_>,
        decoded: &Decoded<'_>,
        score: &Score<'_>,
        payload: &[u8],
        buffers: RoutedBuffers<'_>,
        into: &mut Vec<u8>,
    ) -> Result<(), Rejection> {
        let RoutedBuffers { explanation: spare, floats } = buffers;
        // The event's JSON text, for a JSON routed record (`None`: Avro, the datum as it is).
        let text = match (self.output_format, &decoded.body) {
            (RecordFormat::Avro, _) => None,
            (RecordFormat::Json, Body::Json(text)) => Some(*text),
            (RecordFormat::Json, Body::Avro(Some(json))) if !json.non_finite => {
                // Written from a record's strings and keys, which the decoder checked as UTF-8,
                // so this check does not fail.
                let text = std::str::from_utf8(&json.text)
                    .map_err(|e| Rejection::new(RejectReason::EncodeFailed, e.to_string()))?;
                Some(text)
            }
            (RecordFormat::Json, Body::Avro(Some(_))) => {
                return Err(Rejection::new(
                    RejectReason::EncodeFailed,
                    "event has no JSON form: it holds a NaN or an infinite number",
                ))
            }
            (RecordFormat::Json, Body::Avro(None)) => {
                return Err(Rejection::new(
                    RejectReason::EncodeFailed,
                    "the Avro event was decoded without its JSON form",
                ))
            }
        };
        // One constructor for both event encodings (the types differ only in `event`). The
        // record's explanation is a copy of the score's in `spare`, a vector kept for it.
        macro_rules! routed {
            ($event:expr, $explanation:expr) => {
                RoutedRecord {
                    event_id: Cow::Borrowed(record.event_id),
                    route: record.route,
                    rule: Cow::Borrowed(record.rule),
                    guardrail: record.guardrail,
                    risk_score: score.risk,
                    confidence: score.confidence,
                    model_version: Cow::Borrowed(&score.model_version),
                    policy_version: Cow::Borrowed(self.policy.version()),
                    explanation: $explanation,
                    routed_at: record.routed_at,
                    sla_deadline: record.deadline,
                    event_format: self.event_format,
                    event: $event,
                }
            };
        }
        let explanation = match score.explanation.as_slice() {
            [] => Vec::new(),
            items => {
                let mut copy = recycle(std::mem::take(spare));
                copy.extend_from_slice(items);
                copy
            }
        };
        let (written, explanation) = match text {
            None => {
                let routed = routed!(AvroBytes(Cow::Borrowed(payload)), explanation);
                (routed.write_avro(into), routed.explanation)
            }
            Some(text) => {
                let routed = routed!((), explanation);
                match floats {
                    Some(floats) => routed.write_json_with_floats(text, score.texts, floats, into),
                    None => routed.write_json_with_event_and_scores(text, score.texts, into),
                }
                (Ok(()), routed.explanation)
            }
        };
        if explanation.capacity() > 0 {
            *spare = recycle(explanation);
        }
        written.map_err(|e| Rejection::new(RejectReason::EncodeFailed, e.to_string()))
    }

    /// Encodes the changelog entry of an event entering review (with the original event).
    pub(super) fn write_change(
        &self,
        record: &RecordParts<'_>,
        score: &Score<'_>,
        payload: &[u8],
        post_verify: bool,
        into: &mut Vec<u8>,
    ) {
        PendingChange {
            event_id: Cow::Borrowed(record.event_id),
            state: ChangeState::Pending,
            queue: record.route,
            revision: 0,
            tier: 1,
            held: false,
            info_requested: false,
            post_verify,
            risk_score: score.risk,
            confidence: score.confidence,
            routed_at: record.routed_at,
            deadline: record.deadline.unwrap_or(record.routed_at),
            policy_version: Cow::Borrowed(self.policy.version()),
            model_version: Cow::Borrowed(&score.model_version),
            rule: Cow::Borrowed(record.rule),
            applied: Vec::new(),
            resolved_at: None,
            event_format: self.event_format,
            event: AvroBytes(Cow::Borrowed(payload)),
        }
        .write(into);
    }

    /// Encodes `audit` (built by [`Pipeline::audit_base`]) with `snapshot` (written by
    /// [`Pipeline::audit_prelude`] in the form `form` takes) into `into`, in `form`; unsealed,
    /// with the float texts the routed record kept in `floats`. Returns the record's
    /// explanation vector, to be kept for the next event.
    pub(super) fn write_audit<'a>(
        &self,
        audit: AuditRecord<'a>,
        snapshot: &'a [u8],
        form: AuditForm,
        floats: Option<&mut FloatTexts>,
        into: &mut Vec<u8>,
    ) -> Vec<Contribution<'a>> {
        into.clear();
        match form {
            AuditForm::Intake => {
                // The snapshot is JSON text written from `str` values and runs of text.
                audit.write_intake_with_snapshot(snapshot, into);
                audit.explanation
            }
            // [`Pipeline::audit_prelude`] wrote the snapshot as its JSON string for this form.
            AuditForm::Unsealed => {
                match floats {
                    Some(floats) => audit.write_unsealed_with_floats(snapshot, floats, into),
                    None => audit.write_unsealed_with_snapshot(snapshot, into),
                }
                audit.explanation
            }
        }
    }

    /// The audit record's common part: who decided what about which input, when. Its
    /// `input_snapshot` is left empty for [`Pipeline::write_audit`]; the timestamp is the one
    /// [`Pipeline::audit_prelude`] wrote.
    #[inline]
    pub(super) fn audit_base<'a>(
        &'a self,
        out: &'a Output,
        source: Source<'a>,
        actor: &'static str,
        action: AuditAction,
        decision: &'a str,
    ) -> AuditRecord<'a> {
        let source = (source.topic, source.partition, source.offset);
        AuditRecord {
            policy_version: Some(Cow::Borrowed(self.policy.version())),
            input_snapshot: Cow::Borrowed(""),
            ..AuditRecord::new(&*out.event_id, &*out.timestamp, actor, action, decision, source)
        }
    }

    /// Prepares what every audit record carries: the snapshot of the event fields the decision
    /// read in `out.snapshot`, in the form the record's `form` takes it (the JSON text for the
    /// intake's, that text's JSON string for the unsealed JSON), and the timestamp in
    /// `out.timestamp` (formatted once per millisecond).
    pub(super) fn audit_prelude(&self, event: Option<&Decoded>, now: SystemTime, form: AuditForm, out: &mut Output) {
        let snapshot_form = match form {
            AuditForm::Intake => SnapshotForm::Text,
            AuditForm::Unsealed => SnapshotForm::String,
        };
        self.snapshot.write_event(event, snapshot_form, &mut out.snapshot);
        let ms = millis(now);
        if out.timestamp_ms != Some(ms) {
            write_timestamp(now, &mut out.timestamp);
            out.timestamp_ms = Some(ms);
        }
    }
}
