//! Exporting audit records: a time range, or one event's whole history, as JSON lines or CSV.

use std::io::Write;
use tollgate_schemas::{AuditRecord, RecordFormat};

/// Which records to export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records at or after this time (ms since the epoch).
    pub from: Option<i64>,
    /// Records before this time (ms since the epoch).
    pub to: Option<i64>,
    pub event_id: Option<String>,
}

impl Filter {
    /// True when `record` (written at `at`, ms since the epoch) is wanted.
    pub fn accepts(&self, record: &AuditRecord<'_>, at: i64) -> bool {
        self.from.is_none_or(|f| at >= f)
            && self.to.is_none_or(|t| at < t)
            && self.event_id.as_deref().is_none_or(|id| record.event_id == id)
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// One exported record with where it was read.
#[derive(Debug, Clone)]
pub struct Exported {
    pub partition: i32,
    pub offset: i64,
    /// The record's `timestamp` in ms since the epoch.
    pub at: i64,
    pub record: AuditRecord<'static>,
}

/// Decodes an audit record (JSON or Avro) and its time.
pub fn decode(bytes: &[u8]) -> Result<(AuditRecord<'static>, i64), String> {
    let record = AuditRecord::read(RecordFormat::of(bytes), bytes).map_err(|e| e.to_string())?;
    let at = humantime::parse_rfc3339_weak(&record.timestamp)
        .map_err(|e| format!("timestamp `{}`: {e}", record.timestamp))?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok((record, at))
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 25] = [
    "kafka_partition",
    "kafka_offset",
    "event_id",
    "timestamp",
    "actor",
    "actor_role",
    "action",
    "decision",
    "rule",
    "guardrail",
    "policy_version",
    "model_version",
    "risk_score",
    "confidence",
    "explanation",
    "input_snapshot",
    "rationale",
    "sla_expected_ms",
    "sla_actual_ms",
    "source_topic",
    "source_partition",
    "source_offset",
    "chain_seq",
    "chain_prev",
    "chain_hash",
];

/// Writes records in `format`. Records are written in the order given.
pub fn write(records: &[Exported], format: ExportFormat, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        ExportFormat::Jsonl => {
            for e in records {
                let mut value = serde_json::to_value(&e.record).map_err(std::io::Error::other)?;
                if let Some(map) = value.as_object_mut() {
                    map.insert("kafka_partition".into(), e.partition.into());
                    map.insert("kafka_offset".into(), e.offset.into());
                }
                serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
            }
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_COLUMNS)?;
            for e in records {
                let r = &e.record;
                let opt = |v: Option<&str>| v.unwrap_or_default().to_owned();
                let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
                let int = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
                let explanation = serde_json::to_string(&r.explanation).map_err(std::io::Error::other)?;
                w.write_record([
                    e.partition.to_string(),
                    e.offset.to_string(),
                    r.event_id.to_string(),
                    r.timestamp.to_string(),
                    r.actor.to_string(),
                    opt(r.actor_role.as_deref()),
                    r.action.to_string(),
                    r.decision.to_string(),
                    opt(r.rule.as_deref()),
                    r.guardrail.to_string(),
                    opt(r.policy_version.as_deref()),
                    opt(r.model_version.as_deref()),
                    num(r.risk_score),
                    num(r.confidence),
                    explanation,
                    r.input_snapshot.to_string(),
                    opt(r.rationale.as_deref()),
                    int(r.sla_expected_ms),
                    int(r.sla_actual_ms),
                    r.source_topic.to_string(),
                    r.source_partition.to_string(),
                    r.source_offset.to_string(),
                    int(r.chain_seq),
                    opt(r.chain_prev.as_deref()),
                    opt(r.chain_hash.as_deref()),
                ])?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// Puts records in order.
///
/// One event's history is in the chain's order, the order its records were recorded: they are
/// keyed by its id, so they share a partition, and within one partition the offsets are that
/// order (the records' own timestamps come from several writers' clocks). Should they span
/// partitions, as when the audit topic's partition count has changed since, each partition's
/// records stay in offset order and the partitions' runs are merged by timestamp, the only
/// order two partitions share. A time range is in the order of the records' timestamps, then
/// partition and offset.
pub fn sort(records: &mut Vec<Exported>, filter: &Filter) {
    if filter.event_id.is_none() {
        records.sort_by_key(|e| (e.at, e.partition, e.offset));
        return;
    }
    records.sort_by_key(|e| (e.partition, e.offset));
    if partitions(records) < 2 {
        return;
    }
    // One run per partition, each consumed from its front.
    let mut runs: Vec<std::collections::VecDeque<Exported>> = Vec::new();
    for record in records.drain(..) {
        match runs.last_mut() {
            Some(run) if run.front().is_some_and(|head| head.partition == record.partition) => run.push_back(record),
            _ => runs.push(std::collections::VecDeque::from([record])),
        }
    }
    // Runs are in partition order, so the first run with the earliest head wins a tie.
    while let Some(run) =
        runs.iter_mut().filter(|run| !run.is_empty()).min_by_key(|run| run.front().map(|head| head.at))
    {
        records.extend(run.pop_front());
    }
}

/// How many partitions `records` come from: more than one for one event's history means its
/// records moved partition, as a change of the audit topic's partition count moves keys.
pub fn partitions(records: &[Exported]) -> usize {
    records.iter().map(|e| e.partition).collect::<std::collections::BTreeSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(event: &str, at_text: &str, offset: i64) -> Exported {
        let json = format!(
            r#"{{"event_id":"{event}","timestamp":"{at_text}","actor":"ana","actor_role":"fraud_analyst","action":"case_read","decision":"shown","rule":null,"guardrail":false,"policy_version":null,"model_version":null,"risk_score":0.5,"confidence":null,"explanation":[{{"feature":"amount","contribution":1.5}}],"input_snapshot":"{{\"amount\":\"a, b\"}}","rationale":"said \"no\"","sla_expected_ms":null,"sla_actual_ms":null,"source_topic":"t","source_partition":1,"source_offset":2}}"#
        );
        let (record, at) = decode(json.as_bytes()).unwrap();
        Exported { partition: 0, offset, at, record }
    }

    #[test]
    fn filters_by_time_and_event() {
        let e = exported("e1", "2026-11-21T10:00:00.000Z", 1);
        let at = e.at;
        assert!(Filter::default().accepts(&e.record, at));
        assert!(Filter { from: Some(at), to: Some(at + 1), event_id: Some("e1".into()) }.accepts(&e.record, at));
        assert!(!Filter { to: Some(at), ..Default::default() }.accepts(&e.record, at), "`to` is exclusive");
        assert!(!Filter { event_id: Some("e2".into()), ..Default::default() }.accepts(&e.record, at));
    }

    /// One event's records in two partitions (the topic's partition count changed between
    /// them): offset order within each, the partitions merged by time; a lower partition
    /// number does not put its records first.
    #[test]
    fn an_events_history_across_partitions_keeps_each_partitions_order_and_merges_by_time() {
        let at = |p, offset, time: &str| Exported { partition: p, ..exported("e1", time, offset) };
        let mut records = vec![
            at(0, 3, "2026-11-21T10:00:05.000Z"),
            at(2, 11, "2026-11-21T10:00:00.000Z"),
            at(0, 1, "2026-11-21T10:00:02.000Z"),
            // Written after offset 11 on its partition, with a clock a little behind.
            at(2, 12, "2026-11-21T09:59:59.000Z"),
        ];
        let filter = Filter { event_id: Some("e1".into()), ..Default::default() };
        sort(&mut records, &filter);
        let order: Vec<_> = records.iter().map(|e| (e.partition, e.offset)).collect();
        assert_eq!(order, [(2, 11), (2, 12), (0, 1), (0, 3)]);
        assert_eq!((partitions(&records), partitions(&records[..2])), (2, 1));

        // On one partition, offsets alone, whatever the timestamps say.
        let mut one = vec![at(1, 8, "2026-11-21T10:00:00.000Z"), at(1, 7, "2026-11-21T10:00:09.000Z")];
        sort(&mut one, &filter);
        assert_eq!(one.iter().map(|e| e.offset).collect::<Vec<_>>(), [7, 8]);

        // A time range: by time first.
        let mut range = vec![at(0, 3, "2026-11-21T10:00:05.000Z"), at(2, 11, "2026-11-21T10:00:00.000Z")];
        sort(&mut range, &Filter::default());
        assert_eq!(range.iter().map(|e| e.partition).collect::<Vec<_>>(), [2, 0]);
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_jsonl_keeps_the_record() {
        let records = vec![exported("e1", "2026-11-21T10:00:00.000Z", 7)];
        let mut csv_out = Vec::new();
        write(&records, ExportFormat::Csv, &mut csv_out).unwrap();
        let mut reader = csv::Reader::from_reader(csv_out.as_slice());
        assert_eq!(reader.headers().unwrap().len(), CSV_COLUMNS.len());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[2], "e1");
        assert_eq!(&row[15], r#"{"amount":"a, b"}"#);
        assert_eq!(&row[16], r#"said "no""#);
        assert_eq!((&row[0], &row[1]), ("0", "7"));
        let mut jsonl = Vec::new();
        write(&records, ExportFormat::Jsonl, &mut jsonl).unwrap();
        let line: serde_json::Value = serde_json::from_slice(jsonl.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!((line["event_id"].as_str(), line["kafka_offset"].as_i64()), (Some("e1"), Some(7)));
    }
}
