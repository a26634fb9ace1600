//! Policy tests: the reference example's routing at every boundary, guardrails, and the
//! start-up validation errors.

use super::*;
use std::borrow::Cow;

const REFERENCE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/payments/policy.toml"));

fn score(risk: f64, confidence: f64) -> Score<'static> {
    Score { risk, confidence, model_version: Cow::Borrowed("m"), explanation: vec![], texts: Default::default() }
}

/// The reference routing, written independently of the policy engine, straight from the spec
/// (also the oracle of the pipeline tests).
pub(crate) fn expected(risk: f64, conf: f64) -> Route {
    if risk > 0.95 {
        Route::AutoReject
    } else if risk >= 0.9 || conf < 0.6 {
        Route::SyncReview
    } else if (0.6..0.85).contains(&conf) || (risk > 0.6 && risk < 0.9) {
        Route::AsyncReview
    } else {
        Route::AutoCommit
    }
}

#[test]
fn reference_policy_matches_the_spec_on_a_grid_and_at_boundaries() {
    let mut reg = FieldRegistry::default();
    let policy = Policy::from_toml(REFERENCE, &mut reg).unwrap();
    assert_eq!(policy.version(), "payments-2026.11.1");
    let fields = EventFields::default();
    let mut points: Vec<f64> = (0..=100).map(|i| f64::from(i) / 100.0).collect();
    points.extend([0.95, 0.950_000_1, 0.9, 0.899_999, 0.6, 0.600_001, 0.599_999, 0.85, 0.849_999]);
    for &r in &points {
        for &c in &points {
            let d = policy.decide(&score(r, c), &fields);
            assert_eq!(d.route, expected(r, c), "risk {r} confidence {c} (rule {})", d.rule);
        }
    }
    assert_eq!(policy.decide(&score(0.96, 0.99), &fields).rule, "block-high-risk");
    assert_eq!(policy.decide(&score(0.95, 0.99), &fields).rule, "sync-review");
    assert_eq!(policy.decide(&score(0.1, 0.99), &fields).rule, DEFAULT_RULE);
}

const WITH_GUARDRAIL: &str = r#"
version = "g1"
default_route = "auto_commit"
[[guardrails]]
name = "sanctioned"
route = "auto_reject"
all = [{ field = "country", in = ["KP", "IR"] }]
[[guardrails]]
name = "big-amount"
route = "sync_review"
all = [{ field = "amount", gte = 10000 }]
[[rules]]
name = "risky"
route = "async_review"
all = [{ risk = { gte = 0.5 } }]
"#;

#[test]
fn guardrails_win_whatever_the_score() {
    let mut reg = FieldRegistry::default();
    let policy = Policy::from_toml(WITH_GUARDRAIL, &mut reg).unwrap();
    assert_eq!(reg.paths().len(), 2);
    let fields = |country: &'static str, amount: f64| {
        EventFields::from_values(vec![FieldValue::Text(country.into()), FieldValue::Number(amount)])
    };
    let d = policy.decide(&score(0.01, 0.99), &fields("KP", 5.0));
    assert_eq!((d.route, d.rule, d.guardrail), (Route::AutoReject, "sanctioned", true));
    let d = policy.decide(&score(0.01, 0.99), &fields("DE", 20000.0));
    assert_eq!((d.route, d.rule), (Route::SyncReview, "big-amount"));
    let d = policy.decide(&score(0.7, 0.99), &fields("DE", 5.0));
    assert_eq!((d.route, d.rule, d.guardrail), (Route::AsyncReview, "risky", false));
    // An absent field never satisfies a field condition.
    let d = policy.decide(&score(0.01, 0.99), &EventFields::default());
    assert_eq!(d.route, Route::AutoCommit);
}

