//! The in-process hand-off of the routing loops' and the review join's audit records to their
//! own process's chainer.
//!
//! An `at_least_once` routing loop, and the review join, gather their audit records in intake
//! batches, one per intake partition (see [`super::intake`]). A batch whose intake partition the
//! chainer of the same process owns does not need the round trip through the intake topic
//! (produced, compressed, stored, fetched and decoded again): the loop hands it to that
//! chainer, which chains it in its next transaction as it would have chained the batch read
//! from the intake. The audit
//! contract is the same: one writer per audit partition (the owner of the intake partition),
//! each record in the partition its event id keys.
//!
//! The chainer decides, in each transaction, whether it still owns a handed batch's partition.
//! If not (a rebalance moved it), it writes the batch to the intake in that transaction, for
//! the new owner to chain. So ownership as the loops see it ([`HandOff::owns`]) is only a hint.
//!
//! A handed batch counts, for its input batch's offsets, as delivered once the chainer's
//! transaction holding its records commits ([`Handed::settle`]); an aborted transaction keeps
//! it for the next one. When the chainer stops, it fails what it still holds, and the loops go
//! back to the intake.
//!
//! A chainer that stalls (loading a chain head after a rebalance, a transaction that does not
//! end) must not stop routing by filling the loops' in-flight windows with records only it can
//! settle. So once it holds more than a bound of handed records not yet chained (half the
//! in-flight bound, `processing.max_in_flight`) and has settled none for
//! `processing.hand_off_stall`, the loops write their batches to the intake, as without the
//! hand-off: the audit trail lags, routing goes on. Past the bound alone, as at full rate while
//! a large transaction commits, the loops wait for the chainer instead: waiting costs nothing,
//! the intake's round trip costs CPU.
//!
//! At start-up an `at_least_once` routing loop, and the review join, subscribe, then wait up to
//! `processing.chainer_join_wait` for the chainer's first assignment before they consume
//! ([`HandOff::wait_for_chainer`]): they join different groups from the chainer's, and one that
//! consumed first would send its first audit records through the intake, for the chainer to
//! read back once it joins.
//!
//! `exactly_once` routing loops keep the intake: their transaction and the chainer's are two
//! producers', and a record chained before the loop's transaction aborted would audit a
//! decision whose output never appeared. (The review join is at least once under either
//! guarantee, and hands its batches either way.)

use super::context::acknowledged;
use super::inflight::{Batch, Gathered, InFlight};
use crate::telemetry::Telemetry;
use fnv::FnvHashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_schemas::unsealed::UnsealedBatch;

/// An intake batch handed to the chainer, with the input batch it belongs to.
pub struct Handed {
    pub partition: i32,
    /// Audit records in `payload`.
    pub records: usize,
    pub payload: HandedRecords,
    batch: Arc<Batch>,
    inflight: Arc<InFlight>,
    /// The hand-off's count of records not yet settled.
    pending: Arc<Pending>,
}

/// The audit records of a handed batch, in the form the loop gathered them.
#[derive(Debug, Clone, PartialEq)]
pub enum HandedRecords {
    /// An intake batch record's value ([`tollgate_schemas::intake`]).
    Intake(Vec<u8>),
    /// Unsealed records ([`tollgate_schemas::unsealed`]).
    Unsealed(UnsealedBatch),
}

impl HandedRecords {
    /// The records as the loop gathered them.
    pub fn as_gathered(&self) -> Gathered<'_> {
        match self {
            HandedRecords::Intake(bytes) => Gathered::Intake(bytes),
            HandedRecords::Unsealed(batch) => Gathered::Unsealed(batch),
        }
    }
}

impl From<Gathered<'_>> for HandedRecords {
    fn from(gathered: Gathered<'_>) -> Self {
        match gathered {
            Gathered::Intake(bytes) => HandedRecords::Intake(bytes.to_vec()),
            Gathered::Unsealed(batch) => HandedRecords::Unsealed(batch.clone()),
        }
    }
}

/// Handed records not yet settled (waiting, or in the chainer's open transaction), and when
/// the chainer last made progress with them.
struct Pending {
    records: AtomicUsize,
    /// Milliseconds from `since` to the last settle, or to the first record handed after none
    /// were pending.
    progress_ms: AtomicU64,
    since: Instant,
}

impl Pending {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn progressed(&self) {
        self.progress_ms.store(self.now_ms(), Ordering::Release);
    }
}

