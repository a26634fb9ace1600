//! Delivery guarantees of the `tollgate router` process on a real broker: nothing is lost when
//! the router is killed mid-stream, when a second router joins, or when the broker stops
//! answering for a while, and SIGTERM drains, commits and exits 0.

mod common;

use common::{
    audit_cli, committed_offsets, create_topics, produce, Broker, Collected, Collector, RouterProcess, Topics,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tollgate::synth::{Mix, PaymentGenerator};

const EVENTS: usize = 20_000;

/// Produces `n` valid synthetic payments and returns their event ids.
fn produce_payments(broker: &str, topic: &str, n: usize, prefix: &str) -> Vec<String> {
    let mix = Mix { malformed: 0.0, ..Mix::default() };
    let mut generator = PaymentGenerator::new(11, mix, prefix);
    let mut buf = Vec::new();
    let mut records = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let key = generator.next_into(&mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        ids.push(v["event_id"].as_str().unwrap().to_owned());
        records.push((Some(key.into_bytes()), Some(buf.clone())));
    }
    produce(broker, topic, &records);
    ids
}

/// How many times each event id appears among the records of `topic_matches`.
fn id_counts(records: &[Collected], topic_matches: impl Fn(&str) -> bool) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records.iter().filter(|r| topic_matches(&r.topic)) {
        *counts.entry(r.json()["event_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

fn all_present(ids: &[String], counts: &HashMap<String, usize>) -> bool {
    ids.iter().all(|id| counts.contains_key(id))
}

#[test]
fn nothing_is_lost_when_the_router_is_killed_mid_stream() {
    let broker = Broker::get();
    let topics = Topics::new("kill9");
    create_topics(&broker.addr, &[&topics.input], 3);
    let ids = produce_payments(&broker.addr, &topics.input, EVENTS, "k9");
    let is_route = |t: &str| topics.route_of(t).is_some();

    // The first router is slowed down (long producer linger, small in-flight bound) so that
    // the kill lands mid-stream after some offsets were committed and before others were.
    let env = [("TOLLGATE__PROCESSING__BATCH_SIZE", "100"), ("TOLLGATE__PROCESSING__MAX_IN_FLIGHT", "1000")];
    let mut first = RouterProcess::spawn_with(&topics, &broker.addr, &env, &[("linger.ms", "200")]);
    let mut out = Collector::new(&broker.addr, &topics.outputs());
    out.until("the first router to be mid-stream", Duration::from_secs(90), |r| {
        r.iter().filter(|c| is_route(&c.topic)).count() >= EVENTS / 10
    });
    // Auto-commit runs every second: let at least one happen.
    out.poll_for(Duration::from_millis(1500));
    first.child.kill().unwrap(); // SIGKILL: no drain, no final commit
    first.child.wait().unwrap();
    out.poll_for(Duration::from_millis(500));
    let before = id_counts(&out.records, is_route).len();
    assert!(before < EVENTS, "the kill must land mid-stream (routed {before} of {EVENTS})");

    let mut second = RouterProcess::spawn(&topics, &broker.addr, &[]);
    out.until("every event routed and audited after the restart", Duration::from_secs(180), |r| {
        all_present(&ids, &id_counts(r, is_route)) && all_present(&ids, &id_counts(r, |t| t == topics.audit))
    });
    let routed = id_counts(&out.records, is_route);
    let replayed = routed.values().filter(|n| **n > 1).count();
    assert_eq!(routed.len(), EVENTS, "only the produced ids were routed");
    eprintln!("kill -9 after {before} events: all {EVENTS} routed, {replayed} replayed (at-least-once)");
    assert!(replayed < before, "the restart resumed from the committed offsets, not from the beginning");
    let status = second.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", second.log_text());
}

#[test]
fn sigterm_drains_commits_and_exits_zero() {
    let broker = Broker::get();
    let topics = Topics::new("sigterm");
    create_topics(&broker.addr, &[&topics.input], 3);
    let ids = produce_payments(&broker.addr, &topics.input, EVENTS, "st");
    let is_route = |t: &str| topics.route_of(t).is_some();

    let env = [("TOLLGATE__PROCESSING__BATCH_SIZE", "200")];
    let mut first = RouterProcess::spawn(&topics, &broker.addr, &env);
    let mut out = Collector::new(&broker.addr, &topics.outputs());
    out.until("the router to be mid-stream", Duration::from_secs(90), |r| {
        r.iter().filter(|c| is_route(&c.topic)).count() >= EVENTS / 5
    });
    let asked = Instant::now();
    let status = first.terminate(Duration::from_secs(30));
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status}; log:\n{}", first.log_text());
    assert!(first.log_text().contains("draining in-flight records and committing"), "{}", first.log_text());
    eprintln!("SIGTERM to exit: {took:?}");

    // The restarted router resumes exactly where the first one committed: every event once.
    let mut second = RouterProcess::spawn(&topics, &broker.addr, &env);
    out.until("every event routed after the restart", Duration::from_secs(180), |r| {
        all_present(&ids, &id_counts(r, is_route))
    });
    out.poll_for(Duration::from_secs(2));
    let routed = id_counts(&out.records, is_route);
    let twice: Vec<_> = routed.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).take(5).collect();
    assert!(twice.is_empty(), "a graceful stop committed everything it routed, yet these were routed again: {twice:?}");
    assert!(second.terminate(Duration::from_secs(30)).success());
}

#[test]
fn nothing_is_lost_when_a_second_router_joins_mid_stream() {
    let broker = Broker::get();
    let topics = Topics::new("rebalance");
    create_topics(&broker.addr, &[&topics.input], 4);
    let ids = produce_payments(&broker.addr, &topics.input, EVENTS, "rb");
    let is_route = |t: &str| topics.route_of(t).is_some();

    let env = [("TOLLGATE__PROCESSING__BATCH_SIZE", "100")];
    let mut first = RouterProcess::spawn(&topics, &broker.addr, &env);
    let mut out = Collector::new(&broker.addr, &topics.outputs());
    out.until("the first router to be mid-stream", Duration::from_secs(90), |r| {
        r.iter().filter(|c| is_route(&c.topic)).count() >= EVENTS / 10
    });
    // The second instance joins the group: partitions are revoked from the first (which drains
    // and commits) and split between both.
    // Two instances on one host need their own transactional ids (the default is per host).
    let second_env = [env[0], ("TOLLGATE__PROCESSING__TRANSACTIONAL_ID", "second-router")];
    let mut second = RouterProcess::spawn(&topics, &broker.addr, &second_env);
    out.until("every event routed and audited", Duration::from_secs(180), |r| {
        all_present(&ids, &id_counts(r, is_route)) && all_present(&ids, &id_counts(r, |t| t == topics.audit))
    });
    assert_eq!(id_counts(&out.records, is_route).len(), EVENTS);
    for router in [&mut first, &mut second] {
        let status = router.terminate(Duration::from_secs(30));
        assert!(status.success(), "{status}\n{}", router.log_text());
    }
    assert!(
        first.log_text().contains("Partitions revoked"),
        "the first router saw the rebalance:\n{}",
        first.log_text()
    );
    // Each router's chainer took some intake partitions, chaining what its own routing loops
    // handed it and passing on what was handed for partitions it lost: the chains are whole.
    let (code, stdout, stderr) = audit_cli(&topics, &broker.addr, &["verify"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}\n{}", first.log_text(), second.log_text());
    assert!(stdout.contains("every hash chain intact"), "{stdout}");
}

/// Each routing loop's "Stopping" line of a router log: its index and the events it handled.
fn loops_handled(log: &str) -> HashMap<usize, u64> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("Stopping: draining in-flight records and committing"))
        .filter_map(|l| Some((field(l, "routing_thread")? as usize, field(l, "handled")?)))
        .collect()
}

/// Two routing loops split the input, and a graceful stop commits what each routed: on every
/// input partition the group's committed offset is exactly the end of what was routed from it
/// (nothing routed beyond it, which a restart would route again; nothing below it unrouted).
///
/// The commits are read from the broker rather than through a restart: on nisshi, a group whose
/// two members leave non-leader first keeps the departed leader as its leader, and members that
/// join it later wait for an assignment that never comes. Resuming from committed offsets is
/// covered with one loop by `sigterm_drains_commits_and_exits_zero`.
#[test]
fn two_routing_threads_split_the_input_and_a_graceful_stop_commits_both() {
    const PARTITIONS: i32 = 4;
    let broker = Broker::get();
    let topics = Topics::new("threads");
    create_topics(&broker.addr, &[&topics.input], PARTITIONS);
    produce_payments(&broker.addr, &topics.input, EVENTS, "th");
    // Where each event landed, read back from the input.
    let mut input = Collector::new(&broker.addr, &[&topics.input]);
    input.until("the input read back", Duration::from_secs(90), |r| r.len() >= EVENTS);
    let place: HashMap<String, (i32, i64)> = input
        .records
        .iter()
        .map(|r| (r.json()["event_id"].as_str().unwrap().to_owned(), (r.partition, r.offset)))
        .collect();
    assert_eq!(place.len(), EVENTS);
    let is_route = |t: &str| topics.route_of(t).is_some();

    // Slowed (long producer linger, small in-flight bound) so that the stop finds records in
    // flight for the drain to wait for and commit.
    let env = [
        ("TOLLGATE__PROCESSING__ROUTING_THREADS", "2"),
        ("TOLLGATE__PROCESSING__BATCH_SIZE", "100"),
        ("TOLLGATE__PROCESSING__MAX_IN_FLIGHT", "1000"),
    ];
    let mut first = RouterProcess::spawn_with(&topics, &broker.addr, &env, &[("linger.ms", "200")]);
    let mut out = Collector::new(&broker.addr, &topics.outputs());
    // Ready: both loops hold partitions of the group's assignment (four partitions, two members).
    first.wait_ready(Duration::from_secs(120));
    out.until("the router to be mid-stream", Duration::from_secs(90), |r| {
        r.iter().filter(|c| is_route(&c.topic)).count() >= EVENTS / 4
    });
    let status = first.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", first.log_text());
    let handled = loops_handled(&first.log_text());
    assert_eq!(handled.len(), 2, "both loops stopped and said so:\n{}", first.log_text());

    // Everything committed was routed and acknowledged first: collect it all, and anything more.
    let committed = committed_offsets(&broker.addr, &topics.group, &topics.input, PARTITIONS);
    let committed_events = committed.iter().map(|o| o.unwrap_or(0)).sum::<i64>() as usize;
    out.until("every committed event's routed record", Duration::from_secs(60), |r| {
        r.iter().filter(|c| is_route(&c.topic)).count() >= committed_events
    });
    out.poll_for(Duration::from_secs(2));
    let routed = id_counts(&out.records, is_route);
    let twice: Vec<_> = routed.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).take(5).collect();
    assert!(twice.is_empty(), "routed twice: {twice:?}");
    assert!(routed.keys().all(|id| place.contains_key(id)), "only the produced ids were routed");
    for (id, &(partition, at)) in &place {
        let end = committed[partition as usize].unwrap_or(0);
        assert_eq!(
            routed.contains_key(id),
            at < end,
            "partition {partition}: event at offset {at}, committed offset {end}, routed {}",
            routed.contains_key(id)
        );
    }
    assert_eq!(committed_events, routed.len(), "the commits cover exactly the routed events");
    assert!(handled.values().sum::<u64>() as usize >= routed.len(), "the loops handled what was routed: {handled:?}");
}

