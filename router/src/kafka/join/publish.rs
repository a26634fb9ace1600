//! Turns the review state's effects into records: resolutions, rollbacks, escalations, dead
//! letters, audit records and changelog states.

use super::{actor_name, Join, Source, STATE_SUFFIX};
use crate::kafka::inflight::Batch;
use crate::kafka::runner::{send, send_intake, LoopError};
use crate::pipeline::{write_timestamp, AuditForm};
use crate::review::{Actor, Effect, Escalation, Pending, Resolution};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tollgate_schemas::routed::AvroBytes;
use tollgate_schemas::{
    headers, AuditAction, AuditRecord, ChangeState, EscalationRecord, EventFormat, PendingChange, RecordFormat,
    ResolvedEvent, ReviewOutcome,
};

impl Join<'_> {
    pub(super) fn publish(
        &mut self,
        effect: Effect,
        batch: &Arc<Batch>,
        source: Option<&Source>,
    ) -> Result<(), LoopError> {
        match effect {
            // Written once the loop's batch is done, with one changelog lookup for all of them.
            Effect::Resolved(r) => {
                self.resolutions.push((r, Arc::clone(batch), source.cloned()));
                Ok(())
            }
            Effect::Escalated(e) => self.escalated(&e, batch, source),
            Effect::InfoRequested { event_id, actor, rationale, at, pending } => {
                self.write_audit(
                    &event_id,
                    &actor,
                    AuditAction::ReviewRequestInfo,
                    "info_requested",
                    &pending,
                    Some(&rationale),
                    None,
                    source,
                    at,
                )?;
                self.write_state(batch, &event_id, &pending, ChangeState::Pending, &[], None)
            }
            Effect::Held { event_id, queue, age_ms, at, pending } => {
                self.telemetry.review_escalated(queue, "held");
                let tier = i32::from(pending.tier);
                let record = EscalationRecord {
                    event_id: Cow::Borrowed(&event_id),
                    queue,
                    from_tier: tier,
                    to_tier: tier,
                    age_ms,
                    actor: Cow::Borrowed("policy_timeout"),
                    held: true,
                    at,
                    deadline: None,
                };
                self.send_record(batch, &self.config.topics.escalations.clone(), &event_id, |b, f| record.write(f, b))?;
                self.write_audit(
                    &event_id,
                    &Actor::PolicyTimeout,
                    AuditAction::TimeoutFallback,
                    "hold",
                    &pending,
                    Some("every tier ran out; fallback hold"),
                    Some(age_ms),
                    source,
                    at,
                )?;
                self.write_state(batch, &event_id, &pending, ChangeState::Pending, &[], None)
            }
            Effect::Unjoined { decision, reason } => {
                self.telemetry.review_unjoined(reason.as_str(), &decision.event_id);
                let mut bytes = Vec::new();
                let _ = decision.write(RecordFormat::Json, &mut bytes);
                let message =
                    format!("decision for event {} could not be joined: {}", decision.event_id, reason.as_str());
                self.dead_letter(
                    batch,
                    Some(decision.event_id.as_bytes()),
                    Some(&bytes),
                    reason.as_str(),
                    &message,
                    source,
                )?;
                write_timestamp(SystemTime::now(), &mut self.timestamp);
                let (partition, offset) = source.map_or((-1, -1), |m| (m.partition, m.offset));
                let record = AuditRecord {
                    actor_role: Some(Cow::Borrowed(&decision.reviewer_role)),
                    rationale: Some(Cow::Borrowed(&decision.rationale)),
                    ..AuditRecord::new(
                        &*decision.event_id,
                        &*self.timestamp,
                        &*decision.reviewer_id,
                        AuditAction::DecisionUnjoined,
                        reason.as_str(),
                        (&*self.config.topics.review_decisions, partition, offset),
                    )
                };
                let mut buf = std::mem::take(&mut self.audit);
                let gathered = self.gather_audit(&record, &mut buf);
                self.audit = buf;
                gathered
            }
            Effect::Duplicate { .. } => {
                self.telemetry.review_duplicate();
                Ok(())
            }
            Effect::Forget { event_id, partition } => {
                self.events.take(&event_id);
                let topic = self.config.topics.pending_changelog.clone();
                for key in [event_id.to_string(), format!("{event_id}{STATE_SUFFIX}")] {
                    let record: BaseRecord<'_, [u8], [u8], _> =
                        BaseRecord::with_opaque_to(&topic, Arc::clone(batch)).key(key.as_bytes()).partition(partition);
                    send(self.producer, record)?;
                }
                Ok(())
            }
        }
    }

    /// Writes the resolutions of the batch with their original events: kept in memory, else
    /// read back from the changelog, all in one pass.
    pub(super) fn flush_resolutions(&mut self) -> Result<(), LoopError> {
        if self.resolutions.is_empty() {
            return Ok(());
        }
        let resolutions = std::mem::take(&mut self.resolutions);
        let kept: Vec<Option<(EventFormat, Vec<u8>)>> =
            resolutions.iter().map(|(r, _, _)| self.events.take(&r.event_id)).collect();
        let wanted: Vec<(i32, i64)> = resolutions
            .iter()
            .zip(&kept)
            .filter(|(_, kept)| kept.is_none())
            .map(|((r, _, _), _)| (r.pending.partition, r.pending.event_offset))
            .collect();
        let read_back = if wanted.is_empty() { HashMap::new() } else { self.lookup.fetch_many(&wanted) };
        for ((r, batch, source), kept) in resolutions.iter().zip(&kept) {
            let original = match kept {
                Some((format, bytes)) => Some((*format, bytes.as_slice())),
                None => read_back
                    .get(&(r.pending.partition, r.pending.event_offset))
                    .map(|c| (c.event_format, c.event.0.as_ref())),
            };
            self.resolved(r, batch, source.as_ref(), original)?;
        }
        Ok(())
    }

    fn resolved(
        &mut self,
        r: &Resolution,
        batch: &Arc<Batch>,
        source: Option<&Source>,
        original: Option<(EventFormat, &[u8])>,
    ) -> Result<(), LoopError> {
        if original.is_none() {
            tracing::warn!(event_id = %r.event_id, "The original event is not in the changelog; the resolved record carries none.");
        }
        let (format, bytes) = original.unwrap_or((EventFormat::Json, &[][..]));
        let (actor, role) = actor_name(&r.actor);
        let outcome = |o: crate::review::Outcome| match o {
            crate::review::Outcome::Approved => ReviewOutcome::Approved,
            crate::review::Outcome::Rejected => ReviewOutcome::Rejected,
        };
        let record = ResolvedEvent {
            event_id: Cow::Borrowed(&r.event_id),
            queue: r.queue,
            rule: Cow::Borrowed(&r.pending.provenance.rule),
            recommendation: outcome(r.recommendation),
            action: r.action,
            outcome: outcome(r.outcome),
            actor: Cow::Borrowed(if r.action.is_some() { actor } else { "policy_timeout" }),
            actor_role: role.map(Cow::Borrowed),
            rationale: Cow::Borrowed(&r.rationale),
            second_signoff: r.second_signoff.as_deref().map(Cow::Borrowed),
            overridden: r.overridden,
            review_latency_ms: r.latency_ms,
            sla_met: r.sla_met,
            tier: i32::from(r.tier),
            decided_at: r.decided_at,
            rollback: r.rollback,
            risk_score: f64::from(r.pending.risk),
            confidence: f64::from(r.pending.confidence),
            policy_version: Cow::Borrowed(&r.pending.provenance.policy_version),
            model_version: Cow::Borrowed(&r.pending.provenance.model_version),
            event_format: format,
            event: (),
        };
        self.buf.clear();
        let written = match self.config.output.format {
            RecordFormat::Avro => record.with_event(AvroBytes(Cow::Borrowed(bytes))).write_avro(&mut self.buf),
            RecordFormat::Json => {
                record.write_json_with_event(&self.event_as_json(format, bytes), &mut self.buf);
                Ok(())
            }
        };
        if let Err(e) = written {
            tracing::error!(error = %e, event_id = %r.event_id, "Encoding a resolved record failed.");
        }
        let topics = &self.config.topics;
        for topic in [Some(&topics.resolved), r.rollback.then_some(&topics.rollbacks)].into_iter().flatten() {
            let record =
                BaseRecord::with_opaque_to(topic, Arc::clone(batch)).key(r.event_id.as_bytes()).payload(&self.buf);
            send(self.producer, record)?;
        }
        let timeout = r.action.is_none();
        self.telemetry.review_resolved(r.queue, r.outcome, r.overridden, timeout, r.latency_ms, r.sla_met);
        // A rollback is a reviewer's reject of a pre-accepted event: audited as the compensation
        // it causes.
        let action = match (r.rollback, timeout) {
            (true, _) => AuditAction::Rollback,
            (false, true) => AuditAction::TimeoutFallback,
            (false, false) => AuditAction::ReviewDecision,
        };
        self.write_audit(
            &r.event_id,
            &r.actor,
            action,
            r.outcome.as_str(),
            &r.pending,
            Some(&r.rationale),
            Some(r.latency_ms),
            source,
            r.decided_at,
        )?;
        self.write_state(batch, &r.event_id, &r.pending, ChangeState::Resolved, &r.fingerprints, Some(r.decided_at))
    }

    fn escalated(&mut self, e: &Escalation, batch: &Arc<Batch>, source: Option<&Source>) -> Result<(), LoopError> {
        self.telemetry.review_escalated(e.queue, &e.to_tier.to_string());
        let (actor, _) = actor_name(&e.actor);
        let record = EscalationRecord {
            event_id: Cow::Borrowed(&e.event_id),
            queue: e.queue,
            from_tier: i32::from(e.from_tier),
            to_tier: i32::from(e.to_tier),
            age_ms: e.age_ms,
            actor: Cow::Borrowed(if e.actor == Actor::PolicyTimeout { "policy_timeout" } else { actor }),
            held: false,
            at: e.at,
            deadline: Some(e.pending.deadline),
        };
        let topic = self.config.topics.escalations.clone();
        self.send_record(batch, &topic, &e.event_id, |b, f| record.write(f, b))?;
        let action =
            if e.actor == Actor::PolicyTimeout { AuditAction::TierTimeout } else { AuditAction::ReviewEscalate };
        let decision = format!("tier {} -> {}", e.from_tier, e.to_tier);
        self.write_audit(&e.event_id, &e.actor, action, &decision, &e.pending, None, Some(e.age_ms), source, e.at)?;
        self.write_state(batch, &e.event_id, &e.pending, ChangeState::Pending, &[], None)
    }

    /// Encodes a record in the output format and sends it keyed by event id.
    fn send_record(
        &mut self,
        batch: &Arc<Batch>,
        topic: &str,
        event_id: &str,
        encode: impl FnOnce(&mut Vec<u8>, RecordFormat) -> Result<(), tollgate_schemas::CodecError>,
    ) -> Result<(), LoopError> {
        self.buf.clear();
        if let Err(e) = encode(&mut self.buf, self.config.output.format) {
            tracing::error!(error = %e, topic, event_id, "Encoding a review record failed.");
        }
        send(
            self.producer,
            BaseRecord::with_opaque_to(topic, Arc::clone(batch)).key(event_id.as_bytes()).payload(&self.buf),
        )
    }

    #[allow(clippy::too_many_arguments)]
    /// Gathers an audit record into the open batch's intake batches.
    fn write_audit(
        &mut self,
        event_id: &str,
        actor: &Actor,
        action: AuditAction,
        decision: &str,
        pending: &Pending,
        rationale: Option<&str>,
        actual_ms: Option<i64>,
        source: Option<&Source>,
        at: i64,
    ) -> Result<(), LoopError> {
        let (actor, role) = actor_name(actor);
        let sla = self.settings.sla_ms(pending.queue);
        write_timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(at.max(0) as u64), &mut self.timestamp);
        let source = match source {
            Some(m) => (&*m.topic, m.partition, m.offset),
            None => (self.config.topics.pending_changelog.as_str(), pending.partition, -1),
        };
        let record = AuditRecord {
            actor_role: role.map(Cow::Borrowed),
            rule: Some(Cow::Borrowed(&pending.provenance.rule)),
            policy_version: Some(Cow::Borrowed(&pending.provenance.policy_version)),
            model_version: Some(Cow::Borrowed(&pending.provenance.model_version)),
            risk_score: Some(f64::from(pending.risk)),
            confidence: Some(f64::from(pending.confidence)),
            rationale: rationale.map(Cow::Borrowed),
            sla_expected_ms: Some(sla),
            sla_actual_ms: actual_ms,
            // The snapshot stays `{}`: the event's redacted snapshot is on its routing record.
            ..AuditRecord::new(event_id, &*self.timestamp, actor, action, decision, source)
        };
        let mut buf = std::mem::take(&mut self.audit);
        let gathered = self.gather_audit(&record, &mut buf);
        self.audit = buf;
        gathered
    }

    /// Adds an audit record to the open batch's intake batches: unsealed when this process's
    /// chainer holds its intake partition (as the routing loop hands its own), else as an intake
    /// datum.
    ///
    /// `buf` is the join's buffer for the record's bytes (taken out of it while `record` may
    /// borrow the join's timestamp).
    fn gather_audit(&self, record: &AuditRecord<'_>, buf: &mut Vec<u8>) -> Result<(), LoopError> {
        let form = AuditForm::of(&record.event_id, self.unsealed_for.as_ref());
        buf.clear();
        match form {
            AuditForm::Intake => record.write_intake(buf),
            AuditForm::Unsealed => record.write_unsealed(buf),
        }
        let topic = &self.config.topics.audit_intake;
        self.inflight.gather_audit(record.event_id.as_bytes(), (buf, form), |r| {
            send_intake(self.producer, topic, self.hand_off, r)
        })
    }

    /// Writes the review's state to the changelog under `<event id>/state`, in its partition.
    fn write_state(
        &mut self,
        batch: &Arc<Batch>,
        event_id: &str,
        pending: &Pending,
        state: ChangeState,
        fingerprints: &[Arc<str>],
        resolved_at: Option<i64>,
    ) -> Result<(), LoopError> {
        let applied: Vec<Cow<'_, str>> = match state {
            ChangeState::Resolved => fingerprints.iter().map(|f| Cow::Borrowed(&**f)).collect(),
            ChangeState::Pending => pending.applied.iter().map(|f| Cow::Borrowed(&**f)).collect(),
        };
        let revision = pending.revision + u32::from(state == ChangeState::Resolved);
        let change = PendingChange {
            event_id: Cow::Borrowed(event_id),
            state,
            queue: pending.queue,
            revision: i32::try_from(revision).unwrap_or(i32::MAX),
            tier: i32::from(pending.tier),
            held: pending.held,
            info_requested: pending.info_requested,
            post_verify: pending.post_verify,
            risk_score: f64::from(pending.risk),
            confidence: f64::from(pending.confidence),
            routed_at: pending.routed_at,
            deadline: pending.deadline,
            policy_version: Cow::Borrowed(&pending.provenance.policy_version),
            model_version: Cow::Borrowed(&pending.provenance.model_version),
            rule: Cow::Borrowed(&pending.provenance.rule),
            applied,
            resolved_at,
            event_format: EventFormat::Json,
            event: AvroBytes(Cow::Borrowed(&[])),
        };
        self.buf.clear();
        change.write(&mut self.buf);
        self.state_key.clear();
        self.state_key.push_str(event_id);
        self.state_key.push_str(STATE_SUFFIX);
        let writer = super::state_headers(&self.writer);
        let record = BaseRecord::with_opaque_to(&self.config.topics.pending_changelog, Arc::clone(batch))
            .key(self.state_key.as_bytes())
            .payload(&self.buf)
            .partition(pending.partition)
            .headers(writer);
        send(self.producer, record)
    }

    pub(super) fn dead_letter(
        &mut self,
        batch: &Arc<Batch>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        reason: &str,
        message: &str,
        source: Option<&Source>,
    ) -> Result<(), LoopError> {
        let (topic, partition, offset) = source.map_or(("", -1, -1), |m| (&*m.topic, m.partition, m.offset));
        let h = OwnedHeaders::new_with_capacity(5)
            .insert(Header { key: headers::ERROR_REASON, value: Some(reason) })
            .insert(Header { key: headers::ERROR_MESSAGE, value: Some(message) })
            .insert(Header { key: headers::SOURCE_TOPIC, value: Some(topic) })
            .insert(Header { key: headers::SOURCE_PARTITION, value: Some(&partition.to_string()) })
            .insert(Header { key: headers::SOURCE_OFFSET, value: Some(&offset.to_string()) });
        let dl_topic = self.config.topics.dead_letter.clone();
        let mut record: BaseRecord<'_, [u8], [u8], Arc<Batch>> =
            BaseRecord::with_opaque_to(&dl_topic, Arc::clone(batch)).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        send(self.producer, record)
    }

    /// The event's JSON text, embedded as it is in a JSON resolved record (`null` when it has
    /// none): the text of a JSON event, checked but not rebuilt; an Avro event's JSON form, as
    /// the decoder writes it (valid JSON by construction, so not parsed again).
    fn event_as_json<'b>(&self, format: EventFormat, bytes: &'b [u8]) -> Cow<'b, str> {
        let event = match format {
            EventFormat::Json => serde_json::from_slice::<&RawValue>(bytes).ok().map(|raw| Cow::Borrowed(raw.get())),
            EventFormat::Avro => self
                .avro_input
                .as_ref()
                .and_then(|input| input.json_form(bytes))
                .and_then(|json| String::from_utf8(json).ok())
                .map(Cow::Owned),
        };
        event.unwrap_or(Cow::Borrowed("null"))
    }
}
