//! The OpenAPI document matches the served API: it is the one served, every documented
//! operation is served and answers with a documented status, and the committed copy is current.

use crate::harness::Harness;
use axum::http::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn the_served_document_describes_every_route_and_the_routes_answer_as_documented() {
    let h = Harness::new();
    let (status, served) = h.send("GET", "/openapi.json", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, serde_json::to_value(tollgate_gateway::api::openapi()).unwrap());
    let paths = served["paths"].as_object().unwrap();
    let mut operations = 0;
    let sam = h.token("sam", "senior_analyst");
    // A pending sign-off for the sign-off operation (by another reviewer).
    let sue = h.token("sue", "senior_analyst");
    h.call("POST", "/v1/cases/big-sync/claim", Some(&sue), None).await;
    h.call("POST", "/v1/cases/big-sync/decision", Some(&sue), Some(json!({"action": "reject"}))).await;
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let path = template
                .replace("{queue}", "sync_review")
                .replace("{event_id}", if template.ends_with("signoff") { "big-sync" } else { "sync-1" });
            let body = match template.rsplit('/').next() {
                Some("decision") => Some(json!({"action": "escalate"})),
                Some("signoff") => Some(json!({"confirm": true})),
                _ => None,
            };
            if template.ends_with("decision") || template.ends_with("release") {
                h.call("POST", "/v1/cases/sync-1/claim", Some(&sam), None).await;
            }
            let (status, answer) = h.call(&method.to_uppercase(), &path, Some(&sam), body).await;
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(status.as_str()),
                "{method} {template} answered {status}, documented {:?}: {answer}",
                documented.keys().collect::<Vec<_>>()
            );
            assert!(status.is_success(), "{method} {template} should succeed here: {status} {answer}");
            check_shape(&served, &documented[status.as_str()], &answer, &format!("{method} {template}"));
            operations += 1;
        }
    }
    assert_eq!(operations, 11, "every operation was exercised");
}

/// The response carries every property the documented schema requires.
fn check_shape(doc: &Value, response: &Value, body: &Value, what: &str) {
    let Some(schema) = response.pointer("/content/application~1json/schema") else { return };
    let schema = resolve(doc, schema);
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        assert!(body.get(name).is_some(), "{what}: the response lacks {name}: {body}");
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc.pointer(&r.replacen('#', "", 1)).unwrap(),
        None => schema,
    }
}

#[test]
fn the_committed_copy_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = tollgate_gateway::api::openapi().to_pretty_json().unwrap();
    if std::env::var_os("TOLLGATE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{generated}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed.trim_end(),
        generated,
        "reviewer-gateway/openapi.json is stale: run `TOLLGATE_UPDATE_OPENAPI=1 cargo test -p tollgate-gateway --test api`"
    );
}
