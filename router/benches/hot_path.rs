//! The routing hot path without I/O: decode → score → policy → encode (the routed record, the
//! audit record, and for review routes the changelog entry), per event, on one core.
//!
//!     cargo bench -p tollgate-router --bench hot_path
//!
//! Nine cases, on the reference example's events (about 200 bytes each, all four routes): JSON
//! input with the `field` scorer, and again with its audit records written unsealed (as for an
//! audit chainer in the routing loop's process); the same events as Avro input (with JSON output,
//! as in the example, and with Avro output); JSON input scored by a 20-feature `logistic` model,
//! and again unsealed (`json_logistic20_unsealed`); the same 20-feature events with their keys
//! in another order in every event (`json_logistic20_shuffled`), the worst case for the JSON
//! scan's memo of keys; and with keys left out or added in some events
//! (`json_logistic20_optional`); and the 20-feature events as Avro input (`avro_logistic20`,
//! the example's schema with the features added). Beside them, `json_parse_only`: serde_json
//! only checking the JSON events, the floor under JSON input; `audit_chain_link`, the audit
//! chainer's work per audit record handed in the intake's form (decode the batch, link and
//! encode each record); and `audit_chain_unsealed`, the same for records handed unsealed
//! (complete and hash each). Before criterion's timings, it prints heap allocations and bytes
//! per event (instrumented allocator) and the CPU time per event of the routing thread.

use cpu_time::ThreadTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tollgate_router::config::RouterConfig;
use tollgate_router::pipeline::{Output, Pipeline, Source, UnsealedFor, Verdict};
use tollgate_schemas::audit::GENESIS;
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::unsealed::{seal_unsealed, UnsealedBatch};
use tollgate_schemas::{AuditRecord, RecordFormat};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/payments");

