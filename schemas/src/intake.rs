//! Audit intake batches: many audit records in one record of `tollgate.audit-intake`.
//!
//! The routing loop writes an audit record for every event. Sent one by one, they would double
//! the records the broker appends and the audit chainer consumes per event. So the loop gathers
//! the audit records of one poll batch by intake partition (the partition each one's event id
//! would be given as a key) and sends each group as one record: an Avro `array` of
//! `io.tollgate.v1.AuditRecord` ([`audit_batch_schema`]), marked by the
//! [`crate::headers::AUDIT_BATCH`] header, whose value is the number of records. Every other
//! intake record (the gateway's, the review join's) is a single audit record without that
//! header. The chainer writes each record of a batch to the audit topic on its own, keyed by its
//! event id, so the audit trail is the same either way.
//!
//! The array is written as blocks of one item each (`1, item, 1, item, …, 0`): a valid Avro
//! array encoding that lets a record be appended without knowing how many will follow.

use crate::audit::AuditRecord;
use crate::avro::read::{malformed, Datum};
use crate::codec::{CodecError, Contract, AUDIT_RECORD_AVSC};
use apache_avro::Schema;

static AUDIT_BATCH: Contract = Contract::composed(|| format!(r#"{{"type": "array", "items": {AUDIT_RECORD_AVSC}}}"#));

/// The parsed schema of an intake batch: an array of audit records.
pub fn audit_batch_schema() -> &'static Schema {
    AUDIT_BATCH.schema()
}

/// An intake batch being gathered, always encoded as a complete array.
#[derive(Debug, Clone)]
pub struct AuditBatch {
    bytes: Vec<u8>,
    records: usize,
}

impl Default for AuditBatch {
    fn default() -> Self {
        AuditBatch { bytes: vec![END], records: 0 }
    }
}

/// A block count of 1 (Avro longs are zigzag varints).
const ONE: u8 = 2;
/// The block count that ends an array.
const END: u8 = 0;

impl AuditBatch {
    /// Appends one audit record, given as the Avro datum [`AuditRecord::write_intake`] wrote.
    pub fn push_datum(&mut self, datum: &[u8]) {
        self.bytes.pop();
        self.bytes.reserve(datum.len() + 2);
        self.bytes.push(ONE);
        self.bytes.extend_from_slice(datum);
        self.bytes.push(END);
        self.records += 1;
    }

    /// The records gathered.
    pub fn records(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The encoded batch: an Avro datum of [`audit_batch_schema`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.bytes.push(END);
        self.records = 0;
    }
}

impl<'a> AuditRecord<'a> {
    /// Decodes an intake batch, borrowing the records' text from `bytes` where it can. Bytes
    /// left after the array are an error: the record was not a batch.
    pub fn read_batch(bytes: &'a [u8]) -> Result<Vec<AuditRecord<'a>>, CodecError> {
        let mut datum = Datum::new(bytes);
        let mut records = Vec::new();
        datum.array(|d| {
            records.push(AuditRecord::read_laid(d)?);
            Ok(())
        })?;
        match datum.left() {
            0 => Ok(records),
            left => Err(malformed(&format!("{left} bytes follow the datum"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, avro_datum as datum};

    #[test]
    fn a_batch_is_an_avro_array_of_audit_records_read_back_in_order() {
        let records = fixtures::audit_records();
        let mut batch = AuditBatch::default();
        assert!(batch.is_empty());
        for r in &records {
            batch.push_datum(&datum(r));
        }
        assert_eq!(batch.records(), records.len());
        // The reference library reads it as a datum of the published schema.
        let value = apache_avro::from_avro_datum(audit_batch_schema(), &mut batch.as_bytes(), None).unwrap();
        let apache_avro::types::Value::Array(items) = value else { panic!("not an array: {value:?}") };
        assert_eq!(items.len(), records.len());
        // Compared by their encodings: some fixtures hold NaN.
        let read = AuditRecord::read_batch(batch.as_bytes()).unwrap();
        assert_eq!(read.iter().map(datum).collect::<Vec<_>>(), records.iter().map(datum).collect::<Vec<_>>());

        batch.clear();
        assert!(batch.is_empty());
        assert!(AuditRecord::read_batch(batch.as_bytes()).unwrap().is_empty());
        batch.push_datum(&datum(&records[2]));
        assert_eq!(
            AuditRecord::read_batch(batch.as_bytes()).unwrap().iter().map(datum).collect::<Vec<_>>(),
            vec![datum(&records[2])]
        );
    }

    #[test]
    fn a_truncated_or_foreign_batch_is_an_error() {
        let mut batch = AuditBatch::default();
        batch.push_datum(&datum(&fixtures::audit_records()[1]));
        let bytes = batch.as_bytes();
        assert!(AuditRecord::read_batch(&bytes[..bytes.len() - 5]).is_err());
        // A single audit record is not a batch.
        assert!(AuditRecord::read_batch(&datum(&fixtures::audit_records()[1])).is_err());
        assert!(AuditRecord::read_batch(b"{\"event_id\": \"x\"}").is_err());
    }
}
