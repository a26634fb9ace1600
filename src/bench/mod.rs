//! `tollgate bench`: the end-to-end benchmark harness. On one broker, in one run:
//!
//! 1. preloads the input topic with the reference example's synthetic payments (fixed seed);
//! 2. **pass-through**: a bare consume → produce loop with the router's own client settings
//!    copies the input to one output topic (the practical limit of the broker and client);
//! 3. **same records**: the Kafka work the router does per event (its records, taken from a
//!    sample routed in process, and the audit chainer's transactional copy) without Tollgate's
//!    work ([`records`]); then the same without the audit intake's round trip, each event's
//!    chained record written by the first stage ([`records::AuditPath::Direct`]), and handed in
//!    process to a transactional second stage ([`records::AuditPath::HandOff`]);
//! 4. **router**: the full router (routing loop, review join, audit chainer) routes the same
//!    input, with a fresh consumer group, until every event is routed and its audit record
//!    chained;
//! 5. **latency**: the router (still running) gets live input at a fixed share of the rate it
//!    just sustained; the latency of each event is its routed record's broker timestamp minus
//!    its input record's (append times where the broker sets them, else create times);
//! 6. **join**: reviewer decisions for events waiting in review, at a fixed rate, and the
//!    review join's lag behind them ([`join`]);
//! 7. **join, same records**: with the router stopped, the join's Kafka work per decision
//!    without Tollgate's work, fed the same decisions at the same rate ([`join_records`]);
//! 8. **pass-through latency**: with the router stopped, a bare copy reading the same input
//!    topic from its end gets live input at the same rate, measured the same way ([`latency`]):
//!    the latency the broker and the client give at that rate with no router in between;
//! 9. **same records' latency**: the router's records written with no Tollgate code between,
//!    their audit records handed in process as the router's are, fed live at the same rate
//!    through an input topic of their own and measured the same way.
//!
//! It prints a table (events/s, ratios to both baselines, CPU seconds per million events, RSS,
//! latency percentiles, and per phase how busy the box was and how much of it went to other
//! processes, such as a broker beside the harness: [`machine`]) and can write it as JSON.
//! Figures are measured, never asserted.

mod handed;
pub mod join;
pub mod join_records;
pub mod latency;
pub mod machine;
pub mod records;
mod report;
pub mod shape;
pub mod speed;

use crate::synth::{flush_delivered, produce, send_waiting, Load, Mix};
use machine::{cpu_by_thread, cpu_spent_since, rss_mib, Mark, Spent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use report::over;
pub use report::{Phase, Report, RouterAudit};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::LoggingContext;
use tollgate_router::config::RouterConfig;
use tollgate_router::kafka::group::Member;
use tollgate_router::pipeline::Pipeline;
use tollgate_router::telemetry::Telemetry;

/// Harness options.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub brokers: String,
    /// Events preloaded for the throughput phases.
    pub events: u64,
    pub partitions: i32,
    pub seed: u64,
    /// Share of the router's measured rate used for the latency phase.
    pub latency_load: f64,
    pub latency_seconds: u64,
    /// librdkafka producer settings for the router and the pass-through (e.g. linger.ms).
    pub producer: Vec<(String, String)>,
    /// librdkafka consumer settings for the router and the pass-through (e.g. fetch.wait.max.ms).
    pub consumer: Vec<(String, String)>,
    /// librdkafka settings for one of the router's consumers only (`kafka.consumers`), over
    /// `consumer`'s; the baselines standing for that consumer take them too.
    pub consumer_of: Vec<(Member, String, String)>,
    /// The router's routing loops (`processing.routing_threads`).
    pub routing_threads: usize,
    /// Reviewer decisions produced in the join phase (at most one per event in review).
    pub decisions: u64,
    /// Their rate (decisions/s; 0: flat out).
    pub decision_rate: u64,
    /// The router's output encoding (`output.format`); the baselines write what it writes.
    pub output_format: tollgate_schemas::RecordFormat,
    /// Whether the router's routed records carry their headers (`output.headers`); the
    /// baselines' copies do as they do.
    pub routed_headers: bool,
}

/// One `--consumer-of` setting, `consumer:key=value`: the consumer by its name in
/// `kafka.consumers` (`routing`, `review_join`, `audit_chain`).
pub fn consumer_setting(arg: &str) -> Result<(Member, String, String), String> {
    let parsed = arg.split_once(':').and_then(|(member, kv)| Some((member, kv.split_once('=')?)));
    let (member, (key, value)) = parsed.ok_or_else(|| format!("`{arg}`: expected consumer:key=value"))?;
    let member = member.parse().map_err(|e| format!("`{arg}`: {e}"))?;
    Ok((member, key.to_owned(), value.to_owned()))
}

