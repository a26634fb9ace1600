//! Reading the audit record's Avro datum by its fixed layout, the mirror of
//! [`AuditRecord::lay_avro`](crate::audit::AuditRecord).
//!
//! The audit chainer decodes every audit record the router writes. A serde-driven decoder
//! matches each of the record's 23 fields by name through a visitor; on the chainer's thread
//! that cost about as much as laying out the record's canonical JSON. The layout is fixed by the
//! schema, so it is read here field by field, borrowing every string. The tests check it
//! against `serde_avro_fast`, the schema-driven decoder, on valid and damaged datums alike.

use crate::audit::AuditRecord;
use crate::codec::CodecError;
use crate::routed::Contribution;
use std::borrow::Cow;

/// The unread rest of a datum.
pub(crate) struct Datum<'a> {
    rest: &'a [u8],
}

/// A datum that is not what the layout says, with what was wrong.
pub(crate) fn malformed(what: &str) -> CodecError {
    CodecError::AvroRead(serde::de::Error::custom(what))
}

impl<'a> Datum<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Datum { rest: bytes }
    }

    /// Bytes not read yet.
    pub(crate) fn left(&self) -> usize {
        self.rest.len()
    }

    /// A `long`: variable length (at most ten bytes), then zig-zag.
    #[inline]
    pub(crate) fn long(&mut self) -> Result<i64, CodecError> {
        // Most longs of a record are lengths and union branches: one byte.
        match self.rest.split_first() {
            Some((&byte, rest)) if byte < 0x80 => {
                self.rest = rest;
                Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1))
            }
            _ => self.long_bytes(),
        }
    }

    /// A `long` of more than one byte.
    fn long_bytes(&mut self) -> Result<i64, CodecError> {
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds the 64th bit only.
            if i == 9 && bits > 1 {
                break;
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(malformed(if self.rest.len() < 10 { "a long runs past the end" } else { "a long is too long" }))
    }

    fn int(&mut self) -> Result<i32, CodecError> {
        i32::try_from(self.long()?).map_err(|_| malformed("an int is out of range"))
    }

    fn take(&mut self, len: i64) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(len).map_err(|_| malformed("a negative length"))?;
        if len > self.rest.len() {
            return Err(malformed("a length runs past the end"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        let len = self.long()?;
        std::str::from_utf8(self.take(len)?).map_err(|_| malformed("a string is not UTF-8"))
    }

    fn string(&mut self) -> Result<Cow<'a, str>, CodecError> {
        self.str().map(Cow::Borrowed)
    }

    fn double(&mut self) -> Result<f64, CodecError> {
        let bytes = self.take(8)?;
        Ok(f64::from_le_bytes(bytes.try_into().map_err(|_| malformed("a short double"))?))
    }

    fn boolean(&mut self) -> Result<bool, CodecError> {
        match self.take(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(malformed("a boolean is neither 0 nor 1")),
        }
    }

    /// A `["null", T]` union.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, CodecError>) -> Result<Option<T>, CodecError> {
        match self.long()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(malformed("a union branch out of range")),
        }
    }

    /// An array's items, block by block: `item` is called once per item. A block with a
    /// negative count gives its size in bytes next (skipped, the items are read anyway).
    pub(crate) fn array(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        loop {
            let count = match self.long()? {
                0 => return Ok(()),
                n if n < 0 => {
                    self.long()?;
                    n.checked_neg().ok_or_else(|| malformed("a block count is out of range"))?
                }
                n => n,
            };
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

impl<'a> AuditRecord<'a> {
    /// Reads one audit record from `datum`, borrowing its text.
    pub(crate) fn read_laid(datum: &mut Datum<'a>) -> Result<Self, CodecError> {
        let d = datum;
        Ok(AuditRecord {
            event_id: d.string()?,
            timestamp: d.string()?,
            actor: d.string()?,
            actor_role: d.nullable(Datum::string)?,
            action: d.string()?,
            decision: d.string()?,
            rule: d.nullable(Datum::string)?,
            guardrail: d.boolean()?,
            policy_version: d.nullable(Datum::string)?,
            model_version: d.nullable(Datum::string)?,
            risk_score: d.nullable(Datum::double)?,
            confidence: d.nullable(Datum::double)?,
            explanation: {
                let mut items = Vec::new();
                d.array(|d| {
                    items.push(Contribution { feature: d.string()?, contribution: d.double()? });
                    Ok(())
                })?;
                items
            },
            input_snapshot: d.string()?,
            rationale: d.nullable(Datum::string)?,
            sla_expected_ms: d.nullable(Datum::long)?,
            sla_actual_ms: d.nullable(Datum::long)?,
            source_topic: d.string()?,
            source_partition: d.int()?,
            source_offset: d.long()?,
            chain_seq: d.nullable(Datum::long)?,
            chain_prev: d.nullable(Datum::string)?,
            chain_hash: d.nullable(Datum::string)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RecordFormat;
    use crate::fixtures::{self, avro_datum as laid};

    /// A record read back, re-encoded (records holding NaN do not compare equal).
    type Read = Option<Vec<u8>>;

    /// Reads `bytes` both ways: the laid reader (with the bytes it left) and the schema-driven
    /// decoder.
    fn both(bytes: &[u8]) -> (Option<(Vec<u8>, usize)>, Read) {
        let mut datum = Datum::new(bytes);
        let ours = AuditRecord::read_laid(&mut datum).ok().map(|r| (laid(&r), datum.left()));
        let reference = AuditRecord::read_borrowed(RecordFormat::Avro, bytes).ok().map(|r| laid(&r));
        (ours, reference)
    }

    #[test]
    fn records_read_back_as_the_schema_driven_decoder_reads_them() {
        for record in fixtures::audit_records() {
            let bytes = laid(&record);
            let (ours, reference) = both(&bytes);
            assert_eq!(ours, Some((bytes.clone(), 0)), "{record:?}");
            assert_eq!(reference, Some(bytes.clone()));
            // Written by the reference library: the same datum.
            let mut written = Vec::new();
            apache_avro::write_avro_datum_ref(crate::codec::audit_schema(), &record, &mut written).unwrap();
            assert_eq!(both(&written).0, Some((bytes, 0)));
        }
    }

    /// Every truncation, and every byte of the datum replaced by values that break lengths,
    /// union branches, booleans and UTF-8: the laid reader fails exactly where the
    /// schema-driven decoder fails, and reads the same record where it succeeds.
    #[test]
    fn damaged_datums_fail_as_the_schema_driven_decoder_fails() {
        let records = fixtures::audit_records();
        // A record with every field set, one with every optional field empty.
        for record in [&records[4], &records[5], &records[8], &records[9]] {
            let bytes = laid(record);
            for end in 0..bytes.len() {
                let (ours, reference) = both(&bytes[..end]);
                assert_eq!(ours.map(|o| o.0), reference, "truncated to {end} bytes");
            }
            for at in 0..bytes.len() {
                for value in [0x00, 0x01, 0x02, 0x03, 0x7f, 0x80, 0xc3, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[at] = value;
                    let (ours, reference) = both(&damaged);
                    assert_eq!(ours.map(|o| o.0), reference, "byte {at} set to {value:#x}");
                }
            }
        }
    }

    /// Avro lets a writer give a block's size in bytes after a negative item count.
    #[test]
    fn array_blocks_with_their_size_in_bytes_are_read() {
        let record = &fixtures::audit_records()[6];
        assert_eq!(record.explanation.len(), 40);
        let bytes = laid(record);
        // The explanation starts after the model version; find it by laying out the prefix.
        let prefix = laid(&AuditRecord { explanation: vec![], ..record.clone() });
        let at = prefix.iter().zip(&bytes).position(|(a, b)| a != b).unwrap();
        let mut items = Vec::new();
        for c in &record.explanation {
            let one = AuditRecord { explanation: vec![c.clone()], ..record.clone() };
            let one = laid(&one);
            // One item: the block count 1 (one byte), the item, then the end of the array.
            let item_len = one.len() - prefix.len() - 1;
            items.push(one[at + 1..at + 1 + item_len].to_vec());
        }
        let mut blocks = bytes[..at].to_vec();
        for pair in items.chunks(3) {
            let body: Vec<u8> = pair.concat();
            crate::avro::long(&mut blocks, -(pair.len() as i64));
            crate::avro::long(&mut blocks, body.len() as i64);
            blocks.extend_from_slice(&body);
        }
        blocks.push(0);
        blocks.extend_from_slice(&prefix[at + 1..]);
        let mut datum = Datum::new(&blocks);
        assert_eq!(laid(&AuditRecord::read_laid(&mut datum).unwrap()), bytes);
        assert_eq!(datum.left(), 0);
    }

    #[test]
    fn longs_read_back_at_every_length() {
        for n in [0, 1, -1, 63, -64, 64, i64::from(i32::MAX), i64::from(i32::MIN), i64::MAX, i64::MIN] {
            let mut bytes = Vec::new();
            crate::avro::long(&mut bytes, n);
            let mut datum = Datum::new(&bytes);
            assert_eq!(datum.long().unwrap(), n);
            assert_eq!(datum.left(), 0);
            assert!(Datum::new(&bytes[..bytes.len() - 1]).long().is_err());
        }
        // Eleven bytes, or a tenth byte past the 64th bit.
        assert!(Datum::new(&[0xff; 11]).long().is_err());
        assert!(Datum::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).long().is_err());
    }
}
