//! `tollgate demo`: the whole router on an embedded default, with nothing to install.
//!
//! Starts librdkafka's in-process mock cluster (a real Kafka protocol endpoint on loopback), a
//! synthetic payment stream, and the router with the reference example's configuration, serves
//! `/metrics`, and prints a live summary until Ctrl-C or `--events N` events are routed.

use crate::synth::{Load, Mix};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::mocking::MockCluster;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_router::config::RouterConfig;
use tollgate_router::pipeline::Pipeline;
use tollgate_router::telemetry::Telemetry;
use tollgate_schemas::Route;

/// The reference example, embedded so the demo needs no files.
const ROUTER_TOML: &str = include_str!("../examples/payments/router.toml");
const POLICY_TOML: &str = include_str!("../examples/payments/policy.toml");
const MODEL_TOML: &str = include_str!("../examples/payments/model.toml");

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this many events (all routed or dead-lettered); run until Ctrl-C when `None`.
    pub events: Option<u64>,
    /// Events per second produced by the synthetic stream (0: as fast as possible).
    pub rate: u64,
    /// Where to serve `/metrics`.
    pub metrics_listen: SocketAddr,
    /// Score with the built-in logistic model instead of the events' upstream scores.
    pub logistic: bool,
    /// Seed of the synthetic stream.
    pub seed: u64,
    /// Run against these brokers instead of the in-process cluster (topics are created there).
    pub brokers: Option<String>,
}

/// Writes the embedded example into a private directory and loads it as configuration.
/// Writes the embedded reference example into `dir` and loads its router configuration.
pub fn reference_example(dir: &Path) -> anyhow::Result<RouterConfig> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("router.toml"), ROUTER_TOML)?;
    std::fs::write(dir.join("policy.toml"), POLICY_TOML)?;
    std::fs::write(dir.join("model.toml"), MODEL_TOML)?;
    Ok(RouterConfig::load(&dir.join("router.toml"))?)
}

fn embedded_config(dir: &Path, brokers: &str, in_process: bool, options: &DemoOptions) -> anyhow::Result<RouterConfig> {
    let mut config = reference_example(dir)?;
    config.kafka.brokers = brokers.to_owned();
    config.kafka.input_topic = "payments".into();
    config.kafka.group_id = "tollgate-demo".into();
    // The mock cluster has no admin API; the demo creates the topics on it directly.
    config.kafka.create_topics = !in_process;
    config.kafka.partitions = 3;
    config.metrics.listen = options.metrics_listen;
    config.processing.shutdown_timeout = tollgate_router::config::HumanDuration::secs(5);
    if options.logistic {
        config.scorer.kind = tollgate_router::config::ScorerKind::Logistic;
        config.scorer.model = Some(PathBuf::from("model.toml"));
    }
    config.validate()?;
    Ok(config)
}

