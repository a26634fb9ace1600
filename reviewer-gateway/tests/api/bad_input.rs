//! Bad input: every case gets a 4xx with a machine-readable JSON error, and is counted.

use crate::harness::{assert_error, Harness, CASES, T0};
use axum::http::StatusCode;
use serde_json::json;
use tollgate_schemas::ReviewOutcome;

#[tokio::test]
async fn malformed_and_invalid_bodies_are_refused_with_a_reason() {
    let h = Harness::new();
    let ana = h.token("ana", "fraud_analyst");
    h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await;
    let json_header = [("content-type", "application/json")];
    let path = "/v1/cases/sync-1/decision";
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], StatusCode, &'a str);
    let cases: [Case<'_>; 7] = [
        ("{\"action\": ", &json_header, StatusCode::BAD_REQUEST, "malformed_json"),
        ("{\"action\": \"reject\", \"rationale\": 5}", &json_header, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("{\"action\": \"maybe\"}", &json_header, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("{\"rationale\": \"x\"}", &json_header, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("{\"action\": \"reject\", \"extra\": 1}", &json_header, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            "{\"action\": \"reject\"}",
            &[("content-type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        ("{\"action\": \"reject\"}", &[], StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    ];
    for (body, headers, status, code) in cases {
        let r = h.send("POST", path, Some(&ana), Some(body), headers).await;
        assert_error(&r, status, code);
    }
    let huge = json!({"action": "reject", "rationale": "x".repeat(100_000)}).to_string();
    assert_error(
        &h.send("POST", path, Some(&ana), Some(&huge), &json_header).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let long = json!({"action": "reject", "rationale": "x".repeat(4_001)});
    assert_error(
        &h.call("POST", path, Some(&ana), Some(long)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rationale_too_long",
    );
    let bad_key = [("content-type", "application/json"), ("idempotency-key", "has space")];
    let r = h.send("POST", path, Some(&ana), Some("{\"action\": \"reject\"}"), &bad_key).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_idempotency_key");
    assert!(h.decisions().is_empty(), "no bad request wrote a decision");
    let metrics = h.metrics().await;
    for code in ["malformed_json", "invalid_body", "unsupported_media_type", "payload_too_large", "rationale_too_long"]
    {
        assert!(metrics.contains(&format!("tollgate_gateway_errors_total{{code=\"{code}\"}}")), "{code} not counted");
    }
}

#[tokio::test]
async fn wrong_states_unknown_cases_and_bad_queries_are_refused() {
    let h = Harness::new();
    let ana = h.token("ana", "fraud_analyst");
    let reject = json!({"action": "reject"});
    assert_error(&h.call("POST", "/v1/cases/nope/claim", Some(&ana), None).await, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &h.call("POST", "/v1/cases/nope/decision", Some(&ana), Some(reject.clone())).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(reject.clone())).await,
        StatusCode::CONFLICT,
        "not_claimed",
    );
    h.resolve(&CASES[1], ReviewOutcome::Rejected, T0);
    assert_error(
        &h.call("POST", "/v1/cases/async-1/claim", Some(&ana), None).await,
        StatusCode::CONFLICT,
        "already_resolved",
    );
    assert_error(
        &h.call("POST", "/v1/cases/async-1/decision", Some(&ana), Some(reject)).await,
        StatusCode::CONFLICT,
        "already_resolved",
    );
    assert_error(
        &h.call("GET", "/v1/queues/auto_commit/cases", Some(&ana), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.call("GET", "/v1/queues/whatever/cases", Some(&ana), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.call("GET", "/v1/cases?limit=0", Some(&ana), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_paging",
    );
    assert_error(
        &h.call("GET", "/v1/cases?limit=501", Some(&ana), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_paging",
    );
    assert_error(
        &h.call("GET", "/v1/cases?limit=ten", Some(&ana), None).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(&h.call("GET", "/v1/cases?page=2", Some(&ana), None).await, StatusCode::BAD_REQUEST, "invalid_query");
    assert_error(&h.call("GET", "/v1/nothing", Some(&ana), None).await, StatusCode::NOT_FOUND, "no_such_endpoint");
    assert_error(
        &h.call("DELETE", "/v1/cases/sync-1", Some(&ana), None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &h.call("GET", "/v1/cases/sync-1/claim", Some(&ana), None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_answered_with_a_timeout_error() {
    let mut config = crate::harness::example_config();
    config.http.request_timeout = tollgate_common::HumanDuration(std::time::Duration::from_millis(100));
    let h = Harness::with_config(config);
    h.sink.set_delay(std::time::Duration::from_millis(2_000));
    let ana = h.token("ana", "fraud_analyst");
    assert_error(
        &h.call("GET", "/v1/cases/sync-1", Some(&ana), None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
    );
    assert!(h.metrics().await.contains("tollgate_gateway_errors_total{code=\"timeout\"} 1"));
}
