//! The router's hot path without I/O: bytes in, a verdict and encoded records out.
//!
//! `decode → score → policy → encode`. A stage that refuses the event yields a
//! [`Verdict::Rejected`] with its reason; the Kafka layer then dead-letters the original bytes.
//! Either way an audit record is encoded, so every decision leaves a trace.

use crate::config::{RouterConfig, ScorerKind};
use crate::decode::{Decoded, Decoder, Reuse};
use crate::fields::{EventFields, FieldId, FieldRegistry, FieldValue};
use crate::kafka::intake::max_record_bytes;
use crate::kafka::producer_config;
use crate::policy::{Policy, PolicyError};
use crate::recycle::recycle;
use crate::reject::{RejectReason, Rejection};
use crate::score::{FieldScorer, LogisticModel, LogisticScorer, ModelError, Score, Scorer};
use encode::{RecordParts, RoutedBuffers};
use snapshot::SnapshotWriter;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::hash::Hasher;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate_schemas::json::FloatTexts;
use tollgate_schemas::{AuditAction, AuditRecord, Contribution, EventFormat, RecordFormat, Route, ScoreTexts};

/// Errors building the pipeline from configuration.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("input Avro schema {path} is not valid: {message}")]
    AvroSchema { path: PathBuf, message: String },
    #[error("model {path}: {source}")]
    Model { path: PathBuf, source: ModelError },
    #[error("policy {path}: {source}")]
    Policy { path: PathBuf, source: PolicyError },
    #[error("field path: {0}")]
    Field(String),
    #[error("the policy routes to `{0}` but topics.{0} is empty (route disabled)")]
    DisabledRoute(Route),
}

/// Where an input record came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Reusable output buffers, cleared per event (no per-event allocation for the encodings).
#[derive(Debug, Default)]
pub struct Output {
    /// The encoded routed record (empty for rejected input).
    pub value: Vec<u8>,
    /// The audit record, in the form `audit_form` says.
    pub audit: Vec<u8>,
    /// The form of `audit`: for the audit intake (an Avro datum whatever the output format),
    /// unless `unsealed_for` marks the event's intake partition.
    pub audit_form: AuditForm,
    /// Whose audit records are written unsealed (none when `None`).
    pub unsealed_for: Option<UnsealedFor>,
    /// The event id (also the audit record's key).
    pub event_id: String,
    /// Key of the routed record when the input record has none: the configured key field's
    /// value, else the event id.
    pub fallback_key: String,
    /// The model version, for the record headers.
    pub model_version: String,
    /// For review routes and audit samples: the pending-review changelog entry (with the
    /// original event).
    pub changelog: Vec<u8>,
    /// For an audit-sampled auto-commit event: its routed record for the async-review topic.
    pub sample: Vec<u8>,
    snapshot: Vec<u8>,
    /// The decoder's buffers, kept from event to event.
    reuse: Reuse,
    /// The score's explanation vector, kept from event to event.
    explanation: Vec<Contribution<'static>>,
    /// The vector a routed record's copy of the explanation is written from.
    routed_explanation: Vec<Contribution<'static>>,
    /// The shortest texts of the event's floats, when its routed record and its audit record
    /// are both JSON (the audit record unsealed): formatted once for both.
    floats: FloatTexts,
    timestamp: String,
    /// The millisecond `timestamp` was formatted for: events of one batch share it.
    timestamp_ms: Option<i64>,
}

/// The form of an audit record in [`Output::audit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditForm {
    /// An Avro datum, as the audit intake takes it ([`AuditRecord::write_intake`]).
    #[default]
    Intake,
    /// Unsealed JSON ([`tollgate_schemas::unsealed`]), for a chainer in this process.
    Unsealed,
}

impl AuditForm {
    /// The form of `event_id`'s audit records: unsealed where `unsealed_for` marks its intake
    /// partition, else the intake's.
    pub fn of(event_id: &str, unsealed_for: Option<&UnsealedFor>) -> AuditForm {
        unsealed_for.map_or(AuditForm::Intake, |u| u.form_of(event_id))
    }
}

/// Where an event id's audit record goes: its audit intake partition.
type Place = Box<dyn Fn(&[u8]) -> usize + Send>;

