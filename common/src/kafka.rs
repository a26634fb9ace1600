//! Kafka conventions of every Tollgate service: producer settings, topic creation, and where
//! the client library's own logs and errors go.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes a librdkafka log line as a `tracing` event of the same severity.
pub fn log_to_tracing(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel::*;
    match level {
        Emerg | Alert | Critical | Error => tracing::error!(facility, "librdkafka: {message}"),
        Warning => tracing::warn!(facility, "librdkafka: {message}"),
        Notice | Info => tracing::info!(facility, "librdkafka: {message}"),
        Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

/// What a service does with an error the client library reports (counts it, logs it).
pub type ErrorHook = Arc<dyn Fn(&dyn fmt::Display) + Send + Sync>;

/// The context of a Kafka client with no callbacks of its own. rdkafka's default context
/// hands librdkafka's log lines and errors to the `log` facade, which no Tollgate service
/// installs, so they were lost; this one writes them as `tracing` events, and hands errors to
/// the service's hook (which counts them) when it has one. A producer's failed deliveries are
/// counted ([`LoggingContext::failed_deliveries`]), the first one logged. Statistics are not
/// read.
pub struct LoggingContext {
    /// Which of the service's clients, in every error reported.
    client: &'static str,
    on_error: Option<ErrorHook>,
    failed_deliveries: AtomicU64,
}

impl LoggingContext {
    /// A context whose errors are logged as warnings.
    pub fn new(client: &'static str) -> Self {
        LoggingContext { client, on_error: None, failed_deliveries: AtomicU64::new(0) }
    }

    /// A context whose errors go to `hook`.
    pub fn with_hook(client: &'static str, hook: ErrorHook) -> Self {
        LoggingContext { on_error: Some(hook), ..LoggingContext::new(client) }
    }

    /// Records this client (a producer polled for its deliveries) failed to deliver.
    pub fn failed_deliveries(&self) -> u64 {
        self.failed_deliveries.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for LoggingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggingContext").field("client", &self.client).finish_non_exhaustive()
    }
}

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let error = format_args!("{}: {error}: {reason}", self.client);
        match &self.on_error {
            Some(hook) => hook(&error),
            None => tracing::warn!(%error, "The Kafka client reported an error."),
        }
    }

    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ConsumerContext for LoggingContext {}

impl ProducerContext for LoggingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, _)) = result {
            if self.failed_deliveries.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(client = self.client, %error, "A record was not delivered (later failures are counted only).");
            }
        }
    }
}

/// A producer that is durable and duplicate-free on retries (`acks=all`, idempotence), batches
/// for a few milliseconds, and partitions like Java clients (`murmur2_random`), so a record keyed
/// by event id lands on the same partition number whichever Tollgate service or Kafka client
/// wrote it. The review join depends on that co-partitioning.
pub fn producer_base(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // A few milliseconds of batching buys most of the throughput at little latency.
        .set("linger.ms", "5")
        // Tollgate's records are JSON-heavy (snapshots, chained audit records) and compress
        // several-fold: the broker and the kernel move a fraction of the bytes for a little client
        // CPU. lz4 is librdkafka's cheapest codec and built into it (zstd would need another
        // native library). Consumers decompress without being told.
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random");
    c
}

/// What every Tollgate consumer starts from: where the brokers are, who it is, no end-of-partition
/// events, and no one-second pause in fetching after its local queue fills.
///
/// librdkafka stops fetching a partition once its local queue holds `queued.min.messages`
/// (100,000 records, 20 MB of 200-byte events) or `queued.max.messages.kbytes` (64 MiB), and
/// looks again only after `fetch.queue.backoff.ms`, 1 s by default. A consumer that drains a
/// full queue in less than that (an audit export, a gateway replaying its topics, a router
/// catching up on a backlog with two loops) then idles for the rest of the second with records
/// waiting on the broker. At 10 ms the pause is shorter than any drain; the cost is a look at the
/// queue per partition every 10 ms while it is full (`BENCHMARKS.md`, session 18).
pub fn consumer_base(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10");
    c
}