fn phase(name: &str, events: u64, spent: Spent) -> Phase {
    let seconds = spent.wall.as_secs_f64().max(1e-9);
    Phase {
        name: name.to_owned(),
        events,
        seconds,
        events_per_second: events as f64 / seconds,
        cpu_seconds_per_million: spent.cpu.as_secs_f64() * 1e6 / events.max(1) as f64,
        rss_mib: rss_mib(),
        machine: spent.machine,
        cpu_by_thread: Vec::new(),
    }
}

/// Runs the harness. `dir` receives the router's configuration files.
pub async fn run(options: BenchOptions, dir: &Path, shutdown: CancellationToken) -> anyhow::Result<Report> {
    let run_id =
        format!("bench-{}-{}", std::process::id(), tollgate_router::pipeline::millis(std::time::SystemTime::now()));
    let mut config = crate::demo::reference_example(dir)?;
    config.kafka.brokers = options.brokers.clone();
    config.kafka.input_topic = format!("{run_id}.payments");
    config.kafka.group_id = format!("{run_id}.router");
    config.kafka.partitions = options.partitions;
    config.kafka.create_topics = true;
    config.metrics.enabled = false;
    config.processing.shutdown_timeout = tollgate_router::config::HumanDuration::secs(10);
    config.processing.routing_threads = options.routing_threads;
    config.output.format = options.output_format;
    config.output.headers = options.routed_headers;
    for (name, topic) in [
        ("auto-commit", &mut config.topics.auto_commit),
        ("async-review", &mut config.topics.async_review),
        ("sync-review", &mut config.topics.sync_review),
        ("auto-reject", &mut config.topics.auto_reject),
        ("dead-letter", &mut config.topics.dead_letter),
        ("audit", &mut config.topics.audit),
        ("audit-intake", &mut config.topics.audit_intake),
        ("review-decisions", &mut config.topics.review_decisions),
        ("pending-changelog", &mut config.topics.pending_changelog),
        ("resolved", &mut config.topics.resolved),
        ("escalations", &mut config.topics.escalations),
        ("rollbacks", &mut config.topics.rollbacks),
    ] {
        *topic = format!("{run_id}.{name}");
    }
    for (k, v) in &options.producer {
        config.kafka.producer.insert(k.clone(), v.clone());
    }
    for (k, v) in &options.consumer {
        config.kafka.consumer.insert(k.clone(), v.clone());
    }
    for (member, k, v) in &options.consumer_of {
        member.settings_mut(&mut config.kafka.consumers).insert(k.clone(), v.clone());
    }
    config.validate()?;
    tollgate_router::kafka::ensure_topics(&config).await?;
    let copy_topic = format!("{run_id}.pass-through");
    let live_copy = format!("{run_id}.live-pass-through");
    let same = records::Topics::named("same-records", &format!("{run_id}.same"));
    let same_direct = records::Topics::named("same-direct", &format!("{run_id}.same-direct"));
    let same_handed = records::Topics::named("same-handed", &format!("{run_id}.same-handed"));
    let same_live_input = format!("{run_id}.same-live-payments");
    let same_live = records::Topics::named("same-live", &format!("{run_id}.same-live"));
    let same_join = records::Topics {
        routed: vec![format!("{run_id}.same-resolved")],
        ..records::Topics::named("same-join", &format!("{run_id}.same-join"))
    };
    let same_decisions = format!("{run_id}.same-decisions");
    let mut names = vec![&copy_topic, &live_copy, &same_live_input, &same_decisions];
    for topics in [&same, &same_direct, &same_handed, &same_live, &same_join] {
        names.extend(&topics.routed);
        names.extend([&topics.intake, &topics.audit, &topics.changelog]);
    }
    let specs: Vec<tollgate_common::kafka::TopicSpec> =
        names.into_iter().map(|name| tollgate_common::kafka::TopicSpec { name, compacted: false }).collect();
    tollgate_common::kafka::ensure_topics(
        &tollgate_router::kafka::producer_config(&config),
        &specs,
        options.partitions,
        1,
    )
    .await?;

    eprintln!(
        "preloading {} events into {} ({} partitions)…",
        options.events, config.kafka.input_topic, options.partitions
    );
    let load = Load {
        topic: config.kafka.input_topic.clone(),
        rate: 0,
        events: Some(options.events),
        seed: options.seed,
        mix: Mix::default(),
        prefix: "bench".into(),
        producer: connection_settings(&config),
    };
    let brokers = options.brokers.clone();
    let stop = shutdown.clone();
    tokio::task::spawn_blocking(move || produce(&brokers, &load, &stop, |_| {})).await??;
    let mut probe = speed::SpeedProbe::start(&config, options.seed)?;

    probe.mark("pass-through");
    eprintln!("pass-through…");
    let pass = {
        let (config, copy_topic, n, stop) = (config.clone(), copy_topic.clone(), options.events, shutdown.clone());
        let (from, ready) = (config.kafka.input_topic.clone(), AtomicBool::new(false));
        tokio::task::spawn_blocking(move || {
            let copy = Copy { from: &from, to: &copy_topic, events: n, live: false };
            pass_through(&config, &copy, &ready, &stop)
        })
        .await??
    };
    let shape = {
        let (config, seed, sample) = (config.clone(), options.seed, options.events.min(20_000));
        tokio::task::spawn_blocking(move || shape::Shape::measure(&config, seed, sample)).await??
    };
    let n = options.events;
    let same_records =
        same_records_phase(&config, same, (&shape, records::AuditPath::Intake, n), &mut probe, &shutdown).await?;
    let same_records_no_intake =
        same_records_phase(&config, same_direct, (&shape, records::AuditPath::Direct, n), &mut probe, &shutdown)
            .await?;
    let same_records_handed_off =
        same_records_phase(&config, same_handed, (&shape, records::AuditPath::HandOff, n), &mut probe, &shutdown)
            .await?;
    probe.mark("router");
    eprintln!("router…");
    let (router, router_window_start, telemetry, stop_router, handle) =
        route(&config, options.events, &shutdown).await?;
    let (handed, behind) = telemetry.audit_hand_off_counts();
    let router_audit = RouterAudit {
        chained: telemetry.audit_chained_count(),
        handed,
        behind,
        transactions: telemetry.audit_transactions_committed(),
    };

    // Latency: live input at a share of the router's sustained rate.
    let rate = (router.events_per_second * options.latency_load).max(1.0);
    eprintln!("latency at {rate:.0} events/s for {} s…", options.latency_seconds);
    let latency_events = (rate * options.latency_seconds as f64) as u64;
    let load = Load {
        topic: config.kafka.input_topic.clone(),
        rate: rate as u64,
        events: Some(latency_events),
        seed: options.seed + 1,
        mix: Mix::default(),
        prefix: "live".into(),
        producer: connection_settings(&config),
    };
    let brokers = options.brokers.clone();
    let stop = shutdown.clone();
    probe.mark("latency");
    let offer = Mark::now();
    let producing = {
        let load = load.clone();
        tokio::task::spawn_blocking(move || produce(&brokers, &load, &stop, |_| {}))
    };
    let target = options.events + latency_events;
    wait_until(|| handled(&telemetry) >= target, Duration::from_secs(options.latency_seconds + 120), &shutdown).await;
    producing.await??;
    let latency_machine = offer.spent().machine;

    let ids = {
        let (config, events, seed, limit) = (config.clone(), options.events, options.seed, options.decisions);
        tokio::task::spawn_blocking(move || join::reviewed_ids(&config, events, seed, limit)).await??
    };
    probe.mark("join");
    eprintln!("join: {} decisions at {} decisions/s…", ids.len(), options.decision_rate);
    let join = {
        let ids = ids.clone();
        join::run(&config, ids, options.decision_rate, &telemetry, Duration::from_secs(120), &shutdown).await?
    };
    stop_router.cancel();
    let _ = handle.await;
    eprintln!("join, same records: {} decisions at {} decisions/s…", ids.len(), options.decision_rate);
    let join_shape = {
        let (config, routing) = (config.clone(), shape.clone());
        tokio::task::spawn_blocking(move || join_records::JoinShape::measure(&config, &routing, 2_000)).await??
    };
    probe.mark("join, same records");
    let join_same_records = join_records::run(
        &config,
        same_join,
        same_decisions,
        join_shape.clone(),
        ids,
        options.decision_rate,
        &shutdown,
    )
    .await?;
    // The baselines at the same rate, once the router has stopped, each assigned its input at
    // the end: the pass-through reads the router's input topic, so the broker serves it from
    // the same state; same records read a topic of their own (below).
    probe.mark("pass-through latency");
    eprintln!("pass-through latency at {rate:.0} events/s for {} s…", options.latency_seconds);
    let pass_through_latency = {
        let (c, to, stop) = (config.clone(), live_copy.clone(), shutdown.clone());
        // The router's input: the preload and the router's live input.
        let offer = (&load, "pass", rate, options.events + latency_events);
        baseline_latency(&options, &config, offer, vec![live_copy], &shutdown, move |ready| {
            let copy = Copy { from: &c.kafka.input_topic, to: &to, events: latency_events, live: true };
            pass_through(&c, &copy, ready, &stop).map(|_| ())
        })
        .await?
    };
    probe.mark("same records' latency");
    eprintln!("same records' latency at {rate:.0} events/s for {} s…", options.latency_seconds);
    let same_records_latency = {
        // Fed through an input topic of its own: nisshi's fetches slow down as a topic grows,
        // and by now the router's input holds the preload and two latency phases. The
        // baseline is favoured by this, not the router.
        let mut c = config.clone();
        c.kafka.input_topic = same_live_input.clone();
        // Its routed records, as the router's latency reads them (dead letters aside).
        let outputs = same_live.routed[..shape::ROUTE_TOPICS].to_vec();
        let offer = (&load, "same", rate, 0);
        let (live_config, stop, shape) = (c.clone(), shutdown.clone(), shape.clone());
        baseline_latency(&options, &live_config, offer, outputs, &shutdown, move |ready| {
            // Its audit records handed in process, as the router's are when its chainer holds
            // their intake partitions (every one, in the router phase).
            let what = (&shape, records::AuditPath::HandOff);
            records::run(&c, &same_live, what, latency_events, records::Start::Live(ready), &stop).map(|_| ())
        })
        .await?
    };
    let latency = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let routed: Vec<&str> =
                tollgate_schemas::Route::ALL.iter().filter_map(|r| config.topics.for_route(*r)).collect();
            latency::measure(&config, &config.kafka.input_topic, &routed, "live-", rate)
        })
        .await?
        .map(|measured| latency::Latency {
            machine: latency_machine,
            input_held_before: options.events,
            ..measured
        })?
    };
    Ok(Report {
        events: options.events,
        partitions: options.partitions,
        routing_threads: options.routing_threads,
        output_format: options.output_format,
        routed_headers: options.routed_headers,
        ratio: over(&router, &pass),
        ratio_to_same_records: over(&router, &same_records),
        pass_through: pass,
        same_records,
        same_records_no_intake,
        same_records_handed_off,
        shape,
        router,
        latency,
        pass_through_latency,
        same_records_latency,
        router_audit,
        router_window_start,
        join,
        join_same_records,
        join_shape,
        host_speed: probe.finish(),
    })
}

