//! The audit trail on a real broker: every writer's records are hash-chained per partition (across
//! a router restart), `tollgate audit verify` passes the intact trail and finds an edited, deleted, reordered or
//! inserted record where it is, and `tollgate audit export --event-id` prints one event's full
//! story in order. The routing loop's audit records reach the chainer in batches, each in the
//! partition its event id gets as a record key: handed in process to the router's own chainer,
//! or through the intake topic.

mod common;

use common::{audit_cli, create_topics, produce, Broker, Collected, Collector, RouterProcess, TestRecord, Topics};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;
use tollgate_schemas::{AuditAction, AuditRecord, RecordFormat};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn audit_of(c: &Collected) -> AuditRecord<'static> {
    AuditRecord::read(RecordFormat::Json, c.value.as_deref().unwrap()).unwrap()
}

/// Writes a (tampered) copy of the trail, partition by partition, in the given order.
/// One partition's records: (key, value) in order.
type Chain = Vec<(Vec<u8>, Vec<u8>)>;

fn write_copy(brokers: &str, topic: &str, partitions: &BTreeMap<i32, Chain>) {
    create_topics(brokers, &[topic], 3);
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("enable.idempotence", "true").create().unwrap();
    for (partition, records) in partitions {
        for (key, value) in records {
            let record = BaseRecord::to(topic).partition(*partition).key(key.as_slice()).payload(value.as_slice());
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn the_trail_is_chained_verified_and_exported() {
    let broker = Broker::get();
    let topics = Topics::new("audit");
    create_topics(&broker.addr, &[&topics.input], 3);
    let mut router = RouterProcess::spawn(&topics, &broker.addr, &[]);
    let mut out = Collector::new(&broker.addr, &[&topics.audit, &topics.resolved, &topics.audit_intake]);
    produce(&broker.addr, &topics.input, &common::sample_records());
    out.until("every routing record", Duration::from_secs(90), |c| {
        c.iter().filter(|r| r.topic == topics.audit).filter(|r| audit_of(r).action == "route").count() >= 20
    });
    // Once the router's chainer holds the intake partitions, its routing loop hands it their
    // batches: a second pass goes that way.
    wait_until_the_chainer_holds_partitions(&router);
    produce(&broker.addr, &topics.input, &sample_records_as("-2"));
    out.until("every routing record of the second pass", Duration::from_secs(60), |c| {
        c.iter().filter(|r| r.topic == topics.audit).filter(|r| audit_of(r).action == "route").count() >= 40
    });
    let mut handed = handed_when_settled(&router, &mut out, &topics);
    // A restarted router's chainer continues every partition's chain where it stopped.
    assert!(router.terminate(Duration::from_secs(30)).success());
    let mut router = RouterProcess::spawn(&topics, &broker.addr, &[]);
    // One review decision, so pay-0006's story has a human chapter.
    let decision = serde_json::json!({
        "decision_id": "d-1", "event_id": "pay-0006", "reviewer_id": "ana", "reviewer_role": "fraud_analyst",
        "action": "reject", "rationale": "card reported stolen", "decided_at": now_ms(), "second_signoff": null
    });
    produce(&broker.addr, &topics.decisions, &[(Some(b"pay-0006".to_vec()), Some(decision.to_string().into_bytes()))]);
    out.until("the decision's audit record", Duration::from_secs(60), |c| {
        c.iter().filter(|r| r.topic == topics.audit).any(|r| audit_of(r).action == "review_decision")
    });
    handed += handed_when_settled(&router, &mut out, &topics);
    assert!(router.terminate(Duration::from_secs(30)).success());

    // Every record is chained: per partition, seq 0, 1, 2 … each linking to the previous hash.
    let mut by_partition: BTreeMap<i32, Chain> = BTreeMap::new();
    for c in out.on(&topics.audit) {
        let a = audit_of(c);
        let chain = by_partition.entry(c.partition).or_default();
        assert_eq!(a.chain_seq, Some(chain.len() as i64), "{a:?}");
        assert_eq!(a.chain_hash.as_deref(), Some(a.digest().as_str()));
        chain.push((c.key.clone().unwrap_or_default(), c.value.clone().unwrap()));
    }
    // The event's records share a partition (keyed by event id), whoever wrote them.
    let partitions: Vec<i32> =
        out.on(&topics.audit).iter().filter(|c| audit_of(c).event_id == "pay-0006").map(|c| c.partition).collect();
    assert!(partitions.len() >= 2 && partitions.iter().all(|p| *p == partitions[0]), "{partitions:?}");
    // Every audit record is in the partition librdkafka gives its event id as a key (the
    // routing loop and the review join place their batched records themselves): the same event
    // ids, produced keyed to a topic of as many partitions, land where the router put their
    // audit records.
    let routed: Vec<AuditRecord> = out.on(&topics.audit).iter().map(|c| audit_of(c)).collect();
    let placement = format!("{}.placement", topics.audit);
    create_topics(&broker.addr, &[&placement], 3);
    let ids: Vec<String> = routed.iter().map(|a| a.event_id.to_string()).collect();
    produce(
        &broker.addr,
        &placement,
        &ids.iter().map(|id| (Some(id.clone().into_bytes()), Some(b"x".to_vec()))).collect::<Vec<_>>(),
    );
    let mut keyed = Collector::new(&broker.addr, &[&placement]);
    keyed.until("the keyed copies", Duration::from_secs(30), |c| c.len() >= ids.len());
    for c in out.on(&topics.audit) {
        let id = audit_of(c).event_id.to_string();
        let copy = keyed.on(&placement).into_iter().find(|k| k.key.as_deref() == Some(id.as_bytes())).unwrap();
        assert_eq!(c.partition, copy.partition, "{id}");
    }
    // The routing and review records were handed to the router's own chainer (the one router
    // holds every intake partition), bar any gathered before its chainer held its partitions,
    // which came through the intake in batches. Their counts add up.
    let audit_records = routed.len();
    let batches = intake_batches(&out, &topics);
    assert!(handed > 0, "routing records are handed in process");
    assert_eq!(batches.iter().sum::<usize>() + handed, audit_records, "{batches:?}, {handed} handed");

    let (code, stdout, stderr) = audit_cli(&topics, &broker.addr, &["verify"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("every hash chain intact"), "{stdout}");

    // The story of pay-0006, in order, in both formats.
    let (code, jsonl, stderr) = audit_cli(&topics, &broker.addr, &["export", "--event-id", "pay-0006"]);
    assert_eq!(code, 0, "{stderr}");
    let story: Vec<serde_json::Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = story.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["route", "review_decision"], "{jsonl}");
    assert_eq!((story[0]["actor"].as_str(), story[0]["decision"].as_str()), (Some("policy"), Some("sync_review")));
    assert_eq!(
        (story[1]["actor"].as_str(), story[1]["rationale"].as_str()),
        (Some("ana"), Some("card reported stolen"))
    );
    assert!(story[1]["chain_seq"].as_i64() > story[0]["chain_seq"].as_i64());
    let (_, csv, _) = audit_cli(&topics, &broker.addr, &["export", "--event-id", "pay-0006", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.lines().next().unwrap().starts_with("kafka_partition,kafka_offset,event_id"));
    let (_, none, _) = audit_cli(&topics, &broker.addr, &["export", "--from", "2000-01-01", "--to", "2000-01-02"]);
    assert!(none.is_empty());

    // Tampered copies: each is caught at the record that was tampered with.
    let (&partition, chain) = by_partition.iter().max_by_key(|(_, c)| c.len()).unwrap();
    assert!(chain.len() >= 5, "a partition with enough records to tamper with");
    let tamper = |what: &str, change: &dyn Fn(&mut Chain)| {
        let mut copy = by_partition.clone();
        change(copy.get_mut(&partition).unwrap());
        let topic = format!("{}.copy-{what}", topics.audit);
        write_copy(&broker.addr, &topic, &copy);
        let (code, stdout, stderr) = audit_cli(&topics, &broker.addr, &["verify", "--topic", &topic]);
        assert_eq!(code, 1, "{what}: {stdout}\n{stderr}");
        stdout
    };
    let edited = tamper("edit", &|c| {
        let text = String::from_utf8(c[2].1.clone()).unwrap();
        let changed = text.replacen("\"actor\":\"policy\"", "\"actor\":\"mallory\"", 1);
        assert_ne!(text, changed);
        c[2].1 = changed.into_bytes();
    });
    assert!(edited.contains(&format!("first broken link: partition {partition} offset 2: edited")), "{edited}");
    let deleted = tamper("delete", &|c| {
        c.remove(1);
    });
    assert!(deleted.contains(&format!("first broken link: partition {partition} offset 1: deleted")), "{deleted}");
    let reordered = tamper("reorder", &|c| c.swap(1, 2));
    assert!(
        reordered.contains(&format!("first broken link: partition {partition} offset 1: reordered")),
        "{reordered}"
    );
    let inserted = tamper("insert", &|c| {
        let copy = c[0].clone();
        c.insert(3, copy);
    });
    assert!(inserted.contains(&format!("first broken link: partition {partition} offset 3: inserted")), "{inserted}");
}

/// A routing loop starts consuming only once its own chainer holds the intake partitions
/// (`processing.chainer_join_wait`), though both join their groups at once: the events already
/// waiting when the router starts have every audit record handed in process, none through the
/// intake topic.
#[test]
fn a_starting_router_consumes_once_its_chainer_is_assigned_and_hands_it_every_audit_record() {
    let broker = Broker::get();
    let topics = Topics::new("chainer-first");
    create_topics(&broker.addr, &[&topics.input], 3);
    produce(&broker.addr, &topics.input, &common::sample_records());
    let mut router = RouterProcess::spawn(&topics, &broker.addr, &[]);
    // The router creates its topics; the collector reads them from the start.
    let mut out = Collector::new(&broker.addr, &[&topics.audit, &topics.audit_intake]);
    out.until("every routing record", Duration::from_secs(90), |c| {
        c.iter().filter(|r| r.topic == topics.audit).filter(|r| audit_of(r).action == "route").count() >= 20
    });
    let handed = handed_when_settled(&router, &mut out, &topics);
    assert!(router.terminate(Duration::from_secs(30)).success());
    assert_eq!(intake_batches(&out, &topics), Vec::<usize>::new(), "nothing through the intake");
    assert_eq!(handed, out.on(&topics.audit).len());
    assert!(
        router.log_text().contains("The audit chainer has its intake partitions: consuming."),
        "{}",
        router.log_text()
    );
}

/// A chainer whose fetches wait long (here 15 s, past the 10 s it gives a watermark query)
/// starts its new chains at once: where a never-committed intake partition starts is asked
/// through its producer, not on its consumer's connection behind the fetch of the idle intake,
/// which the broker holds for the whole wait while every audit record is handed in process.
/// Asked there, every head's load waited for that fetch and ran out of time.
#[test]
fn a_chainer_whose_fetches_wait_long_starts_new_chains_without_waiting_behind_them() {
    let broker = Broker::get();
    let topics = Topics::new("chainer-long-fetch");
    create_topics(&broker.addr, &[&topics.input], 3);
    produce(&broker.addr, &topics.input, &common::sample_records());
    let config = topics.config_file(&[]);
    common::set_consumer(&config, "audit_chain", "fetch.wait.max.ms", "15000");
    let mut router = RouterProcess::spawn_at(&config, &topics, &broker.addr, &[]);
    let mut out = Collector::new(&broker.addr, &[&topics.audit, &topics.audit_intake]);
    out.until("every routing record", Duration::from_secs(90), |c| {
        c.iter().filter(|r| r.topic == topics.audit).filter(|r| audit_of(r).action == "route").count() >= 20
    });
    let handed = handed_when_settled(&router, &mut out, &topics);
    assert!(router.terminate(Duration::from_secs(30)).success());
    let log = router.log_text();
    assert!(!log.contains("loading a chain head failed"), "{log}");
    assert_eq!(intake_batches(&out, &topics), Vec::<usize>::new(), "nothing through the intake");
    assert_eq!(handed, out.on(&topics.audit).len());
}

/// A chainer past its bound of handed records (half of `processing.max_in_flight`, here one
/// record) that has chained none of them for `processing.hand_off_stall` (here none) is handed
/// no more: the routing loop sends the batches to the intake instead, and every record is still
/// chained once.
#[test]
fn a_chainer_behind_is_handed_no_more_and_the_intake_takes_the_rest() {
    let broker = Broker::get();
    let topics = Topics::new("audit-behind");
    create_topics(&broker.addr, &[&topics.input], 3);
    // No stall allowance: past its bound the chainer is behind at once.
    let env = [
        ("TOLLGATE__PROCESSING__BATCH_SIZE", "1"),
        ("TOLLGATE__PROCESSING__MAX_IN_FLIGHT", "2"),
        ("TOLLGATE__PROCESSING__HAND_OFF_STALL", "0"),
    ];
    let mut router = RouterProcess::spawn(&topics, &broker.addr, &env);
    let mut out = Collector::new(&broker.addr, &[&topics.audit, &topics.audit_intake]);
    wait_until_the_chainer_holds_partitions(&router);
    // Every input batch of one event has one audit record: while the chainer has one to chain,
    // the next goes through the intake.
    let passes: Vec<TestRecord> = (0..5).flat_map(|i| sample_records_as(&format!("-{i}"))).collect();
    produce(&broker.addr, &topics.input, &passes);
    let routed = |c: &[Collected]| c.iter().filter(|r| r.topic == topics.audit).count();
    out.until("every routing record", Duration::from_secs(90), |c| routed(c) >= passes.len());
    let handed = handed_when_settled(&router, &mut out, &topics);
    let behind = router.metric("tollgate_audit_hand_off_behind_total").unwrap_or(0.0) as usize;
    let through_intake: usize = intake_batches(&out, &topics).iter().sum();
    assert!(router.terminate(Duration::from_secs(30)).success());
    assert!(handed > 0 && behind > 0, "{handed} handed, {behind} sent to the intake while the chainer was behind");
    assert!(through_intake >= behind, "{through_intake} through the intake, {behind} of them behind");
    assert_eq!(handed + through_intake, passes.len(), "every record chained once");
    let mut ids: Vec<String> = out.on(&topics.audit).iter().map(|c| audit_of(c).event_id.to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), passes.len());
    let (code, stdout, stderr) = audit_cli(&topics, &broker.addr, &["verify"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

/// A restarted chainer continues each partition's chain from its audit partition's last record
/// when the committed intake offsets carry no head, as on a broker that keeps no offset metadata
/// (nisshi 0.6 keeps none; whatever a broker kept is taken away here), rather than starting it
/// again from the genesis hash, which `verify` would report as broken. Its chainer fetches with
/// a long wait (15 s): the tail reader fetches with a short one of its own, or each tail read
/// would wait that long at the partition's end and the next partition's watermarks, asked on
/// the same connection, would run out of time behind it.
#[test]
fn a_restarted_chainer_without_heads_in_offset_metadata_continues_each_chain_from_its_last_record() {
    let broker = Broker::get();
    let topics = Topics::new("audit-tail");
    create_topics(&broker.addr, &[&topics.input], 3);
    let config = topics.config_file(&[]);
    common::set_consumer(&config, "audit_chain", "fetch.wait.max.ms", "15000");
    let mut router = RouterProcess::spawn_at(&config, &topics, &broker.addr, &[]);
    let mut out = Collector::new(&broker.addr, &[&topics.audit]);
    produce(&broker.addr, &topics.input, &common::sample_records());
    let routing = |c: &[Collected]| c.iter().filter(|r| audit_of(r).action == "route").count();
    out.until("every routing record", Duration::from_secs(90), |c| routing(c) >= 20);
    assert!(router.terminate(Duration::from_secs(30)).success());

    let chain_group = format!("{}.audit", topics.group);
    let committed = strip_offset_metadata(&broker.addr, &chain_group, &topics.audit_intake);
    assert_eq!(committed.len(), 3, "the chainer committed every intake partition: {committed:?}");
    let stripped = strip_offset_metadata(&broker.addr, &chain_group, &topics.audit_intake);
    assert!(stripped.iter().all(|(_, metadata)| metadata.is_empty()), "{stripped:?}");

    let mut router = RouterProcess::spawn_at(&config, &topics, &broker.addr, &[]);
    produce(&broker.addr, &topics.input, &sample_records_as("-2"));
    out.until("every routing record of the second pass", Duration::from_secs(90), |c| routing(c) >= 40);
    assert!(router.terminate(Duration::from_secs(30)).success());
    let log = router.log_text();
    assert!(!log.contains("loading a chain head failed") && !log.contains("starting a new chain"), "{log}");

    let mut next_seq: BTreeMap<i32, i64> = BTreeMap::new();
    for c in out.on(&topics.audit) {
        let seq = next_seq.entry(c.partition).or_default();
        assert_eq!(audit_of(c).chain_seq, Some(*seq), "partition {} offset {}\n{log}", c.partition, c.offset);
        *seq += 1;
    }
    let (code, stdout, stderr) = audit_cli(&topics, &broker.addr, &["verify"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{log}");
    assert!(stdout.contains("every hash chain intact"), "{stdout}");
}

/// Commits `group`'s committed offsets on `topic` again without their metadata (as a broker
/// that keeps none would hand them back); returns the partitions' offsets and the metadata they
/// had.
fn strip_offset_metadata(brokers: &str, group: &str, topic: &str) -> Vec<(i32, String)> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut asked = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        asked.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(asked, Duration::from_secs(30)).unwrap();
    let mut stripped = rdkafka::TopicPartitionList::new();
    let mut had = Vec::new();
    for e in committed.elements().iter().filter(|e| matches!(e.offset(), rdkafka::Offset::Offset(_))) {
        stripped.add_partition_offset(topic, e.partition(), e.offset()).unwrap();
        had.push((e.partition(), e.metadata().to_owned()));
    }
    if stripped.count() > 0 {
        consumer.commit(&stripped, CommitMode::Sync).unwrap();
    }
    had
}

/// Waits until `router`'s chainer holds intake partitions: from then on its loops hand it the
/// batches of those partitions instead of producing them to the intake. The one router holds
/// all three, as its gauges say once its client's statistics (every 5 s) have counted the
/// intake's.
fn wait_until_the_chainer_holds_partitions(router: &RouterProcess) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !router.log_text().lines().any(|l| l.contains("The audit chainer holds") && !l.contains("partitions=[]")) {
        assert!(std::time::Instant::now() < deadline, "the chainer holds no partition:\n{}", router.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(router.metric("tollgate_audit_chain_partitions"), Some(3.0), "{}", router.log_text());
    while router.metric("tollgate_audit_intake_partitions") != Some(3.0) {
        let counted = router.metric("tollgate_audit_intake_partitions");
        assert!(std::time::Instant::now() < deadline, "the intake's partitions counted: {counted:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The records counts of the intake batches `out` collected.
fn intake_batches(out: &Collector, topics: &Topics) -> Vec<usize> {
    out.on(&topics.audit_intake)
        .iter()
        .map(|c| c.header(tollgate_schemas::headers::AUDIT_BATCH))
        .filter(|h| !h.is_empty())
        .map(|h| h.parse().unwrap())
        .collect()
}

/// How many audit records `router` chained in process, once that and the intake's batches
/// account for every audit record `out` collected (the counter moves just after a commit).
fn handed_when_settled(router: &RouterProcess, out: &mut Collector, topics: &Topics) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let handed = router.metric("tollgate_audit_handed_total").unwrap_or(0.0) as usize;
        let through_intake: usize = intake_batches(out, topics).iter().sum();
        let audited = out.on(&topics.audit).len();
        if handed + through_intake >= audited || std::time::Instant::now() > deadline {
            return handed;
        }
        out.poll_for(Duration::from_millis(100));
    }
}

/// The sample events with their ids suffixed, so a second pass is new events.
fn sample_records_as(suffix: &str) -> Vec<TestRecord> {
    common::sample_events()
        .into_iter()
        .map(|mut e| {
            e["event_id"] = format!("{}{suffix}", e["event_id"].as_str().unwrap()).into();
            (Some(e["account_id"].as_str().unwrap().as_bytes().to_vec()), Some(e.to_string().into_bytes()))
        })
        .collect()
}

#[test]
fn a_policy_change_applies_without_a_restart_is_audited_and_an_invalid_one_is_refused() {
    let broker = Broker::get();
    let topics = Topics::new("reload");
    create_topics(&broker.addr, &[&topics.input], 3);
    let config = topics.config_file(&[]);
    let policy = config.with_file_name("policy.toml");
    let router = RouterProcess::spawn_at(&config, &topics, &broker.addr, &[("TOLLGATE__POLICY__WATCH", "200ms")]);
    let routes = topics.routes().map(str::to_owned);
    let mut out = Collector::new(&broker.addr, &[&routes[0], &routes[1], &routes[2], &routes[3], &topics.audit]);
    let routed = |c: &[Collected], suffix: &str| {
        c.iter()
            .filter(|r| routes.contains(&r.topic))
            .filter(|r| {
                let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
                v["event_id"].as_str().unwrap().ends_with(suffix)
            })
            .count()
    };
    produce(&broker.addr, &topics.input, &sample_records_as("-a"));
    out.until("the first pass", Duration::from_secs(90), |c| routed(c, "-a") >= 20);

    // A new version that sends risk ≥ 0.8 to sync review (0.9 before).
    let text = std::fs::read_to_string(&policy).unwrap();
    let tighter = text
        .replace("version = \"payments-2026.11.1\"", "version = \"payments-2026.11.2\"")
        .replace("{ risk = { gte = 0.9 } }", "{ risk = { gte = 0.8 } }");
    std::fs::write(&policy, &tighter).unwrap();
    out.until("the policy change's audit record", Duration::from_secs(30), |c| {
        c.iter().filter(|r| r.topic == topics.audit).any(|r| audit_of(r).action == "policy_change")
    });
    // An invalid one: refused, the new version keeps routing.
    std::fs::write(
        &policy,
        tighter.replace("payments-2026.11.2", "payments-2026.11.3").replace("gte = 0.8", "gte = 8"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    produce(&broker.addr, &topics.input, &sample_records_as("-b"));
    out.until("the second pass", Duration::from_secs(60), |c| routed(c, "-b") >= 20);

    let version_of = |suffix: &str| -> Vec<String> {
        out.records
            .iter()
            .filter(|r| routes.contains(&r.topic))
            .filter(|r| {
                serde_json::from_slice::<serde_json::Value>(r.value.as_deref().unwrap()).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .ends_with(suffix)
            })
            .map(|r| r.header(tollgate_schemas::headers::POLICY_VERSION).to_owned())
            .collect()
    };
    assert!(version_of("-a").iter().all(|v| v == "payments-2026.11.1"));
    assert!(version_of("-b").iter().all(|v| v == "payments-2026.11.2"), "{:?}", version_of("-b"));
    // pay-0013 (risk 0.89) went to async review under 2026.11.1 and to sync review under .2.
    let route_of = |id: &str| {
        out.records
            .iter()
            .find(|r| {
                routes.contains(&r.topic)
                    && serde_json::from_slice::<serde_json::Value>(r.value.as_deref().unwrap()).unwrap()["event_id"]
                        == id
            })
            .map(|r| topics.route_of(&r.topic).unwrap())
    };
    assert_eq!((route_of("pay-0013-a"), route_of("pay-0013-b")), (Some("async_review"), Some("sync_review")));
    let change = out.on(&topics.audit).into_iter().map(audit_of).find(|a| a.action == "policy_change").unwrap();
    assert_eq!((change.decision.as_ref(), change.actor.as_ref()), ("payments-2026.11.2", "router"));
    assert!(change.chain_hash.is_some(), "policy changes are chained like every audit record");
    let log = router.log_text();
    assert!(log.contains("Policy reload refused"), "{log}");
}

/// An audit record as another writer would send it to the intake.
fn intake_record(event_id: &str) -> Vec<u8> {
    let record = AuditRecord {
        actor_role: Some("fraud_analyst".into()),
        rationale: Some("known customer".into()),
        ..AuditRecord::new(
            event_id.to_owned(),
            "2026-11-21T06:00:00.000Z",
            "ana",
            AuditAction::ReviewDecision,
            "approve",
            ("payments", 0, 0),
        )
    };
    let mut datum = Vec::new();
    record.write_intake(&mut datum);
    datum
}

#[test]
fn intake_batches_are_chained_record_by_record_and_bad_ones_are_dead_lettered_whole() {
    use rdkafka::message::{Header, OwnedHeaders};
    use tollgate_schemas::headers::{AUDIT_BATCH, ERROR_MESSAGE, ERROR_REASON, SOURCE_OFFSET};
    use tollgate_schemas::intake::AuditBatch;
    let broker = Broker::get();
    let topics = Topics::new("intake-batches");
    create_topics(&broker.addr, &[&topics.input], 3);
    let mut router = RouterProcess::spawn(&topics, &broker.addr, &[]);
    let mut out = Collector::new(&broker.addr, &[&topics.audit, &topics.dead_letter]);
    let batch = |ids: &[&str]| {
        let mut b = AuditBatch::default();
        for id in ids {
            b.push_datum(&intake_record(id));
        }
        b.as_bytes().to_vec()
    };
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    let records: [(&[u8], &str); 4] = [
        (&batch(&["ok-1", "ok-2"]), "2"),
        // Announces more records than it holds.
        (&batch(&["short-1"]), "2"),
        // Not an Avro array of audit records.
        (b"{\"event_id\": \"json\"}", "1"),
        (&batch(&[]), "0"),
    ];
    for (payload, count) in records {
        let h = OwnedHeaders::new().insert(Header { key: AUDIT_BATCH, value: Some(count) });
        let record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&topics.audit_intake).partition(1).payload(payload).headers(h);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    out.until("the good batch chained and the bad ones dead-lettered", Duration::from_secs(60), |c| {
        c.iter().filter(|r| r.topic == topics.audit).count() >= 2
            && c.iter().filter(|r| r.topic == topics.dead_letter).count() >= 2
    });
    out.poll_for(Duration::from_millis(500));
    assert!(router.terminate(Duration::from_secs(30)).success());

    let chained: Vec<(Option<Vec<u8>>, i32, AuditRecord)> =
        out.on(&topics.audit).iter().map(|c| (c.key.clone(), c.partition, audit_of(c))).collect();
    assert_eq!(chained.len(), 2, "{chained:?}");
    for ((key, partition, record), id) in chained.iter().zip(["ok-1", "ok-2"]) {
        assert_eq!((record.event_id.as_ref(), key.as_deref(), *partition), (id, Some(id.as_bytes()), 1));
    }
    assert_eq!(chained[1].2.chain_prev, chained[0].2.chain_hash, "one chain, record after record");
    // Unkeyed, the dead letters may land on any partition: found by where they came from.
    let dead = out.on(&topics.dead_letter);
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.header(ERROR_REASON) == "malformed_audit"));
    let from = |offset: &str| *dead.iter().find(|d| d.header(SOURCE_OFFSET) == offset).unwrap();
    let (short, foreign) = (from("1"), from("2"));
    assert!(short.header(ERROR_MESSAGE).contains("holds 1 audit records, its header says 2"), "{:?}", short.headers);
    assert!(foreign.header(ERROR_MESSAGE).contains("not an audit record batch"), "{:?}", foreign.headers);
    assert_eq!(short.value.as_deref(), Some(batch(&["short-1"]).as_slice()), "kept as it came");
}
