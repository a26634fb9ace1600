//! The load generator, `tollgate load`, on the real broker: it produces the synthetic payment
//! stream with the librdkafka settings it is given (a secured cluster needs its own), and
//! refuses an argument that is not one.

mod common;

use common::{create_topics, Broker, Collector, Topics};
use std::process::{Command, Output};
use std::time::Duration;

fn load(brokers: &str, topic: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["load", "--brokers", brokers, "--topic", topic, "--events", "300", "--rate", "0", "--prefix", "gen"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_load_generator_produces_with_the_settings_it_is_given() {
    let broker = Broker::get();
    let topic = Topics::new("load").input;
    create_topics(&broker.addr, &[&topic], 3);

    let out = load(&broker.addr, &topic, &["--producer", "compression.type=lz4", "--producer", "acks=all"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut collected = Collector::new(&broker.addr, &[&topic]);
    collected.until("every generated event", Duration::from_secs(30), |c| c.len() >= 300);
    let mut ids: Vec<String> = collected
        .on(&topic)
        .iter()
        .filter_map(|c| serde_json::from_slice::<serde_json::Value>(c.value.as_deref()?).ok())
        .filter_map(|event| event["event_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    // The mix's malformed records (half a percent) carry no event id to read.
    assert!(ids.len() >= 290 && ids.iter().all(|id| id.starts_with("gen-")), "{} ids: {ids:?}", ids.len());

    // The settings reach the client: one it refuses fails the run with its reason.
    let refused = load(&broker.addr, &topic, &["--producer", "compression.type=bogus"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("compression.type"), "{stderr}");

    let malformed = load(&broker.addr, &topic, &["--producer", "linger.ms"]);
    assert_eq!(malformed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(stderr.contains("`linger.ms`: expected key=value"), "{stderr}");
}
