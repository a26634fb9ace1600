//! An in-process gateway on the reference example's configuration: cases put straight into the
//! view, records kept in memory, a manual clock, and HTTP requests through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tollgate_gateway::api::{self, AppState};
use tollgate_gateway::auth::mint_hs256;
use tollgate_gateway::config::GatewayConfig;
use tollgate_gateway::service::{Clock, Gateway};
use tollgate_gateway::sink::{MemorySink, OutRecord, Sink};
use tollgate_gateway::store::{CaseStore, Position};
use tollgate_gateway::telemetry::Telemetry;
use tollgate_schemas::{
    AuditRecord, Contribution, EventFormat, RecordFormat, ResolvedEvent, ReviewAction, ReviewDecision, ReviewOutcome,
    Route, RoutedRecord,
};
use tower::ServiceExt;

pub const T0: i64 = 1_790_000_000_000;

pub fn example_config() -> GatewayConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/gateway.toml");
    GatewayConfig::load(&path).expect("the example gateway configuration loads")
}

pub struct Harness {
    pub app: axum::Router,
    pub store: Arc<CaseStore>,
    pub sink: Arc<MemorySink>,
    pub clock: Arc<AtomicI64>,
    pub config: GatewayConfig,
}

/// A case to put in the view.
pub struct CaseSpec {
    pub id: &'static str,
    pub queue: Route,
    pub amount: f64,
    pub risk: f64,
    pub account: &'static str,
    pub category: &'static str,
}

/// The standard cases: one per queue, a high-impact sync case, a low-risk async case.
pub const CASES: [CaseSpec; 4] = [
    CaseSpec {
        id: "sync-1",
        queue: Route::SyncReview,
        amount: 120.0,
        risk: 0.95,
        account: "acct-1",
        category: "gambling",
    },
    CaseSpec {
        id: "async-1",
        queue: Route::AsyncReview,
        amount: 80.0,
        risk: 0.7,
        account: "acct-2",
        category: "travel",
    },
    CaseSpec {
        id: "big-sync",
        queue: Route::SyncReview,
        amount: 5_000.0,
        risk: 0.97,
        account: "acct-3",
        category: "electronics",
    },
    CaseSpec {
        id: "low-async",
        queue: Route::AsyncReview,
        amount: 30.0,
        risk: 0.3,
        account: "acct-1",
        category: "grocery",
    },
];

pub fn event_of(spec: &CaseSpec) -> Value {
    json!({
        "event_id": spec.id, "account_id": spec.account, "amount": spec.amount, "currency": "EUR",
        "merchant_category": spec.category, "country": "DE", "card_bin": "411111"
    })
}

impl Harness {
    pub fn new() -> Harness {
        Self::with_config(example_config())
    }

    pub fn with_config(config: GatewayConfig) -> Harness {
        let store = Arc::new(CaseStore::new(tollgate_gateway::store_settings(&config)));
        let sink = Arc::new(MemorySink::default());
        let clock = Arc::new(AtomicI64::new(T0 + 60_000));
        let gateway = Gateway::new(
            &config,
            store.clone(),
            Sink::Memory(sink.clone()),
            Telemetry::new(),
            Clock::Manual(clock.clone()),
        );
        let auth = tollgate_gateway::authenticator(&config).unwrap();
        let state = AppState::new(gateway, auth, Arc::new(AtomicBool::new(true)), config.http.request_timeout.0);
        let (app, _) = api::app(state, config.http.body_limit);
        let h = Harness { app, store, sink, clock, config };
        for (i, spec) in CASES.iter().enumerate() {
            h.add_case(spec, T0 + i as i64 * 1_000);
        }
        h
    }

