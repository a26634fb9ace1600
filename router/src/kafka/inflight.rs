//! In-flight tracking: which input offsets may be stored because everything produced for them
//! has been acknowledged.
//!
//! Input is taken in batches. Every produced record carries its batch (an `Arc<Batch>`) as the
//! delivery opaque; the delivery callback counts it down. Batches complete out of order, but
//! offsets are stored strictly in batch order, so a stored offset never passes an event whose
//! output is unacknowledged. A failed delivery poisons its batch: nothing from it onwards is
//! stored, and the loop stops.

use super::intake::{IntakeBatches, KeyHash};
use crate::pipeline::AuditForm;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::Instant;
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::unsealed::UnsealedBatch;
use tollgate_schemas::CodecError;

/// Shared between the loop and the producer's delivery callbacks.
#[derive(Debug)]
pub struct Batch {
    /// Records not yet acknowledged, plus one while the batch is still open.
    pending: AtomicUsize,
    /// Input events in the batch (set when sealed; read by the callback that completes it).
    events: AtomicUsize,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
    started: Instant,
}

impl Batch {
    fn new() -> Self {
        Batch {
            pending: AtomicUsize::new(1),
            events: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            started: Instant::now(),
        }
    }

    /// One more record is about to be produced for this batch.
    pub fn add_record(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// A record failed for good.
    pub fn fail(&self, error: String) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            *lock(&self.error) = Some(error);
        }
    }

    /// One record was acknowledged (or failed). Returns the batch's event count and age when this
    /// was the last outstanding record of a sealed batch.
    pub fn ack(&self) -> Option<(usize, std::time::Duration)> {
        (self.pending.fetch_sub(1, Ordering::AcqRel) == 1)
            .then(|| (self.events.load(Ordering::Acquire), self.started.elapsed()))
    }

    /// True when a record of this batch could not be delivered.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn is_done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// A batch and the input positions it covers (highest offset per topic and partition; the
/// topic is an index into [`InFlight`]'s topics).
#[derive(Debug)]
struct Entry {
    batch: Arc<Batch>,
    offsets: Vec<(usize, i32, i64)>,
    events: usize,
}

impl Entry {
    fn new() -> Entry {
        Entry { batch: Arc::new(Batch::new()), offsets: Vec::new(), events: 0 }
    }