/// A same-records phase on `events` of the preloaded input, its audit copies taking `path`.
async fn same_records_phase(
    config: &RouterConfig,
    topics: records::Topics,
    (shape, path, events): (&shape::Shape, records::AuditPath, u64),
    probe: &mut speed::SpeedProbe,
    shutdown: &CancellationToken,
) -> anyhow::Result<Phase> {
    probe.mark(path.phase());
    eprintln!("{}…", path.phase());
    let (config, stop, shape) = (config.clone(), shutdown.clone(), shape.clone());
    tokio::task::spawn_blocking(move || {
        records::run(&config, &topics, (&shape, path), events, records::Start::Preloaded, &stop)
    })
    .await?
}

/// A latency baseline: `copy` runs on its own thread from the end of `config`'s input topic and
/// sets the flag it is given once it knows where every partition ends; then live input (ids
/// `<prefix>-…`, the latency phase's rate and count) is offered to that topic, which held
/// `held_before` events, and each event's latency is measured on `outputs`.
async fn baseline_latency(
    options: &BenchOptions,
    config: &RouterConfig,
    (load, prefix, rate, held_before): (&Load, &str, f64, u64),
    outputs: Vec<String>,
    shutdown: &CancellationToken,
    copy: impl FnOnce(&AtomicBool) -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<latency::Latency> {
    let ready = Arc::new(AtomicBool::new(false));
    let copying = {
        let ready = Arc::clone(&ready);
        tokio::task::spawn_blocking(move || copy(&ready))
    };
    // Offered once the copy knows where every partition ends, so the backlog is not copied.
    wait_until(|| ready.load(Ordering::Acquire), Duration::from_secs(60), shutdown).await;
    let load = Load { prefix: prefix.into(), topic: config.kafka.input_topic.clone(), ..load.clone() };
    let (brokers, stop) = (options.brokers.clone(), shutdown.clone());
    let offer = Mark::now();
    tokio::task::spawn_blocking(move || produce(&brokers, &load, &stop, |_| {})).await??;
    let machine = offer.spent().machine;
    copying.await??;
    let (config, prefix) = (config.clone(), format!("{prefix}-"));
    let measured = tokio::task::spawn_blocking(move || {
        let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        latency::measure(&config, &config.kafka.input_topic, &outputs, &prefix, rate)
    })
    .await??;
    Ok(latency::Latency { machine, input_held_before: held_before, ..measured })
}

/// What the pass-through copies.
struct Copy<'a> {
    from: &'a str,
    to: &'a str,
    /// Stop after this many.
    events: u64,
    /// Start at the end of `from` (not its beginning), and stop also when no record came for a
    /// few seconds.
    live: bool,
}