/// Why a wait for a producer's deliveries ended before all of them.
#[derive(Debug, thiserror::Error)]
pub enum Undelivered {
    #[error("a record was not delivered")]
    Failed,
    #[error("{0} records (or their delivery reports) still outstanding at the timeout")]
    TimedOut(i32),
}

/// How often [`wait_delivered`] looks at what is outstanding.
const DELIVERY_CHECK: Duration = Duration::from_millis(1);

/// Waits until every record `producer` holds is acknowledged (and its delivery report
/// served), `failed()` says one of them failed, or `timeout` passes.
///
/// Why not rdkafka's `flush(timeout)`: when records are left after its first look, it polls
/// for events in slices of up to 100 ms, and a poll returns only at the end of its slice, not
/// when the last acknowledgement comes. So a flush that waits at all takes about 100 ms: the
/// audit chainer waited 100 ms after every one of its transactions' last acknowledgements,
/// measured (BENCHMARKS.md, session 17). Shorter slices would spin, since rdkafka turns a wait
/// under a millisecond into polls without a timeout. This asks librdkafka to send what is
/// lingering (a flush that does not wait), then looks at the count of what is outstanding
/// every millisecond.
pub fn wait_delivered<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
    failed: impl Fn() -> bool,
) -> Result<(), Undelivered> {
    let deadline = Instant::now() + timeout;
    // Only its side effect is wanted: batches still lingering go out now.
    let _ = producer.flush(Duration::ZERO);
    loop {
        if failed() {
            return Err(Undelivered::Failed);
        }
        let outstanding = producer.in_flight_count();
        if outstanding == 0 {
            // The last delivery reports may have been failures.
            return if failed() { Err(Undelivered::Failed) } else { Ok(()) };
        }
        if Instant::now() >= deadline {
            return Err(Undelivered::TimedOut(outstanding));
        }
        std::thread::sleep(DELIVERY_CHECK);
    }
}

/// Whether a transaction call's error leaves it under way: it timed out, and librdkafka asks
/// for the same call again to resume it (a retriable error that does not require an abort).
pub fn txn_call_under_way(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.is_retriable() && !e.txn_requires_abort())
}

/// Whether a transaction error leaves the producer unusable for good (fenced by another
/// instance, say).
pub fn txn_fatal(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.is_fatal())
}

/// Makes a transaction call (initialising transactions, sending offsets, a commit) and makes it
/// again while it is left under way ([`txn_call_under_way`]), for up to `limit` in all, unless
/// `stopping()`; `again` is told of each error before the call is made again. Returns the last
/// call's result: an error still under way when the limit is reached or the caller stops.
pub fn resume_txn_call<T>(
    limit: Duration,
    stopping: impl Fn() -> bool,
    mut again: impl FnMut(&KafkaError),
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let started = Instant::now();
    loop {
        match call() {
            Err(e) if txn_call_under_way(&e) && !stopping() && started.elapsed() < limit => again(&e),
            result => return result,
        }
    }
}

/// A topic a service needs.
pub struct TopicSpec<'a> {
    pub name: &'a str,
    /// Keep only the latest value per key (changelogs and state topics).
    pub compacted: bool,
}

