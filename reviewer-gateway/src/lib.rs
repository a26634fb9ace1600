//! Tollgate's reviewer gateway: the HTTP API human reviewers use to list review queues, open a
//! case, claim it and decide, with JWT authentication, role-based access and field redaction.
//! Every read of a case and every action is audited.
//!
//! # Layout
//! - [`config`]: the gateway's configuration, validated at start-up.
//! - [`auth`]: bearer tokens (HS256, RS256 with a JWKS) → a reviewer and a role.
//! - [`access`]: what a role may read, do and see; redaction.
//! - [`records`]: decoding the records read from Kafka.
//! - [`store`]: the view of open cases, resolved history and idempotency receipts.
//! - [`service`]: the operations (reads and actions), free of HTTP.
//! - [`api`]: the HTTP layer and its OpenAPI document.
//! - [`sink`]: writing decisions, audit records and case state to Kafka (transactionally).
//! - [`view`]: the consumer that builds the view from Kafka.
//! - [`webhook`]: Slack-compatible notifications.
//! - [`telemetry`]: metrics (names in `telemetry::names`).
//!
//! The gateway depends on `tollgate-schemas` (the record contracts) and never on the router's
//! internals: it reads `tollgate.sync-review`, `tollgate.async-review`, `tollgate.resolved`,
//! `tollgate.escalations`, `tollgate.review-decisions` and its own `tollgate.gateway-state`, and
//! writes decisions, audit records (to `tollgate.audit-intake`, which the router's audit chainer
//! links into `tollgate.audit`) and case state.

pub mod access;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod records;
pub mod service;
pub mod sink;
pub mod store;
pub mod telemetry;
pub mod view;
pub mod webhook;

use config::GatewayConfig;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use store::{CaseStore, StoreSettings};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::TopicSpec;

/// Errors that stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("HTTP listener: {0}")]
    Http(#[from] std::io::Error),
}

/// The store settings of a configuration.
pub fn store_settings(config: &GatewayConfig) -> StoreSettings {
    StoreSettings {
        amount_field: config.review.amount_field.clone(),
        similar_fields: config.review.similar_fields.clone(),
        similar_limit: config.review.similar_limit,
        history_limit: config.review.history_limit,
    }
}

/// The authenticator of a configuration.
pub fn authenticator(config: &GatewayConfig) -> Result<auth::Authenticator, GatewayError> {
    let jwks = config.auth.jwks_file.as_ref().map(|p| config.resolve(p));
    auth::Authenticator::new(&config.auth, jwks.as_deref(), config.roles.keys().cloned())
        .map_err(|e| GatewayError::Config(e.to_string()))
}

/// The transactional id of this gateway instance: stable across its restarts, so a restarted
/// gateway aborts a transaction a crashed one left open. Two gateways on one host need distinct
/// `kafka.client_id`s.
fn transactional_id(config: &GatewayConfig) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{}.{host}", config.kafka.client_id)
}

/// Runs the gateway until `shutdown` is cancelled: creates missing topics, builds the view from
/// Kafka, serves the API.
pub async fn run(config: GatewayConfig, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let telemetry = telemetry::Telemetry::new();
    let auth = authenticator(&config)?;
    let decoder = records::RecordDecoder::new(
        config.event.avro_schema.as_ref().map(|p| config.resolve(p)).as_deref(),
        config.event.confluent,
    )
    .map_err(GatewayError::Config)?;
    if config.kafka.create_topics {
        let t = &config.topics;
        let wanted: Vec<TopicSpec<'_>> = [&t.sync_review, &t.async_review, &t.resolved, &t.escalations]
            .into_iter()
            .chain([&t.review_decisions, &t.audit_intake])
            .map(|name| TopicSpec { name, compacted: false })
            .chain([TopicSpec { name: &t.gateway_state, compacted: true }])
            .collect();
        tollgate_common::kafka::ensure_topics(
            &sink::producer_config(&config),
            &wanted,
            config.kafka.partitions,
            config.kafka.replication,
        )
        .await?;
    }
    let txn_id = transactional_id(&config);
    let kafka_sink = {
        let config = config.clone();
        let telemetry = telemetry.clone();
        tokio::task::spawn_blocking(move || sink::KafkaSink::connect(&config, &txn_id, &telemetry))
            .await
            .map_err(|e| GatewayError::Config(format!("the producer set-up task failed: {e}")))??
    };
    let sink = sink::Sink::Kafka(Arc::new(kafka_sink));
    let store = Arc::new(CaseStore::new(store_settings(&config)));
    let notifier = config.webhook.as_ref().map(|w| webhook::spawn(w.clone(), telemetry.clone(), shutdown.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let view = view::View::start(&config, decoder, store.clone(), telemetry.clone(), notifier, ready.clone())?;
    let view_task = tokio::spawn(view.run(shutdown.clone()));
    let upkeep = Upkeep {
        store: store.clone(),
        sink: sink.clone(),
        telemetry: telemetry.clone(),
        retention: config.review.idempotency_retention.0,
    };
    let maintenance = tokio::spawn(upkeep.run(shutdown.clone()));

    let gateway = service::Gateway::new(&config, store, sink, telemetry, service::Clock::System);
    let state = api::AppState::new(gateway, auth, ready, config.http.request_timeout.0);
    let (router, _) = api::app(state, config.http.body_limit);
    let listener = tokio::net::TcpListener::bind(config.http.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "The reviewer gateway is listening.");
    axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await?;
    shutdown.cancel();
    let _ = maintenance.await;
    match view_task.await {
        Ok(result) => result.map_err(GatewayError::from),
        Err(e) => Err(GatewayError::Config(format!("the view task failed: {e}"))),
    }
}

/// How long a probe of the brokers may wait for their answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Periodic upkeep: queue gauges, forgetting old idempotency keys, and probing the brokers
/// (readiness needs an answer).
struct Upkeep {
    store: Arc<CaseStore>,
    sink: sink::Sink,
    telemetry: telemetry::Telemetry,
    retention: Duration,
}

impl Upkeep {
    async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let clock = service::Clock::System;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let now = clock.now_ms();
                    self.telemetry.queues(&self.store.stats(now), now);
                    self.store.expire_receipts(now - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
                    let sink = self.sink.clone();
                    // The probe keeps its answer for `Sink::is_healthy`, which readiness reads.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::task::spawn_blocking(move || sink.probe(PROBE_TIMEOUT)) => {}
                    }
                }
            }
        }
    }
}
