//! Audit records unsealed: each laid out as its canonical JSON up to the chain fields, for an
//! audit chainer in the same process as their writer.
//!
//! The chain hashes a record's canonical JSON ([`AuditRecord::digest`]), whose last fields are
//! the chain's own (`chain_seq`, `chain_prev`, `chain_hash`). A writer that knows its records go
//! to a chainer in its own process, with JSON output, can lay out everything before them once:
//! the chainer then appends the chain fields and hashes, where with the intake's Avro form
//! ([`crate::intake`]) it would decode each record and lay out its JSON itself. The bytes
//! hashed and written are the same either way (tested below).
//!
//! This form never leaves the process: it is not a contract of any topic. Records that must go
//! through the intake after all (their chainer lost the partition, or stopped) are converted to
//! the intake's form ([`UnsealedBatch::to_intake`]).

use crate::audit::{sha256_hex, AuditRecord};
use crate::codec::{CodecError, RecordFormat};
use crate::intake::AuditBatch;

/// What an unsealed record ends with: the name of its first chain field.
const CHAIN_SEQ: &[u8] = b"\"chain_seq\":";

impl AuditRecord<'_> {
    /// Appends the record unsealed: its canonical JSON up to the chain fields, ending with
    /// `"chain_seq":`. Its own chain fields, if any, are left out.
    pub fn write_unsealed(&self, out: &mut Vec<u8>) {
        self.lay_unsealed(None, crate::json::Formatted, out);
    }

    /// Appends the record unsealed as [`AuditRecord::write_unsealed`] does, with its input
    /// snapshot given already written as a JSON string (`"{\"amount\":12.5}"`, what
    /// [`crate::json::write_str`] writes for the snapshot's text); `input_snapshot` is not read.
    /// A writer that builds the snapshot from parts can write this form of it directly
    /// ([`crate::json::write_nested_str`] for its strings), instead of escaping it whole here.
    pub fn write_unsealed_with_snapshot(&self, snapshot: &[u8], out: &mut Vec<u8>) {
        debug_assert!(snapshot.len() >= 2 && snapshot.starts_with(b"\"") && snapshot.ends_with(b"\""));
        self.lay_unsealed(Some(snapshot), crate::json::Formatted, out);
    }

    /// As [`AuditRecord::write_unsealed_with_snapshot`], with the floats taken from, or kept
    /// in, `floats` (the event's routed record wrote the same scores): the same bytes.
    pub fn write_unsealed_with_floats(&self, snapshot: &[u8], floats: &mut crate::json::FloatTexts, out: &mut Vec<u8>) {
        debug_assert!(snapshot.len() >= 2 && snapshot.starts_with(b"\"") && snapshot.ends_with(b"\""));
        self.lay_unsealed(Some(snapshot), floats, out);
    }
}

/// Completes `unsealed` (as [`AuditRecord::write_unsealed`] wrote it) into the chained record
/// at position `seq` after `prev`, in its JSON encoding, appended to `out`. Returns its hash.
/// The result is what [`AuditRecord::seal_and_write`] writes for the same record in JSON.
pub fn seal_unsealed(unsealed: &[u8], seq: i64, prev: &str, out: &mut Vec<u8>) -> String {
    debug_assert!(unsealed.ends_with(CHAIN_SEQ), "not an unsealed audit record");
    let start = out.len();
    out.extend_from_slice(unsealed);
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"chain_prev\":");
    crate::json::write_str(out, prev);
    // Hashed with `chain_hash` null, then the hash takes its place.
    const UNSEALED_END: &[u8] = b",\"chain_hash\":null}";
    out.extend_from_slice(UNSEALED_END);
    let hash = sha256_hex(&out[start..]);
    out.truncate(out.len() - b"null}".len());
    out.push(b'"');
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(b"\"}");
    hash
}

/// Decodes an unsealed record (its chain fields empty).
pub fn read_unsealed(unsealed: &[u8]) -> Result<AuditRecord<'static>, CodecError> {
    let mut json = Vec::with_capacity(unsealed.len() + 48);
    json.extend_from_slice(unsealed);
    json.extend_from_slice(b"null,\"chain_prev\":null,\"chain_hash\":null}");
    AuditRecord::read(RecordFormat::Json, &json)
}