fn sample() -> Vec<serde_json::Value> {
    std::fs::read_to_string(Path::new(EXAMPLE).join("sample.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of the example in a fresh directory, with `extra` appended to router.toml and extra
/// files written.
fn example(name: &str, edit: impl Fn(String) -> String, files: &[(&str, String)]) -> RouterConfig {
    let dir: PathBuf = std::env::temp_dir().join(format!("tollgate-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(EXAMPLE).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(dir.join("router.toml")).unwrap();
    std::fs::write(dir.join("router.toml"), edit(text)).unwrap();
    for (file, content) in files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    RouterConfig::load(&dir.join("router.toml")).unwrap()
}

/// The 20-feature model: the amount, 16 numeric features and 3 categorical ones.
fn model20() -> String {
    let mut m = String::from("version = \"bench-logistic-20\"\nintercept = -2.0\n\n[[numeric]]\nname = \"amount\"\ntransform = \"log1p\"\ncenter = 4.0\nscale = 1.5\nweight = 0.8\n");
    for i in 1..=16 {
        m.push_str(&format!(
            "\n[[numeric]]\nname = \"f{i:02}\"\ncenter = 0.5\nscale = 0.25\nweight = {}\n",
            if i % 2 == 0 { 0.3 } else { -0.2 }
        ));
    }
    m.push_str("\n[[categorical]]\nname = \"merchant_category\"\nweights = { gambling = 2.4, crypto = 2.9, grocery = -1.2 }\nother = 0.0\n");
    m.push_str("\n[[categorical]]\nname = \"country\"\nweights = { NG = 1.6, US = -0.4 }\nother = 0.1\n");
    m.push_str("\n[[categorical]]\nname = \"currency\"\nweights = { USD = 0.0, EUR = 0.0 }\nother = 0.5\n");
    m
}

/// The example's Avro schema with the 20-feature model's 16 extra features, as doubles.
fn schema20() -> String {
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(EXAMPLE).join("payment.avsc")).unwrap()).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    for i in 1..=16 {
        fields.push(serde_json::json!({"name": format!("f{i:02}"), "type": "double"}));
    }
    schema.to_string()
}

struct Case {
    name: &'static str,
    pipeline: Pipeline,
    events: Vec<Vec<u8>>,
    /// Audit records written unsealed, as for a chainer in the routing loop's process.
    unsealed: bool,
}

impl Case {
    fn output(&self) -> Output {
        if self.unsealed {
            unsealed_output()
        } else {
            Output::default()
        }
    }
}

/// Output buffers that write every audit record unsealed.
fn unsealed_output() -> Output {
    let mut out = Output::default();
    let mut all = UnsealedFor::new(|_| 0, 1);
    all.mark(|_| true);
    out.unsealed_for = Some(all);
    out
}

fn cases() -> Vec<Case> {
    let events = sample();
    let json: Vec<Vec<u8>> = events.iter().map(|e| serde_json::to_vec(e).unwrap()).collect();
    let json_case = Case {
        name: "json_field",
        pipeline: Pipeline::from_config(&example("json", |t| t, &[])).unwrap(),
        events: json.clone(),
        unsealed: false,
    };
    let json_unsealed_case = Case {
        name: "json_field_unsealed",
        pipeline: Pipeline::from_config(&example("json", |t| t, &[])).unwrap(),
        events: json.clone(),
        unsealed: true,
    };

    // The example's input made Avro, with its schema.
    let avro_input = |t: String| {
        t.replace(
            "format = \"json\"\n\n[input.fields]",
            "format = \"avro\"\navro_schema = \"payment.avsc\"\n\n[input.fields]",
        )
    };
    let avro_config = example("avro", avro_input, &[]);
    let schema =
        apache_avro::Schema::parse_str(&std::fs::read_to_string(Path::new(EXAMPLE).join("payment.avsc")).unwrap())
            .unwrap();
    let avro: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let value = apache_avro::to_value(e).unwrap().resolve(&schema).unwrap();
            apache_avro::to_avro_datum(&schema, value).unwrap()
        })
        .collect();
    // Avro in and Avro out: the routed record embeds the datum as it is, so no JSON form is
    // written.
    let avro_out_config = example(
        "avro-out",
        |t| avro_input(t).replace("[output]\nformat = \"json\"", "[output]\nformat = \"avro\""),
        &[],
    );
    let avro_out_case = Case {
        name: "avro_field_avro_out",
        pipeline: Pipeline::from_config(&avro_out_config).unwrap(),
        events: avro.clone(),
        unsealed: false,
    };
    let avro_case = Case {
        name: "avro_field",
        pipeline: Pipeline::from_config(&avro_config).unwrap(),
        events: avro,
        unsealed: false,
    };

    let logistic_config = example(
        "logistic",
        |t| t.replace("[scorer]\nkind = \"field\"", "[scorer]\nkind = \"logistic\"\nmodel = \"model20.toml\""),
        &[("model20.toml", model20())],
    );
    let with_features: Vec<Vec<u8>> = events
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let mut e = e.clone();
            for i in 1..=16 {
                e[format!("f{i:02}")] = serde_json::json!(((n * 7 + i * 13) % 100) as f64 / 100.0);
            }
            serde_json::to_vec(&e).unwrap()
        })
        .collect();
    // The same 20-feature events as Avro input: the example's schema with the 16 features
    // added as doubles (the other reading of the target: 500 k events/s for Avro input).
    let avro20_config = example(
        "avro-logistic",
        |t| {
            avro_input(t)
                .replace("payment.avsc", "payment20.avsc")
                .replace("[scorer]\nkind = \"field\"", "[scorer]\nkind = \"logistic\"\nmodel = \"model20.toml\"")
        },
        &[("model20.toml", model20()), ("payment20.avsc", schema20())],
    );
    let schema20 = apache_avro::Schema::parse_str(&schema20()).unwrap();
    let avro20: Vec<Vec<u8>> = with_features
        .iter()
        .map(|e| {
            let e: serde_json::Value = serde_json::from_slice(e).unwrap();
            let value = apache_avro::to_value(e).unwrap().resolve(&schema20).unwrap();
            apache_avro::to_avro_datum(&schema20, value).unwrap()
        })
        .collect();
    let avro_logistic_case = Case {
        name: "avro_logistic20",
        pipeline: Pipeline::from_config(&avro20_config).unwrap(),
        events: avro20,
        unsealed: false,
    };
    let logistic_case = Case {
        name: "json_logistic20",
        pipeline: Pipeline::from_config(&logistic_config).unwrap(),
        events: with_features,
        unsealed: false,
    };
    // Its audit records unsealed, as a single router with its own chainer writes them.
    let logistic_unsealed_case = Case {
        name: "json_logistic20_unsealed",
        pipeline: Pipeline::from_config(&logistic_config).unwrap(),
        events: logistic_case.events.clone(),
        unsealed: true,
    };
    // Each event's keys rotated by another amount, every other one reversed: no two events in
    // a row share the order of their keys.
    let shuffled_case = rewritten("json_logistic20_shuffled", &logistic_config, &logistic_case.events, |n, v| {
        let mut entries: Vec<_> = v.as_object().unwrap().iter().collect();
        let len = entries.len();
        entries.rotate_left((n * 7) % len);
        if n % 2 == 1 {
            entries.reverse();
        }
        let body: Vec<String> =
            entries.iter().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v)).collect();
        format!("{{{}}}", body.join(",")).into_bytes()
    });
    // Keys left out and added, as serializers that omit nulls write them: every third event
    // without `account_id` (the first key), every other one with a `note` among the features.
    let optional_case = rewritten("json_logistic20_optional", &logistic_config, &logistic_case.events, |n, mut v| {
        let object = v.as_object_mut().unwrap();
        if n % 3 == 0 {
            object.remove("account_id");
        }
        if n % 2 == 0 {
            object.insert("note".into(), serde_json::json!(format!("note {n}")));
        }
        serde_json::to_vec(&v).unwrap()
    });
    vec![
        json_case,
        json_unsealed_case,
        avro_case,
        avro_out_case,
        logistic_case,
        logistic_unsealed_case,
        shuffled_case,
        optional_case,
        avro_logistic_case,
    ]
}