/// With `untestable_guardrails = "match"`, a guardrail holds on a bound it cannot test unless a
/// condition it can test rules it out (three-valued, `all` and `any` alike); rules other than
/// guardrails are unchanged.
#[test]
fn guardrails_set_to_match_fail_closed_on_a_bound_they_cannot_test() {
    const POLICY: &str = r#"
version = "g2"
default_route = "auto_commit"
untestable_guardrails = "match"
[[guardrails]]
name = "big-domestic"
route = "sync_review"
all = [{ field = "amount", gte = 10000 }, { field = "country", eq = "DE" }]
[[guardrails]]
name = "odd-velocity"
route = "async_review"
any = [{ field = "velocity", gt = 50 }, { risk = { gte = 0.99 } }]
[[rules]]
name = "fee"
route = "auto_reject"
all = [{ field = "fee", gt = 100 }]
"#;
    let mut reg = FieldRegistry::default();
    let policy = Policy::from_toml(POLICY, &mut reg).unwrap();
    let text = |t: &'static str| FieldValue::Text(t.into());
    let event = |amount: FieldValue<'static>, country: &'static str, velocity: FieldValue<'static>| {
        EventFields::from_values(vec![amount, text(country), velocity, text("500")])
    };
    let decide = |fields: &EventFields| {
        let d = policy.decide(&score(0.01, 0.99), fields);
        (d.route, d.rule, d.guardrail, d.untested, d.not_numeric)
    };
    let (n, missing) = (FieldValue::Number, FieldValue::Missing);
    // Text where a number belongs, and every condition it can test holds: the guardrail holds.
    assert_eq!(
        decide(&event(text("20000.00"), "DE", missing.clone())),
        (Route::SyncReview, "big-domestic", true, true, Some("amount"))
    );
    // A condition it can test rules it out: the next guardrail's `any` is unknown (velocity as
    // text, the risk bound false), so it holds.
    assert_eq!(
        decide(&event(text("20000.00"), "FR", text("fast"))),
        (Route::AsyncReview, "odd-velocity", true, true, Some("amount"))
    );
    // Every condition known: as without the setting.
    assert_eq!(
        decide(&event(n(20000.0), "DE", missing.clone())),
        (Route::SyncReview, "big-domestic", true, false, None)
    );
    assert_eq!(decide(&event(n(5.0), "DE", n(60.0))), (Route::AsyncReview, "odd-velocity", true, false, None));
    // An absent field is not unknown: the bound is false. And a rule (not a guardrail) never
    // fails closed: `fee` as text does not reject.
    assert_eq!(
        decide(&event(missing.clone(), "DE", missing)),
        (Route::AutoCommit, DEFAULT_RULE, false, false, Some("fee"))
    );
    // The default, `skip`: the same event passes the guardrails.
    let mut reg = FieldRegistry::default();
    let skipping = Policy::from_toml(&POLICY.replace("untestable_guardrails = \"match\"\n", ""), &mut reg).unwrap();
    let d = skipping.decide(&score(0.01, 0.99), &event(text("20000.00"), "DE", FieldValue::Missing));
    assert_eq!((d.route, d.untested, d.not_numeric), (Route::AutoCommit, false, Some("amount")));
    assert!(Policy::from_toml(&POLICY.replace("\"match\"", "\"maybe\""), &mut FieldRegistry::default()).is_err());

    // An absent field beside an unknown bound rules the guardrail out; a known `any` condition
    // that holds leaves it to the unknown `all`.
    const MIXED: &str = r#"
version = "g3"
default_route = "auto_commit"
untestable_guardrails = "match"
[[guardrails]]
name = "both"
route = "auto_reject"
all = [{ field = "velocity", gt = 50 }, { field = "amount", gte = 10000 }]
[[guardrails]]
name = "either"
route = "sync_review"
all = [{ field = "velocity", gt = 50 }]
any = [{ field = "country", eq = "DE" }, { risk = { gte = 0.99 } }]
"#;
    let mixed = Policy::from_toml(MIXED, &mut FieldRegistry::default()).unwrap();
    let fields = EventFields::from_values(vec![text("fast"), FieldValue::Missing, text("DE")]);
    let d = mixed.decide(&score(0.01, 0.99), &fields);
    assert_eq!((d.route, d.rule, d.untested), (Route::SyncReview, "either", true));
}

#[test]
fn a_bound_on_a_value_that_is_not_a_number_is_false_and_names_its_field() {
    let mut reg = FieldRegistry::default();
    let policy = Policy::from_toml(WITH_GUARDRAIL, &mut reg).unwrap();
    let s = score(0.01, 0.99);
    let with = |amount: FieldValue<'static>| EventFields::from_values(vec![FieldValue::Text("DE".into()), amount]);
    // Money written as text (`"20000.00"`) is not a number to the policy: the guardrail does
    // not hold, and the decision says which field it could not test.
    for amount in [FieldValue::Text("20000.00".into()), FieldValue::Bool(true), FieldValue::Other] {
        let d = policy.decide(&s, &with(amount.clone()));
        assert_eq!((d.route, d.rule, d.not_numeric), (Route::AutoCommit, DEFAULT_RULE, Some("amount")), "{amount:?}");
    }
    // A number, or no value at all, is not reported.
    for amount in [FieldValue::Number(20000.0), FieldValue::Number(5.0), FieldValue::Missing] {
        assert_eq!(policy.decide(&s, &with(amount.clone())).not_numeric, None, "{amount:?}");
    }
    // A rule decided before the bound is reached does not test it.
    let sanctioned = EventFields::from_values(vec![FieldValue::Text("KP".into()), FieldValue::Text("1".into())]);
    assert_eq!(policy.decide(&s, &sanctioned).not_numeric, None);
}