impl Handed {
    /// The chainer's transaction holding these records committed (`None`), or they will never
    /// be chained (`Some(why)`: the input batch fails, and its offsets are never stored).
    pub fn settle(self, telemetry: &Telemetry, failure: Option<String>) {
        if let Some(why) = failure {
            self.batch.fail(why);
        }
        self.pending.records.fetch_sub(self.records, Ordering::AcqRel);
        self.pending.progressed();
        acknowledged(telemetry, &self.inflight, &self.batch);
    }
}

/// Why a batch was not handed: it goes to the intake instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHanded {
    /// The chainer has stopped.
    Closed,
    /// The chainer holds its bound of handed records not yet chained, and has settled none
    /// for the stall time.
    Behind,
}

/// What the routing loops and the chainer of one process share.
pub struct HandOff {
    /// The intake partitions the chainer held at its last rebalance.
    owned: RwLock<FnvHashSet<i32>>,
    queue: Mutex<Vec<Handed>>,
    /// The chainer stopped: nothing more is taken.
    closed: AtomicBool,
    /// The chainer has had an assignment (of any partitions, or none), and the loops waiting
    /// for it.
    assigned: Mutex<bool>,
    assigned_changed: Condvar,
    pending: Arc<Pending>,
    /// Past this many pending records, and `stall` without progress, the chainer is behind.
    limit: usize,
    stall: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind these locks; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HandOff {
    /// A hand-off that refuses batches while more than `limit` handed records are unsettled
    /// and none was settled for `stall`.
    pub fn new(limit: usize, stall: Duration) -> HandOff {
        let pending = Pending { records: AtomicUsize::new(0), progress_ms: AtomicU64::new(0), since: Instant::now() };
        HandOff {
            owned: RwLock::default(),
            queue: Mutex::default(),
            closed: AtomicBool::new(false),
            assigned: Mutex::new(false),
            assigned_changed: Condvar::new(),
            pending: Arc::new(pending),
            limit,
            stall,
        }
    }

    /// Whether the chainer held intake partition `partition` at its last rebalance.
    pub fn owns(&self, partition: i32) -> bool {
        !self.closed.load(Ordering::Acquire)
            && self.owned.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&partition)
    }

    /// The chainer's assignment changed to `partitions` (none while a rebalance is under way).
    pub fn set_owned(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut owned = self.owned.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        owned.clear();
        owned.extend(partitions);
    }

    /// The chainer's group assigned it its partitions (any, or none: more instances than
    /// intake partitions leave some without).
    pub fn chainer_assigned(&self) {
        *lock(&self.assigned) = true;
        self.assigned_changed.notify_all();
    }

    /// Waits until the chainer has had its first assignment, for at most `wait`; returns early
    /// once the chainer has stopped or `stop` is cancelled. Whether it had it.
    pub fn wait_for_chainer(&self, wait: Duration, stop: &CancellationToken) -> bool {
        let deadline = Instant::now() + wait;
        let mut assigned = lock(&self.assigned);
        while !*assigned && !self.closed.load(Ordering::Acquire) && !stop.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // An assignment wakes it; the slice bounds how late it sees a stop.
            let slice = left.min(Duration::from_millis(100));
            assigned = self
                .assigned_changed
                .wait_timeout(assigned, slice)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        *assigned
    }

    /// Hands an intake batch of `records` audit records of `inflight`'s input batch `batch` to
    /// the chainer. Counts as one record of `batch` until settled. Refused (nothing handed) once
    /// the chainer has stopped, and while it is behind: the batch would take the unsettled
    /// records past the limit, and the chainer has settled none for the stall time (a batch is
    /// always taken when none are unsettled).
    pub fn hand(
        &self,
        partition: i32,
        records: usize,
        payload: Gathered<'_>,
        batch: &Arc<Batch>,
        inflight: &Arc<InFlight>,
    ) -> Result<(), NotHanded> {
        let mut queue = lock(&self.queue);
        // Checked under the queue's lock: `close` empties the queue under it, so nothing is
        // left behind in a closed hand-off.
        if self.closed.load(Ordering::Acquire) {
            return Err(NotHanded::Closed);
        }
        // Only `hand` adds, under the queue's lock: the count cannot grow between the check
        // and the add.
        let pending = &self.pending;
        let unsettled = pending.records.load(Ordering::Acquire);
        if unsettled == 0 {
            // The chainer's wait for these starts now.
            pending.progressed();
        } else if unsettled + records > self.limit {
            let idle = pending.now_ms().saturating_sub(pending.progress_ms.load(Ordering::Acquire));
            if Duration::from_millis(idle) >= self.stall {
                return Err(NotHanded::Behind);
            }
        }
        pending.records.fetch_add(records, Ordering::AcqRel);
        batch.add_record();
        queue.push(Handed {
            partition,
            records,
            payload: payload.into(),
            batch: Arc::clone(batch),
            inflight: Arc::clone(inflight),
            pending: Arc::clone(&self.pending),
        });
        Ok(())
    }

