//! Tollgate's router: consumes events, scores them, applies the routing policy and publishes each
//! to its route topic with an audit record, at least once.
//!
//! # Layout
//! Data flows one way through stages that know nothing of Kafka; Kafka lives at the edges.
//! - [`config`]: the router's configuration, loaded from TOML and environment, validated at start.
//! - [`fields`]: the event fields the stages read, extracted once per event.
//! - [`decode`] → [`score`] → [`policy`]: the stages.
//! - [`pipeline`]: the stages chained, plus encoding of the routed and audit records.
//! - [`reject`]: the fixed set of reasons an event goes to the dead-letter topic.
//! - [`reload`]: policy hot reload (SIGHUP or file change), validated before it applies.
//! - [`drift`]: PSI of the risk score and mean confidence against a baseline.
//! - [`review`]: the review loop's state: pending reviews, decisions, SLA tiers.
//! - [`telemetry`]: every metric and the events that update them.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`kafka`]: topic set-up, the consume-process-produce loop and at-least-once offset tracking,
//!   the review join and the audit chainer.
//! - [`audit`]: the audit trail's offline tools: chain verification and export.
//! - [`replay`]: backtesting a candidate policy on recorded events and decisions.

pub mod audit;
pub mod config;
pub mod decode;
pub mod drift;
pub mod fields;
pub mod http;
pub mod kafka;
pub mod pipeline;
pub mod policy;
mod recycle;
pub mod reject;
pub mod reload;
pub mod replay;
pub mod review;
pub mod score;
pub mod telemetry;
#[cfg(test)]
mod testing;

use config::{ConfigError, RouterConfig};
use pipeline::{Pipeline, PipelineError};
use telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

/// Why the router could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pipeline(Box<PipelineError>),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot create topics: {0}")]
    Topics(rdkafka::error::KafkaError),
    #[error(transparent)]
    Loop(#[from] kafka::LoopError),
    #[error("the routing thread panicked: {0}")]
    Panicked(String),
}

impl From<PipelineError> for RouterError {
    fn from(e: PipelineError) -> Self {
        RouterError::Pipeline(Box::new(e))
    }
}

/// Runs a blocking loop on its own named thread (the names show in `top -H` and in per-thread
/// CPU figures), and its result as a task of `loops`.
fn spawn_loop(
    loops: &mut tokio::task::JoinSet<Result<(), RouterError>>,
    name: &str,
    body: impl FnOnce() -> Result<(), kafka::LoopError> + Send + 'static,
) -> Result<(), RouterError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(body());
        })
        .map_err(|e| RouterError::Panicked(format!("cannot start the {name} thread: {e}")))?;
    let name = name.to_owned();
    loops.spawn(async move {
        match rx.await {
            Ok(result) => result.map_err(RouterError::from),
            // The sender went away without a result: the thread panicked.
            Err(_) => Err(RouterError::Panicked(format!("the {name} thread panicked"))),
        }
    });
    Ok(())
}

/// A loop's result. A loop ends on its own only on an error: `stop` stops the others then;
/// otherwise the caller's shutdown already stopped them all.
fn ended_loop(
    ended: Result<Result<(), RouterError>, tokio::task::JoinError>,
    stop: &CancellationToken,
) -> Result<(), RouterError> {
    let ended = ended.unwrap_or_else(|e| Err(RouterError::Panicked(e.to_string())));
    if ended.is_err() {
        stop.cancel();
    }
    ended
}

/// The name of routing loop `index` of `threads`: `tollgate-route` for a single loop, else
/// `tollgate-rt-<index>` (Linux keeps 15 bytes of a thread's name).
fn routing_thread_name(index: usize, threads: usize) -> String {
    if threads == 1 {
        "tollgate-route".to_owned()
    } else {
        format!("tollgate-rt-{index}")
    }
}

/// Builds the pipeline from `config` and runs the router until `shutdown` is cancelled.
pub async fn run(config: RouterConfig, shutdown: CancellationToken) -> Result<(), RouterError> {
    let pipeline = Pipeline::from_config(&config)?;
    run_with(config, pipeline, Telemetry::new(), shutdown).await
}

