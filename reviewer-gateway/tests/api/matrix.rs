//! The authorization matrix: every role × every endpoint × every queue, against the grants the
//! reference example is meant to give (written out here, independently of its config file).

use crate::harness::{assert_error, CaseSpec, Harness};
use axum::http::StatusCode;
use serde_json::json;
use tollgate_schemas::Route;

struct Grants {
    role: &'static str,
    queues: &'static [Route],
    actions: &'static [&'static str],
}

const ALL_ACTIONS: &[&str] = &["claim", "approve", "reject", "escalate", "request_info"];

const GRANTS: [Grants; 4] = [
    Grants { role: "fraud_analyst", queues: &[Route::SyncReview, Route::AsyncReview], actions: ALL_ACTIONS },
    Grants {
        role: "senior_analyst",
        queues: &[Route::SyncReview, Route::AsyncReview],
        actions: &["claim", "approve", "reject", "escalate", "request_info", "signoff"],
    },
    Grants { role: "auditor", queues: &[Route::SyncReview, Route::AsyncReview], actions: &[] },
    Grants {
        role: "async_triage",
        queues: &[Route::AsyncReview],
        actions: &["claim", "approve", "reject", "escalate"],
    },
];

const ENDPOINTS: [&str; 9] =
    ["list", "read", "claim", "release", "approve", "reject", "escalate", "request_info", "signoff"];

/// A high-impact case per queue, for sign-offs.
const BIG: [CaseSpec; 2] = [
    CaseSpec { id: "big-s", queue: Route::SyncReview, amount: 9_000.0, risk: 0.9, account: "a", category: "c" },
    CaseSpec { id: "big-a", queue: Route::AsyncReview, amount: 9_000.0, risk: 0.8, account: "a", category: "c" },
];

fn case_of(queue: Route, endpoint: &str) -> &'static str {
    match (queue, endpoint) {
        (Route::SyncReview, "signoff") => "big-s",
        (_, "signoff") => "big-a",
        (Route::SyncReview, _) => "sync-1",
        _ => "async-1",
    }
}

/// Runs one cell in a fresh gateway; returns the response.
async fn cell(g: &Grants, queue: Route, endpoint: &str) -> (StatusCode, serde_json::Value) {
    let h = Harness::new();
    for spec in &BIG {
        h.add_case(spec, crate::harness::T0);
    }
    let me = h.token("r-1", g.role);
    let id = case_of(queue, endpoint);
    let may_claim = g.queues.contains(&queue) && g.actions.contains(&"claim");
    match endpoint {
        "list" => h.call("GET", &format!("/v1/queues/{}/cases", queue.as_str()), Some(&me), None).await,
        "read" => h.call("GET", &format!("/v1/cases/{id}"), Some(&me), None).await,
        "claim" => h.call("POST", &format!("/v1/cases/{id}/claim"), Some(&me), None).await,
        "release" => {
            if may_claim {
                assert_eq!(h.call("POST", &format!("/v1/cases/{id}/claim"), Some(&me), None).await.0, StatusCode::OK);
            }
            h.call("POST", &format!("/v1/cases/{id}/release"), Some(&me), None).await
        }
        "signoff" => {
            // Another senior analyst decides first.
            let other = h.token("r-2", "senior_analyst");
            assert_eq!(h.call("POST", &format!("/v1/cases/{id}/claim"), Some(&other), None).await.0, StatusCode::OK);
            let first = h
                .call("POST", &format!("/v1/cases/{id}/decision"), Some(&other), Some(json!({"action": "reject"})))
                .await;
            assert_eq!(first.1["status"], "awaiting_signoff", "{first:?}");
            h.call("POST", &format!("/v1/cases/{id}/signoff"), Some(&me), Some(json!({"confirm": true}))).await
        }
        action => {
            if may_claim {
                assert_eq!(h.call("POST", &format!("/v1/cases/{id}/claim"), Some(&me), None).await.0, StatusCode::OK);
            }
            let body = json!({"action": action, "rationale": "checked with the card holder"});
            h.call("POST", &format!("/v1/cases/{id}/decision"), Some(&me), Some(body)).await
        }
    }
}