    /// Whether batches wait to be taken.
    pub fn is_pending(&self) -> bool {
        !lock(&self.queue).is_empty()
    }

    /// Appends every waiting batch to `into`, oldest first.
    pub fn take_into(&self, into: &mut Vec<Handed>) {
        into.append(&mut lock(&self.queue));
    }

    /// The chainer stopped: takes no more batches and fails those it holds, and `held` (batches
    /// it took and did not commit).
    pub fn close(&self, telemetry: &Telemetry, held: Vec<Handed>) {
        let waiting = {
            let mut queue = lock(&self.queue);
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        // Loops still waiting for the chainer's assignment wait no more.
        drop(lock(&self.assigned));
        self.assigned_changed.notify_all();
        for h in held.into_iter().chain(waiting) {
            h.settle(telemetry, Some("the audit chainer stopped before chaining the batch".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking() -> Arc<InFlight> {
        Arc::new(InFlight::new(std::thread::current(), vec!["in".into()]))
    }

    #[test]
    fn batches_are_taken_in_order_and_owned_partitions_follow_the_chainer() {
        let hand_off = HandOff::new(100, Duration::ZERO);
        assert!(!hand_off.owns(0));
        hand_off.set_owned([0, 2]);
        assert!(hand_off.owns(0) && hand_off.owns(2) && !hand_off.owns(1));
        let inflight = tracking();
        let batch = inflight.open_batch();
        assert!(hand_off.hand(0, 2, Gathered::Intake(b"ab"), &batch, &inflight).is_ok());
        assert!(hand_off.hand(2, 1, Gathered::Intake(b"c"), &batch, &inflight).is_ok());
        assert!(hand_off.is_pending());
        let mut taken = Vec::new();
        hand_off.take_into(&mut taken);
        assert!(!hand_off.is_pending());
        assert_eq!(
            taken.iter().map(|h| (h.partition, h.records, h.payload.clone())).collect::<Vec<_>>(),
            [(0, 2, HandedRecords::Intake(b"ab".to_vec())), (2, 1, HandedRecords::Intake(b"c".to_vec()))]
        );
        hand_off.set_owned([]);
        assert!(!hand_off.owns(0));
    }

    #[test]
    fn a_loop_waits_for_the_chainers_assignment_up_to_its_limit() {
        let (hand_off, stop) = (Arc::new(HandOff::new(100, Duration::ZERO)), CancellationToken::new());
        assert!(!hand_off.wait_for_chainer(Duration::from_millis(50), &stop), "no assignment within the wait");
        let assigner = {
            let hand_off = Arc::clone(&hand_off);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                hand_off.chainer_assigned();
            })
        };
        let started = Instant::now();
        assert!(hand_off.wait_for_chainer(Duration::from_secs(60), &stop));
        assert!(started.elapsed() < Duration::from_secs(30), "woken by the assignment, not the limit");
        assigner.join().unwrap();
        assert!(hand_off.wait_for_chainer(Duration::ZERO, &stop), "assigned once is enough");
    }

    #[test]
    fn a_stop_or_a_stopped_chainer_ends_the_wait() {
        let telemetry = Telemetry::new();
        let (hand_off, stop) = (HandOff::new(100, Duration::ZERO), CancellationToken::new());
        stop.cancel();
        let started = Instant::now();
        assert!(!hand_off.wait_for_chainer(Duration::from_secs(60), &stop));
        let (hand_off, stop) = (Arc::new(HandOff::new(100, Duration::ZERO)), CancellationToken::new());
        let closer = {
            let hand_off = Arc::clone(&hand_off);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                hand_off.close(&telemetry, Vec::new());
            })
        };
        assert!(!hand_off.wait_for_chainer(Duration::from_secs(60), &stop));
        assert!(started.elapsed() < Duration::from_secs(30), "neither waited for the limit");
        closer.join().unwrap();
    }

    #[test]
    fn an_input_batch_completes_only_when_its_handed_records_are_settled() {
        let (hand_off, telemetry, inflight) = (HandOff::new(100, Duration::ZERO), Telemetry::new(), tracking());
        let batch = inflight.open_batch();
        inflight.record_event(0, 0, 7);
        assert!(hand_off.hand(0, 1, Gathered::Intake(b"a"), &batch, &inflight).is_ok());
        inflight.seal();
        assert_eq!(inflight.events(), 1);
        let mut taken = Vec::new();
        hand_off.take_into(&mut taken);
        let consumer: rdkafka::consumer::BaseConsumer =
            rdkafka::ClientConfig::new().set("group.id", "t").create().expect("a consumer without brokers");
        assert_eq!(inflight.settle(&consumer).ok(), Some(0), "not settled before the chainer commits");
        taken.pop().unwrap().settle(&telemetry, None);
        assert_eq!(inflight.settle(&consumer).ok(), Some(1));
    }

    #[test]
    fn a_closed_hand_off_fails_what_it_holds_and_takes_nothing_more() {
        let (hand_off, telemetry, inflight) = (HandOff::new(100, Duration::ZERO), Telemetry::new(), tracking());
        hand_off.set_owned([0]);
        let batch = inflight.open_batch();
        inflight.record_event(0, 0, 1);
        assert!(hand_off.hand(0, 1, Gathered::Intake(b"a"), &batch, &inflight).is_ok());
        assert!(hand_off.hand(0, 1, Gathered::Intake(b"b"), &batch, &inflight).is_ok());
        let mut taken = Vec::new();
        hand_off.take_into(&mut taken);
        let held = vec![taken.remove(0)];
        // One batch the chainer took, one still waiting.
        assert!(hand_off.hand(0, 1, Gathered::Intake(b"c"), &batch, &inflight).is_ok());
        hand_off.close(&telemetry, held);
        assert!(!hand_off.owns(0));
        assert_eq!(
            hand_off.hand(0, 1, Gathered::Intake(b"d"), &batch, &inflight),
            Err(NotHanded::Closed),
            "a closed hand-off takes nothing"
        );
        taken.pop().unwrap().settle(&telemetry, None);
        inflight.seal();
        let consumer: rdkafka::consumer::BaseConsumer =
            rdkafka::ClientConfig::new().set("group.id", "t").create().expect("a consumer without brokers");
        assert!(inflight.settle(&consumer).is_err(), "the batch failed: its offsets are never stored");
    }

    #[test]
    fn a_chainer_past_its_limit_and_stalled_takes_no_more_until_it_settles() {
        let (hand_off, telemetry, inflight) = (HandOff::new(3, Duration::ZERO), Telemetry::new(), tracking());
        hand_off.set_owned([0]);
        let batch = inflight.open_batch();
        // A batch larger than the limit is taken when nothing is unsettled.
        assert!(hand_off.hand(0, 4, Gathered::Intake(b"abcd"), &batch, &inflight).is_ok());
        assert_eq!(hand_off.hand(0, 1, Gathered::Intake(b"e"), &batch, &inflight), Err(NotHanded::Behind));
        let mut taken = Vec::new();
        hand_off.take_into(&mut taken);
        assert_eq!(
            hand_off.hand(0, 1, Gathered::Intake(b"e"), &batch, &inflight),
            Err(NotHanded::Behind),
            "taken is not settled"
        );
        taken.pop().unwrap().settle(&telemetry, None);
        assert!(hand_off.hand(0, 2, Gathered::Intake(b"ef"), &batch, &inflight).is_ok());
        assert!(hand_off.hand(0, 1, Gathered::Intake(b"g"), &batch, &inflight).is_ok());
        assert_eq!(
            hand_off.hand(0, 1, Gathered::Intake(b"h"), &batch, &inflight),
            Err(NotHanded::Behind),
            "3 of 3 unsettled"
        );
        // Failed batches are settled too: a stopped chainer's count goes back to zero.
        hand_off.close(&telemetry, Vec::new());
        assert_eq!(hand_off.pending.records.load(Ordering::Acquire), 0);
    }

    #[test]
    fn past_its_limit_a_chainer_is_behind_only_once_it_has_settled_nothing_for_the_stall_time() {
        let (hand_off, telemetry, inflight) =
            (HandOff::new(1, Duration::from_millis(200)), Telemetry::new(), tracking());
        hand_off.set_owned([0]);
        let batch = inflight.open_batch();
        assert!(hand_off.hand(0, 1, Gathered::Intake(b"a"), &batch, &inflight).is_ok());
        assert!(
            hand_off.hand(0, 1, Gathered::Intake(b"b"), &batch, &inflight).is_ok(),
            "past the limit, not stalled yet"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(hand_off.hand(0, 1, Gathered::Intake(b"c"), &batch, &inflight), Err(NotHanded::Behind));
        let mut taken = Vec::new();
        hand_off.take_into(&mut taken);
        taken.remove(0).settle(&telemetry, None);
        assert!(hand_off.hand(0, 1, Gathered::Intake(b"c"), &batch, &inflight).is_ok(), "a settle is progress");
    }
}