/// A case of `events` (JSON) rewritten one by one by `edit`, given each one's index.
fn rewritten(
    name: &'static str,
    config: &RouterConfig,
    events: &[Vec<u8>],
    edit: impl Fn(usize, serde_json::Value) -> Vec<u8>,
) -> Case {
    let events = events.iter().enumerate().map(|(n, e)| edit(n, serde_json::from_slice(e).unwrap())).collect();
    Case { name, pipeline: Pipeline::from_config(config).unwrap(), events, unsealed: false }
}

fn run(case: &Case, out: &mut Output, now: SystemTime) -> usize {
    let mut routed = 0;
    for (i, e) in case.events.iter().enumerate() {
        let source = Source { topic: "payments", partition: 0, offset: i as i64 };
        if let Verdict::Routed { .. } = case.pipeline.process(Some(e), source, now, out) {
            routed += 1;
        }
    }
    routed
}

/// The floor under JSON input, measured beside it: serde_json checking each event (UTF-8, then
/// the text into `IgnoredAny`, which keeps nothing), what the decoder does before it reads any
/// field. Returns the events that are valid JSON.
#[inline(never)]
fn parse_only(events: &[Vec<u8>]) -> usize {
    let valid =
        |e: &Vec<u8>| std::str::from_utf8(e).is_ok_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok());
    events.iter().filter(|e| valid(e)).count()
}

/// The JSON case's audit records, as the routing loop gathers them: in an intake batch, and
/// unsealed for a chainer in its process.
fn gathered(case: &Case, now: SystemTime) -> (AuditBatch, UnsealedBatch) {
    let (mut intake_out, mut unsealed_out) = (Output::default(), unsealed_output());
    let (mut batch, mut unsealed) = (AuditBatch::default(), UnsealedBatch::default());
    for (i, e) in case.events.iter().enumerate() {
        let source = Source { topic: "payments", partition: 0, offset: i as i64 };
        case.pipeline.process(Some(e), source, now, &mut intake_out);
        batch.push_datum(&intake_out.audit);
        case.pipeline.process(Some(e), source, now, &mut unsealed_out);
        unsealed.push(unsealed_out.event_id.as_bytes(), &unsealed_out.audit);
    }
    (batch, unsealed)
}

/// The audit chainer's work on one intake batch: decode it, then link and encode each record
/// into `buf`. Returns the records chained.
#[inline(never)]
fn chain_link(batch: &[u8], buf: &mut Vec<u8>) -> usize {
    let mut prev = GENESIS.to_owned();
    let mut chained = 0;
    for (seq, mut record) in AuditRecord::read_batch(batch).unwrap().into_iter().enumerate() {
        buf.clear();
        prev = record.seal_and_write(seq as i64, &prev, RecordFormat::Json, buf).unwrap();
        chained += 1;
    }
    chained
}

/// The audit chainer's work on records handed unsealed: complete and hash each into `buf`.
/// Returns the records chained.
#[inline(never)]
fn chain_unsealed(batch: &UnsealedBatch, buf: &mut Vec<u8>) -> usize {
    let mut prev = GENESIS.to_owned();
    let mut chained = 0;
    for (seq, (_, unsealed)) in batch.iter().enumerate() {
        buf.clear();
        prev = seal_unsealed(unsealed, seq as i64, &prev, buf);
        chained += 1;
    }
    chained
}