    pub fn add_case(&self, spec: &CaseSpec, routed_at: i64) {
        let record = RoutedRecord {
            event_id: spec.id.into(),
            route: spec.queue,
            rule: spec.queue.as_str().into(),
            guardrail: false,
            risk_score: spec.risk,
            confidence: 0.9,
            model_version: "fraud-gbm-2026.10".into(),
            policy_version: "2026.11.1".into(),
            explanation: vec![
                Contribution { feature: "amount".into(), contribution: 1.2 },
                Contribution { feature: format!("merchant_category={}", spec.category).into(), contribution: 0.8 },
                Contribution { feature: "account_age_days".into(), contribution: -0.3 },
            ],
            routed_at,
            sla_deadline: Some(routed_at + 1_800_000),
            event_format: EventFormat::Json,
            event: event_of(spec).as_object().unwrap().clone(),
        };
        let source = Position { topic: "tollgate.sync-review".into(), partition: 0, offset: 7 };
        self.store.apply_routed(record, source);
    }

    /// Resolves a case as the router's join would.
    pub fn resolve(&self, spec: &CaseSpec, outcome: ReviewOutcome, at: i64) {
        let r = ResolvedEvent {
            event_id: spec.id.into(),
            queue: spec.queue,
            rule: "r".into(),
            recommendation: ReviewOutcome::Rejected,
            action: Some(if outcome == ReviewOutcome::Approved { ReviewAction::Approve } else { ReviewAction::Reject }),
            outcome,
            actor: "earlier-reviewer".into(),
            actor_role: Some("fraud_analyst".into()),
            rationale: "".into(),
            second_signoff: None,
            overridden: outcome == ReviewOutcome::Approved,
            review_latency_ms: 1,
            sla_met: true,
            tier: 1,
            decided_at: at,
            rollback: false,
            risk_score: spec.risk,
            confidence: 0.9,
            policy_version: "p".into(),
            model_version: "m".into(),
            event_format: EventFormat::Json,
            event: event_of(spec).as_object().unwrap().clone(),
        };
        self.store.apply_resolved(r);
    }

    pub fn advance(&self, d: Duration) {
        self.clock.fetch_add(d.as_millis() as i64, Ordering::Relaxed);
    }

    pub fn token(&self, reviewer: &str, role: &str) -> String {
        mint_hs256(&self.config.auth, reviewer, role, Duration::from_secs(3_600)).unwrap()
    }

    /// Sends a request; returns the status and the JSON body (or the text as a JSON string).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let raw = body.map(|b| b.to_string());
        self.send(method, path, token, raw.as_deref(), &[("content-type", "application/json")]).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        request(self.app.clone(), method, path, token, body, headers).await
    }

    /// Records written to `topic` (a configured topic name).
    pub fn written(&self, topic: &str) -> Vec<OutRecord> {
        self.sink.records().into_iter().filter(|r| r.topic == topic).collect()
    }

    pub fn audits(&self) -> Vec<AuditRecord<'static>> {
        self.written(&self.config.topics.audit_intake)
            .iter()
            .map(|r| AuditRecord::read(RecordFormat::Json, r.value.as_ref().unwrap()).unwrap())
            .collect()
    }

    pub fn decisions(&self) -> Vec<ReviewDecision<'static>> {
        self.written(&self.config.topics.review_decisions)
            .iter()
            .map(|r| ReviewDecision::read(RecordFormat::Json, r.value.as_ref().unwrap()).unwrap())
            .collect()
    }

    pub async fn metrics(&self) -> String {
        match self.send("GET", "/metrics", None, None, &[]).await {
            (StatusCode::OK, Value::String(text)) => text,
            other => panic!("metrics: {other:?}"),
        }
    }
}

/// Sends a request to `app`; returns the status and the JSON body (or the text as a JSON string).
pub async fn request(
    app: axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned()))).unwrap();
    let response = app.oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 10 << 20).await.unwrap();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// Checks that an error response is JSON with the expected code and a message.
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "{:?}", response.1);
    assert_eq!(response.1["error"], code, "{:?}", response.1);
    assert!(response.1["message"].as_str().is_some_and(|m| !m.is_empty()), "{:?}", response.1);
}