#[test]
fn field_tests_exists_not_in_and_eq() {
    let text = r#"
version = "f1"
default_route = "auto_commit"
[[rules]]
name = "no-device"
route = "sync_review"
all = [{ field = "device", exists = false }]
[[rules]]
name = "foreign"
route = "async_review"
all = [{ field = "currency", not_in = ["EUR"] }, { field = "card_present", eq = false }]
"#;
    let mut reg = FieldRegistry::default();
    let p = Policy::from_toml(text, &mut reg).unwrap();
    let f = |device: FieldValue<'static>, cur: &'static str, present: bool| {
        EventFields::from_values(vec![device, FieldValue::Text(cur.into()), FieldValue::Bool(present)])
    };
    let s = score(0.1, 0.9);
    assert_eq!(p.decide(&s, &f(FieldValue::Missing, "EUR", true)).rule, "no-device");
    assert_eq!(p.decide(&s, &f(FieldValue::Text("d".into()), "USD", false)).rule, "foreign");
    assert_eq!(p.decide(&s, &f(FieldValue::Text("d".into()), "EUR", false)).rule, DEFAULT_RULE);
}

fn refused(text: &str) -> String {
    let mut reg = FieldRegistry::default();
    Policy::from_toml(text, &mut reg).unwrap_err().to_string()
}

#[test]
fn thresholds_outside_the_unit_interval_are_refused() {
    let e = refused(
        "version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='r'\nroute='sync_review'\nall=[{risk={gt=1.5}}]",
    );
    assert!(e.contains("outside [0, 1]"), "{e}");
    let e = refused("version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='r'\nroute='sync_review'\nall=[{confidence={lt=-0.1}}]");
    assert!(e.contains("outside [0, 1]"), "{e}");
}

#[test]
fn unknown_routes_are_refused() {
    let e =
        refused("version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='r'\nroute='manual'\nall=[{risk={gt=0.5}}]");
    assert!(e.contains("unknown variant `manual`"), "{e}");
    let e = refused("version='v'\ndefault_route='later'\n");
    assert!(e.contains("unknown variant"), "{e}");
}

#[test]
fn unreachable_rules_are_refused() {
    // After a catch-all.
    let e = refused("version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='all'\nroute='sync_review'\n[[rules]]\nname='late'\nroute='auto_reject'\nall=[{risk={gt=0.9}}]");
    assert!(e.contains("`late` can never match") && e.contains("`all`"), "{e}");
    // Inside an earlier rule's region.
    let e = refused("version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='wide'\nroute='sync_review'\nall=[{risk={gte=0.8}}]\n[[rules]]\nname='narrow'\nroute='auto_reject'\nall=[{risk={gt=0.95}}]");
    assert!(e.contains("`narrow` can never match"), "{e}");
    // Contradictory conditions.
    let e = refused("version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='never'\nroute='sync_review'\nall=[{risk={gt=0.9}},{risk={lt=0.5}}]");
    assert!(e.contains("`never` can never match"), "{e}");
    // Empty bounds.
    let e = refused("version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='empty'\nroute='sync_review'\nall=[{risk={gt=0.5, lt=0.5}}]");
    assert!(e.contains("admit no value"), "{e}");
}

#[test]
fn narrower_rules_after_field_rules_stay_reachable() {
    // The earlier rule tests a field too, so it does not cover the later one.
    let text = "version='v'\ndefault_route='auto_commit'\n[[rules]]\nname='a'\nroute='sync_review'\nall=[{risk={gte=0.8}},{field='country',eq='NG'}]\n[[rules]]\nname='b'\nroute='auto_reject'\nall=[{risk={gt=0.95}}]";
    let mut reg = FieldRegistry::default();
    assert!(Policy::from_toml(text, &mut reg).is_ok());
}

#[test]
fn malformed_rules_are_refused() {
    let base = "version='v'\ndefault_route='auto_commit'\n";
    let e = refused(&format!("{base}[[rules]]\nname='r'\nroute='sync_review'\nall=[{{risk={{gt=0.5}}, field='x'}}]"));
    assert!(e.contains("exactly one of"), "{e}");
    let e = refused(&format!("{base}[[rules]]\nname='r'\nroute='sync_review'\nall=[{{field='x'}}]"));
    assert!(e.contains("exactly one kind of test"), "{e}");
    let e = refused(&format!("{base}[[rules]]\nname='r'\nroute='sync_review'\nall=[{{risk={{gt=0.1}}}}]\n[[rules]]\nname='r'\nroute='async_review'\nall=[{{risk={{lt=0.1}}}}]"));
    assert!(e.contains("used by an earlier rule"), "{e}");
    let e = refused(&format!("{base}[[guardrails]]\nname='g'\nroute='auto_reject'"));
    assert!(e.contains("at least one condition"), "{e}");
    let e = refused("version=''\ndefault_route='auto_commit'");
    assert!(e.contains("version"), "{e}");
    let e = refused(&format!("{base}[[rules]]\nname='r'\nroute='sync_review'\nall=[{{risk={{gt=0.1, gte=0.2}}}}]"));
    assert!(e.contains("at most one lower bound"), "{e}");
    let e = refused(&format!("{base}surprise=1"));
    assert!(e.contains("unknown field"), "{e}");
}
