//! The review-join phase of `tollgate bench`: reviewer decisions for events waiting in review,
//! produced at a fixed rate while the router runs, and how far the join's consumption of them
//! falls behind (its input lag).
//!
//! The events in review are found by routing the preloaded stream again in process (same seed,
//! same policy), so no topic has to be read back. A first tenth of the decisions (at most
//! 1,000) warms up: the phase waits until the join consumes them, which also waits out a
//! changelog replay after the join's partitions were assigned (decisions are held meanwhile).
//! The rest are timed. Lag is sampled every 10 ms as decisions handed to the producer minus
//! decisions the join has consumed; a join that keeps up shows a lag bounded by the rate times
//! one produce-and-fetch round trip, as large at the end of the phase as at its start.

use super::machine::{cpu_by_thread, cpu_spent_since, MachineShare, Mark, Spent};
use crate::synth::{send_waiting, Mix, PaymentGenerator};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use serde::Serialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::LoggingContext;
use tollgate_router::config::RouterConfig;
use tollgate_router::pipeline::{millis, Output, Pipeline, Source, Verdict};
use tollgate_router::telemetry::Telemetry;
use tollgate_schemas::{RecordFormat, ReviewAction, ReviewDecision};

/// The join phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct JoinPhase {
    /// Decisions timed (one per event in review, up to the requested count, less the warm-up).
    pub decisions: u64,
    /// Until the join consumed the warm-up decisions (ms).
    pub warm_up_ms: f64,
    /// The rate asked for (decisions/s).
    pub target_rate: u64,
    /// The rate achieved by the producer.
    pub offered_per_second: f64,
    /// Decisions consumed by the join, over the time from the first produced to the last joined
    /// (sampled every 10 ms). It counts the last decision's round trip through the broker.
    pub joined_per_second: f64,
    /// Decisions consumed by the join per second while decisions were offered: between the
    /// first lag sample and the last one taken before the last decision was handed over, so
    /// without the last round trip. A join that keeps up consumes at the offered rate. 0 when
    /// production was too short for two samples.
    pub joined_while_offered_per_second: f64,
    /// Decisions produced but not yet consumed: the largest sample in the first and in the
    /// second half of the production, and at its end.
    pub lag_max_first_half: u64,
    pub lag_max_second_half: u64,
    pub lag_at_end: u64,
    /// From the last decision produced to the last one joined.
    pub drain_ms: f64,
    /// The whole process's CPU over the phase, per million decisions.
    pub cpu_seconds_per_million: f64,
    /// The same by thread group (librdkafka's threads, the review join, the audit chainer…).
    pub cpu_by_thread: Vec<(String, f64)>,
    /// How busy the box was, and how much of it went to other processes.
    pub machine: Option<MachineShare>,
}

impl JoinPhase {
    /// The phase's figures on one line.
    pub fn figures(&self) -> String {
        format!(
            "{} decisions offered at {:.0}/s (asked {}/s), joined at {:.0}/s ({:.0}/s while offered), {:.1} CPU s per M; lag max {} (first half) / {} (second half), {} at the end of production, drained {:.0} ms later (warm-up {:.0} ms); {}",
            self.decisions,
            self.offered_per_second,
            self.target_rate,
            self.joined_per_second,
            self.joined_while_offered_per_second,
            self.cpu_seconds_per_million,
            self.lag_max_first_half,
            self.lag_max_second_half,
            self.lag_at_end,
            self.drain_ms,
            self.warm_up_ms,
            MachineShare::figures(self.machine.as_ref()),
        )
    }
}

