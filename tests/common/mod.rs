//! Helpers of the real-broker integration tests: the broker, unique topics, producing,
//! collecting outputs, and router configuration.
//!
//! The broker is the one `scripts/test.sh` starts (`TOLLGATE_TEST_BROKERS`); without it, a
//! private nisshi is started from the tools folder for the test process.
#![allow(dead_code)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
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

    /// Stops a broker this process started (the shared one is left alone).
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
                // reports them unknown.
                Some(Err(e))
                    if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) => {}
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

/// Runs `tollgate audit …` on the example configuration pointed at the test's topics; returns
/// the exit code, stdout and stderr.
pub fn audit_cli(topics: &Topics, brokers: &str, args: &[&str]) -> (i32, String, String) {
    let config = topics.config_file(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("audit")
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .args(["--idle", "1500ms"])
        .envs(topics.env(brokers, free_port()))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `tollgate router` process on the reference example's configuration.
pub struct RouterProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl RouterProcess {
    pub fn spawn(topics: &Topics, brokers: &str, extra_env: &[(&str, &str)]) -> RouterProcess {
        Self::spawn_with(topics, brokers, extra_env, &[])
    }

    /// Like [`RouterProcess::spawn`], with extra librdkafka producer settings.
    pub fn spawn_with(
        topics: &Topics,
        brokers: &str,
        extra_env: &[(&str, &str)],
        producer: &[(&str, &str)],
    ) -> RouterProcess {
        Self::spawn_at(&topics.config_file(producer), topics, brokers, extra_env)
    }

    /// A router on the configuration file `config` (a copy made by [`Topics::config_file`]).
    pub fn spawn_at(config: &Path, topics: &Topics, brokers: &str, extra_env: &[(&str, &str)]) -> RouterProcess {
        let log = std::env::temp_dir().join(format!("{}.log", unique("router")));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["router", "--config"])
            .arg(config)
            .envs(topics.env(brokers, free_port()))
            .envs(extra_env.iter().map(|(k, v)| (*k, *v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        RouterProcess { child: cmd.spawn().expect("start tollgate router"), log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the router's `/readyz` answers 200 (every routing loop holds its group's
    /// assignment); panics after `timeout`. The address comes from the router's log.
    pub fn wait_ready(&mut self, timeout: Duration) {
        wait_ready(&mut self.child, &self.log, "router", timeout, metrics_address);
    }

    /// The value of an unlabelled metric the router exports now (`None` before it serves
    /// `/metrics`, or without that metric).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, exposition) = http_get(&metrics_address(&self.log_text())?, "/metrics");
        let line = exposition.lines().find(|l| l.split_whitespace().next() == Some(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        terminate(&mut self.child, &self.log, "router", timeout)
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a service's `/readyz` answers 200 at the address `addr` finds (given the
/// service's log so far); panics with its log when it exits or `timeout` passes first.
/// The address a router's log says it serves `/metrics` on.
fn metrics_address(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("Serving /metrics"))?;
    let at = line.find("address=")? + "address=".len();
    line[at..].split_whitespace().next().map(str::to_owned)
}

fn wait_ready(child: &mut Child, log: &Path, what: &str, timeout: Duration, addr: impl Fn(&str) -> Option<String>) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the {what} exited with {status}; log:\n{text}");
        }
        if let Some(addr) = addr(&text) {
            if std::net::TcpStream::connect(&addr).is_ok() && http_get(&addr, "/readyz").0 == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the {what} was not ready within {timeout:?}; log:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM to a service and waits up to `timeout` for its exit status (kills it and
/// panics with its log when it does not stop).
fn terminate(child: &mut Child, log: &Path, what: &str, timeout: Duration) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the {what} did not exit within {timeout:?} of SIGTERM; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on a local HTTP endpoint; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // HTTP/1.0: no chunked bodies to undo.
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of one sample (`name{labels}`) in a Prometheus text exposition.
pub fn metric_value(exposition: &str, sample: &str) -> Option<f64> {
    exposition.lines().find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
}

/// An HTTP/1.0 request (no chunked bodies to undo) on a local endpoint; returns (status, body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A `tollgate gateway` process on the reference example's gateway configuration, pointed at a
/// test's topics.
pub struct GatewayProcess {
    pub child: Child,
    pub log: PathBuf,
    pub addr: String,
}

impl GatewayProcess {
    pub fn spawn(topics: &Topics, brokers: &str, state_topic: &str, extra_env: &[(&str, &str)]) -> GatewayProcess {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!("{}.log", unique("gateway")));
        let file = std::fs::File::create(&log).unwrap();
        let env = [
            ("KAFKA__BROKERS", brokers),
            ("KAFKA__PARTITIONS", "3"),
            ("KAFKA__CLIENT_ID", state_topic),
            ("HTTP__LISTEN", &addr),
            ("TOPICS__SYNC_REVIEW", &topics.sync_review),
            ("TOPICS__ASYNC_REVIEW", &topics.async_review),
            ("TOPICS__RESOLVED", &topics.resolved),
            ("TOPICS__ESCALATIONS", &topics.escalations),
            ("TOPICS__REVIEW_DECISIONS", &topics.decisions),
            ("TOPICS__AUDIT_INTAKE", &topics.audit_intake),
            ("TOPICS__GATEWAY_STATE", state_topic),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["gateway", "--config"])
            .arg(Path::new(EXAMPLE_DIR).join("gateway.toml"))
            .envs(env.iter().map(|(k, v)| (format!("TOLLGATE__{k}"), v.to_string())))
            .envs(extra_env.iter().map(|(k, v)| (*k, *v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        GatewayProcess { child: cmd.spawn().expect("start tollgate gateway"), log, addr }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let addr = self.addr.clone();
        wait_ready(&mut self.child, &self.log, "gateway", timeout, |_| Some(addr.clone()));
    }

    /// A request with a bearer token and a JSON body; returns (status, JSON body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
        key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        if let Some(k) = key {
            headers.push(("Idempotency-Key", k));
        }
        let body = body.map(|b| b.to_string());
        let (status, text) = http_request(&self.addr, method, path, &headers, body.as_deref());
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        terminate(&mut self.child, &self.log, "gateway", timeout)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local HTTP endpoint that answers 200 to every POST and keeps the bodies (a webhook).
pub struct WebhookReceiver {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Read, Write};
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        WebhookReceiver { url, bodies }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}
