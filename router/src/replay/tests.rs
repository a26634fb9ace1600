//! A backtest of the reference sample, with figures worked out by hand from the sample's
//! scores (see `examples/payments/sample.jsonl`) and the two policies below.

use super::*;
use crate::testing::{example_copy, sample_events};

const HOUR: i64 = 3_600_000;

/// The candidate: sync review from risk 0.8 (0.9 before), a new rule sending every other
/// event with risk ≥ 0.5 to async review, and a guardrail on amounts no sample event reaches.
fn candidate(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap();
    let text = text
        .replace("version = \"payments-2026.11.1\"", "version = \"payments-2026.12.0\"")
        .replace("{ risk = { gte = 0.9 } }", "{ risk = { gte = 0.8 } }")
        + "\n[[rules]]\nname = \"watch-mid-risk\"\nroute = \"async_review\"\nall = [{ risk = { gte = 0.5 } }]\n"
        + "\n[[guardrails]]\nname = \"huge-amount\"\nroute = \"sync_review\"\nall = [{ field = \"amount\", gte = 1e9 }]\n";
    let path = dir.join("candidate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn replayed() -> ReplayReport {
    let dir = example_copy();
    let config = RouterConfig::load(&dir.join("router.toml")).unwrap();
    let mut replay = Replay::new(&config, &candidate(&dir)).unwrap();
    // Human outcomes of reviewed events, plus two of automatically decided ones (audit samples).
    for (id, outcome) in [
        ("pay-0004", ReviewOutcome::Rejected),
        ("pay-0005", ReviewOutcome::Rejected),
        ("pay-0006", ReviewOutcome::Approved),
        ("pay-0007", ReviewOutcome::Approved),
        ("pay-0009", ReviewOutcome::Rejected),
        ("pay-0012", ReviewOutcome::Approved),
        ("pay-0013", ReviewOutcome::Rejected),
        ("pay-0014", ReviewOutcome::Approved),
        ("pay-0019", ReviewOutcome::Rejected),
        ("pay-0001", ReviewOutcome::Approved),
    ] {
        replay.label(id, outcome);
    }
    // The 20 events spread over two hours; one writes its amount as text, which the
    // candidate's guardrail cannot test.
    for (i, e) in sample_events().iter().enumerate() {
        let ts = 1_790_000_000_000 + i as i64 * 2 * HOUR / 19;
        let mut e = e.clone();
        if i == 7 {
            e["amount"] = serde_json::Value::String(e["amount"].to_string());
        }
        replay.event(Some(e.to_string().as_bytes()), Some(ts));
    }
    replay.event(Some(b"{not json"), None);
    replay.report()
}

fn routes(f: &PolicyFigures) -> Vec<u64> {
    f.routes.iter().map(|(_, n)| *n).collect()
}

#[test]
fn the_figures_match_the_hand_computed_ones() {
    let r = replayed();
    assert_eq!((r.span_hours, r.labels), (Some(2.0), 10));
    let (c, n) = (&r.current, &r.candidate);
    assert_eq!((c.policy_version.as_str(), n.policy_version.as_str()), ("payments-2026.11.1", "payments-2026.12.0"));
    // Routes, in the order auto_commit, async_review, sync_review, auto_reject.
    // Current: sync 0004-0009, async 0010-0014, auto-reject 0001-0003, the rest auto-commit.
    assert_eq!(routes(c), [6, 5, 6, 3]);
    // Candidate: 0013 (risk 0.89) moves to sync; 0015, 0016, 0019 (risk 0.55-0.6) to async.
    assert_eq!(routes(n), [3, 7, 7, 3]);
    assert_eq!((c.events, c.dead_letters), (21, 1));
    assert_eq!(c.shares[0], ("auto_commit".to_owned(), 0.30));
    assert_eq!(n.shares[1], ("async_review".to_owned(), 0.35));
    // Review load: events per queue over the two hours.
    assert_eq!(c.review_load_per_hour, [("sync_review".to_owned(), Some(3.0)), ("async_review".to_owned(), Some(2.5))]);
    assert_eq!(n.review_load_per_hour, [("sync_review".to_owned(), Some(3.5)), ("async_review".to_owned(), Some(3.5))]);
    // Labelled reviewed events: current 0004 0005 0006 0007 0009 0012 0013 0014; the model
    // recommends reject from risk 0.5, so 0006 (0.9), 0012 (0.61) and 0014 (0.5) are
    // overrides (approved). The candidate also reviews 0019 (0.55, rejected: no override).
    assert_eq!((c.labelled_reviewed, n.labelled_reviewed), (8, 9));
    assert_eq!(c.override_rate, Some(3.0 / 8.0));
    assert_eq!(n.override_rate, Some(3.0 / 9.0));
    // Auto errors: 0001 auto-rejected but approved by a person; 0019 auto-committed but
    // rejected (the candidate reviews it instead).
    assert_eq!((c.auto_errors, n.auto_errors), (2, 1));
    // The current policy has no bound on a field; the candidate's met the one text amount.
    assert_eq!((c.bound_not_numeric.clone(), n.bound_not_numeric.clone()), (vec![], vec![("amount".to_owned(), 1)]));
    // Band [0.9, 1.0]: 0001 0002 0003 (auto-reject), 0004 0005 0006 (sync).
    let top = c.bands[9];
    assert_eq!((top.events, top.reviewed, top.auto), (6, 3, 3));
    assert_eq!((top.labelled_reviewed, top.overrides, top.labelled_auto, top.auto_errors), (3, 1, 1, 1));
    // Band [0.5, 0.6): 0014 (async, override) and 0019 (auto-commit, error) → both reviewed.
    assert_eq!((c.bands[5].reviewed, c.bands[5].overrides, c.bands[5].auto_errors), (1, 1, 1));
    assert_eq!((n.bands[5].reviewed, n.bands[5].overrides, n.bands[5].auto_errors), (2, 1, 0));
}

#[test]
fn the_table_shows_both_policies_side_by_side() {
    let table = replayed().table();
    assert!(table.contains("current payments-2026.11.1"), "{table}");
    assert!(table.contains("candidate payments-2026.12.0"), "{table}");
    assert!(table.contains("sync_review load per hour"), "{table}");
    assert!(table.contains("37.5%") && table.contains("33.3%"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("bounds met a non-number") && l.ends_with(" 1")), "{table}");
    let json = serde_json::to_value(replayed()).unwrap();
    assert_eq!(json["candidate"]["auto_errors"], 1);
}

#[test]
fn only_human_outcomes_are_labels() {
    let mut resolved = serde_json::json!({
        "event_id": "e1", "queue": "sync_review", "rule": "r", "recommendation": "rejected", "action": "approve",
        "outcome": "approved", "actor": "ana", "actor_role": null, "rationale": "", "second_signoff": null,
        "overridden": true, "review_latency_ms": 1, "sla_met": true, "tier": 1, "decided_at": 1, "rollback": false,
        "risk_score": 0.9, "confidence": 0.9, "policy_version": "p", "model_version": "m", "event_format": "json",
        "event": {}
    });
    let bytes = serde_json::to_vec(&resolved).unwrap();
    assert_eq!(human_outcome(&bytes), Some(("e1".to_owned(), ReviewOutcome::Approved)));
    resolved["action"] = serde_json::Value::Null;
    resolved["actor"] = "policy_timeout".into();
    assert_eq!(human_outcome(&serde_json::to_vec(&resolved).unwrap()), None);
    assert_eq!(human_outcome(b"garbage"), None);
}
