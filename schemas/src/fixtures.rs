//! Test fixtures shared by the encoders' tests.

use crate::audit::AuditRecord;
use crate::routed::Contribution;

/// Texts that exercise every escape serde_json makes, none, non-ASCII, and lengths on both sides
/// of Avro's one-byte length.
pub(crate) fn texts() -> Vec<String> {
    ["", "plain", "quote \" and backslash \\", "line\nfeed\ttab\u{1}\u{1f}", "Zürich ✓"]
        .into_iter()
        .map(str::to_owned)
        .chain([("x".repeat(300))])
        .collect()
}

/// Audit records with every field set, and with every optional field empty, over [`texts`] and a
/// spread of numbers (zig-zag lengths, non-finite floats, empty and long explanations).
pub(crate) fn audit_records() -> Vec<AuditRecord<'static>> {
    let mut records = Vec::new();
    for (i, text) in texts().into_iter().enumerate() {
        let full = AuditRecord {
            event_id: text.clone().into(),
            timestamp: "2026-11-21T06:00:00.000Z".into(),
            actor: text.clone().into(),
            actor_role: Some(text.clone().into()),
            action: "route".into(),
            decision: text.clone().into(),
            rule: Some(text.clone().into()),
            guardrail: i % 2 == 0,
            policy_version: Some("p".into()),
            model_version: Some(text.clone().into()),
            risk_score: Some([0.1, 1.0, f64::NAN, -2.5e-9, 1e300, -0.0][i]),
            confidence: Some(0.25),
            explanation: (0..[0, 1, 2, 40, 3, 70][i])
                .map(|n| Contribution {
                    feature: if n == 0 { text.clone().into() } else { format!("f{n}").into() },
                    contribution: if n == 1 { f64::INFINITY } else { n as f64 * 0.5 },
                })
                .collect(),
            input_snapshot: format!("{{\"x\":{}}}", serde_json::to_string(&text).unwrap()).into(),
            rationale: Some(text.clone().into()),
            sla_expected_ms: Some([i64::MAX, i64::MIN, 0, 63, 64, -65][i]),
            sla_actual_ms: Some([-1, 1 << 40, 5, -64, 0, 7][i]),
            source_topic: text.clone().into(),
            source_partition: [i32::MIN, i32::MAX, 0, -1, 63, 64][i],
            source_offset: 42,
            chain_seq: Some(7),
            chain_prev: Some("00".into()),
            chain_hash: Some("ff".into()),
        };
        let empty = AuditRecord {
            actor_role: None,
            rule: None,
            policy_version: None,
            model_version: None,
            risk_score: None,
            confidence: None,
            explanation: vec![],
            rationale: None,
            sla_expected_ms: None,
            sla_actual_ms: None,
            chain_seq: None,
            chain_prev: None,
            chain_hash: None,
            ..full.clone()
        };
        records.extend([full, empty]);
    }
    records
}

/// `record`'s Avro datum, as the audit intake carries it.
pub(crate) fn avro_datum(record: &AuditRecord<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    record.write_intake(&mut out);
    out
}
