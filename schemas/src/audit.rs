//! The audit record: one entry of the trail auditors read to reconstruct every decision.

use crate::routed::Contribution;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// What an audit record records. Stored as its name (a string) so later actions can be added
/// without breaking readers of older records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// The policy routed an event.
    Route,
    /// The router refused an event and sent it to the dead-letter topic.
    DeadLetter,
    /// A reviewer approved or rejected (the `decision` says which).
    ReviewDecision,
    /// A reviewer escalated the case to the next tier.
    ReviewEscalate,
    /// A reviewer asked for more information.
    ReviewRequestInfo,
    /// A tier's time ran out and the case moved to the next tier.
    TierTimeout,
    /// Every tier ran out: the queue's fallback applied (approve, reject or hold).
    TimeoutFallback,
    /// A decision could not be joined to a pending review (dead-lettered).
    DecisionUnjoined,
    /// A post-verify reject compensated an event that was pre-accepted on auto-commit.
    Rollback,
    /// The router started routing with a new policy version (hot reload).
    PolicyChange,
    /// The gateway showed a case in a queue listing (the snapshot is what was shown).
    CaseListed,
    /// The gateway showed a case in full (the snapshot is what was shown).
    CaseRead,
    /// A reviewer claimed a case (a lease).
    CaseClaim,
    /// A reviewer released a claim.
    CaseRelease,
    /// The gateway submitted a reviewer's decision to the router (`decision` is the action).
    DecisionSubmitted,
    /// A high-impact decision waits for a second reviewer's sign-off.
    SignoffRequested,
    /// The second reviewer refused the sign-off; the case is open again.
    SignoffRefused,
}

impl AuditAction {
    /// The action's name as stored in the `action` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::Route => "route",
            AuditAction::DeadLetter => "dead_letter",
            AuditAction::ReviewDecision => "review_decision",
            AuditAction::ReviewEscalate => "review_escalate",
            AuditAction::ReviewRequestInfo => "review_request_info",
            AuditAction::TierTimeout => "tier_timeout",
            AuditAction::TimeoutFallback => "timeout_fallback",
            AuditAction::DecisionUnjoined => "decision_unjoined",
            AuditAction::Rollback => "rollback",
            AuditAction::PolicyChange => "policy_change",
            AuditAction::CaseListed => "case_listed",
            AuditAction::CaseRead => "case_read",
            AuditAction::CaseClaim => "case_claim",
            AuditAction::CaseRelease => "case_release",
            AuditAction::DecisionSubmitted => "decision_submitted",
            AuditAction::SignoffRequested => "signoff_requested",
            AuditAction::SignoffRefused => "signoff_refused",
        }
    }
}

/// The record published on `tollgate.audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    /// RFC 3339 (ISO 8601) in UTC with millisecond precision.
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    /// `policy` for routing decisions, `router` for refused input, otherwise a reviewer id.
    #[serde(borrow)]
    pub actor: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub actor_role: Option<Cow<'a, str>>,
    /// An [`AuditAction`] name.
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    /// The route taken, or for dead letters the reason.
    #[serde(borrow)]
    pub decision: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub rule: Option<Cow<'a, str>>,
    pub guardrail: bool,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub policy_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub model_version: Option<Cow<'a, str>>,
    pub risk_score: Option<f64>,
    pub confidence: Option<f64>,
    pub explanation: Vec<Contribution<'a>>,
    /// JSON object of the event fields the decision used, with configured fields redacted; for
    /// the gateway's records, exactly the fields the reviewer was shown.
    #[serde(borrow)]
    pub input_snapshot: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub rationale: Option<Cow<'a, str>>,
    /// The SLA the decision set (ms), for review routes.
    pub sla_expected_ms: Option<i64>,
    /// How long the decision actually took (ms), once known.
    pub sla_actual_ms: Option<i64>,
    #[serde(borrow)]
    pub source_topic: Cow<'a, str>,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Position of the record in its partition's hash chain, from 0 (set by the audit chainer).
    #[serde(default)]
    pub chain_seq: Option<i64>,
    /// Hash of the previous record of the partition ([`GENESIS`] for the first).
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub chain_prev: Option<Cow<'a, str>>,
    /// Hash of this record: see [`AuditRecord::digest`].
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub chain_hash: Option<Cow<'a, str>>,
}

/// An optional string, borrowed from the input when it has no escapes (serde borrows a plain
/// `Cow<str>` field with `#[serde(borrow)]`, but not one inside an `Option`).
pub(crate) fn borrowed_opt<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(self)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
    }
    deserializer.deserialize_option(Text)
}