#[tokio::test]
async fn every_role_endpoint_and_queue_is_allowed_or_refused_as_granted() {
    let mut checked = 0;
    for g in &GRANTS {
        for queue in [Route::SyncReview, Route::AsyncReview] {
            for endpoint in ENDPOINTS {
                let reads = g.queues.contains(&queue);
                let allowed = reads
                    && match endpoint {
                        "list" | "read" => true,
                        // Confirming a reject needs the sign-off and the reject grant.
                        "signoff" => g.actions.contains(&"signoff") && g.actions.contains(&"reject"),
                        "release" => g.actions.contains(&"claim"),
                        a => g.actions.contains(&a),
                    };
                let response = cell(g, queue, endpoint).await;
                let what = format!("{} {endpoint} on {queue}", g.role);
                if allowed {
                    assert!(response.0.is_success(), "{what} should be allowed: {response:?}");
                } else {
                    assert_eq!(response.0, StatusCode::FORBIDDEN, "{what} should be refused: {response:?}");
                    let code = response.1["error"].as_str().unwrap_or_default();
                    assert!(["queue_forbidden", "action_forbidden"].contains(&code), "{what}: {response:?}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 2 * 9);
}

#[tokio::test]
async fn listings_show_only_the_roles_queues() {
    let h = Harness::new();
    for g in &GRANTS {
        let token = h.token("r-1", g.role);
        let (status, page) = h.call("GET", "/v1/cases", Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        let queues: Vec<&str> =
            page["cases"].as_array().unwrap().iter().map(|c| c["queue"].as_str().unwrap()).collect();
        assert!(!queues.is_empty());
        for q in &queues {
            assert!(g.queues.iter().any(|r| r.as_str() == *q), "{}: saw {q}", g.role);
        }
        let (_, list) = h.call("GET", "/v1/queues", Some(&token), None).await;
        let names: Vec<&str> =
            list["queues"].as_array().unwrap().iter().map(|q| q["queue"].as_str().unwrap()).collect();
        let mut expected: Vec<&str> = g.queues.iter().map(|q| q.as_str()).collect();
        expected.sort_by_key(|q| *q != "sync_review");
        assert_eq!(names, expected, "{}", g.role);
    }
}

#[tokio::test]
async fn no_token_bad_tokens_and_unknown_roles_are_refused_everywhere() {
    let h = Harness::new();
    let routes = [
        ("GET", "/v1/queues"),
        ("GET", "/v1/cases"),
        ("GET", "/v1/queues/sync_review/cases"),
        ("GET", "/v1/cases/sync-1"),
        ("POST", "/v1/cases/sync-1/claim"),
        ("POST", "/v1/cases/sync-1/release"),
        ("POST", "/v1/cases/sync-1/decision"),
        ("POST", "/v1/cases/sync-1/signoff"),
    ];
    let stranger =
        tollgate_gateway::auth::mint_hs256(&h.config.auth, "eve", "admin", std::time::Duration::from_secs(60));
    let stranger = stranger.unwrap();
    for (method, path) in routes {
        let body = Some(json!({"action": "approve", "confirm": true}));
        assert_error(&h.call(method, path, None, body.clone()).await, StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_error(
            &h.call(method, path, Some("abc.def.ghi"), body.clone()).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
        assert_error(&h.call(method, path, Some(&stranger), body).await, StatusCode::FORBIDDEN, "no_role");
    }
    let metrics = h.metrics().await;
    assert!(metrics.contains("tollgate_gateway_auth_failures_total{reason=\"missing_token\"} 8"), "{metrics}");
    assert!(h.audits().is_empty(), "nothing was shown, nothing audited");
}
