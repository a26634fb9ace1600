//! The benchmark harness's short mode on the real broker: it runs every phase and reports every
//! figure. No figure is asserted (the machine is shared and noisy); BENCHMARKS.md has the
//! measured ones.

mod common;

use common::Broker;
use std::process::Command;

#[test]
fn the_benchmark_harness_runs_its_short_mode_and_reports_every_figure() {
    let broker = Broker::get();
    let json = std::env::temp_dir().join(common::unique("bench")).with_extension("json");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["bench", "--brokers", &broker.addr, "--short", "--latency-seconds", "2", "--partitions", "3"])
        // nisshi completes a group join after about half the session timeout (23 s by default).
        .args(["--consumer", "fetch.wait.max.ms=5", "--consumer", "session.timeout.ms=6000", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "pass-through",
        "same records",
        "same records, no intake",
        "same records, handed off",
        "router over same records",
        "router over it",
        "same records, handed off CPU s per M events by thread",
        "latency at",
        "pass-through latency",
        "same records' latency",
        "join:",
        "join, same records:",
        "join over same records",
        "the box's speed by phase",
    ] {
        assert!(stdout.contains(line), "the table lacks {line}:\n{stdout}");
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let events = report["events"].as_u64().expect("the run's events");
    for phase in ["pass_through", "same_records", "same_records_no_intake", "same_records_handed_off"] {
        assert_eq!(report[phase]["events"].as_u64(), Some(events), "{phase}: {report}");
    }
    // The router's window starts at its first event handled, so its first poll batches (a
    // thousand events each) fall before it; or, when its chainer joined late, at least a
    // quarter of the input is left in it. Every event is handled by the window's end (more
    // when an aborted transaction's events were routed again).
    let (measured, before) = (report["router"]["events"].as_u64().unwrap(), report["router_window_start"].as_u64());
    assert!(measured >= events / 4, "{report}");
    assert!(before.is_some_and(|b| b > 0 && measured + b >= events), "{report}");
    assert!(stdout.contains(&format!("router measured from its event {} on", before.unwrap() + 1)), "{stdout}");
    for phase in ["pass_through", "same_records", "same_records_no_intake", "same_records_handed_off", "router"] {
        assert!(report[phase]["events_per_second"].as_f64() > Some(0.0), "{phase}: {report}");
        assert!(report[phase]["cpu_seconds_per_million"].as_f64() > Some(0.0), "{phase}: {report}");
    }
    // The router's CPU by thread, and each baseline's by stage: the threads of stages that end
    // before the phase counted too.
    let groups = |phase: &str| -> Vec<String> {
        let groups = report[phase]["cpu_by_thread"].as_array().cloned().unwrap_or_default();
        groups.iter().filter_map(|g| g[0].as_str().map(str::to_owned)).collect()
    };
    for (phase, stages) in [
        ("router", &["tollgate-route", "tollgate-audit", "tollgate-join"][..]),
        ("same_records", &["base-copy", "base-chain", "base-read"][..]),
        ("same_records_no_intake", &["base-copy", "base-read"][..]),
        ("same_records_handed_off", &["base-copy", "base-chain", "base-read"][..]),
    ] {
        for stage in stages {
            assert!(groups(phase).iter().any(|g| g == stage), "{phase} lacks {stage}: {report}");
        }
    }
    // The router's chainer commits its audit records in transactions, each of at least one.
    let (chained, transactions) =
        (report["router_audit"]["chained"].as_u64(), report["router_audit"]["transactions"].as_u64());
    assert!(chained > Some(0), "{report}");
    assert!(transactions > Some(0) && transactions <= chained, "{report}");
    // The same-records baseline writes what the router writes: a routed record embedding the
    // event (about 200 bytes of input), an audit record, and a changelog entry for the events in
    // review.
    let shape = &report["shape"];
    assert!(shape["routed_bytes"].as_u64() > Some(200), "{report}");
    assert!(shape["audit_bytes"].as_u64() > Some(100), "{report}");
    assert!(shape["changelog_share"].as_f64().is_some_and(|s| s > 0.05 && s < 0.5), "{report}");
    // A chained audit record carries its chain fields besides the intake record's.
    assert!(shape["chained_bytes"].as_u64() > shape["audit_bytes"].as_u64(), "{report}");
    assert!(shape["chained_key_bytes"].as_u64() > Some(0), "{report}");
    // Every event has one routed record or dead letter, spread over the router's topics.
    let routed = shape["routed"].as_array().expect("routed topics");
    let shares: Vec<f64> = routed.iter().map(|d| d["share"].as_f64().unwrap()).collect();
    assert_eq!(shares.len(), 5, "{report}");
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{report}");
    assert!(shares.iter().filter(|s| **s > 0.0).count() >= 3, "{report}");
    assert!(report["ratio_to_same_records"].as_f64() > Some(0.0), "{report}");
    // The router's latency, and the pass-through's and same records' at the same offered rate.
    for phase in ["latency", "pass_through_latency", "same_records_latency"] {
        let latency = &report[phase];
        assert!(latency["samples"].as_u64() > Some(0), "{phase}: {report}");
        assert!(latency["p99_ms"].as_f64() >= latency["p50_ms"].as_f64(), "{phase}: {report}");
    }
    assert_eq!(report["latency"]["rate"], report["pass_through_latency"]["rate"], "{report}");
    // What each latency's input topic held before its live input: the router's the preload,
    // the pass-through's (the router's input) the preload and the router's live input too,
    // same records' (a topic of its own) nothing.
    let held = |phase: &str| report[phase]["input_held_before"].as_u64();
    assert_eq!(held("latency"), report["events"].as_u64(), "{report}");
    assert!(held("pass_through_latency") > held("latency"), "{report}");
    assert_eq!(held("same_records_latency"), Some(0), "{report}");
    // Decisions for events in review, every one joined.
    let join = &report["join"];
    assert!(join["decisions"].as_u64() > Some(0), "{report}");
    assert!(join["joined_per_second"].as_f64() > Some(0.0), "{report}");
    assert!(join["joined_while_offered_per_second"].as_f64() >= Some(0.0), "{report}");
    assert!(join["lag_max_second_half"].as_u64().is_some(), "{report}");
    assert!(join["cpu_by_thread"].as_array().is_some_and(|t| t.iter().any(|g| g[0] == "tollgate-join")), "{report}");
    // The join's baseline: the same decisions, at the same rate, through records of the sizes the
    // join wrote (a resolved record embeds its event).
    let baseline = &report["join_same_records"];
    assert_eq!(baseline["decisions"], join["decisions"], "{report}");
    assert!(baseline["joined_per_second"].as_f64() > Some(0.0), "{report}");
    let join_shape = &report["join_shape"];
    assert!(join_shape["resolved_bytes"].as_u64() > Some(200), "{report}");
    assert!(join_shape["state_bytes"].as_u64() > Some(0), "{report}");
    assert!(join_shape["chained_bytes"].as_u64() > join_shape["audit_bytes"].as_u64(), "{report}");
    // The box's speed while each phase ran, sampled in process.
    let speed = report["host_speed"].as_array().expect("host speed readings");
    let phases: Vec<&str> = speed.iter().map(|r| r["phase"].as_str().unwrap()).collect();
    assert_eq!(
        phases,
        [
            "pass-through",
            "same records",
            "same records, no intake",
            "same records, handed off",
            "router",
            "latency",
            "join",
            "join, same records",
            "pass-through latency",
            "same records' latency"
        ],
        "{report}"
    );
    // Every phase of the short mode lasts over a second (the latency phases their 2 s at least).
    for phase in ["latency", "pass-through latency", "same records' latency"] {
        let reading = speed.iter().find(|r| r["phase"] == phase).unwrap();
        assert!(reading["samples"].as_u64() > Some(0), "{phase}: {report}");
        assert!(reading["ns_per_event"].as_f64() > Some(0.0), "{phase}: {report}");
    }
}
