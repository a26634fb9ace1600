//! Where the gateway writes: decisions, audit records and its case state.
//!
//! An action's records (the decision, its audit record, the case state) are written in one Kafka
//! transaction: all or none, so the audit trail never lacks an action that happened and never
//! records one that did not. Audit records of reads go through a plain idempotent producer
//! (`acks=all`), awaited before the response: nothing is shown without its audit record.
//!
//! [`Sink::Memory`] keeps records in memory for the in-process handler tests, and can be made to
//! fail.

use crate::config::GatewayConfig;
use crate::telemetry::Telemetry;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_common::kafka::{resume_txn_call, txn_call_under_way, txn_fatal, LoggingContext};

/// One record to write.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: String,
    pub key: String,
    /// `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Writing failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Kafka did not take the records: of an atomic write, none is visible to `read_committed`
    /// consumers; of a plain one, some may have been written.
    #[error("Kafka did not take the records: {0}")]
    Failed(String),
    /// An atomic write's commit was asked for but not confirmed in time: the transaction may
    /// still have been committed, and its records may appear.
    #[error("Kafka did not confirm the transaction's commit in time: {0}")]
    Unconfirmed(String),
}

/// How a transaction ended short of a confirmed commit.
enum Unfinished {
    /// It failed before its commit was asked for, or its commit failed: nothing of it is
    /// committed.
    NotCommitted(KafkaError),
    /// Its commit was asked for and kept timing out: it may still be committed.
    Unconfirmed(KafkaError),
}

/// The gateway's writer.
#[derive(Clone)]
pub enum Sink {
    Kafka(Arc<KafkaSink>),
    Memory(Arc<MemorySink>),
}

impl Sink {
    /// Writes every record or none (one transaction).
    pub async fn write_atomic(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(k) => {
                let k = k.clone();
                tokio::task::spawn_blocking(move || k.transaction(&records))
                    .await
                    .map_err(|e| SinkError::Failed(format!("the writer task failed: {e}")))?
            }
            Sink::Memory(m) => m.write_slowly(records).await,
        }
    }

    /// Writes records, each durably, and waits for every acknowledgement.
    pub async fn write(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(k) => k.plain(records).await,
            Sink::Memory(m) => m.write_slowly(records).await,
        }
    }

    /// False once the transactional producer hit a fatal error (the process needs a restart),
    /// and while the last [`Sink::probe`] found no broker answering.
    pub fn is_healthy(&self) -> bool {
        match self {
            Sink::Kafka(k) => !k.fenced.load(Ordering::Relaxed) && k.reachable.load(Ordering::Relaxed),
            Sink::Memory(_) => true,
        }
    }

    /// Asks the brokers for a topic's metadata, waiting up to `timeout`: whether Kafka answers
    /// at all. Every action and every read is written to Kafka before it is answered, so a
    /// gateway whose brokers are all out of reach can only answer 503 after a timeout. The
    /// answer is kept for [`Sink::is_healthy`]; a change is logged. Blocking.
    pub fn probe(&self, timeout: Duration) -> bool {
        let Sink::Kafka(k) = self else { return true };
        let answered = k.plain.client().fetch_metadata(Some(&k.probe_topic), timeout);
        let reachable = answered.is_ok();
        if k.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            match answered {
                Ok(_) => tracing::info!("Kafka answers again; the gateway is ready."),
                Err(e) => tracing::warn!(error = %e, "No Kafka broker answers; the gateway reports not ready."),
            }
        }
        reachable
    }
}

/// How long making a transactional producer waits for its initialisation, at least (and the
/// default wait of every transaction call).
const INIT_WAIT: Duration = Duration::from_secs(10);