/// The `chain_prev` of a partition's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl<'a> AuditRecord<'a> {
    /// A record of `actor` taking `action` on `event_id` at `timestamp`, with its `decision`,
    /// caused by the record at `source` (topic, partition, offset; `("", -1, -1)` when no record
    /// caused it). Every optional field is empty, the snapshot is `{}` and the chain fields are
    /// left to the chainer; writers set what else they know with struct update syntax.
    #[inline]
    pub fn new(
        event_id: impl Into<Cow<'a, str>>,
        timestamp: impl Into<Cow<'a, str>>,
        actor: impl Into<Cow<'a, str>>,
        action: AuditAction,
        decision: impl Into<Cow<'a, str>>,
        (source_topic, source_partition, source_offset): (impl Into<Cow<'a, str>>, i32, i64),
    ) -> Self {
        AuditRecord {
            event_id: event_id.into(),
            timestamp: timestamp.into(),
            actor: actor.into(),
            actor_role: None,
            action: Cow::Borrowed(action.as_str()),
            decision: decision.into(),
            rule: None,
            guardrail: false,
            policy_version: None,
            model_version: None,
            risk_score: None,
            confidence: None,
            explanation: Vec::new(),
            input_snapshot: Cow::Borrowed("{}"),
            rationale: None,
            sla_expected_ms: None,
            sla_actual_ms: None,
            source_topic: source_topic.into(),
            source_partition,
            source_offset,
            chain_seq: None,
            chain_prev: None,
            chain_hash: None,
        }
    }
}

impl AuditRecord<'_> {
    /// The record with every field owned (no longer borrowing what it was read from).
    pub fn into_owned(self) -> AuditRecord<'static> {
        fn own(text: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(text.into_owned())
        }
        AuditRecord {
            event_id: own(self.event_id),
            timestamp: own(self.timestamp),
            actor: own(self.actor),
            actor_role: self.actor_role.map(own),
            action: own(self.action),
            decision: own(self.decision),
            rule: self.rule.map(own),
            guardrail: self.guardrail,
            policy_version: self.policy_version.map(own),
            model_version: self.model_version.map(own),
            risk_score: self.risk_score,
            confidence: self.confidence,
            explanation: self
                .explanation
                .into_iter()
                .map(|c| Contribution { feature: own(c.feature), contribution: c.contribution })
                .collect(),
            input_snapshot: own(self.input_snapshot),
            rationale: self.rationale.map(own),
            sla_expected_ms: self.sla_expected_ms,
            sla_actual_ms: self.sla_actual_ms,
            source_topic: own(self.source_topic),
            source_partition: self.source_partition,
            source_offset: self.source_offset,
            chain_seq: self.chain_seq,
            chain_prev: self.chain_prev.map(own),
            chain_hash: self.chain_hash.map(own),
        }
    }

    /// Hex SHA-256 of the record's JSON encoding with `chain_hash` left out (null). Every other
    /// field is covered, `chain_seq` and `chain_prev` included, so a record cannot be edited,
    /// moved or re-linked without changing it. The JSON encoding is the canonical form whatever
    /// the topic's encoding: the field order is fixed and numbers print the same after a round
    /// trip.
    pub fn digest(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.chain_hash = None;
        // Serialising plain data to a Vec cannot fail.
        let bytes = serde_json::to_vec(&unsealed).unwrap_or_default();
        sha256_hex(&bytes)
    }

    /// Links the record after `prev` at position `seq` and sets its hash.
    pub fn seal(&mut self, seq: i64, prev: &str) {
        self.chain_seq = Some(seq);
        self.chain_prev = Some(Cow::Owned(prev.to_owned()));
        self.chain_hash = Some(Cow::Owned(self.digest()));
    }

    /// [`AuditRecord::seal`] and [`AuditRecord::write`] in one: the canonical JSON is encoded
    /// once, hashed, and (for JSON output) completed with the hash in place. Returns the hash.
    pub fn seal_and_write(
        &mut self,
        seq: i64,
        prev: &str,
        format: crate::RecordFormat,
        out: &mut Vec<u8>,
    ) -> Result<String, crate::CodecError> {
        self.chain_seq = Some(seq);
        self.chain_prev = Some(Cow::Owned(prev.to_owned()));
        self.chain_hash = None;
        let start = out.len();
        self.lay_json(out);
        let hash = sha256_hex(&out[start..]);
        // `chain_hash` is the last field: the canonical form ends with `"chain_hash":null}`.
        const UNSEALED_END: &[u8] = b"null}";
        match format {
            crate::RecordFormat::Json if out.ends_with(UNSEALED_END) => {
                out.truncate(out.len() - UNSEALED_END.len());
                out.push(b'"');
                out.extend_from_slice(hash.as_bytes());
                out.extend_from_slice(b"\"}");
                self.chain_hash = Some(Cow::Owned(hash.clone()));
            }
            _ => {
                out.truncate(start);
                self.chain_hash = Some(Cow::Owned(hash.clone()));
                self.write(format, out)?;
            }
        }
        Ok(hash)
    }
}

/// Hex SHA-256 of `bytes` (lower case).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = [0u8; 64];
    // 32 bytes always fit in 64 hex digits, which are ASCII.
    let _ = hex::encode_to_slice(Sha256::digest(bytes), &mut hex);
    String::from_utf8(hex.to_vec()).unwrap_or_default()
}
