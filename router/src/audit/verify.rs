//! Verifying the audit trail's hash chains: every record of a partition must carry the next
//! sequence number, link to the hash of the partition's previous record, and hash to its own
//! `chain_hash`. The first broken link of each partition is reported with what it looks like:
//!
//! - **edited**: the record's content no longer matches its hash;
//! - **deleted**: a sequence number is missing and never shows up;
//! - **reordered**: the expected record shows up later, and the out-of-place record belongs
//!   right after it;
//! - **inserted**: the record fits nowhere (the chain continues as if it were not there), or
//!   links to a record that is not the previous one;
//! - **truncated**: the trail ends before the head the chainer committed (records at the end
//!   deleted or rewritten);
//! - unreadable or unchained records.
//!
//! A hash chain shows tampering by someone who does not rewrite every later record and the
//! committed heads; it is not a signature.

use std::collections::BTreeMap;
use std::fmt;
use tollgate_schemas::audit::GENESIS;
use tollgate_schemas::{AuditRecord, RecordFormat};

/// What a broken link looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    Unreadable,
    Unchained,
    Edited,
    Deleted,
    Reordered,
    Inserted,
    Truncated,
}

impl BreakKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakKind::Unreadable => "unreadable",
            BreakKind::Unchained => "unchained",
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Reordered => "reordered",
            BreakKind::Inserted => "inserted",
            BreakKind::Truncated => "truncated",
        }
    }
}

/// The first broken link of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub partition: i32,
    /// Offset of the offending record (for `truncated`: of the partition's last record, or -1).
    pub offset: i64,
    pub kind: BreakKind,
    pub detail: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "partition {} offset {}: {} — {}", self.partition, self.offset, self.kind.as_str(), self.detail)
    }
}

/// A record that did not continue the chain, kept until what follows tells what happened.
#[derive(Debug, Clone)]
struct Suspect {
    offset: i64,
    seq: i64,
    prev: String,
}

#[derive(Debug, Default)]
struct PartitionState {
    next_seq: i64,
    prev: String,
    last_offset: i64,
    records: u64,
    suspect: Option<Suspect>,
    broken: Option<Break>,
}

/// Per-partition verification, fed record by record in partition order.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    partitions: BTreeMap<i32, PartitionState>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records read, per partition.
    pub records: BTreeMap<i32, u64>,
    /// The first broken link of each broken partition, by partition.
    pub breaks: Vec<Break>,
    /// Partitions whose end was checked against the head the chainer committed.
    pub heads_checked: usize,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }

    /// The first broken link, by partition then offset.
    pub fn first(&self) -> Option<&Break> {
        self.breaks.first()
    }
}

fn decode(bytes: &[u8]) -> Result<AuditRecord<'static>, String> {
    AuditRecord::read(RecordFormat::of(bytes), bytes).map_err(|e| e.to_string())
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next record of `partition`.
    pub fn push(&mut self, partition: i32, offset: i64, bytes: &[u8]) {
        let state = self.partitions.entry(partition).or_insert_with(|| PartitionState {
            prev: GENESIS.to_owned(),
            last_offset: -1,
            ..Default::default()
        });
        state.records += 1;
        state.last_offset = offset;
        if state.broken.is_some() {
            return;
        }
        let fail = |kind, detail: String| Some(Break { partition, offset, kind, detail });
        let record = match decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                state.broken = fail(BreakKind::Unreadable, format!("not an audit record: {e}"));
                return;
            }
        };
        let (Some(seq), Some(prev), Some(hash)) = (record.chain_seq, &record.chain_prev, &record.chain_hash) else {
            state.broken = fail(BreakKind::Unchained, "the record carries no chain fields".into());
            return;
        };
        if record.digest() != *hash {
            state.broken = fail(
                BreakKind::Edited,
                format!("the content of seq {seq} (event {}) does not match its hash", record.event_id),
            );
            return;
        }
        let fits = seq == state.next_seq && **prev == state.prev;
        match state.suspect.take() {
            None if fits => {
                state.next_seq += 1;
                state.prev = hash.to_string();
            }
            None if seq == state.next_seq => {
                state.broken = fail(
                    BreakKind::Inserted,
                    format!(
                        "seq {seq} links to a record that is not the previous one (the previous record was changed \
                         and re-hashed, or this one was inserted)"
                    ),
                );
            }
            None if seq < state.next_seq => {
                state.broken = fail(
                    BreakKind::Inserted,
                    format!("seq {seq} was already used by an earlier record: this one (or that one) was inserted"),
                );
            }
            None => {
                // Not the expected record: what follows tells whether it was inserted, moved, or
                // whether records before it are gone.
                state.suspect = Some(Suspect { offset, seq, prev: prev.to_string() });
            }
            Some(s) if fits => {
                // The expected record came after all: the suspect was out of place.
                let moved = s.seq == state.next_seq + 1 && s.prev == **hash;
                let (kind, detail) = if moved {
                    (BreakKind::Reordered, format!("seq {} comes before seq {seq}", s.seq))
                } else {
                    (
                        BreakKind::Inserted,
                        format!("seq {} does not belong between seq {} and seq {seq}", s.seq, seq - 1),
                    )
                };
                state.broken = Some(Break { partition, offset: s.offset, kind, detail });
            }
            Some(s) => state.suspect = Some(s),
        }
    }

    /// Ends the verification. `heads`: the next sequence number and hash the chainer committed
    /// per partition, when known, to detect a trail cut short.
    pub fn finish(mut self, heads: &BTreeMap<i32, (i64, String)>) -> Report {
        for (&partition, &(next_seq, ref hash)) in heads {
            let state = self.partitions.entry(partition).or_insert_with(|| PartitionState {
                prev: GENESIS.to_owned(),
                last_offset: -1,
                ..Default::default()
            });
            if state.broken.is_none() && state.suspect.is_none() && (state.next_seq < next_seq || state.prev != *hash) {
                state.broken = Some(Break {
                    partition,
                    offset: state.last_offset,
                    kind: BreakKind::Truncated,
                    detail: format!(
                        "the trail ends at seq {} but the chainer committed up to seq {}",
                        state.next_seq - 1,
                        next_seq - 1
                    ),
                });
            }
        }
        let mut report = Report { records: BTreeMap::new(), breaks: Vec::new(), heads_checked: heads.len() };
        for (partition, state) in self.partitions {
            report.records.insert(partition, state.records);
            if let Some(b) = state.broken {
                report.breaks.push(b);
            } else if let Some(s) = state.suspect {
                report.breaks.push(Break {
                    partition,
                    offset: s.offset,
                    kind: BreakKind::Deleted,
                    detail: format!("expected seq {}, found seq {}: records are missing", state.next_seq, s.seq),
                });
            }
        }
        report
    }
}

#[cfg(test)]
mod tests;
