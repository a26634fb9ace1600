//! Claims, decisions, second sign-off and idempotency.

use crate::harness::{assert_error, request, Harness};
use axum::http::StatusCode;
use serde_json::json;
use std::time::Duration;
use tollgate_schemas::ReviewAction;

#[tokio::test]
async fn a_claim_is_exclusive_until_released_or_expired() {
    let h = Harness::new();
    let (ana, ben) = (h.token("ana", "fraud_analyst"), h.token("ben", "fraud_analyst"));
    let (status, claim) = h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await;
    assert_eq!(status, StatusCode::OK, "{claim}");
    assert_eq!(claim["reviewer_id"], "ana");
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/claim", Some(&ben), None).await,
        StatusCode::CONFLICT,
        "claimed_by_other",
    );
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/release", Some(&ben), None).await,
        StatusCode::CONFLICT,
        "claimed_by_other",
    );
    // Claiming again renews.
    h.advance(Duration::from_secs(600));
    let (_, renewed) = h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await;
    assert!(renewed["expires_at"].as_str() > claim["expires_at"].as_str());
    let (_, case) = h.call("GET", "/v1/cases/sync-1", Some(&ben), None).await;
    assert_eq!(case["claim"]["reviewer_id"], "ana");
    // Released: ben may claim.
    assert_eq!(h.call("POST", "/v1/cases/sync-1/release", Some(&ana), None).await.0, StatusCode::OK);
    assert_eq!(h.call("POST", "/v1/cases/sync-1/claim", Some(&ben), None).await.0, StatusCode::OK);
    // Expired (15 min lease): ana may claim, and ben's decision is refused.
    h.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await.0, StatusCode::OK);
    let decide = json!({"action": "reject"});
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/decision", Some(&ben), Some(decide)).await,
        StatusCode::CONFLICT,
        "claimed_by_other",
    );
    let actions: Vec<String> = h.audits().iter().map(|a| format!("{}:{}", a.actor, a.action)).collect();
    assert_eq!(
        actions.iter().filter(|a| a.ends_with("case_claim") || a.ends_with("case_release")).count(),
        5,
        "{actions:?}"
    );
    // Each claim is persisted as case state, newest revision last.
    let states = h.written(&h.config.topics.gateway_state);
    let last = tollgate_schemas::CaseGate::read(states.last().unwrap().value.as_ref().unwrap()).unwrap();
    assert_eq!((last.revision, last.claim.unwrap().reviewer_id.as_ref()), (5, "ana"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_give_the_case_to_exactly_one_reviewer() {
    for round in 0..20 {
        let h = Harness::new();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..4 {
            let (app, token) = (h.app.clone(), h.token(&format!("r{i}"), "fraud_analyst"));
            set.spawn(async move { request(app, "POST", "/v1/cases/async-1/claim", Some(&token), None, &[]).await });
        }
        let mut statuses = Vec::new();
        while let Some(r) = set.join_next().await {
            statuses.push(r.unwrap().0);
        }
        let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let lost = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
        assert_eq!((won, lost), (1, 3), "round {round}: {statuses:?}");
        let claims = h.audits().into_iter().filter(|a| a.action == "case_claim").count();
        assert_eq!(claims, 1, "round {round}: one claim audited");
    }
}

#[tokio::test]
async fn a_decision_goes_to_the_router_with_its_audit_record_in_one_write() {
    let h = Harness::new();
    let ana = h.token("ana", "fraud_analyst");
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(json!({"action": "reject"}))).await,
        StatusCode::CONFLICT,
        "not_claimed",
    );
    h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await;
    // Risk 0.95: the model recommends reject, so approving overrides it and needs a rationale.
    let r = h.call("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(json!({"action": "approve"}))).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "rationale_required");
    let r = h
        .call("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(json!({"action": "reject", "rationale": " "})))
        .await;
    assert_eq!(r.0, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!((r.1["status"].as_str(), r.1["replayed"].as_bool()), (Some("submitted"), Some(false)));
    let decisions = h.decisions();
    assert_eq!(decisions.len(), 1);
    let d = &decisions[0];
    assert_eq!((d.event_id.as_ref(), d.reviewer_id.as_ref(), d.action), ("sync-1", "ana", ReviewAction::Reject));
    assert_eq!(d.reviewer_role, "fraud_analyst");
    assert_eq!(h.written(&h.config.topics.review_decisions)[0].key, "sync-1");
    let submitted = h.audits().into_iter().find(|a| a.action == "decision_submitted").unwrap();
    assert_eq!((submitted.decision.as_ref(), submitted.sla_expected_ms), ("reject", Some(1_800_000)));
    assert_eq!(submitted.sla_actual_ms, Some(60_000));
    // Decided: out of the queue, and no second decision.
    let (_, page) = h.call("GET", "/v1/queues/sync_review/cases", Some(&ana), None).await;
    assert!(page["cases"].as_array().unwrap().iter().all(|c| c["event_id"] != "sync-1"));
    let (_, case) = h.call("GET", "/v1/cases/sync-1", Some(&ana), None).await;
    assert_eq!(case["status"], "submitted");
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await,
        StatusCode::CONFLICT,
        "already_decided",
    );
    let again = json!({"action": "approve", "rationale": "changed my mind"});
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(again)).await,
        StatusCode::CONFLICT,
        "already_decided",
    );
    // Request-info needs a rationale (what to ask); it keeps the case open and frees the claim.
    h.call("POST", "/v1/cases/async-1/claim", Some(&ana), None).await;
    let ask = json!({"action": "request_info"});
    assert_error(
        &h.call("POST", "/v1/cases/async-1/decision", Some(&ana), Some(ask)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rationale_required",
    );
    let ask = json!({"action": "request_info", "rationale": "ask for the invoice"});
    assert_eq!(h.call("POST", "/v1/cases/async-1/decision", Some(&ana), Some(ask)).await.0, StatusCode::ACCEPTED);
    let (_, case) = h.call("GET", "/v1/cases/async-1", Some(&ana), None).await;
    assert_eq!((case["status"].as_str(), case["info_requested"].as_bool()), (Some("open"), Some(true)));
    assert!(case["claim"].is_null());
}

#[tokio::test]
async fn a_failed_write_changes_nothing() {
    let h = Harness::new();
    let ana = h.token("ana", "fraud_analyst");
    h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await;
    h.sink.set_failing(true);
    let r = h.call("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(json!({"action": "reject"}))).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_error(
        &h.call("POST", "/v1/cases/sync-1/release", Some(&ana), None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    h.sink.set_failing(false);
    let (_, case) = h.call("GET", "/v1/cases/sync-1", Some(&ana), None).await;
    assert_eq!((case["status"].as_str(), case["claim"]["reviewer_id"].as_str()), (Some("open"), Some("ana")));
    assert!(h.decisions().is_empty());
}

#[tokio::test]
async fn high_impact_decisions_need_a_second_different_reviewer() {
    let h = Harness::new();
    let (ana, sam, sue) =
        (h.token("ana", "fraud_analyst"), h.token("sam", "senior_analyst"), h.token("sue", "senior_analyst"));
    h.call("POST", "/v1/cases/big-sync/claim", Some(&sam), None).await;
    let r = h
        .call("POST", "/v1/cases/big-sync/decision", Some(&sam), Some(json!({"action": "reject", "rationale": "mule"})))
        .await;
    assert_eq!((r.0, r.1["status"].as_str()), (StatusCode::ACCEPTED, Some("awaiting_signoff")), "{r:?}");
    assert!(h.decisions().is_empty(), "nothing final before the second sign-off");
    let (_, case) = h.call("GET", "/v1/cases/big-sync", Some(&sue), None).await;
    assert_eq!(
        (case["status"].as_str(), case["pending_signoff"]["reviewer_id"].as_str()),
        (Some("awaiting_signoff"), Some("sam"))
    );
    assert_eq!(case["requires_second_signoff"], true);
    // Not by the same reviewer; not by a role without the sign-off grant; not a new decision.
    let confirm = json!({"confirm": true});
    assert_error(
        &h.call("POST", "/v1/cases/big-sync/signoff", Some(&sam), Some(confirm.clone())).await,
        StatusCode::FORBIDDEN,
        "own_decision",
    );
    assert_error(
        &h.call("POST", "/v1/cases/big-sync/signoff", Some(&ana), Some(confirm.clone())).await,
        StatusCode::FORBIDDEN,
        "action_forbidden",
    );
    assert_error(
        &h.call("POST", "/v1/cases/big-sync/claim", Some(&ana), None).await,
        StatusCode::CONFLICT,
        "awaiting_signoff",
    );
    // A refusal needs a rationale and reopens the case.
    let refuse = json!({"confirm": false});
    assert_error(
        &h.call("POST", "/v1/cases/big-sync/signoff", Some(&sue), Some(refuse)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rationale_required",
    );
    let refuse = json!({"confirm": false, "rationale": "customer called, travelling"});
    let r = h.call("POST", "/v1/cases/big-sync/signoff", Some(&sue), Some(refuse)).await;
    assert_eq!((r.0, r.1["status"].as_str()), (StatusCode::ACCEPTED, Some("open")));
    assert_error(
        &h.call("POST", "/v1/cases/big-sync/signoff", Some(&sue), Some(confirm.clone())).await,
        StatusCode::CONFLICT,
        "no_signoff_pending",
    );
    // Decided again, then confirmed by a second reviewer: one final decision naming both.
    h.call("POST", "/v1/cases/big-sync/claim", Some(&sam), None).await;
    h.call("POST", "/v1/cases/big-sync/decision", Some(&sam), Some(json!({"action": "reject", "rationale": "mule"})))
        .await;
    let r = h.call("POST", "/v1/cases/big-sync/signoff", Some(&sue), Some(confirm)).await;
    assert_eq!((r.0, r.1["status"].as_str()), (StatusCode::ACCEPTED, Some("submitted")), "{r:?}");
    let decisions = h.decisions();
    assert_eq!(decisions.len(), 1);
    let d = &decisions[0];
    assert_eq!(
        (d.reviewer_id.as_ref(), d.second_signoff.as_deref(), d.action),
        ("sam", Some("sue"), ReviewAction::Reject)
    );
    assert_eq!(d.rationale, "mule");
    let trail: Vec<String> = h
        .audits()
        .iter()
        .filter(|a| a.event_id == "big-sync" && a.action != "case_read")
        .map(|a| format!("{}:{}", a.actor, a.action))
        .collect();
    assert_eq!(
        trail,
        [
            "sam:case_claim",
            "sam:signoff_requested",
            "sue:signoff_refused",
            "sam:case_claim",
            "sam:signoff_requested",
            "sue:decision_submitted"
        ]
    );
}

#[tokio::test]
async fn a_retried_decision_with_the_same_idempotency_key_is_written_once() {
    let h = Harness::new();
    let ana = h.token("ana", "fraud_analyst");
    h.call("POST", "/v1/cases/sync-1/claim", Some(&ana), None).await;
    let body = json!({"action": "reject", "rationale": "card reported stolen"}).to_string();
    let key = [("content-type", "application/json"), ("idempotency-key", "k-123")];
    let first = h.send("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(&body), &key).await;
    let second = h.send("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(&body), &key).await;
    assert_eq!(first.0, StatusCode::ACCEPTED);
    assert_eq!(second.0, StatusCode::ACCEPTED);
    assert_eq!((first.1["replayed"].as_bool(), second.1["replayed"].as_bool()), (Some(false), Some(true)));
    assert_eq!(first.1["decision_id"], second.1["decision_id"]);
    assert_eq!(h.decisions().len(), 1);
    assert_eq!(h.decisions()[0].decision_id.as_deref(), Some("ana/k-123"));
    // The same key for something else is refused.
    let other = json!({"action": "escalate"}).to_string();
    let r = h.send("POST", "/v1/cases/sync-1/decision", Some(&ana), Some(&other), &key).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    // Keys are per reviewer: ben's k-123 is another request.
    let ben = h.token("ben", "fraud_analyst");
    let r = h.send("POST", "/v1/cases/sync-1/decision", Some(&ben), Some(&body), &key).await;
    assert_error(&r, StatusCode::CONFLICT, "already_decided");

    // Concurrent retries of one request: one record.
    h.call("POST", "/v1/cases/async-1/claim", Some(&ana), None).await;
    let body = json!({"action": "escalate"}).to_string();
    let key = [("content-type", "application/json"), ("idempotency-key", "k-9")];
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (h2, body, ana) = (h.app.clone(), body.clone(), ana.clone());
        set.spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::post("/v1/cases/async-1/decision")
                .header("authorization", format!("Bearer {ana}"))
                .header(key[0].0, key[0].1)
                .header(key[1].0, key[1].1)
                .body(axum::body::Body::from(body))
                .unwrap();
            h2.oneshot(req).await.unwrap().status()
        });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::ACCEPTED);
    }
    assert_eq!(h.decisions().iter().filter(|d| d.event_id == "async-1").count(), 1);
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("tollgate_gateway_actions_total{action=\"escalate\",outcome=\"replayed\"} 4"),
        "{metrics}"
    );
}
