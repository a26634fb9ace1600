//! The HTTP API: `/v1` endpoints for reviewers (bearer tokens), `/healthz`, `/readyz`,
//! `/metrics` and `/openapi.json`. The OpenAPI document is generated from the same handler
//! annotations that register the routes, so the two cannot drift apart.
//!
//! Every refusal is JSON ([`ApiError`]); request bodies are size-limited and requests time out.

pub mod types;

use crate::auth::{Authenticator, Principal};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::service::Gateway;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_schemas::Route;
use types::{
    CaseDetail, CasePage, ClaimResponse, DecisionRequest, DecisionResponse, Paging, QueueList, ReleaseResponse,
    SignoffRequest,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The header carrying a client's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    gateway: Gateway,
    auth: Authenticator,
    ready: Arc<AtomicBool>,
    timeout: Duration,
}

impl AppState {
    /// `ready` turns true once the view has caught up with Kafka.
    pub fn new(gateway: Gateway, auth: Authenticator, ready: Arc<AtomicBool>, timeout: Duration) -> Self {
        AppState { inner: Arc::new(Inner { gateway, auth, ready, timeout }) }
    }

    fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    /// Ready: the view has caught up with Kafka, and the writer is usable and its brokers
    /// answered the last probe.
    fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed) && self.gateway().sink().is_healthy()
    }
}

/// An authenticated caller.
pub struct Reviewer(pub Principal);