/// CPU time per event of `round` (over `events` events), best of five.
fn cpu_per_event(rounds: usize, events: usize, mut round: impl FnMut()) -> f64 {
    let cpu = (0..5)
        .map(|_| {
            let start = ThreadTime::now();
            for _ in 0..rounds {
                round();
            }
            start.elapsed()
        })
        .min()
        .unwrap();
    cpu.as_nanos() as f64 / (rounds * events) as f64
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    // `HOT_PATH_CASE=avro_field` keeps one case (for counting its instructions under callgrind).
    let only = std::env::var("HOT_PATH_CASE").ok();
    let all = cases();
    // The chainer's cases read the JSON case's audit records, whichever cases run.
    let chained = only.as_deref().is_none_or(|o| o.starts_with("audit_chain")).then(|| gathered(&all[0], now));
    let cases: Vec<Case> = all.into_iter().filter(|c| only.as_deref().is_none_or(|o| o == c.name)).collect();
    let mut json_field_ns = None;
    for case in &cases {
        let mut out = case.output();
        assert_eq!(run(case, &mut out, now), case.events.len(), "{}: every sample event routes", case.name);
        let bytes: usize = case.events.iter().map(Vec::len).sum();
        // Warm the buffers, then count what a steady state allocates.
        for _ in 0..10 {
            run(case, &mut out, now);
        }
        let rounds = 500;
        let region = Region::new(GLOBAL);
        for _ in 0..rounds {
            run(case, &mut out, now);
        }
        let stats = region.change();
        let n = (rounds * case.events.len()) as f64;
        // The thread's CPU time, best of five: time the scheduler gives to other jobs on a shared
        // machine is not counted, unlike criterion's wall-clock figures below.
        let ns = cpu_per_event(rounds, case.events.len(), || {
            run(case, &mut out, now);
        });
        if case.name == "json_field" {
            json_field_ns = Some(ns);
        }
        println!(
            "{:<16} input {:>4} B/event   allocations {:>5.2}/event   allocated {:>6.0} B/event   CPU {:>6.0} ns/event ({:.0} k events/CPU s)",
            case.name,
            bytes / case.events.len(),
            stats.allocations as f64 / n,
            stats.bytes_allocated as f64 / n,
            ns,
            1e6 / ns
        );
    }
    // The JSON case's events.
    let json: Vec<Vec<u8>> = sample().iter().map(|e| serde_json::to_vec(e).unwrap()).collect();
    if only.as_deref().is_none_or(|o| o == "json_parse_only") {
        assert_eq!(parse_only(&json), json.len());
        let ns = cpu_per_event(500, json.len(), || {
            parse_only(&json);
        });
        let ratio = json_field_ns.map(|j| format!("   json_field takes {:.1}× this", j / ns)).unwrap_or_default();
        println!("{:<16} serde_json checking the JSON events alone   CPU {ns:>6.0} ns/event{ratio}", "json_parse_only");
    }
    let mut group = c.benchmark_group("hot_path");
    if only.as_deref().is_none_or(|o| o == "json_parse_only") {
        group.throughput(Throughput::Elements(json.len() as u64));
        group.bench_function("json_parse_only", |b| b.iter(|| parse_only(&json)));
    }
    for case in &cases {
        let mut out = case.output();
        group.throughput(Throughput::Elements(case.events.len() as u64));
        group.bench_function(case.name, |b| b.iter(|| run(case, &mut out, now)));
    }
    // The audit chainer's work per record, on the JSON case's audit records gathered in one
    // intake batch: decode the batch (Avro), link each record (SHA-256 of its canonical JSON)
    // and encode it for the audit topic (JSON). Beside it, the same records handed unsealed:
    // complete each with its chain fields and hash it.
    if let Some((batch, unsealed)) = chained {
        let records = batch.records();
        let mut buf = Vec::new();
        assert_eq!(chain_link(batch.as_bytes(), &mut buf), records);
        assert_eq!(chain_unsealed(&unsealed, &mut buf), records);
        // Per case: its name, what it measures, and one round of it into a buffer.
        type ChainCase<'a> = (&'a str, &'a str, &'a dyn Fn(&mut Vec<u8>) -> usize);
        let chainer_cases: [ChainCase<'_>; 2] = [
            ("audit_chain_link", "the audit chainer's work per audit record", &|buf| chain_link(batch.as_bytes(), buf)),
            ("audit_chain_unsealed", "the same records handed unsealed", &|buf| chain_unsealed(&unsealed, buf)),
        ];
        for (name, what, chain) in chainer_cases {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let ns = cpu_per_event(500, records, || {
                chain(&mut buf);
            });
            println!("{name:<16} {what}   CPU {ns:>6.0} ns/record");
            group.throughput(Throughput::Elements(records as u64));
            group.bench_function(name, |b| b.iter(|| chain(&mut buf)));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
