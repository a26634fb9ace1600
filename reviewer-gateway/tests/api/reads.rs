//! Reading queues and cases: priority order, paging, redaction, similar cases, and the audit
//! record of what was shown.

use crate::harness::{Harness, CASES, T0};
use axum::http::StatusCode;
use serde_json::json;
use tollgate_schemas::ReviewOutcome;

#[tokio::test]
async fn queues_list_by_priority_with_paging() {
    let h = Harness::new();
    let token = h.token("ana", "fraud_analyst");
    // Sync before async; within a queue, amount × risk, largest first.
    let (status, page) = h.call("GET", "/v1/cases?limit=3", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = page["cases"].as_array().unwrap().iter().map(|c| c["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["big-sync", "sync-1", "async-1"]);
    assert_eq!((page["total"].as_u64(), page["next_offset"].as_u64()), (Some(4), Some(3)));
    let (_, rest) = h.call("GET", "/v1/cases?limit=3&offset=3", Some(&token), None).await;
    assert_eq!(rest["cases"][0]["event_id"], "low-async");
    assert!(rest["next_offset"].is_null());
    // Equal impact: the older case first.
    let twin = crate::harness::CaseSpec { id: "async-0", ..CASES[1] };
    h.add_case(&twin, T0 - 10_000);
    let (_, page) = h.call("GET", "/v1/queues/async_review/cases", Some(&token), None).await;
    let ids: Vec<&str> = page["cases"].as_array().unwrap().iter().map(|c| c["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["async-0", "async-1", "low-async"]);
    let first = &page["cases"][0];
    assert_eq!(first["impact"].as_f64().unwrap(), 80.0 * 0.7);
    assert_eq!(first["tier"], 1);
    assert_eq!(first["age_seconds"].as_f64().unwrap(), 70.0);
}

#[tokio::test]
async fn every_response_redacts_what_the_role_may_not_see() {
    let h = Harness::new();
    h.resolve(&crate::harness::CaseSpec { id: "old-1", ..CASES[3] }, ReviewOutcome::Rejected, T0 - 5_000);
    let analyst = h.token("ana", "fraud_analyst");
    let (status, case) = h.call("GET", "/v1/cases/sync-1", Some(&analyst), None).await;
    assert_eq!(status, StatusCode::OK, "{case}");
    assert_eq!(
        case["fields"],
        json!({"event_id": "[redacted]", "account_id": "[redacted]", "amount": 120.0, "currency": "EUR",
               "merchant_category": "gambling", "country": "DE", "card_bin": "[redacted]"})
    );
    assert_eq!(case["prediction"], "reject");
    assert_eq!(case["top_features"][1]["feature"], "merchant_category=gambling");
    assert_eq!(case["policy_version"], "2026.11.1");
    assert_eq!(case["sla"]["tier"], 1);
    assert!(case["sla"]["deadline"].as_str().unwrap().starts_with("2026-09-21T"));
    // The similar case shares the account (not the category) and is redacted the same way.
    let similar = &case["similar_cases"][0];
    assert_eq!((similar["event_id"].as_str(), similar["matched_on"].as_str()), (Some("old-1"), Some("account_id")));
    assert_eq!(similar["outcome"], "rejected");
    assert_eq!(similar["fields"]["account_id"], "[redacted]");

    // The auditor may not see the merchant category: not in the fields, not in a feature name,
    // not in the impact (it would reveal nothing new, but the amount it may see).
    let auditor = h.token("aud", "auditor");
    let (_, case) = h.call("GET", "/v1/cases/sync-1", Some(&auditor), None).await;
    assert_eq!(case["fields"]["merchant_category"], "[redacted]");
    assert_eq!(case["top_features"][1]["feature"], "merchant_category=[redacted]");
    let (_, page) = h.call("GET", "/v1/queues/sync_review/cases", Some(&auditor), None).await;
    for c in page["cases"].as_array().unwrap() {
        assert_eq!(c["fields"]["merchant_category"], "[redacted]");
        assert_eq!(c["fields"]["account_id"], "[redacted]");
    }
    // async_triage may not see the country or the category, but sees the amount (so the impact).
    let triage = h.token("tri", "async_triage");
    let (_, page) = h.call("GET", "/v1/queues/async_review/cases", Some(&triage), None).await;
    assert_eq!(page["cases"][0]["fields"]["country"], "[redacted]");
    assert!(page["cases"][0]["impact"].is_number());
    let senior = h.token("sam", "senior_analyst");
    let (_, case) = h.call("GET", "/v1/cases/sync-1", Some(&senior), None).await;
    assert_eq!(case["fields"]["account_id"], "acct-1");
}

#[tokio::test]
async fn every_case_shown_is_audited_with_what_was_shown() {
    let h = Harness::new();
    let token = h.token("ana", "fraud_analyst");
    let (_, case) = h.call("GET", "/v1/cases/sync-1", Some(&token), None).await;
    let audits = h.audits();
    assert_eq!(audits.len(), 1);
    let a = &audits[0];
    assert_eq!(
        (a.action.as_ref(), a.actor.as_ref(), a.actor_role.as_deref()),
        ("case_read", "ana", Some("fraud_analyst"))
    );
    assert_eq!(a.event_id, "sync-1");
    let shown: serde_json::Value = serde_json::from_str(&a.input_snapshot).unwrap();
    assert_eq!(shown, case["fields"]);
    assert_eq!(a.explanation.len(), 3);
    assert_eq!(a.policy_version.as_deref(), Some("2026.11.1"));
    assert!(a.timestamp.starts_with("2026-09-21T") && a.timestamp.ends_with('Z'), "{}", a.timestamp);

    let (_, page) = h.call("GET", "/v1/cases?limit=2", Some(&token), None).await;
    let listed: Vec<_> = h.audits().into_iter().filter(|a| a.action == "case_listed").collect();
    assert_eq!(listed.len(), 2);
    for (audit, shown) in listed.iter().zip(page["cases"].as_array().unwrap()) {
        assert_eq!(audit.event_id, shown["event_id"].as_str().unwrap());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&audit.input_snapshot).unwrap(), shown["fields"]);
    }
    // The queue overview shows no case, so it writes no audit record.
    let before = h.audits().len();
    let (status, _) = h.call("GET", "/v1/queues", Some(&token), None).await;
    assert_eq!((status, h.audits().len()), (StatusCode::OK, before));
}

#[tokio::test]
async fn nothing_is_shown_when_the_read_cannot_be_audited() {
    let h = Harness::new();
    let token = h.token("ana", "fraud_analyst");
    h.sink.set_failing(true);
    let r = h.call("GET", "/v1/cases/sync-1", Some(&token), None).await;
    crate::harness::assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(r.1.get("fields").is_none());
    let r = h.call("GET", "/v1/cases", Some(&token), None).await;
    crate::harness::assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(h.metrics().await.contains("tollgate_gateway_write_failures_total{kind=\"audit\"} 2"));
}

#[tokio::test]
async fn resolved_and_unknown_cases_are_not_found() {
    let h = Harness::new();
    h.resolve(&CASES[0], ReviewOutcome::Approved, T0 + 5_000);
    let token = h.token("ana", "fraud_analyst");
    let r = h.call("GET", "/v1/cases/sync-1", Some(&token), None).await;
    crate::harness::assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert!(r.1["message"].as_str().unwrap().contains("resolved (approved"), "{r:?}");
    crate::harness::assert_error(
        &h.call("GET", "/v1/cases/nope", Some(&token), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A resolved case leaves the listing.
    let (_, page) = h.call("GET", "/v1/queues/sync_review/cases", Some(&token), None).await;
    assert_eq!(page["total"], 1);
}