/// Ids of the first `limit` preloaded events the policy sends to review (the bench's stream:
/// `seed`, default mix, ids `bench-<n>`).
pub fn reviewed_ids(config: &RouterConfig, events: u64, seed: u64, limit: u64) -> anyhow::Result<Vec<String>> {
    let pipeline = Pipeline::from_config(config)?;
    let mut generator = PaymentGenerator::new(seed, Mix::default(), "bench");
    let (mut buf, mut out, now) = (Vec::new(), Output::default(), SystemTime::now());
    let mut ids = Vec::new();
    for offset in 0..events as i64 {
        if ids.len() as u64 >= limit {
            break;
        }
        generator.next_into(&mut buf);
        let source = Source { topic: &config.kafka.input_topic, partition: 0, offset };
        if let Verdict::Routed { route, .. } = pipeline.process(Some(&buf), source, now, &mut out) {
            if route.is_review() {
                ids.push(out.event_id.clone());
            }
        }
    }
    Ok(ids)
}

/// Produces an approval or a rejection for each of `ids` at `rate` per second (0: flat out) to
/// the decisions topic, sampling the join's lag, until every decision is consumed (or
/// `timeout`).
pub async fn run(
    config: &RouterConfig,
    ids: Vec<String>,
    rate: u64,
    telemetry: &Telemetry,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinPhase> {
    let before = telemetry.review_decisions_count();
    let joined = || telemetry.review_decisions_count().saturating_sub(before);
    measure(config, &config.topics.review_decisions, ids, rate, joined, timeout, shutdown).await
}

/// Produces the decisions for `ids` to `topic` at `rate` and samples the lag of whatever
/// consumes them, `joined` counting the decisions it has consumed (the join, or its baseline).
pub async fn measure(
    config: &RouterConfig,
    topic: &str,
    ids: Vec<String>,
    rate: u64,
    joined: impl Fn() -> u64,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinPhase> {
    let producer: Arc<ThreadedProducer<LoggingContext>> = Arc::new(
        tollgate_router::kafka::producer_config(config)
            .create_with_context(LoggingContext::new("decision producer"))?,
    );
    let ids = Arc::new(ids);
    let warm_up = (ids.len() / 10).min(1_000);
    let joined = &joined;
    let wait_joined = |n: u64| async move {
        let deadline = Instant::now() + timeout;
        while joined() < n && Instant::now() < deadline && !shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let sent = Arc::new(AtomicU64::new(0));
    let produce_range = |range: std::ops::Range<usize>, payloads: Vec<Vec<u8>>, rate: u64| {
        let (topic, producer, ids, sent, stop) =
            (topic.to_owned(), Arc::clone(&producer), Arc::clone(&ids), Arc::clone(&sent), shutdown.clone());
        tokio::task::spawn_blocking(move || produce(&topic, &producer, (&ids, range, &payloads), rate, &sent, &stop))
    };
    // Every decision is encoded before any clock starts: the phase's wall and CPU time are the
    // join's, not the generator's encoding (the producer's own clock always started after it,
    // the phase's did not before session 23).
    let warm_up_payloads = encode(&ids, 0..warm_up)?;
    let timed_payloads = encode(&ids, warm_up..ids.len())?;

    let started = Instant::now();
    produce_range(0..warm_up, warm_up_payloads, 0).await??;
    wait_joined(warm_up as u64).await;
    let warm_up_ms = started.elapsed().as_secs_f64() * 1e3;

    let total = ids.len() as u64;
    let timed = total - warm_up as u64;
    let (t0, start, threads_before) = (Instant::now(), Mark::now(), cpu_by_thread());
    let producing = produce_range(warm_up..ids.len(), timed_payloads, rate);
    // (seconds since t0, lag, decisions consumed)
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    // When the last decision was consumed, if that came before the producer's final flush.
    let mut all_joined: Option<Spent> = None;
    while !producing.is_finished() && !shutdown.is_cancelled() {
        let consumed = joined();
        let lag = sent.load(Ordering::Relaxed).saturating_sub(consumed);
        samples.push((t0.elapsed().as_secs_f64(), lag, consumed));
        if consumed >= total && all_joined.is_none() {
            all_joined = Some(start.spent());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let production = producing.await??;
    let produced_at = Instant::now();
    let lag_at_end = total.saturating_sub(joined());
    wait_joined(total).await;
    let spent = all_joined.unwrap_or_else(|| start.spent());
    let drain_ms = produced_at.elapsed().as_secs_f64() * 1e3;
    let half = production.as_secs_f64() / 2.0;
    let max_lag =
        |first: bool| samples.iter().filter(|(t, ..)| (*t < half) == first).map(|(_, lag, _)| *lag).max().unwrap_or(0);
    let offering: Vec<_> = samples.iter().filter(|(t, ..)| *t <= production.as_secs_f64()).collect();
    let joined_while_offered_per_second = match (offering.first(), offering.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => b.2.saturating_sub(a.2) as f64 / (b.0 - a.0),
        _ => 0.0,
    };
    let timed_joined = joined().min(total).saturating_sub(warm_up as u64);
    let cpu_by_thread = cpu_spent_since(&threads_before, timed);
    Ok(JoinPhase {
        decisions: timed,
        warm_up_ms,
        target_rate: rate,
        offered_per_second: timed as f64 / production.as_secs_f64().max(1e-9),
        joined_per_second: timed_joined as f64 / spent.wall.as_secs_f64().max(1e-9),
        joined_while_offered_per_second,
        lag_max_first_half: max_lag(true),
        lag_max_second_half: max_lag(false),
        lag_at_end,
        drain_ms,
        cpu_seconds_per_million: spent.cpu.as_secs_f64() * 1e6 / timed.max(1) as f64,
        cpu_by_thread,
        machine: spent.machine,
    })
}

/// The decisions for `ids[range]`, encoded: mostly approvals, some rejections (both end the
/// review), all decided now.
fn encode(ids: &[String], range: std::ops::Range<usize>) -> anyhow::Result<Vec<Vec<u8>>> {
    let first = range.start;
    let decided_at = millis(SystemTime::now());
    let payloads = ids[range]
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let n = first + n;
            let mut buf = Vec::with_capacity(256);
            let decision_id = format!("bench-decision-{n}");
            ReviewDecision {
                decision_id: Some(Cow::Borrowed(&decision_id)),
                event_id: Cow::Borrowed(id),
                reviewer_id: Cow::Borrowed("bench-reviewer"),
                reviewer_role: Cow::Borrowed("analyst"),
                action: if n.is_multiple_of(5) { ReviewAction::Reject } else { ReviewAction::Approve },
                rationale: Cow::Borrowed("bench decision"),
                decided_at,
                second_signoff: None,
            }
            .write(RecordFormat::Json, &mut buf)
            .map(|()| buf)
        })
        .collect::<Result<Vec<Vec<u8>>, _>>()?;
    Ok(payloads)
}

/// The producing side: the decisions for `ids[range]` (`payloads`, from [`encode`]), paced to
/// `rate` (0: flat out); counts them in `sent` (from the start of `ids`) and returns how long
/// producing took, until the last decision was handed to the producer (then it flushes: a
/// flush's wait for the last acknowledgements is not offering).
fn produce(
    topic: &str,
    producer: &ThreadedProducer<LoggingContext>,
    (ids, range, payloads): (&[String], std::ops::Range<usize>, &[Vec<u8>]),
    rate: u64,
    sent: &AtomicU64,
    stop: &CancellationToken,
) -> anyhow::Result<Duration> {
    let first = range.start;
    let started = Instant::now();
    for (n, (id, payload)) in ids[range].iter().zip(payloads).enumerate() {
        if stop.is_cancelled() {
            break;
        }
        while rate > 0 && n as u64 >= (started.elapsed().as_secs_f64() * rate as f64) as u64 {
            std::thread::sleep(Duration::from_micros(500));
        }
        send_waiting(producer, BaseRecord::<str, [u8]>::to(topic).key(id).payload(payload), stop)?;
        sent.store((first + n) as u64 + 1, Ordering::Relaxed);
    }
    let offered = started.elapsed();
    crate::synth::flush_delivered(producer, Duration::from_secs(30), "the decision producer")?;
    Ok(offered)
}