impl FromRequestParts<AppState> for Reviewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        state.inner.auth.authenticate(header).map(Reviewer).map_err(|e| {
            state.gateway().telemetry().auth_failure(e.reason());
            ApiError::Unauthenticated(e)
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate reviewer gateway",
        description = "Review queues, cases, claims and decisions for human reviewers of Tollgate. \
            Every /v1 endpoint needs a bearer token (JWT, HS256 or RS256); errors are JSON \
            `{\"error\": code, \"message\": text}`."
    ),
    modifiers(&BearerAuth),
    tags((name = "queues"), (name = "cases"), (name = "actions"), (name = "operations"))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The OpenAPI document of the API (what `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The routes and the OpenAPI document describing them.
pub fn app(state: AppState, body_limit: usize) -> (Router, utoipa::openapi::OpenApi) {
    let (router, openapi) = routes().split_for_parts();
    let document = openapi.clone();
    let router = router
        .route("/openapi.json", axum::routing::get(move || async move { Json(document) }))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state);
    (router, openapi)
}

/// Every documented route, registered with its OpenAPI description.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_queues))
        .routes(routes!(list_all_cases))
        .routes(routes!(list_queue_cases))
        .routes(routes!(get_case))
        .routes(routes!(claim_case))
        .routes(routes!(release_case))
        .routes(routes!(decide_case))
        .routes(routes!(signoff_case))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Times out slow requests and counts every request by endpoint template, method and status.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let timeout = state.inner.timeout;
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout(timeout).into_response(),
    };
    let t = state.gateway().telemetry();
    t.request(&endpoint, &method, response.status().as_u16(), started.elapsed());
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        t.error(code.0);
    }
    response
}

fn queue_of(name: &str) -> Result<Route, ApiError> {
    Route::parse(name)
        .filter(|q| q.is_review())
        .ok_or_else(|| ApiError::NotFound(format!("no review queue {name} (sync_review or async_review)")))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::invalid("invalid_idempotency_key", "the Idempotency-Key must be visible ASCII characters")
        }),
    }
}

/// The queues the caller may read, with their figures.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", security(("bearer" = [])),
    responses(
        (status = 200, body = QueueList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ))]
async fn list_queues(State(s): State<AppState>, Reviewer(who): Reviewer) -> Result<Json<QueueList>, ApiError> {
    s.gateway().queues(&who).map(Json)
}

/// Waiting cases of every queue the caller reads, by priority (sync first, then impact, then age).
#[utoipa::path(get, path = "/v1/cases", tag = "cases", security(("bearer" = [])), params(Paging),
    responses(
        (status = 200, body = CasePage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn list_all_cases(
    State(s): State<AppState>,
    Reviewer(who): Reviewer,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<CasePage>, ApiError> {
    let Query(p) = paging?;
    s.gateway().list(&who, None, p.limit, p.offset).await.map(Json)
}

/// Waiting cases of one queue, by priority (impact, then age).
#[utoipa::path(get, path = "/v1/queues/{queue}/cases", tag = "cases", security(("bearer" = [])),
    params(("queue" = String, Path, description = "`sync_review` or `async_review`"), Paging),
    responses(
        (status = 200, body = CasePage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn list_queue_cases(
    State(s): State<AppState>,
    Reviewer(who): Reviewer,
    Path(queue): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<CasePage>, ApiError> {
    let queue = queue_of(&queue)?;
    let Query(p) = paging?;
    s.gateway().list(&who, Some(queue), p.limit, p.offset).await.map(Json)
}

/// One case with everything needed to decide it. The read is audited.
#[utoipa::path(get, path = "/v1/cases/{event_id}", tag = "cases", security(("bearer" = [])),
    params(("event_id" = String, Path)),
    responses(
        (status = 200, body = CaseDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn get_case(
    State(s): State<AppState>,
    Reviewer(who): Reviewer,
    Path(event_id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    s.gateway().case(&who, &event_id).await.map(Json)
}

/// Claims a case for the configured lease (claiming again renews it).
#[utoipa::path(post, path = "/v1/cases/{event_id}/claim", tag = "actions", security(("bearer" = [])),
    params(("event_id" = String, Path)),
    responses(
        (status = 200, body = ClaimResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "claimed by another reviewer, decided, resolved or awaiting sign-off"),
        (status = 503, body = ErrorBody),
    ))]
async fn claim_case(
    State(s): State<AppState>,
    Reviewer(who): Reviewer,
    Path(event_id): Path<String>,
) -> Result<Json<ClaimResponse>, ApiError> {
    s.gateway().claim(&who, &event_id).await.map(Json)
}

/// Releases the caller's claim.
#[utoipa::path(post, path = "/v1/cases/{event_id}/release", tag = "actions", security(("bearer" = [])),
    params(("event_id" = String, Path)),
    responses(
        (status = 200, body = ReleaseResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not claimed by the caller"), (status = 503, body = ErrorBody),
    ))]
async fn release_case(
    State(s): State<AppState>,
    Reviewer(who): Reviewer,
    Path(event_id): Path<String>,
) -> Result<Json<ReleaseResponse>, ApiError> {
    s.gateway().release(&who, &event_id).await.map(Json)
}

/// Decides a case the caller has claimed. High-impact final decisions wait for a second
/// reviewer. A retried request with the same Idempotency-Key returns the first answer.
#[utoipa::path(post, path = "/v1/cases/{event_id}/decision", tag = "actions", security(("bearer" = [])),
    params(("event_id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = DecisionRequest,
    responses(
        (status = 202, body = DecisionResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn decide_case(
    State(s): State<AppState>,
    Reviewer(who): Reviewer,
    Path(event_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DecisionResponse>), ApiError> {
    let key = idempotency_key(&headers)?;
    let Json(request) = body?;
    let answer = s.gateway().decide(&who, &event_id, request, key).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// Confirms or refuses another reviewer's pending high-impact decision.
#[utoipa::path(post, path = "/v1/cases/{event_id}/signoff", tag = "actions", security(("bearer" = [])),
    params(("event_id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = SignoffRequest,
    responses(
        (status = 202, body = DecisionResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn signoff_case(
    State(s): State<AppState>,
    Reviewer(who): Reviewer,
    Path(event_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SignoffRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DecisionResponse>), ApiError> {
    let key = idempotency_key(&headers)?;
    let Json(request) = body?;
    let answer = s.gateway().signoff(&who, &event_id, request, key).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the view has caught up with Kafka and the writer is usable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = String), (status = 503, body = String)))]
async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String)))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // Set at each scrape from the predicate `/readyz` answers by, so the two never disagree.
    s.gateway().telemetry().set_ready(s.is_ready());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.gateway().telemetry().render())
}
