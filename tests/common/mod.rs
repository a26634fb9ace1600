//! Helpers of the real-broker integration tests: the broker, unique topics, producing,
//! collecting outputs, and router configuration.
//!
//! The broker is the one `scripts/test.sh` starts (`TOLLGATE_TEST_BROKERS`); without it, a
//! private nisshi is started from the tools folder for the test process. The router, audit
//! tool and gateway processes are in [`process`].
#![allow(dead_code)]

mod process;
// Not every test binary drives a process.
#[allow(unused_imports)]
pub use process::*;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tollgate_router::config::RouterConfig;

pub const EXAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/payments");

/// Consumer session timeout of the test routers and collectors. nisshi completes a group's
/// first join only after about half the session timeout (23 s at librdkafka's default of 45 s),
/// and a killed member holds its partitions for the full timeout; 6 s keeps tests quick.
pub const SESSION_TIMEOUT_MS: &str = "6000";

/// The reference example's sample events.
pub fn sample_events() -> Vec<serde_json::Value> {
    std::fs::read_to_string(Path::new(EXAMPLE_DIR).join("sample.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The sample events as input records, keyed by account as a payment producer would.
pub fn sample_records() -> Vec<TestRecord> {
    sample_events()
        .iter()
        .map(|e| (Some(e["account_id"].as_str().unwrap().as_bytes().to_vec()), Some(e.to_string().into_bytes())))
        .collect()
}

/// A Kafka-protocol broker reachable over TCP.
pub struct Broker {
    pub addr: String,
    child: Option<Child>,
}

impl Broker {
    /// The shared test broker, or a private one started for this process.
    pub fn get() -> Broker {
        if let Ok(addr) = std::env::var("TOLLGATE_TEST_BROKERS") {
            return Broker { addr, child: None };
        }
        Broker::private()
    }

    /// A broker of this process's own, on a free port.
    pub fn private() -> Broker {
        Broker::start_on(free_port())
    }

    /// A broker of this process's own on `port`: a new, empty one (nisshi keeps everything in
    /// memory), also when an earlier one listened there.
    pub fn start_on(port: u16) -> Broker {
        let tools = std::env::var("TOLLGATE_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/tollgate-tools"));
        let bin = tools.join("bin/nisshi");
        assert!(
            bin.exists(),
            "no test broker: run the tests with scripts/test.sh (it installs and starts one), or set TOLLGATE_TEST_BROKERS"
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tollgate-test/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nisshi");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "nisshi did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { addr, child: Some(child) }
    }

    /// Freezes the broker (SIGSTOP): it keeps its connections and its data but answers nothing,
    /// as a hung or partitioned-away broker does.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker answer again (SIGCONT), with everything it held.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let child = self.child.as_ref().expect("only a private broker can be paused");
        let status = Command::new("kill").args([which, &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {which} failed");
    }

    /// Stops a broker this process started (the shared one is left alone).
    pub fn stop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.child = None;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The topics of one test.
#[derive(Debug, Clone)]
pub struct Topics {
    pub input: String,
    pub auto_commit: String,
    pub async_review: String,
    pub sync_review: String,
    pub auto_reject: String,
    pub dead_letter: String,
    pub audit: String,
    pub audit_intake: String,
    pub decisions: String,
    pub changelog: String,
    pub resolved: String,
    pub escalations: String,
    pub rollbacks: String,
    pub group: String,
}

impl Topics {
    pub fn new(tag: &str) -> Topics {
        let base = unique(tag);
        Topics {
            input: format!("{base}.payments"),
            auto_commit: format!("{base}.auto-commit"),
            async_review: format!("{base}.async-review"),
            sync_review: format!("{base}.sync-review"),
            auto_reject: format!("{base}.auto-reject"),
            dead_letter: format!("{base}.dead-letter"),
            audit: format!("{base}.audit"),
            audit_intake: format!("{base}.audit-intake"),
            decisions: format!("{base}.review-decisions"),
            changelog: format!("{base}.pending-changelog"),
            resolved: format!("{base}.resolved"),
            escalations: format!("{base}.escalations"),
            rollbacks: format!("{base}.rollbacks"),
            group: format!("{base}.router"),
        }
    }

    /// The four route topics.
    pub fn routes(&self) -> [&str; 4] {
        [&self.auto_commit, &self.async_review, &self.sync_review, &self.auto_reject]
    }

    /// Every output topic.
    pub fn outputs(&self) -> Vec<&str> {
        let mut v = self.routes().to_vec();
        v.extend([self.dead_letter.as_str(), self.audit.as_str()]);
        v
    }

    /// The route a topic belongs to.
    pub fn route_of(&self, topic: &str) -> Option<&'static str> {
        let names = ["auto_commit", "async_review", "sync_review", "auto_reject"];
        self.routes().iter().position(|t| *t == topic).map(|i| names[i])
    }

    /// Environment overrides that point the example configuration at these topics.
    pub fn env(&self, brokers: &str, metrics_port: u16) -> Vec<(String, String)> {
        [
            ("KAFKA__BROKERS", brokers),
            ("KAFKA__INPUT_TOPIC", &self.input),
            ("KAFKA__GROUP_ID", &self.group),
            ("KAFKA__PARTITIONS", "3"),
            ("TOPICS__AUTO_COMMIT", &self.auto_commit),
            ("TOPICS__ASYNC_REVIEW", &self.async_review),
            ("TOPICS__SYNC_REVIEW", &self.sync_review),
            ("TOPICS__AUTO_REJECT", &self.auto_reject),
            ("TOPICS__DEAD_LETTER", &self.dead_letter),
            ("TOPICS__AUDIT", &self.audit),
            ("TOPICS__AUDIT_INTAKE", &self.audit_intake),
            ("TOPICS__REVIEW_DECISIONS", &self.decisions),
            ("TOPICS__PENDING_CHANGELOG", &self.changelog),
            ("TOPICS__RESOLVED", &self.resolved),
            ("TOPICS__ESCALATIONS", &self.escalations),
            ("TOPICS__ROLLBACKS", &self.rollbacks),
            ("METRICS__LISTEN", &format!("127.0.0.1:{metrics_port}")),
        ]
        .into_iter()
        .map(|(k, v)| (format!("TOLLGATE__{k}"), v.to_owned()))
        .collect()
    }

    /// The reference example's configuration, pointed at these topics (in-process routers).
    pub fn config(&self, brokers: &str) -> RouterConfig {
        let mut c = RouterConfig::load(&Path::new(EXAMPLE_DIR).join("router.toml")).unwrap();
        c.kafka.brokers = brokers.to_owned();
        c.kafka.input_topic = self.input.clone();
        c.kafka.group_id = self.group.clone();
        c.kafka.partitions = 3;
        c.topics.auto_commit = self.auto_commit.clone();
        c.topics.async_review = self.async_review.clone();
        c.topics.sync_review = self.sync_review.clone();
        c.topics.auto_reject = self.auto_reject.clone();
        c.topics.dead_letter = self.dead_letter.clone();
        c.topics.audit = self.audit.clone();
        c.topics.audit_intake = self.audit_intake.clone();
        c.topics.review_decisions = self.decisions.clone();
        c.topics.pending_changelog = self.changelog.clone();
        c.topics.resolved = self.resolved.clone();
        c.topics.escalations = self.escalations.clone();
        c.topics.rollbacks = self.rollbacks.clone();
        c.metrics.listen = ([127, 0, 0, 1], 0).into();
        c.kafka.consumer.insert("session.timeout.ms".into(), SESSION_TIMEOUT_MS.into());
        c.validate().unwrap();
        c
    }

    /// A copy of the reference example in a fresh directory, with the test session timeout and
    /// extra librdkafka producer settings; returns the path of its `router.toml`.
    pub fn config_file(&self, producer: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(unique("example"));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(EXAMPLE_DIR).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
        }
        let config = dir.join("router.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        for (k, v) in producer {
            // Drop the example's own value of the key, then set ours at the top of the table.
            let own = format!("\"{k}\" = ");
            text = text.lines().filter(|l| !l.starts_with(&own)).map(|l| format!("{l}\n")).collect();
            text = text.replacen("[kafka.producer]\n", &format!("[kafka.producer]\n\"{k}\" = \"{v}\"\n"), 1);
        }
        text.push_str(&format!("\n[kafka.consumer]\n\"session.timeout.ms\" = \"{SESSION_TIMEOUT_MS}\"\n"));
        std::fs::write(&config, text).unwrap();
        config
    }
}

/// Adds a librdkafka setting of one consumer (`member`: `routing`, `review_join`,
/// `audit_chain`) to the configuration file `config` ([`Topics::config_file`]).
pub fn set_consumer(config: &Path, member: &str, key: &str, value: &str) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!("\n[kafka.consumers.{member}]\n\"{key}\" = \"{value}\"\n"));
    std::fs::write(config, text).unwrap();
}

/// Creates topics with `partitions` partitions and waits until the broker lists them.
pub fn create_topics(brokers: &str, names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let topics: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for r in rt.block_on(admin.create_topics(topics.iter(), &AdminOptions::new())).unwrap() {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// A record to produce: key and value, either may be absent.
pub type TestRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces records with acks=all and waits until all are acknowledged.
pub fn produce(brokers: &str, topic: &str, records: &[TestRecord]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        // Java's default partitioner, as decisions producers use (the review join relies on it).
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for (key, value) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = value {
            r = r.payload(v.as_slice());
        }
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("test input acknowledged");
}

/// A record read back from an output topic.
#[derive(Debug, Clone)]
pub struct Collected {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

impl Collected {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_default()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or_default()).unwrap()
    }
}

/// A consumer of output topics, in its own group, from the beginning.
pub struct Collector {
    consumer: BaseConsumer,
    pub records: Vec<Collected>,
}

impl Collector {
    /// Waits (up to two minutes: a loaded machine is slow) until every topic exists, then
    /// subscribes to them.
    pub fn new(brokers: &str, topics: &[&str]) -> Collector {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("collector"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let md = consumer.fetch_metadata(None, Duration::from_secs(5)).unwrap();
            let missing: Vec<_> =
                topics.iter().filter(|t| !md.topics().iter().any(|m| m.name() == **t && m.error().is_none())).collect();
            if missing.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "topics never appeared: {missing:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        consumer.subscribe(topics).unwrap();
        Collector { consumer, records: Vec::new() }
    }

    /// Polls until `done(records)` holds; panics with `what` after `timeout`.
    pub fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&[Collected]) -> bool) {
        self.until_showing(what, timeout, String::new, done);
    }

    /// [`Collector::until`], with `context()` (a service's log, say) in the timeout's message.
    pub fn until_showing(
        &mut self,
        what: &str,
        timeout: Duration,
        context: impl Fn() -> String,
        done: impl Fn(&[Collected]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(&self.records) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; collected {}\n{}",
                self.records.len(),
                context()
            );
            self.poll_for(Duration::from_millis(100));
        }
    }

    /// Polls for `d`, collecting what arrives.
    pub fn poll_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            match self.consumer.poll(Duration::from_millis(20)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_owned(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    self.records.push(Collected {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers,
                    });
                }
                // Output topics appear when the router creates them; until then the subscription
                // reports them unknown. A broker that stopped answering (a test freezes it) is
                // reported once its connections time out; the client reconnects by itself.
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::UnknownTopicOrPartition
                                | RDKafkaErrorCode::AllBrokersDown
                                | RDKafkaErrorCode::BrokerTransportFailure
                        )
                    ) => {}
                Some(Err(e)) => panic!("collector: {e}"),
                None => {}
            }
        }
    }

    pub fn on(&self, topic: &str) -> Vec<&Collected> {
        self.records.iter().filter(|r| r.topic == topic).collect()
    }
}

/// The offsets `group` has committed on partitions `0..partitions` of `topic` (`None`: none
/// committed), read with an offset fetch: the reader does not join the group.
pub fn committed_offsets(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(30)).expect("committed offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}