/// Runs the router with a prepared pipeline and telemetry (the demo reads the telemetry live).
///
/// Serves `/metrics`, creates missing topics when configured to, then routes on a dedicated
/// thread. Returns when `shutdown` is cancelled and in-flight work is drained and committed, or
/// with the error that stopped the routing loop.
pub async fn run_with(
    config: RouterConfig,
    pipeline: Pipeline,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    telemetry.policy_loaded(pipeline.policy_version(), pipeline.bounded_fields());
    let stop_http = shutdown.child_token();
    let http = if config.metrics.enabled {
        let addr = config.metrics.listen;
        let (_, handle) = http::serve(addr, telemetry.clone(), stop_http.clone())
            .await
            .map_err(|source| RouterError::Metrics { addr, source })?;
        Some(handle)
    } else {
        None
    };
    if config.kafka.create_topics {
        kafka::ensure_topics(&config).await.map_err(RouterError::Topics)?;
    }
    let config = std::sync::Arc::new(config);
    // Any loop failing stops the others; the caller's shutdown stops all.
    let stop = shutdown.child_token();
    let mut loops = tokio::task::JoinSet::new();
    let slot = std::sync::Arc::new(reload::PipelineSlot::new(pipeline));
    let reloader = reload::Reloader::new(config.clone(), slot.clone(), telemetry.clone());
    let watcher = tokio::spawn(reload::watch(reloader, stop.clone()));
    // Audit batches of the routing loops and the review join go to this process's chainer
    // through it, when the chainer holds their intake partition and has not stalled with half
    // a loop's in-flight window (so that a stalled chainer cannot stop routing).
    let p = &config.processing;
    let hand_off = std::sync::Arc::new(kafka::HandOff::new(p.max_in_flight / 2, p.hand_off_stall.0));
    let routing = std::sync::Arc::new(kafka::Routing::new(&config, slot, telemetry.clone(), &hand_off));
    let threads = config.processing.routing_threads;
    for index in 0..threads {
        let (config, routing, stop) = (config.clone(), routing.clone(), stop.clone());
        spawn_loop(&mut loops, &routing_thread_name(index, threads), move || {
            kafka::run_loop(&config, &routing, index, &stop)
        })?;
    }
    if config.review.join {
        let (config, telemetry, stop, hand_off) = (config.clone(), telemetry.clone(), stop.clone(), hand_off.clone());
        spawn_loop(&mut loops, "tollgate-join", move || {
            let state =
                std::sync::Arc::new(review::ReviewState::new(review::ReviewSettings::from_config(&config.review)));
            kafka::run_join(&config, &telemetry, state, Some(hand_off), &stop)
        })?;
    }
    // The chainer stops after the loops: their drains wait for the audit records they handed
    // it. Its own failure stops them.
    let stop_chain = CancellationToken::new();
    let mut chain = tokio::task::JoinSet::new();
    {
        let (config, telemetry, stop, stop_chain) =
            (config.clone(), telemetry.clone(), stop.clone(), stop_chain.clone());
        let hand_off = Some(hand_off.clone());
        spawn_loop(&mut chain, "tollgate-audit", move || {
            // Stops the loops when the chainer fails or panics (they would wait on it).
            let stop_loops = stop.drop_guard();
            let chained = kafka::run_chain(&config, &telemetry, hand_off, &stop_chain);
            if chained.is_ok() {
                stop_loops.disarm();
            }
            chained
        })?;
    }
    let mut result = Ok(());
    while let Some(ended) = loops.join_next().await {
        result = result.and(ended_loop(ended, &stop));
    }
    stop.cancel();
    stop_chain.cancel();
    while let Some(ended) = chain.join_next().await {
        result = result.and(ended_loop(ended, &stop));
    }
    let _ = watcher.await;
    stop_http.cancel();
    if let Some(handle) = http {
        let _ = handle.await;
    }
    result
}
