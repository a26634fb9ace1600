//! The laid-out Avro datums of the records written per event: the audit record (on its way to
//! the audit intake) and the pending-review changelog entry.
//!
//! A serde-driven Avro encoder matches each field's name against the schema and writes through
//! `io::Write`; for the 23-field audit record that cost more than the JSON encoding it replaced.
//! The datums' layouts are fixed by their schemas, so they are written here field by field. The
//! tests check them byte for byte against `apache_avro`'s encoding.

pub(crate) mod read;

use crate::audit::AuditRecord;
use crate::review::PendingChange;
use crate::routed::Contribution;

/// A `long` (or `int`): zig-zag, then variable length.
pub(crate) fn long(out: &mut Vec<u8>, n: i64) {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn double(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&x.to_le_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// A `["null", T]` union: the branch index, then the value.
fn nullable<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => long(out, 0),
        Some(v) => {
            long(out, 1);
            write(out, v);
        }
    }
}

/// An array of `Contribution` records: one block, then the empty block that ends it.
fn contributions(out: &mut Vec<u8>, items: &[Contribution<'_>]) {
    if !items.is_empty() {
        long(out, items.len() as i64);
        for c in items {
            string(out, &c.feature);
            double(out, c.contribution);
        }
    }
    long(out, 0);
}

impl AuditRecord<'_> {
    /// Appends the Avro datum (of the embedded `AuditRecord` schema).
    pub(crate) fn lay_avro(&self, out: &mut Vec<u8>) {
        self.lay_avro_with(None, out);
    }

    /// [`AuditRecord::lay_avro`] with `snapshot`, when given, as the input snapshot's text.
    pub(crate) fn lay_avro_with(&self, snapshot: Option<&[u8]>, out: &mut Vec<u8>) {
        string(out, &self.event_id);
        string(out, &self.timestamp);
        string(out, &self.actor);
        nullable(out, self.actor_role.as_deref(), string);
        string(out, &self.action);
        string(out, &self.decision);
        nullable(out, self.rule.as_deref(), string);
        boolean(out, self.guardrail);
        nullable(out, self.policy_version.as_deref(), string);
        nullable(out, self.model_version.as_deref(), string);
        nullable(out, self.risk_score, double);
        nullable(out, self.confidence, double);
        contributions(out, &self.explanation);
        // An Avro string is its bytes, length first.
        match snapshot {
            Some(text) => bytes(out, text),
            None => string(out, &self.input_snapshot),
        }
        nullable(out, self.rationale.as_deref(), string);
        nullable(out, self.sla_expected_ms, long);
        nullable(out, self.sla_actual_ms, long);
        string(out, &self.source_topic);
        long(out, i64::from(self.source_partition));
        long(out, self.source_offset);
        nullable(out, self.chain_seq, long);
        nullable(out, self.chain_prev.as_deref(), string);
        nullable(out, self.chain_hash.as_deref(), string);
    }
}

impl PendingChange<'_> {
    /// Appends the Avro datum (of the embedded `PendingChange` schema).
    pub(crate) fn lay_avro(&self, out: &mut Vec<u8>) {
        string(out, &self.event_id);
        // Enums are their symbol's index; the declarations follow the schemas' symbol order.
        long(out, self.state as i64);
        long(out, self.queue as i64);
        long(out, i64::from(self.revision));
        long(out, i64::from(self.tier));
        boolean(out, self.held);
        boolean(out, self.info_requested);
        boolean(out, self.post_verify);
        double(out, self.risk_score);
        double(out, self.confidence);
        long(out, self.routed_at);
        long(out, self.deadline);
        string(out, &self.policy_version);
        string(out, &self.model_version);
        string(out, &self.rule);
        if !self.applied.is_empty() {
            long(out, self.applied.len() as i64);
            for a in &self.applied {
                string(out, a);
            }
        }
        long(out, 0);
        nullable(out, self.resolved_at, long);
        long(out, self.event_format as i64);
        bytes(out, &self.event.0);
    }
}

#[cfg(test)]
mod tests {
    use crate::review::{ChangeState, PendingChange};
    use crate::routed::{AvroBytes, EventFormat};
    use crate::Route;
    use std::borrow::Cow;

    #[test]
    fn changelog_entries_lay_out_as_the_reference_library_encodes_them() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            let change = PendingChange {
                event_id: "x".repeat(i * 40).into(),
                state: [ChangeState::Pending, ChangeState::Resolved][i % 2],
                queue: route,
                revision: [0, 1, i32::MAX, -3][i],
                tier: i as i32 + 1,
                held: i == 1,
                info_requested: i == 2,
                post_verify: i == 3,
                risk_score: 0.93,
                confidence: f64::MIN_POSITIVE,
                routed_at: 1_790_000_000_000,
                deadline: -1,
                policy_version: "p".into(),
                model_version: "Zürich ✓".into(),
                rule: "r".into(),
                applied: (0..i * 30).map(|n| Cow::Owned(format!("id:{n}"))).collect(),
                resolved_at: [None, Some(9)][i % 2],
                event_format: [EventFormat::Json, EventFormat::Avro][i % 2],
                event: AvroBytes(Cow::Owned(vec![7; i * 50])),
            };
            let mut laid = Vec::new();
            change.lay_avro(&mut laid);
            let mut reference = Vec::new();
            apache_avro::write_avro_datum_ref(crate::codec::pending_change_schema(), &change, &mut reference).unwrap();
            assert_eq!(laid, reference, "{change:?}");
        }
    }

    #[test]
    fn audit_records_lay_out_as_the_reference_library_encodes_them() {
        for record in crate::fixtures::audit_records() {
            let mut laid = Vec::new();
            record.lay_avro(&mut laid);
            let mut reference = Vec::new();
            apache_avro::write_avro_datum_ref(crate::codec::audit_schema(), &record, &mut reference).unwrap();
            assert_eq!(laid, reference, "{record:?}");
            // The snapshot given as bytes, in place of an empty one: the same datum.
            let snapshot = record.input_snapshot.clone();
            let emptied = crate::AuditRecord { input_snapshot: "".into(), ..record.clone() };
            let mut given = Vec::new();
            emptied.write_intake_with_snapshot(snapshot.as_bytes(), &mut given);
            assert_eq!(given, reference, "{record:?}");
        }
    }
}