/// A broker that stops answering for a while (frozen, as a hung or partitioned-away broker is:
/// connections stay open, nothing is answered) does not stop the router. The freeze (45 s)
/// outlasts the group's session timeout, so the router's members lose their assignments, and
/// the 30 s an audit chain transaction waits for its records' acknowledgements, so one that was
/// under way is aborted and retried. The router says it is not ready once no record has been
/// acknowledged for 10 s (its routing loop, waiting for acknowledgements, does not poll and so
/// learns of the lost assignment only after the freeze), rejoins, and every event, those routed
/// before the freeze and those waiting during it, is routed and audited, with the trail intact.
/// Records purged by an aborted transaction are not reported as records the broker refused.
/// (A transaction call that itself times out, 30 s, is made again to resume it: that happens
/// here only when a call started early enough in the freeze, not in every run.)
#[test]
fn a_router_rides_out_a_broker_that_stops_answering() {
    let broker = Broker::private();
    let topics = Topics::new("outage");
    create_topics(&broker.addr, &[&topics.input], 3);
    // Slowed down (long producer linger, small in-flight bound), as in the kill test, so that
    // the freeze lands mid-stream, with records and a chain transaction under way.
    let env = [("TOLLGATE__PROCESSING__BATCH_SIZE", "100"), ("TOLLGATE__PROCESSING__MAX_IN_FLIGHT", "1000")];
    let mut router = RouterProcess::spawn_with(&topics, &broker.addr, &env, &[("linger.ms", "200")]);
    router.wait_ready(Duration::from_secs(120));
    let is_route = |t: &str| topics.route_of(t).is_some();
    let mut out = Collector::new(&broker.addr, &topics.outputs());
    let before = produce_payments(&broker.addr, &topics.input, 2_000, "before");
    out.until("the first events routed", Duration::from_secs(90), |r| all_present(&before, &id_counts(r, is_route)));

    let during = produce_payments(&broker.addr, &topics.input, EVENTS, "during");
    out.until("the router to be mid-stream", Duration::from_secs(90), |r| {
        r.iter().filter(|c| is_route(&c.topic)).count() >= before.len() + EVENTS / 10
    });
    broker.pause();
    let frozen = Instant::now();
    // Its members' sessions run out at the client first: the router says it is not ready.
    let mut not_ready = None;
    while frozen.elapsed() < Duration::from_secs(45) {
        if not_ready.is_none() && router.readyz() == Some(503) {
            not_ready = Some(frozen.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    broker.resume();
    assert!(not_ready.is_some(), "the router stayed ready with its broker frozen:\n{}", router.log_text());
    router.wait_ready(Duration::from_secs(120));
    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    out.until("every event routed and audited after the freeze", Duration::from_secs(240), |r| {
        all_present(&all, &id_counts(r, is_route)) && all_present(&all, &id_counts(r, |t| t == topics.audit))
    });
    assert!(router.child.try_wait().unwrap().is_none(), "the router exited:\n{}", router.log_text());
    let log = router.log_text();
    assert!(!log.contains("The broker did not accept a record"), "{log}");
    let (code, stdout, stderr) = audit_cli(&topics, &broker.addr, &["verify"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", router.log_text());
    let status = router.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{}", router.log_text());
}