    fn note(&mut self, topic: usize, partition: i32, offset: i64) {
        self.events += 1;
        match self.offsets.iter_mut().find(|(t, p, _)| *t == topic && *p == partition) {
            Some((_, _, o)) => *o = (*o).max(offset),
            None => self.offsets.push((topic, partition, offset)),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    open: Option<Entry>,
    sealed: VecDeque<Entry>,
    events: usize,
    /// The routing loop's audit records of the open batch, not sent yet. Kept here, with the
    /// batch they belong to, so that whoever seals the batch (the loop, or a rebalance or
    /// shutdown draining it) sends them first: a batch never completes without them.
    intake: Option<IntakeBatches>,
}

impl State {
    fn record(&mut self, topic: usize, partition: i32, offset: i64) {
        self.events += 1;
        if let Some(entry) = self.open.as_mut() {
            entry.note(topic, partition, offset);
        }
    }

    /// [`State::record`], opening a batch when none is open.
    fn record_opening(&mut self, topic: usize, partition: i32, offset: i64) {
        self.open.get_or_insert_with(Entry::new);
        self.record(topic, partition, offset);
    }
}

/// Adds an audit record to the open batch's intake batches (see [`InFlight::gather_audit`]).
fn gather<E>(
    s: &mut State,
    event_id: &[u8],
    (audit, form): (&[u8], AuditForm),
    mut send: impl FnMut(IntakeRecord<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let State { open, intake, .. } = s;
    let entry = open.get_or_insert_with(Entry::new);
    // Loops with audit records have intake batches; were they missing, the records would still
    // go out, all to partition 0.
    debug_assert!(intake.is_some(), "audit records gathered without intake batches");
    let intake = intake.get_or_insert_with(|| IntakeBatches::new(KeyHash::Murmur2, 1));
    let p = intake.partition_of(event_id);
    // Bytes gathered so far, and the record's share (an Avro batch has a count byte per
    // record; an unsealed one keeps each record's key).
    let (gathered, adding) = match form {
        AuditForm::Intake if intake.get(p).is_empty() => (0, 0),
        AuditForm::Intake => (intake.get(p).as_bytes().len(), audit.len() + 1),
        AuditForm::Unsealed => (intake.unsealed(p).len_bytes(), event_id.len() + audit.len()),
    };
    let full = gathered > 0 && gathered + adding > intake.max_bytes();
    let sent = if full { send_gathered(intake, p, form, &entry.batch, &mut send) } else { Ok(()) };
    match form {
        AuditForm::Intake => intake.get_mut(p).push_datum(audit),
        AuditForm::Unsealed => intake.unsealed_mut(p).push(event_id, audit),
    }
    sent
}

/// An intake batch to produce (or hand to this process's chainer), with the input batch it
/// belongs to.
pub struct IntakeRecord<'a> {
    pub partition: i32,
    pub records: usize,
    pub payload: Gathered<'a>,
    pub batch: &'a Arc<Batch>,
}

/// The audit records of an [`IntakeRecord`], in the form they were gathered.
#[derive(Clone, Copy)]
pub enum Gathered<'a> {
    /// An intake batch record's value ([`tollgate_schemas::intake`]).
    Intake(&'a [u8]),
    /// Unsealed records for this process's chainer, converted for the intake if it cannot
    /// take them.
    Unsealed(&'a UnsealedBatch),
}

impl<'a> Gathered<'a> {
    /// The records as an intake batch record's value: as gathered, or converted from the
    /// unsealed form into `converted`.
    pub fn intake_value<'b>(self, converted: &'b mut AuditBatch) -> Result<&'b [u8], CodecError>
    where
        'a: 'b,
    {
        match self {
            Gathered::Intake(bytes) => Ok(bytes),
            Gathered::Unsealed(batch) => {
                *converted = batch.to_intake()?;
                Ok(converted.as_bytes())
            }
        }
    }
}

/// A delivery that failed: the router must stop without storing offsets past it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a record was not delivered: {0}")]
pub struct DeliveryFailed(pub String);

/// The router's in-flight batches, oldest first.
#[derive(Debug)]
pub struct InFlight {
    state: Mutex<State>,
    /// The consumed topics, indexed by the `topic` of [`InFlight::record_event`].
    topics: Vec<String>,
    /// The loop thread, woken when a batch completes.
    waker: Thread,
    /// At-least-once: store offsets, and stop at a failed delivery. Transactional: a
    /// transaction commits the offsets and an abort retries the batch, so neither applies.
    store_offsets: bool,
    fatal: Mutex<Option<DeliveryFailed>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain counters behind; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl InFlight {
    /// Tracking for a loop running on `waker` that consumes `topics`.
    pub fn new(waker: Thread, topics: Vec<String>) -> Self {
        InFlight { state: Mutex::new(State::default()), topics, waker, store_offsets: true, fatal: Mutex::new(None) }
    }

    /// Tracking for a loop whose audit records go to the intake in batches.
    pub fn with_intake(mut self, intake: IntakeBatches) -> Self {
        self.state.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).intake = Some(intake);
        self
    }

    /// Tracking for a transactional loop: completed batches are only counted down.
    pub fn transactional(mut self) -> Self {
        self.store_offsets = false;
        self
    }

    /// The index of a consumed topic (0 when unknown: callers pass topics they consume).
    pub fn topic_index(&self, topic: &str) -> usize {
        self.topics.iter().position(|t| t == topic).unwrap_or(0)
    }

    /// Wakes the loop (a batch completed).
    pub fn wake(&self) {
        self.waker.unpark();
    }

    /// The open batch, created if needed, to attach to the records of the event being processed.
    pub fn open_batch(&self) -> Arc<Batch> {
        let mut s = lock(&self.state);
        let entry = s.open.get_or_insert_with(Entry::new);
        Arc::clone(&entry.batch)
    }

    /// Records that the record at `topic` (an index)/`partition`/`offset` belongs to the open
    /// batch.
    pub fn record_event(&self, topic: usize, partition: i32, offset: i64) {
        lock(&self.state).record(topic, partition, offset);
    }

    /// [`InFlight::record_event`] for an event with an audit record (an intake datum): the
    /// record joins the intake batch of its event id's partition ([`InFlight::gather_audit`]).
    /// `batch` is the one the event's other records went out with: still the open batch, or
    /// the event's offset could be stored before they are acknowledged.
    pub fn record_audited_event<E>(
        &self,
        (batch, topic): (&Arc<Batch>, usize),
        (partition, offset): (i32, i64),
        (event_id, audit): (&[u8], (&[u8], AuditForm)),
        send: impl FnMut(IntakeRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut s = lock(&self.state);
        debug_assert!(
            s.open.as_ref().is_some_and(|e| Arc::ptr_eq(&e.batch, batch)),
            "an event's records went out with a batch that was sealed before its offset joined it"
        );
        s.record_opening(topic, partition, offset);
        gather(&mut s, event_id, audit, send)
    }

    /// Adds an audit record (an intake datum, or unsealed) to the open batch (opened if
    /// needed), in the intake batch of its event id's partition: it is sent when the batch is
    /// sealed, or before, when that intake batch would pass its bound ([`IntakeBatches::max_bytes`]).
    pub fn gather_audit<E>(
        &self,
        event_id: &[u8],
        audit: (&[u8], AuditForm),
        send: impl FnMut(IntakeRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        gather(&mut lock(&self.state), event_id, audit, send)
    }

    /// Closes the open batch, sending its gathered audit records first ([`InFlight::seal`] for
    /// callers with audit records). The batch is sealed even when a send fails: `send` marks
    /// the batch failed, so its offsets are never stored.
    pub fn seal_with<E>(&self, mut send: impl FnMut(IntakeRecord<'_>) -> Result<(), E>) -> Result<(), E> {
        let mut result = Ok(());
        {
            let mut s = lock(&self.state);
            if let State { open: Some(entry), intake: Some(intake), .. } = &mut *s {
                for p in 0..intake.partitions() {
                    for form in [AuditForm::Intake, AuditForm::Unsealed] {
                        if intake.gathered(p, form).1 == 0 {
                            continue;
                        }
                        let sent = send_gathered(intake, p, form, &entry.batch, &mut send);
                        if result.is_ok() {
                            result = sent;
                        }
                    }
                }
            }
        }
        self.seal();
        result
    }

    /// Closes the open batch: no more records join it.
    pub fn seal(&self) {
        let mut s = lock(&self.state);
        if let Some(entry) = s.open.take() {
            entry.batch.events.store(entry.events, Ordering::Release);
            let done = entry.batch.ack().is_some();
            s.sealed.push_back(entry);
            if done {
                self.waker.unpark();
            }
        }
    }

    /// Forgets the open batch and its gathered audit records: its transaction was aborted and
    /// its input will be read again.
    pub fn abandon_open(&self) {
        let mut s = lock(&self.state);
        if let Some(entry) = s.open.take() {
            s.events -= entry.events;
        }
        if let Some(intake) = s.intake.as_mut() {
            intake.clear();
        }
    }

    /// Whether every sealed batch has all its records acknowledged (or failed).
    pub fn all_complete(&self) -> bool {
        lock(&self.state).sealed.iter().all(|e| e.batch.is_done())
    }

    /// Events consumed and not yet settled.
    pub fn events(&self) -> usize {
        lock(&self.state).events
    }

    /// Stores the offsets of completed batches, oldest first, stopping at the first incomplete one.
    /// Returns how many events were settled, or the failure of a failed batch.
    pub fn settle<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<usize, DeliveryFailed> {
        if let Some(f) = lock(&self.fatal).clone() {
            return Err(f);
        }
        let mut s = lock(&self.state);
        let mut settled = 0;
        while s.sealed.front().is_some_and(|e| e.batch.is_done()) {
            let Some(entry) = s.sealed.pop_front() else {
                break;
            };
            if self.store_offsets && entry.batch.failed.load(Ordering::Acquire) {
                let message = lock(&entry.batch.error).clone().unwrap_or_default();
                // Keep it at the front: nothing after it may be stored.
                s.sealed.push_front(entry);
                let failure = DeliveryFailed(message);
                *lock(&self.fatal) = Some(failure.clone());
                return Err(failure);
            }
            for &(topic, partition, offset) in entry.offsets.iter().filter(|_| self.store_offsets) {
                // Fails only for a partition no longer assigned; its new owner replays from the
                // last commit, so nothing is lost.
                if let Err(e) = consumer.store_offset(&self.topics[topic], partition, offset) {
                    tracing::debug!(partition, offset, error = %e, "Offset not stored (partition revoked).");
                }
            }
            s.events -= entry.events;
            settled += entry.events;
        }
        Ok(settled)
    }
}

/// Hands partition `p`'s gathered audit records to `send` as one record of `batch`, and empties
/// the partition's batch (a failed send has marked `batch` failed: nothing is lost silently).
fn send_gathered<E>(
    intake: &mut IntakeBatches,
    p: usize,
    form: AuditForm,
    batch: &Arc<Batch>,
    send: &mut impl FnMut(IntakeRecord<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let (payload, records) = intake.gathered(p, form);
    let result = send(IntakeRecord { partition: p as i32, records, payload, batch });
    intake.clear_gathered(p, form);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::intake::MAX_BATCH_BYTES;
    use std::cell::RefCell;

    #[test]
    fn a_batch_completes_after_seal_and_every_ack() {
        let inflight = InFlight::new(std::thread::current(), vec!["in".into()]);
        let b = inflight.open_batch();
        b.add_record();
        b.add_record();
        inflight.record_event(0, 0, 10);
        inflight.record_event(0, 0, 11);
        inflight.record_event(0, 3, 5);
        assert_eq!(inflight.events(), 3);
        assert!(b.ack().is_none());
        inflight.seal();
        assert!(!b.is_done());
        let (events, _) = b.ack().expect("last ack completes the batch");
        assert_eq!(events, 3);
        assert!(b.is_done());
    }

    /// Audit records wait with their batch, one intake record per partition, and the batch is
    /// not done until those records are acknowledged too.
    #[test]
    fn audit_records_are_gathered_per_partition_and_sent_with_their_batch() {
        let hash = KeyHash::Murmur2;
        let inflight =
            InFlight::new(std::thread::current(), vec!["in".into()]).with_intake(IntakeBatches::new(hash, 3));
        let sent: RefCell<Vec<(i32, usize, usize)>> = RefCell::default();
        let send = |r: IntakeRecord<'_>| {
            r.batch.add_record();
            let Gathered::Intake(payload) = r.payload else { panic!("gathered for the intake") };
            sent.borrow_mut().push((r.partition, r.records, payload.len()));
            Ok::<_, ()>(())
        };
        let b = inflight.open_batch();
        let ids: Vec<String> = (0..30).map(|i| format!("pay-{i}")).collect();
        for (offset, id) in ids.iter().enumerate() {
            inflight
                .record_audited_event(
                    (&b, 0),
                    (0, offset as i64),
                    (id.as_bytes(), (b"datum", AuditForm::Intake)),
                    &send,
                )
                .unwrap();
        }
        assert!(sent.borrow().is_empty(), "nothing leaves before the batch is sealed");
        inflight.seal_with(&send).unwrap();
        let sent = sent.into_inner();
        let mut expected = [0usize; 3];
        for id in &ids {
            expected[hash.partition(id.as_bytes(), 3) as usize] += 1;
        }
        for (partition, records, len) in &sent {
            assert_eq!(*records, expected[*partition as usize]);
            // One-item blocks: a count byte and the datum per record, and the end marker.
            assert_eq!(*len, records * (1 + 5) + 1);
        }
        assert_eq!(sent.iter().map(|s| s.1).sum::<usize>(), 30);
        assert_eq!(sent.len(), expected.iter().filter(|n| **n > 0).count());
        for _ in 0..sent.len() - 1 {
            assert!(b.ack().is_none());
        }
        assert!(!b.is_done());
        assert_eq!(b.ack().map(|(events, _)| events), Some(30), "done with its last intake record");
    }

    /// The review join's way: events are recorded as they are consumed, and the audit records
    /// their effects cause are gathered apart (none, one or several per event). They still
    /// leave with the batch, which waits for them.
    #[test]
    fn audit_records_gathered_apart_from_events_leave_with_their_batch() {
        let inflight = InFlight::new(std::thread::current(), vec!["decisions".into(), "changelog".into()])
            .with_intake(IntakeBatches::new(KeyHash::Crc32, 2));
        let sent: RefCell<Vec<usize>> = RefCell::default();
        let send = |r: IntakeRecord<'_>| {
            r.batch.add_record();
            sent.borrow_mut().push(r.records);
            Ok::<_, ()>(())
        };
        let b = inflight.open_batch();
        inflight.record_event(0, 0, 7);
        inflight.gather_audit(b"pay-1", (b"resolution", AuditForm::Intake), &send).unwrap();
        inflight.gather_audit(b"pay-1", (b"escalation", AuditForm::Intake), &send).unwrap();
        inflight.record_event(1, 0, 3);
        assert!(sent.borrow().is_empty());
        inflight.seal_with(&send).unwrap();
        assert_eq!(sent.borrow().iter().sum::<usize>(), 2, "{:?}", sent.borrow());
        assert_eq!(sent.borrow().len(), 1, "one event id, one intake partition");
        assert!(!b.is_done(), "the batch waits for its intake record");
        assert_eq!(b.ack().map(|(events, _)| events), Some(2));
        // Gathering with no batch open opens one, which the next seal closes.
        inflight.gather_audit(b"pay-2", (b"timeout", AuditForm::Intake), &send).unwrap();
        inflight.seal_with(&send).unwrap();
        assert_eq!(sent.borrow().len(), 2);
    }

    #[test]
    fn a_full_intake_batch_leaves_early_and_an_abandoned_one_never() {
        let inflight =
            InFlight::new(std::thread::current(), vec!["in".into()]).with_intake(IntakeBatches::new(KeyHash::Crc32, 1));
        let sent = RefCell::new(Vec::new());
        let send = |r: IntakeRecord<'_>| {
            sent.borrow_mut().push(r.records);
            Ok::<_, ()>(())
        };
        let big = vec![b'a'; MAX_BATCH_BYTES / 2 - 10];
        let b = inflight.open_batch();
        for offset in 0..3 {
            inflight.record_audited_event((&b, 0), (0, offset), (b"pay-1", (&big, AuditForm::Intake)), &send).unwrap();
        }
        assert_eq!(*sent.borrow(), [2], "the third record would pass the bound");
        inflight.abandon_open();
        assert_eq!(inflight.events(), 0);
        inflight.seal_with(&send).unwrap();
        assert_eq!(*sent.borrow(), [2], "the abandoned record is not sent");
    }

    /// Records gathered unsealed (for this process's chainer) leave apart from those in the
    /// intake's form, each with its key, and the same bound on a batch's size holds.
    #[test]
    fn unsealed_records_are_gathered_apart_and_bounded_alike() {
        let inflight =
            InFlight::new(std::thread::current(), vec!["in".into()]).with_intake(IntakeBatches::new(KeyHash::Crc32, 1));
        // Per batch sent: unsealed or not, its records, and its keys if unsealed.
        type Sent = (bool, usize, Vec<Vec<u8>>);
        let sent: RefCell<Vec<Sent>> = RefCell::default();
        let send = |r: IntakeRecord<'_>| {
            let entry = match r.payload {
                Gathered::Intake(_) => (false, r.records, Vec::new()),
                Gathered::Unsealed(batch) => (true, r.records, batch.iter().map(|(key, _)| key.to_vec()).collect()),
            };
            sent.borrow_mut().push(entry);
            Ok::<_, ()>(())
        };
        let b = inflight.open_batch();
        inflight.record_audited_event((&b, 0), (0, 0), (b"pay-1", (b"{..", AuditForm::Unsealed)), &send).unwrap();
        inflight.record_audited_event((&b, 0), (0, 1), (b"pay-2", (b"datum", AuditForm::Intake)), &send).unwrap();
        inflight.record_audited_event((&b, 0), (0, 2), (b"pay-3", (b"{..", AuditForm::Unsealed)), &send).unwrap();
        inflight.seal_with(&send).unwrap();
        assert_eq!(
            *sent.borrow(),
            [(false, 1, vec![]), (true, 2, vec![b"pay-1".to_vec(), b"pay-3".to_vec()])],
            "one batch per form, the unsealed one keyed by event id"
        );
        sent.borrow_mut().clear();
        let big = vec![b'{'; MAX_BATCH_BYTES / 2 - 10];
        let b = inflight.open_batch();
        for offset in 0..3 {
            inflight
                .record_audited_event((&b, 0), (0, offset), (b"pay-1", (&big, AuditForm::Unsealed)), &send)
                .unwrap();
        }
        assert_eq!(sent.borrow().len(), 1, "the third record would pass the bound");
        assert_eq!(sent.borrow()[0].1, 2);
        inflight.seal_with(&send).unwrap();
        assert_eq!(sent.borrow().iter().map(|s| s.1).sum::<usize>(), 3);
    }

    /// What goes to the intake: bytes gathered in its form as they are, unsealed records
    /// converted to it.
    #[test]
    fn gathered_records_give_their_intake_value() {
        let mut converted = AuditBatch::default();
        assert_eq!(Gathered::Intake(b"datum").intake_value(&mut converted).unwrap(), b"datum");
        let record = tollgate_schemas::AuditRecord::new(
            "pay-1",
            "2026-11-23T20:00:00.000Z",
            "policy",
            tollgate_schemas::AuditAction::Route,
            "auto_commit",
            ("payments", 0, 7),
        );
        let mut unsealed = Vec::new();
        record.write_unsealed(&mut unsealed);
        let mut batch = UnsealedBatch::default();
        batch.push(record.event_id.as_bytes(), &unsealed);
        let value = Gathered::Unsealed(&batch).intake_value(&mut converted).unwrap().to_vec();
        assert_eq!(value, batch.to_intake().unwrap().as_bytes());
        let mut broken = UnsealedBatch::default();
        broken.push(b"pay-1", b"{\"event_id\":");
        assert!(Gathered::Unsealed(&broken).intake_value(&mut converted).is_err());
    }

    /// An event's records go out with the batch open when its processing began; a batch sealed
    /// before its offset joins (a rebalance draining inside the poll, say) must not take the
    /// offset into a new batch that does not wait for them.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "sealed before its offset joined it")]
    fn an_event_recorded_after_its_batch_was_sealed_is_caught() {
        let inflight =
            InFlight::new(std::thread::current(), vec!["in".into()]).with_intake(IntakeBatches::new(KeyHash::Crc32, 1));
        let b = inflight.open_batch();
        b.add_record();
        inflight.seal();
        let _ = inflight
            .record_audited_event((&b, 0), (0, 1), (b"pay-1", (b"datum", AuditForm::Intake)), |_| Ok::<_, ()>(()));
    }

    #[test]
    fn an_empty_sealed_batch_is_done_at_once() {
        let inflight = InFlight::new(std::thread::current(), vec!["in".into()]);
        let b = inflight.open_batch();
        inflight.seal();
        assert!(b.is_done());
        assert_eq!(lock(&inflight.state).sealed.len(), 1);
    }

    /// Settling on a real client (librdkafka's mock cluster): offsets advance over completed
    /// batches in order, never past an incomplete or failed one.
    #[test]
    fn offsets_never_pass_an_unacknowledged_or_failed_batch() {
        use rdkafka::consumer::{CommitMode, Consumer};
        use rdkafka::mocking::MockCluster;
        use rdkafka::{ClientConfig, Offset, TopicPartitionList};
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("in", 1, 1).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "g")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("in", 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        // Offsets can be stored once the client knows the partition (in the router, always:
        // it stores offsets of records it consumed). Wait for that, however loaded the machine.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while consumer.store_offset("in", 0, 0).is_err() {
            assert!(std::time::Instant::now() < deadline, "the mock cluster never assigned the partition");
            let _ = consumer.poll(std::time::Duration::from_millis(50));
        }
        let committed = || {
            let c = consumer.committed(std::time::Duration::from_secs(5)).unwrap();
            c.find_partition("in", 0).unwrap().offset()
        };
        let inflight = InFlight::new(std::thread::current(), vec!["in".into()]);
        let mut batches = Vec::new();
        for offset in [10, 20, 30] {
            let b = inflight.open_batch();
            b.add_record();
            inflight.record_event(0, 0, offset);
            inflight.seal();
            batches.push(b);
        }
        // The second batch is acknowledged first: nothing may be stored yet.
        batches[1].ack();
        assert_eq!(inflight.settle(&consumer).unwrap(), 0);
        batches[0].ack();
        assert_eq!(inflight.settle(&consumer).unwrap(), 2);
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        assert_eq!(committed(), Offset::Offset(21), "the next offset to read after 20");
        // A failed batch stops everything after it, for good.
        let failed = inflight.open_batch();
        failed.add_record();
        inflight.record_event(0, 0, 40);
        inflight.seal();
        let after = inflight.open_batch();
        after.add_record();
        inflight.record_event(0, 0, 50);
        inflight.seal();
        after.ack();
        failed.fail("broker said no".into());
        failed.ack();
        batches[2].ack();
        let err = inflight.settle(&consumer).unwrap_err();
        assert!(err.0.contains("broker said no"));
        assert!(inflight.settle(&consumer).is_err(), "the failure is sticky");
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        assert_eq!(committed(), Offset::Offset(31), "stored up to the last batch before the failure");
        assert_eq!(inflight.events(), 2, "the failed batch and the one after it stay unsettled");
    }

    #[test]
    fn failure_is_remembered() {
        let b = Batch::new();
        b.fail("first".into());
        b.fail("second".into());
        assert_eq!(lock(&b.error).as_deref(), Some("first"));
    }
}