/// Unsealed audit records gathered for one intake partition, each with its record key (the
/// event id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnsealedBatch {
    bytes: Vec<u8>,
    /// Per record: where its key ends and where the record ends, in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl UnsealedBatch {
    /// Appends a record keyed `key`, given as [`AuditRecord::write_unsealed`] wrote it.
    pub fn push(&mut self, key: &[u8], unsealed: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(unsealed);
        self.ends.push((key_end, self.bytes.len()));
    }

    /// The records gathered.
    pub fn records(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes the records and their keys take.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Each record's key and unsealed record, in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, end)| {
            let item = (&self.bytes[start..key_end], &self.bytes[key_end..end]);
            start = end;
            item
        })
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// The same records in the intake's form, for the intake topic.
    pub fn to_intake(&self) -> Result<AuditBatch, CodecError> {
        let mut batch = AuditBatch::default();
        let mut datum = Vec::new();
        for (_, unsealed) in self.iter() {
            datum.clear();
            read_unsealed(unsealed)?.write_intake(&mut datum);
            batch.push_datum(&datum);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::GENESIS;
    use crate::fixtures;

    #[test]
    fn a_sealed_unsealed_record_is_the_record_sealed_whole() {
        for (seq, record) in fixtures::audit_records().into_iter().enumerate() {
            let seq = seq as i64 + 3;
            let prev = if seq == 3 { GENESIS.to_owned() } else { "ab".repeat(32) };
            let mut whole = Vec::new();
            let expected_hash = record.clone().seal_and_write(seq, &prev, RecordFormat::Json, &mut whole).unwrap();
            let mut unsealed = Vec::new();
            record.write_unsealed(&mut unsealed);
            // With the snapshot given written: the same bytes, whatever `input_snapshot` holds.
            let mut snapshot = Vec::new();
            crate::json::write_str(&mut snapshot, &record.input_snapshot);
            let mut given = Vec::new();
            AuditRecord { input_snapshot: "ignored".into(), ..record.clone() }
                .write_unsealed_with_snapshot(&snapshot, &mut given);
            assert_eq!(given, unsealed);
            // Its floats through kept texts, written afresh and then copied: the same bytes.
            let mut floats = crate::json::FloatTexts::default();
            for _ in 0..2 {
                let mut kept = Vec::new();
                record.write_unsealed_with_floats(&snapshot, &mut floats, &mut kept);
                assert_eq!(kept, unsealed);
            }
            let mut sealed = b"kept".to_vec();
            let hash = seal_unsealed(&unsealed, seq, &prev, &mut sealed);
            assert_eq!(hash, expected_hash);
            assert_eq!(std::str::from_utf8(&sealed[4..]).unwrap(), std::str::from_utf8(&whole).unwrap());
            // And it verifies as any chained record does.
            let read = AuditRecord::read(RecordFormat::Json, &sealed[4..]).unwrap();
            assert_eq!(read.digest(), hash);
            assert_eq!((read.chain_seq, read.chain_prev.as_deref()), (Some(seq), Some(prev.as_str())));
        }
    }

    #[test]
    fn an_unsealed_batch_reads_back_in_order_and_converts_to_the_intake_form() {
        // Compared by their unsealed form: the fixtures hold chain fields (left out) and
        // non-finite contributions (null in JSON, NaN when read back), neither of which
        // survives as it was.
        fn unsealed(r: &AuditRecord<'_>) -> Vec<u8> {
            let mut out = Vec::new();
            r.write_unsealed(&mut out);
            out
        }
        let records = fixtures::audit_records();
        assert!(records.iter().any(|r| r.explanation.iter().any(|c| c.contribution.is_infinite())));
        let mut batch = UnsealedBatch::default();
        assert!(batch.is_empty());
        for r in &records {
            batch.push(r.event_id.as_bytes(), &unsealed(r));
        }
        assert_eq!(batch.records(), records.len());
        assert_eq!(batch.iter().count(), records.len());
        for ((key, laid), r) in batch.iter().zip(&records) {
            assert_eq!(key, r.event_id.as_bytes());
            assert_eq!(laid, unsealed(r));
            let read = read_unsealed(laid).unwrap();
            assert_eq!(unsealed(&read), laid);
            assert_eq!((read.chain_seq, read.chain_prev, read.chain_hash), (None, None, None));
        }
        let intake = batch.to_intake().unwrap();
        assert_eq!(intake.records(), records.len());
        let back = AuditRecord::read_batch(intake.as_bytes()).unwrap();
        assert_eq!(back.len(), records.len());
        for (b, r) in back.iter().zip(&records) {
            assert_eq!(unsealed(b), unsealed(r));
        }
        batch.clear();
        assert!(batch.is_empty() && batch.len_bytes() == 0 && batch.iter().next().is_none());
    }

    #[test]
    fn an_unsealed_record_that_is_not_one_is_refused_when_read() {
        assert!(read_unsealed(b"{\"event_id\":").is_err());
    }
}