/// Runs the demo until Ctrl-C (or `--events`). Returns the number of events routed.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<u64> {
    let cluster = match options.brokers {
        Some(_) => None,
        None => Some(MockCluster::new(1)?),
    };
    let brokers = match (&cluster, &options.brokers) {
        (Some(c), _) => c.bootstrap_servers(),
        (None, Some(b)) => b.clone(),
        (None, None) => unreachable!("a cluster is started when no brokers are given"),
    };
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    let config = embedded_config(&dir, &brokers, cluster.is_some(), &options)?;
    if let Some(cluster) = &cluster {
        for topic in config.topics.all().into_iter().chain([config.kafka.input_topic.as_str()]) {
            cluster.create_topic(topic, 3, 1)?;
        }
    }
    let kind = if cluster.is_some() { "in-process Kafka" } else { "Kafka" };
    println!("Tollgate demo: {kind} at {brokers}; metrics at http://{}/metrics", options.metrics_listen);
    let scorer = if options.logistic { "logistic" } else { "field" };
    println!("Routing synthetic payments with policy examples/payments/policy.toml ({scorer} scorer). Ctrl-C to stop.");

    let pipeline = Pipeline::from_config(&config)?;
    if cluster.is_none() {
        // On a real cluster the router creates the topics; the generator needs the input topic first.
        tollgate_router::kafka::ensure_topics(&config).await?;
    }
    let telemetry = Telemetry::new();
    let router_stop = CancellationToken::new();
    let router = tokio::spawn(tollgate_router::run_with(config, pipeline, telemetry.clone(), router_stop.clone()));

    let producer_stop = CancellationToken::new();
    let generator = {
        let (brokers, stop, opts) = (brokers.clone(), producer_stop.clone(), options.clone());
        tokio::task::spawn_blocking(move || generate(&brokers, &opts, &stop))
    };

    let bar = progress_bar(options.events);
    let started = Instant::now();
    let mut last = (Instant::now(), counts(&telemetry));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let now = (Instant::now(), counts(&telemetry));
                let line = summary_line(&telemetry, &last, &now);
                let done: u64 = now.1.iter().sum();
                bar.set_position(done);
                if bar.is_hidden() {
                    println!("{line}");
                } else {
                    bar.set_message(line);
                }
                last = now;
                if options.events.is_some_and(|n| done >= n) || router.is_finished() {
                    break;
                }
            }
        }
    }
    producer_stop.cancel();
    let _ = generator.await;
    router_stop.cancel();
    let routed = router.await?;
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
    print_final(&telemetry, started.elapsed());
    routed?;
    drop(cluster);
    Ok(Route::ALL.iter().map(|r| telemetry.routed_count(*r)).sum())
}

/// Routed counts per route, then dead letters.
fn counts(t: &Telemetry) -> [u64; 5] {
    let mut c = [0; 5];
    for (i, r) in Route::ALL.iter().enumerate() {
        c[i] = t.routed_count(*r);
    }
    c[4] = t.dead_letter_count();
    c
}

fn summary_line(t: &Telemetry, last: &(Instant, [u64; 5]), now: &(Instant, [u64; 5])) -> String {
    let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
    let rate = |i: usize| (now.1[i] - last.1[i]) as f64 / secs;
    let ms = |q| t.latency_quantile(q).map_or("-".into(), |d| format!("{:.2}ms", d.as_secs_f64() * 1e3));
    format!(
        "auto_commit {:>7.0}/s  async_review {:>6.0}/s  sync_review {:>6.0}/s  auto_reject {:>6.0}/s  dead_letter {:>5.0}/s  latency p50 {} p99 {}",
        rate(0),
        rate(1),
        rate(2),
        rate(3),
        rate(4),
        ms(0.5),
        ms(0.99)
    )
}

fn progress_bar(events: Option<u64>) -> ProgressBar {
    let bar = match events {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} events\n{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} events\n{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    if !std::io::stdout().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn print_final(t: &Telemetry, elapsed: Duration) {
    let c = counts(t);
    let total: u64 = c.iter().sum();
    println!(
        "\nRouted {total} events in {:.1}s ({:.0} events/s):",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(1e-3)
    );
    for (i, r) in Route::ALL.iter().enumerate() {
        println!("  {:<13} {:>9}  ({:.1}%)", r.as_str(), c[i], 100.0 * c[i] as f64 / total.max(1) as f64);
    }
    println!("  {:<13} {:>9}  ({:.1}%)", "dead_letter", c[4], 100.0 * c[4] as f64 / total.max(1) as f64);
    let ms = |q| t.latency_quantile(q).map_or("-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3));
    println!("  routing latency p50 {}  p99 {}", ms(0.5), ms(0.99));
}

/// Produces synthetic payments until `stop` or `options.events` are produced.
fn generate(brokers: &str, options: &DemoOptions, stop: &CancellationToken) -> anyhow::Result<()> {
    let load = Load {
        topic: "payments".into(),
        rate: options.rate,
        events: options.events,
        seed: options.seed,
        mix: Mix::default(),
        prefix: "demo".into(),
        producer: Vec::new(),
    };
    crate::synth::produce(brokers, &load, stop, |_| {})?;
    Ok(())
}