/// Which events' audit records are written unsealed: those whose audit intake partition is
/// marked. The Kafka layer marks the partitions whose records it can hand to this process's
/// chainer, and refreshes the marks between poll batches.
pub struct UnsealedFor {
    place: Place,
    marked: Vec<bool>,
    /// Every partition is marked.
    all: bool,
}

impl UnsealedFor {
    /// For an intake topic of `partitions` partitions, where `place` puts an event id; none
    /// marked.
    pub fn new(place: impl Fn(&[u8]) -> usize + Send + 'static, partitions: usize) -> UnsealedFor {
        UnsealedFor { place: Box::new(place), marked: vec![false; partitions], all: false }
    }

    /// Marks the partitions `marked` holds.
    pub fn mark(&mut self, marked: impl Fn(usize) -> bool) {
        for (p, mark) in self.marked.iter_mut().enumerate() {
            *mark = marked(p);
        }
        self.all = self.marked.iter().all(|&m| m);
    }

    /// The form of the audit records of `event_id`.
    fn form_of(&self, event_id: &str) -> AuditForm {
        match self.marked.get((self.place)(event_id.as_bytes())) {
            Some(true) => AuditForm::Unsealed,
            _ => AuditForm::Intake,
        }
    }
}

impl std::fmt::Debug for UnsealedFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealedFor").field("marked", &self.marked).finish_non_exhaustive()
    }
}

impl Output {
    /// The form of the current event's audit record (its id is known).
    fn choose_audit_form(&mut self) -> AuditForm {
        self.audit_form = AuditForm::of(&self.event_id, self.unsealed_for.as_ref());
        self.audit_form
    }
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<'p> {
    /// Routed: publish [`Output::value`] on `topic` (and on `pre_accept` too, for a post-verify
    /// review queue), and [`Output::changelog`] when it is not empty.
    /// `sample` is the async-review topic when an auto-committed event was drawn for a
    /// post-verify audit sample ([`Output::sample`]).
    Routed {
        route: Route,
        topic: &'p str,
        pre_accept: Option<&'p str>,
        sample: Option<&'p str>,
        risk: f64,
        confidence: f64,
        /// A field a policy bound was tested on that held something other than a number
        /// ([`crate::policy::Decision::not_numeric`]).
        not_numeric: Option<&'p str>,
    },
    /// Refused: dead-letter the original bytes with this reason.
    Rejected(Rejection),
}

/// The configured stages.
#[derive(Debug)]
pub struct Pipeline {
    decoder: Decoder,
    scorer: Scorer,
    policy: Policy,
    event_id: FieldId,
    key: Option<FieldId>,
    /// Writes the audit snapshot (redacting configured paths).
    snapshot: SnapshotWriter,
    output_format: RecordFormat,
    event_format: EventFormat,
    /// Output topic per route (index = `Route as usize`); `None` when disabled.
    topics: [Option<String>; 4],
    /// First-tier SLA per route (index = `Route as usize`); `None` for non-review routes.
    sla: [Option<Duration>; 4],
    /// Post-verify per route (index = `Route as usize`).
    post_verify: [bool; 4],
    /// Fraction of auto-committed events sampled for post-verify review.
    sample_rate: f64,
    /// The largest record value the router's producer is given (see
    /// [`crate::kafka::intake::max_record_bytes`]): an event whose records would be larger is
    /// dead-lettered, since the producer would refuse them and stop the router at that event.
    max_record_bytes: usize,
}

fn read(path: PathBuf) -> Result<String, PipelineError> {
    std::fs::read_to_string(&path).map_err(|source| PipelineError::Read { path, source })
}