/// Kafka producers: a transactional one for actions, a plain one for read audits.
pub struct KafkaSink {
    /// `None` after a transaction that could not be aborted: made again before the next one.
    transactional: Mutex<Option<ThreadedProducer<LoggingContext>>>,
    /// The transactional producer's settings, to make it again.
    transactional_settings: ClientConfig,
    telemetry: Telemetry,
    plain: FutureProducer<LoggingContext>,
    /// Each transaction call's wait.
    timeout: Duration,
    /// How long a commit that timed out is asked again.
    resume_for: Duration,
    fenced: AtomicBool,
    /// Whether the last probe had an answer (see [`Sink::probe`]).
    reachable: AtomicBool,
    /// The topic whose metadata a probe asks for.
    probe_topic: String,
}

impl KafkaSink {
    /// Creates both producers and initialises transactions (blocking: call off the runtime).
    pub fn connect(
        config: &GatewayConfig,
        transactional_id: &str,
        telemetry: &Telemetry,
    ) -> Result<KafkaSink, KafkaError> {
        KafkaSink::with_timeouts(config, transactional_id, telemetry, INIT_WAIT, INIT_WAIT)
    }

    /// [`KafkaSink::connect`] with its transaction calls' `timeout` (a producer's
    /// initialisation waits at least [`INIT_WAIT`]) and their commit's `resume_for`.
    pub(crate) fn with_timeouts(
        config: &GatewayConfig,
        transactional_id: &str,
        telemetry: &Telemetry,
        timeout: Duration,
        resume_for: Duration,
    ) -> Result<KafkaSink, KafkaError> {
        let mut base = producer_config(config);
        let plain: FutureProducer<LoggingContext> =
            base.create_with_context(telemetry.client_context("read-audit producer"))?;
        base.set("transactional.id", transactional_id);
        let sink = KafkaSink {
            transactional: Mutex::new(None),
            transactional_settings: base,
            telemetry: telemetry.clone(),
            plain,
            timeout,
            resume_for,
            fenced: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
            probe_topic: config.topics.audit_intake.clone(),
        };
        *sink.transactional.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink.transactional_producer()?);
        Ok(sink)
    }

    /// A transactional producer with transactions initialised: this fences any earlier one of
    /// the same id, and ends what it left open.
    fn transactional_producer(&self) -> Result<ThreadedProducer<LoggingContext>, KafkaError> {
        let producer: ThreadedProducer<LoggingContext> =
            self.transactional_settings.create_with_context(self.telemetry.client_context("transactional producer"))?;
        // Not a reviewer's wait: the coordinator is found and fences the earlier producer.
        producer.init_transactions(self.timeout.max(INIT_WAIT))?;
        Ok(producer)
    }

    fn transaction(&self, records: &[OutRecord]) -> Result<(), SinkError> {
        // One transaction at a time per producer; actions are human-paced.
        let mut slot = self.transactional.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(self.transactional_producer().map_err(|e| SinkError::Failed(e.to_string()))?);
            tracing::info!("The gateway's transactional producer was made again.");
        }
        let Some(producer) = slot.as_ref() else { return Err(SinkError::Failed("no transactional producer".into())) };
        let result = self.transact(producer, records);
        result.map_err(|unfinished| self.failed(&mut slot, unfinished))
    }

    fn transact(&self, producer: &ThreadedProducer<LoggingContext>, records: &[OutRecord]) -> Result<(), Unfinished> {
        producer.begin_transaction().map_err(Unfinished::NotCommitted)?;
        for r in records {
            let mut record = BaseRecord::<str, [u8]>::to(&r.topic).key(&r.key);
            if let Some(v) = &r.value {
                record = record.payload(v);
            }
            producer.send(record).map_err(|(e, _)| Unfinished::NotCommitted(e))?;
        }
        // Commit flushes first: it returns once every record is acknowledged, or fails (the
        // commit not asked for then). A commit call that times out is left under way, and the
        // same call made again resumes it: it is made again, up to `resume_for`, to learn how
        // the transaction ended.
        let again = |e: &KafkaError| {
            tracing::warn!(error = %e, "A transaction's commit was not confirmed in time; asking again.");
        };
        match resume_txn_call(self.resume_for, || false, again, || producer.commit_transaction(self.timeout)) {
            Ok(()) => Ok(()),
            Err(e) if txn_call_under_way(&e) => Err(Unfinished::Unconfirmed(e)),
            Err(e) => Err(Unfinished::NotCommitted(e)),
        }
    }

    /// Ends a transaction that did not commit, or whose commit was not confirmed.
    /// - Not committed: aborts it, or, when the abort fails too (an abort that timed out is
    ///   left under way, and one whose records timed out waits for a producer epoch bump some
    ///   brokers do not give), drops the producer, so that the next transaction makes a new one,
    ///   which ends this one. Every later transaction would fail otherwise.
    /// - Unconfirmed: librdkafka refuses to abort a commit under way, so the producer is
    ///   dropped; the coordinator ends the transaction when the next one fences it: committed
    ///   if the commit reached it, aborted if not.
    fn failed(&self, slot: &mut Option<ThreadedProducer<LoggingContext>>, unfinished: Unfinished) -> SinkError {
        let e = match unfinished {
            Unfinished::Unconfirmed(e) => {
                self.telemetry.write_failed("unconfirmed_transaction");
                tracing::warn!(error = %e, "A transaction's commit was never confirmed; it may have been committed. The transactional producer is made again.");
                *slot = None;
                return SinkError::Unconfirmed(e.to_string());
            }
            Unfinished::NotCommitted(e) => e,
        };
        if txn_fatal(&e) {
            self.fenced.store(true, Ordering::Relaxed);
            tracing::error!(error = %e, "The gateway's transactional producer failed fatally; restart the gateway.");
        } else if let Some(Err(abort)) = slot.as_ref().map(|p| p.abort_transaction(self.timeout)) {
            tracing::warn!(error = %abort, "Aborting a failed transaction failed too; the transactional producer is made again.");
            *slot = None;
        }
        SinkError::Failed(e.to_string())
    }

    async fn plain(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        let mut pending = Vec::with_capacity(records.len());
        for r in &records {
            let mut record = FutureRecord::<str, [u8]>::to(&r.topic).key(&r.key);
            if let Some(v) = &r.value {
                record = record.payload(v);
            }
            pending.push(self.plain.send_result(record).map_err(|(e, _)| SinkError::Failed(e.to_string()))?);
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(SinkError::Failed(e.to_string())),
                Err(_) => return Err(SinkError::Failed("the producer went away".into())),
            }
        }
        Ok(())
    }
}