/// Consumes `copy.from` and produces each record to `copy.to`, with the router's client
/// settings; measured from the first record read to the last acknowledged. `ready` is set once
/// the consumer is set up (for a live copy: once it knows where each partition ends).
fn pass_through(
    config: &RouterConfig,
    copy: &Copy<'_>,
    ready: &AtomicBool,
    stop: &CancellationToken,
) -> anyhow::Result<Phase> {
    let mut consumer_settings = tollgate_router::kafka::consumer_config(config, Member::Routing);
    consumer_settings
        .set("group.id", format!("{}.pass-through.{}", config.kafka.group_id, if copy.live { "live" } else { "bulk" }))
        .set("enable.auto.offset.store", "true");
    let consumer: BaseConsumer = consumer_settings.create()?;
    let producer: ThreadedProducer<LoggingContext> = tollgate_router::kafka::producer_config(config)
        .create_with_context(LoggingContext::new("pass-through producer"))?;
    if copy.live {
        latency::assign_at_end(&consumer, copy.from)?;
    } else {
        consumer.subscribe(&[copy.from])?;
    }
    ready.store(true, Ordering::Relaxed);
    let mut copied = 0u64;
    let mut started: Option<Mark> = None;
    let (deadline, mut last) = (Instant::now() + Duration::from_secs(600), Instant::now());
    while copied < copy.events && Instant::now() < deadline && !stop.is_cancelled() {
        if copy.live && started.is_some() && last.elapsed() > Duration::from_secs(5) {
            break;
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m?;
        last = Instant::now();
        started.get_or_insert_with(Mark::now);
        let mut record = BaseRecord::<[u8], [u8]>::to(copy.to).payload(m.payload().unwrap_or_default());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        send_waiting(&producer, record, stop)?;
        copied += 1;
    }
    flush_delivered(&producer, Duration::from_secs(60), "the pass-through")?;
    Ok(phase("pass-through", copied, started.map(|m| m.spent()).unwrap_or_default()))
}

/// Starts the router on the preloaded input and measures it until every event is routed and
/// chained: the phase, with its CPU per million events by thread group, and how many events
/// the router had handled when the window started. The router keeps running for the latency
/// phase.
async fn route(
    config: &RouterConfig,
    events: u64,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Phase, u64, Telemetry, CancellationToken, tokio::task::JoinHandle<()>)> {
    let telemetry = Telemetry::new();
    let pipeline = Pipeline::from_config(config)?;
    let stop = shutdown.child_token();
    let handle = {
        let (config, telemetry, stop) = (config.clone(), telemetry.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = tollgate_router::run_with(config, pipeline, telemetry, stop).await {
                eprintln!("the router stopped: {e}");
            }
        })
    };
    let limit = Duration::from_secs(600);
    // Measured from the first event routed (the consumer group's join is not routing) once
    // the router's own chainer holds its intake partitions: until then its audit records go
    // through the intake, as they do only while a router starts. The router waits for its
    // chainer before it routes (`processing.chainer_join_wait`); should that wait run out, the
    // chainer's group joins after the routing consumer's.
    wait_until(|| handled(&telemetry) > 0, limit, shutdown).await;
    let (mut first, mut start, mut threads) = (handled(&telemetry), Mark::now(), cpu_by_thread());
    wait_until(|| telemetry.audit_chain_partitions() > 0 || handled(&telemetry) >= events, limit, shutdown).await;
    let routed_before = handled(&telemetry);
    if telemetry.audit_chain_partitions() > 0 && routed_before < events {
        let routed_first = first;
        (first, start, threads) = (routed_before, Mark::now(), cpu_by_thread());
        // A late join: the events routed before it sent their audit records through the
        // intake, and the chainer chains them from there while the router goes on. That is
        // a start-up's work, so the window starts again once it is done, when enough of the
        // input is left to measure.
        let margin = (config.processing.batch_size * config.processing.routing_threads.max(1)) as u64;
        if routed_before > routed_first + margin {
            let through_intake = |t: &Telemetry| t.audit_chained_count().saturating_sub(t.audit_hand_off_counts().0);
            let caught_up = || through_intake(&telemetry) + margin >= routed_before;
            wait_until(|| caught_up() || handled(&telemetry) >= events, limit, shutdown).await;
            let now = handled(&telemetry);
            if caught_up() && now + events / 4 <= events {
                eprintln!(
                    "the router's audit chainer joined after {routed_before} events were routed: measured from \
                     {now} events routed on, once it had chained their audit records from the intake"
                );
                (first, start, threads) = (now, Mark::now(), cpu_by_thread());
            } else {
                eprintln!(
                    "the router's audit chainer joined after {routed_before} events were routed and chained \
                     their audit records from the intake with less than a quarter of the input left: measured \
                     from the join, that work in the window (the router waits processing.chainer_join_wait \
                     for its chainer before it routes; on nisshi a group's join takes half its session \
                     timeout)"
                );
            }
        }
    } else {
        eprintln!(
            "the router's audit chainer held no intake partition before the input was routed: \
             measured from the first event, its audit records through the intake"
        );
    }
    wait_until(|| handled(&telemetry) >= events, limit, shutdown).await;
    // Done when the audit trail has caught up too: every event's audit record chained.
    wait_until(|| telemetry.audit_chained_count() >= events, limit, shutdown).await;
    let routed = handled(&telemetry);
    let by_thread = cpu_spent_since(&threads, routed - first);
    let phase = Phase { cpu_by_thread: by_thread, ..phase("router", routed - first, start.spent()) };
    Ok((phase, first, telemetry, stop, handle))
}