/// Creates the topics of `wanted` that do not exist yet, with `partitions` and `replication`.
/// Topics that exist are left as they are; a topic created meanwhile by another client is not
/// an error. Returns the names created.
pub async fn ensure_topics(
    client: &ClientConfig,
    wanted: &[TopicSpec<'_>],
    partitions: i32,
    replication: i32,
) -> Result<Vec<String>, KafkaError> {
    let admin: AdminClient<LoggingContext> = client.create_with_context(LoggingContext::new("admin"))?;
    let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(10))?;
    let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let mut seen = Vec::new();
    let missing: Vec<NewTopic<'_>> = wanted
        .iter()
        .filter(|t| {
            !existing.contains(&t.name) && !seen.contains(&t.name) && {
                seen.push(t.name);
                true
            }
        })
        .map(|t| {
            let topic = NewTopic::new(t.name, partitions, TopicReplication::Fixed(replication));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut created = Vec::new();
    for result in admin.create_topics(missing.iter(), &opts).await? {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions, "Created topic.");
                created.push(name);
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "Creating a topic failed.");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Mutex;

    /// A real client whose broker refuses connections: librdkafka reports it through the
    /// context, and the hook gets it with the client's name (the default context would have
    /// handed it to the `log` facade, where nothing reads it).
    #[test]
    fn a_client_that_cannot_reach_its_broker_reports_it_to_the_hook() {
        // A port nothing listens on: bound, then released.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let hook: ErrorHook = {
            let seen = Arc::clone(&seen);
            Arc::new(move |error| seen.lock().unwrap().push(error.to_string()))
        };
        let _producer: ThreadedProducer<LoggingContext> = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("reconnect.backoff.ms", "10")
            .create_with_context(LoggingContext::with_hook("test producer", hook))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty(), "no error reported within 30 s");
        assert!(seen.iter().all(|e| e.starts_with("test producer: ")), "{seen:?}");
        assert!(seen.iter().any(|e| e.contains(&port.to_string()) || e.contains("AllBrokersDown")), "{seen:?}");
    }

    /// A producer's records that time out undelivered are counted, so a tool can say so
    /// instead of reporting them produced.
    #[test]
    fn a_producer_counts_its_failed_deliveries() {
        let producer = unreachable_producer("200");
        send_two(&producer, "t");
        let deadline = Instant::now() + Duration::from_secs(30);
        while producer.context().failed_deliveries() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(producer.context().failed_deliveries(), 2);
    }

    /// A producer with no broker behind it (a port nothing listens on), whose records time out
    /// after `message_timeout_ms`.
    fn unreachable_producer(message_timeout_ms: &str) -> ThreadedProducer<LoggingContext> {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("message.timeout.ms", message_timeout_ms)
            .create_with_context(LoggingContext::new("test producer"))
            .unwrap()
    }

    fn send_two(producer: &ThreadedProducer<LoggingContext>, topic: &str) {
        for key in ["a", "b"] {
            producer.send(rdkafka::producer::BaseRecord::<str, str>::to(topic).key(key).payload("x")).unwrap();
        }
    }

    /// The chainer's case: a producer that reports failures only. The wait ends with every
    /// record acknowledged.
    #[test]
    fn the_wait_for_deliveries_ends_when_every_record_is_acknowledged() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("t", 2, 1).unwrap();
        let producer: ThreadedProducer<LoggingContext> = producer_base(&cluster.bootstrap_servers(), "test")
            .set("delivery.report.only.error", "true")
            .create_with_context(LoggingContext::new("test producer"))
            .unwrap();
        for i in 0..500 {
            let key = i.to_string();
            producer.send(rdkafka::producer::BaseRecord::<str, str>::to("t").key(&key).payload("x")).unwrap();
        }
        wait_delivered(&producer, Duration::from_secs(30), || false).unwrap();
        assert_eq!(producer.in_flight_count(), 0);
        assert_eq!(producer.context().failed_deliveries(), 0);
    }

    #[test]
    fn the_wait_for_deliveries_stops_at_a_failed_record() {
        let producer = unreachable_producer("200");
        send_two(&producer, "t");
        let failed = || producer.context().failed_deliveries() > 0;
        assert!(matches!(wait_delivered(&producer, Duration::from_secs(30), failed), Err(Undelivered::Failed)));
    }

    #[test]
    fn the_wait_for_deliveries_gives_up_at_its_timeout() {
        let producer = unreachable_producer("60000");
        send_two(&producer, "t");
        let waited = wait_delivered(&producer, Duration::from_millis(300), || false);
        assert!(matches!(waited, Err(Undelivered::TimedOut(_))), "{waited:?}");
        // The two records are still held; librdkafka's count also holds events not yet served
        // (an error such as "1/1 brokers are down" may be one), so it can be higher.
        assert!(producer.in_flight_count() >= 2, "{}", producer.in_flight_count());
    }
}