/// Producer settings: Tollgate's conventions (murmur2 partitioning by event id, so decisions
/// land on the partition of their review), then the user's `kafka.producer` overrides.
pub fn producer_config(config: &GatewayConfig) -> ClientConfig {
    let mut c = tollgate_common::kafka::producer_base(&config.kafka.brokers, &config.kafka.client_id);
    // A reviewer waits for the answer: fail within the request timeout rather than retry for
    // librdkafka's default five minutes.
    c.set("message.timeout.ms", "10000").set("linger.ms", "1");
    for (key, value) in &config.kafka.producer {
        c.set(key, value);
    }
    c
}

/// Records kept in memory (in-process tests).
#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<OutRecord>>,
    fail: AtomicBool,
    delay_ms: std::sync::atomic::AtomicU64,
}

impl MemorySink {
    async fn write_slowly(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        let delay = self.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.write(records)
    }

    /// Makes every later write take `delay` (a slow broker).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn write(&self, records: Vec<OutRecord>) -> Result<(), SinkError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(SinkError::Failed("injected failure".into()));
        }
        self.records.lock().unwrap_or_else(|p| p.into_inner()).extend(records);
        Ok(())
    }

    /// Every record written so far.
    pub fn records(&self) -> Vec<OutRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes every later write fail (or succeed again).
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