/// Events the router has finished with: routed on any route, or dead-lettered.
fn handled(telemetry: &Telemetry) -> u64 {
    tollgate_schemas::Route::ALL.iter().map(|r| telemetry.routed_count(*r)).sum::<u64>() + telemetry.dead_letter_count()
}

/// Waits until `done`, `timeout` or `shutdown`, whichever comes first.
/// The producer settings the load generator takes from the bench's: those that connect to a
/// secured broker (`security.*`, `sasl.*`, `ssl.*`), not those that shape batches, so the input
/// is written the same way whatever producer settings a run tries on the router.
fn connection_settings(config: &RouterConfig) -> Vec<(String, String)> {
    let connects = |key: &str| ["security.", "sasl.", "ssl."].iter().any(|p| key.starts_with(p));
    config.kafka.producer.iter().filter(|(k, _)| connects(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

async fn wait_until(done: impl Fn() -> bool, timeout: Duration, shutdown: &CancellationToken) {
    let deadline = Instant::now() + timeout;
    while !done() && Instant::now() < deadline && !shutdown.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_generator_takes_the_settings_that_connect_and_no_others() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/payments/router.toml");
        let mut config = RouterConfig::load(std::path::Path::new(example)).unwrap();
        for (k, v) in [("security.protocol", "SASL_SSL"), ("sasl.username", "u"), ("ssl.ca.location", "/ca.pem")] {
            config.kafka.producer.insert(k.to_owned(), v.to_owned());
        }
        config.kafka.producer.insert("compression.type".into(), "none".into());
        let kept: Vec<String> = connection_settings(&config).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kept, ["sasl.username", "security.protocol", "ssl.ca.location"]);
    }

    #[test]
    fn a_consumer_setting_names_its_consumer() {
        let setting = consumer_setting("audit_chain:fetch.wait.max.ms=500").unwrap();
        assert_eq!(setting, (Member::AuditChain, "fetch.wait.max.ms".to_owned(), "500".to_owned()));
        assert_eq!(consumer_setting("review_join:a=b=c").unwrap().2, "b=c", "the value keeps its `=`");
        for bad in ["fetch.wait.max.ms=5", "routing:fetch.wait.max.ms", "router:a=b", ""] {
            let error = consumer_setting(bad).unwrap_err();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
        assert!(consumer_setting("router:a=b").unwrap_err().contains("routing, review_join, audit_chain"));
    }
}