impl Pipeline {
    /// Builds and validates every stage from configuration: reads the schema, model and policy
    /// files, and checks that every route the policy can take has a topic.
    pub fn from_config(config: &RouterConfig) -> Result<Self, PipelineError> {
        let mut registry = FieldRegistry::default();
        let f = &config.input.fields;
        let event_id = registry.register(&f.event_id).map_err(PipelineError::Field)?;
        let key = match f.key.as_str() {
            "" => None,
            path => Some(registry.register(path).map_err(PipelineError::Field)?),
        };
        let scorer = match config.scorer.kind {
            ScorerKind::Field => {
                let risk = registry.register(&f.risk_score).map_err(PipelineError::Field)?;
                let confidence = registry.register(&f.confidence).map_err(PipelineError::Field)?;
                let version = if f.model_version.is_empty() {
                    None
                } else {
                    Some(registry.register(&f.model_version).map_err(PipelineError::Field)?)
                };
                Scorer::Field(FieldScorer::new(risk, confidence, version, config.scorer.model_version.clone()))
            }
            ScorerKind::Logistic => {
                let path = config.resolve(config.scorer.model.as_deref().unwrap_or_else(|| "".as_ref()));
                let model = LogisticModel::from_toml(&read(path.clone())?)
                    .map_err(|source| PipelineError::Model { path: path.clone(), source })?;
                let scorer = LogisticScorer::compile(model, &mut registry)
                    .map_err(|source| PipelineError::Model { path, source })?;
                Scorer::Logistic(scorer)
            }
        };
        let policy_path = config.resolve(&config.policy.file);
        let policy = Policy::from_toml(&read(policy_path.clone())?, &mut registry)
            .map_err(|source| PipelineError::Policy { path: policy_path, source })?;
        for extra in &config.audit.snapshot_fields {
            registry.register(extra).map_err(PipelineError::Field)?;
        }
        let redacted: Vec<FieldId> = config
            .audit
            .redact_fields
            .iter()
            .map(|p| registry.register(p).map_err(PipelineError::Field))
            .collect::<Result<_, _>>()?;
        let snapshot = SnapshotWriter::new(&registry, &redacted);
        let topics = Route::ALL.map(|r| config.topics.for_route(r).map(str::to_owned));
        for route in policy.routes() {
            if topics[route as usize].is_none() {
                return Err(PipelineError::DisabledRoute(route));
            }
        }
        let mut sla = [None; 4];
        sla[Route::SyncReview as usize] = config.review.sync_review.tiers.first().map(|d| d.0);
        sla[Route::AsyncReview as usize] = config.review.async_review.tiers.first().map(|d| d.0);
        let mut post_verify = [false; 4];
        post_verify[Route::SyncReview as usize] = config.review.sync_review.post_verify;
        post_verify[Route::AsyncReview as usize] = config.review.async_review.post_verify;
        use crate::config::InputFormat::*;
        let (decoder, event_format) = match config.input.format {
            Json => (Decoder::json(registry.clone(), &redacted), EventFormat::Json),
            Avro | AvroConfluent => {
                let path = config.resolve(config.input.avro_schema.as_deref().unwrap_or_else(|| "".as_ref()));
                let text = read(path.clone())?;
                let schema = text
                    .parse::<serde_avro_fast::Schema>()
                    .map_err(|e| PipelineError::AvroSchema { path, message: e.to_string() })?;
                let confluent = config.input.format == AvroConfluent;
                let json_body = config.output.format == RecordFormat::Json;
                let ids = config.input.confluent_schema_ids.clone();
                let decoder = Decoder::avro(registry.clone(), schema, confluent, ids, json_body, &redacted);
                (decoder, EventFormat::Avro)
            }
        };
        Ok(Pipeline {
            decoder,
            scorer,
            policy,
            event_id,
            key,
            snapshot,
            output_format: config.output.format,
            event_format,
            topics,
            sla,
            post_verify,
            sample_rate: config.review.audit_sample_rate,
            max_record_bytes: max_record_bytes(&producer_config(config)),
        })
    }

    /// The largest record value the router writes; a dead letter carries its event's payload
    /// only up to this size.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// The running policy's version.
    pub fn policy_version(&self) -> &str {
        self.policy.version()
    }

    /// The paths of the fields the policy's bounds test.
    pub fn bounded_fields(&self) -> impl Iterator<Item = &str> {
        self.policy.bounded_fields()
    }

    /// Routes one input record, filling `out` with the encoded records.
    pub fn process<'p>(
        &'p self,
        payload: Option<&[u8]>,
        source: Source<'_>,
        now: SystemTime,
        out: &mut Output,
    ) -> Verdict<'p> {
        out.value.clear();
        out.audit.clear();
        out.event_id.clear();
        out.changelog.clear();
        out.sample.clear();
        out.fallback_key.clear();
        out.model_version.clear();
        // Every audit record unsealed: their snapshots are JSON strings, written field by
        // field, so the scan need not record what the snapshot's JSON text copies.
        out.reuse.want_verbatim(out.unsealed_for.as_ref().is_none_or(|u| !u.all));
        let decoded = match payload {
            None | Some([]) => Err(Rejection::new(RejectReason::EmptyPayload, "the record has no value")),
            // Its routed record would be larger still, and so would its dead letter: that
            // leaves the payload out (see the routing loop).
            Some(p) if p.len() > self.max_record_bytes => Err(self.event_too_large(p.len())),
            Some(p) => self.decoder.decode(p, &mut out.reuse),
        };
        let decoded = match decoded {
            Ok(d) => d,
            Err(r) => return self.reject(r, None, source, now, out),
        };
        let verdict = self.route(&decoded, payload.unwrap_or_default(), source, now, out);
        out.reuse.recycle(decoded);
        verdict
    }

    /// [`Pipeline::process`] once the event is decoded.
    fn route<'p>(
        &'p self,
        decoded: &Decoded<'_>,
        payload: &[u8],
        source: Source<'_>,
        now: SystemTime,
        out: &mut Output,
    ) -> Verdict<'p> {
        if let Err(r) = self.event_id(&decoded.fields, &mut out.event_id) {
            return self.reject(r, Some(decoded), source, now, out);
        }
        let explanation = recycle(std::mem::take(&mut out.explanation));
        let mut score = match self.scorer.score_into(&decoded.fields, explanation) {
            Ok(s) => s,
            Err(r) => return self.reject(r, Some(decoded), source, now, out),
        };
        out.model_version.push_str(&score.model_version);
        match self.key.map(|k| decoded.fields.get(k).as_text()) {
            Some(Some(text)) if !text.is_empty() => out.fallback_key.push_str(&text),
            _ => out.fallback_key.push_str(&out.event_id),
        }
        match self.encode_routed(decoded, &mut score, payload, source, now, out) {
            // Its audit record leaves the snapshot out, which made it too large.
            Err(r) if r.reason == RejectReason::EventTooLarge => self.reject(r, None, source, now, out),
            Ok(verdict) => verdict,
            Err(r) => self.reject(r, Some(decoded), source, now, out),
        }
    }

    fn too_large(&self, bytes: usize, what: &str) -> Rejection {
        let limit = self.max_record_bytes;
        Rejection::new(
            RejectReason::EventTooLarge,
            format!("{what} would be {bytes} bytes, over the {limit} the producer takes (message.max.bytes, less room for key and headers)"),
        )
    }

    #[cold]
    #[inline(never)]
    fn event_too_large(&self, bytes: usize) -> Rejection {
        let mut r = self.too_large(bytes, "the event");
        r.message.push_str(
            "; its payload is left out of this dead letter: read it at its source topic, partition and offset",
        );
        r
    }

    /// Whether a record written for the event in `out` may be larger than the producer takes:
    /// a bound checked per event, which [`Pipeline::oversized`] makes exact.
    #[inline]
    fn may_be_oversized(&self, form: AuditForm, out: &Output) -> bool {
        let routed = out.value.len().max(out.sample.len()).max(out.changelog.len());
        // Escaping at most multiplies the snapshot by 6 (`\u0000`).
        let audit = out.audit.len().saturating_mul(if self.audit_escaped(form) { 7 } else { 1 });
        routed.max(audit) > self.max_record_bytes
    }

    /// Whether the audit record in `form` is written again with its snapshot escaped: one
    /// gathered in the intake's Avro form holds the snapshot unescaped, and the chainer writes
    /// it as JSON when the output is JSON.
    fn audit_escaped(&self, form: AuditForm) -> bool {
        self.output_format == RecordFormat::Json && form == AuditForm::Intake
    }

    /// The rejection of an event whose largest record, as the broker gets it, is over the
    /// limit (`None` when none is).
    #[cold]
    #[inline(never)]
    fn oversized(&self, form: AuditForm, out: &Output) -> Option<Rejection> {
        let mut audit = out.audit.len();
        if self.audit_escaped(form) {
            audit += json_escape_growth(&out.snapshot) + AUDIT_JSON_NAMES;
        }
        let records = [
            (out.value.len(), "its routed record"),
            (out.sample.len(), "its post-verify sample"),
            (out.changelog.len(), "its changelog entry"),
            (audit, "its audit record"),
        ];
        let (largest, what) = records.into_iter().max_by_key(|(n, _)| *n)?;
        (largest > self.max_record_bytes).then(|| self.too_large(largest, what))
    }

    fn event_id(&self, fields: &EventFields, into: &mut String) -> Result<(), Rejection> {
        match fields.get(self.event_id) {
            FieldValue::Missing => Err(Rejection::new(RejectReason::MissingField, "event id is missing")),
            v @ (FieldValue::Text(_) | FieldValue::Number(_)) => {
                let text = v.as_text().unwrap_or_default();
                if text.is_empty() {
                    return Err(Rejection::new(RejectReason::InvalidField, "event id is empty"));
                }
                into.push_str(&text);
                Ok(())
            }
            other => Err(Rejection::new(
                RejectReason::InvalidField,
                format!("event id must be a string or number, found a {}", other.kind()),
            )),
        }
    }

    fn encode_routed<'p>(
        &'p self,
        decoded: &Decoded<'_>,
        score: &mut Score<'_>,
        payload: &[u8],
        source: Source<'_>,
        now: SystemTime,
        out: &mut Output,
    ) -> Result<Verdict<'p>, Rejection> {
        let decision = self.policy.decide(score, &decoded.fields);
        let topic = self.topics[decision.route as usize].as_deref().unwrap_or_default();
        let routed_at = millis(now);
        let sla = self.sla[decision.route as usize];
        let deadline = sla.map(|d| routed_at + d.as_millis() as i64);
        // Known before the routed record is written: an unsealed audit record writes the
        // scores in JSON too, so the routed record keeps their texts for it.
        let form = out.choose_audit_form();
        let record = RecordParts {
            event_id: &out.event_id,
            route: decision.route,
            rule: decision.rule,
            guardrail: decision.guardrail,
            routed_at,
            deadline,
        };
        // Kept only when the routed record formats the scores: scores read from a JSON input
        // are copied as it wrote them.
        out.floats.clear();
        let keep = form == AuditForm::Unsealed && score.texts == ScoreTexts::default();
        let mut floats = keep.then_some(&mut out.floats);
        let mut value = std::mem::take(&mut out.value);
        let buffers = RoutedBuffers { explanation: &mut out.routed_explanation, floats: floats.as_deref_mut() };
        let written = self.write_routed(&record, decoded, score, payload, buffers, &mut value);
        out.value = value;
        written?;
        let post_verify = self.post_verify[decision.route as usize];
        // An auto-committed event may be sampled for a post-verify review (by its id, so a
        // replay samples the same events).
        let sampled = decision.route == Route::AutoCommit && self.sampled(&out.event_id);
        if decision.route.is_review() {
            let mut buf = std::mem::take(&mut out.changelog);
            self.write_change(&record, score, payload, post_verify, &mut buf);
            out.changelog = buf;
        } else if sampled {
            let async_sla = self.sla[Route::AsyncReview as usize];
            let sample = RecordParts {
                event_id: &out.event_id,
                route: Route::AsyncReview,
                rule: AUDIT_SAMPLE_RULE,
                guardrail: false,
                routed_at,
                deadline: async_sla.map(|d| routed_at + d.as_millis() as i64),
            };
            let (mut value, mut change) = (std::mem::take(&mut out.sample), std::mem::take(&mut out.changelog));
            let buffers = RoutedBuffers { explanation: &mut out.routed_explanation, floats };
            let written = self.write_routed(&sample, decoded, score, payload, buffers, &mut value);
            self.write_change(&sample, score, payload, true, &mut change);
            (out.sample, out.changelog) = (value, change);
            written?;
        }
        self.audit_prelude(Some(decoded), now, form, out);
        let (mut buf, mut floats) = (std::mem::take(&mut out.audit), std::mem::take(&mut out.floats));
        // The audit record is the explanation's last reader: it takes the vector, and hands it
        // back for the next event.
        let explanation = std::mem::take(&mut score.explanation);
        let audit = AuditRecord {
            rule: Some(Cow::Borrowed(decision.rule)),
            guardrail: decision.guardrail,
            model_version: Some(Cow::Borrowed(&score.model_version)),
            risk_score: Some(score.risk),
            confidence: Some(score.confidence),
            explanation,
            sla_expected_ms: sla.map(|d| d.as_millis() as i64),
            rationale: if decision.untested {
                Some(Cow::Borrowed(UNTESTED_RATIONALE))
            } else {
                sampled.then_some(Cow::Borrowed("sampled for a post-verify review"))
            },
            ..self.audit_base(out, source, "policy", AuditAction::Route, decision.route.as_str())
        };
        let explanation = self.write_audit(audit, &out.snapshot, form, keep.then_some(&mut floats), &mut buf);
        out.explanation = recycle(explanation);
        (out.audit, out.floats) = (buf, floats);
        if self.may_be_oversized(form, out) {
            if let Some(r) = self.oversized(form, out) {
                return Err(r);
            }
        }
        let pre_accept = if post_verify { self.topics[Route::AutoCommit as usize].as_deref() } else { None };
        let sample = if sampled { self.topics[Route::AsyncReview as usize].as_deref() } else { None };
        Ok(Verdict::Routed {
            route: decision.route,
            topic,
            pre_accept,
            sample,
            risk: score.risk,
            confidence: score.confidence,
            not_numeric: decision.not_numeric,
        })
    }

    /// True when an auto-committed event is drawn for a post-verify audit sample.
    fn sampled(&self, event_id: &str) -> bool {
        if self.sample_rate <= 0.0 {
            return false;
        }
        let mut h = fnv::FnvHasher::default();
        h.write(event_id.as_bytes());
        (h.finish() % 1_000_000) < (self.sample_rate * 1_000_000.0) as u64
    }

    fn reject<'p>(
        &'p self,
        rejection: Rejection,
        event: Option<&Decoded>,
        source: Source<'_>,
        now: SystemTime,
        out: &mut Output,
    ) -> Verdict<'p> {
        out.value.clear();
        out.audit.clear();
        if out.event_id.is_empty() {
            // Without a readable event id, the record's position identifies it.
            let _ = write!(out.event_id, "{}/{}/{}", source.topic, source.partition, source.offset);
        }
        let form = out.choose_audit_form();
        self.audit_prelude(event, now, form, out);
        let mut buf = std::mem::take(&mut out.audit);
        let audit = AuditRecord {
            rationale: Some(Cow::Borrowed(&rejection.message)),
            ..self.audit_base(out, source, "router", AuditAction::DeadLetter, rejection.reason.as_str())
        };
        self.write_audit(audit, &out.snapshot, form, None, &mut buf);
        out.audit = buf;
        Verdict::Rejected(rejection)
    }
}

/// What an audit record's JSON form adds to its Avro form besides the snapshot's escapes: its
/// field names and punctuation, with room to spare.
const AUDIT_JSON_NAMES: usize = 1024;

/// How many bytes escaping `text` as a JSON string adds.
fn json_escape_growth(text: &[u8]) -> usize {
    text.iter()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum()
}

/// The rule name of post-verify audit samples.
pub const AUDIT_SAMPLE_RULE: &str = "audit-sample";

/// The audit rationale of a guardrail that held only because it could not test a bound
/// (`untestable_guardrails = "match"`).
pub const UNTESTED_RATIONALE: &str = "guardrail held failing closed: a bound it tests met a value that is not a number";

/// Milliseconds since the Unix epoch.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Writes `now` as an audit record's timestamp (RFC 3339, milliseconds, UTC) into `into`.
pub(crate) fn write_timestamp(now: SystemTime, into: &mut String) {
    into.clear();
    let _ = write!(into, "{}", humantime::format_rfc3339_millis(now));
}

mod encode;
mod snapshot;
#[cfg(test)]
mod tests;
