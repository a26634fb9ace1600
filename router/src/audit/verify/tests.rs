use super::*;
use std::borrow::Cow;
use tollgate_schemas::{AuditAction, Contribution};

fn record(n: usize) -> AuditRecord<'static> {
    AuditRecord {
        rule: Some("default".into()),
        policy_version: Some("v1".into()),
        model_version: Some("m1".into()),
        risk_score: Some(0.1),
        confidence: Some(0.9),
        input_snapshot: r#"{"amount":1}"#.into(),
        ..AuditRecord::new(
            format!("evt-{n}"),
            "2026-11-21T06:00:00.000Z",
            "policy",
            AuditAction::Route,
            "auto_commit",
            ("payments", 0, n as i64),
        )
    }
}

/// A sealed trail of `n` records, as the chainer writes it.
fn trail(n: usize) -> Vec<AuditRecord<'static>> {
    let mut prev = GENESIS.to_owned();
    (0..n)
        .map(|i| {
            let mut r = record(i);
            r.seal(i as i64, &prev);
            prev = r.chain_hash.clone().unwrap().into_owned();
            r
        })
        .collect()
}

fn bytes(r: &AuditRecord<'_>, format: RecordFormat) -> Vec<u8> {
    let mut out = Vec::new();
    r.write(format, &mut out).unwrap();
    out
}

fn verify(records: &[Vec<u8>]) -> Report {
    let mut v = ChainVerifier::new();
    for (offset, b) in records.iter().enumerate() {
        v.push(0, offset as i64, b);
    }
    v.finish(&BTreeMap::new())
}

fn encoded(t: &[AuditRecord<'static>]) -> Vec<Vec<u8>> {
    t.iter().map(|r| bytes(r, RecordFormat::Json)).collect()
}

fn first(report: &Report) -> (i64, BreakKind) {
    let b = report.first().expect("a broken link");
    (b.offset, b.kind)
}

#[test]
fn an_intact_trail_verifies_in_either_encoding() {
    let t = trail(6);
    assert!(verify(&encoded(&t)).intact());
    let avro: Vec<Vec<u8>> = t.iter().map(|r| bytes(r, RecordFormat::Avro)).collect();
    let report = verify(&avro);
    assert!(report.intact(), "{:?}", report.breaks);
    assert_eq!(report.records[&0], 6);
}

/// A logistic model can give a feature an infinite contribution (a huge amount times its
/// weight) and still score: JSON writes it as null, and the verifier reads that back.
#[test]
fn a_trail_with_non_finite_contributions_verifies() {
    let mut prev = GENESIS.to_owned();
    let t: Vec<_> = (0..3)
        .map(|i| {
            let mut r = record(i);
            r.explanation = vec![
                Contribution { feature: "amount".into(), contribution: f64::INFINITY },
                Contribution { feature: "age".into(), contribution: f64::NAN },
            ];
            r.seal(i as i64, &prev);
            prev = r.chain_hash.clone().unwrap().into_owned();
            r
        })
        .collect();
    let json = encoded(&t);
    assert!(String::from_utf8_lossy(&json[0]).contains(r#""contribution":null"#));
    let report = verify(&json);
    assert!(report.intact(), "{:?}", report.breaks);
}

#[test]
fn an_edited_record_is_found_where_it_is() {
    let t = trail(6);
    let mut records = encoded(&t);
    let mut edited = t[3].clone();
    edited.decision = Cow::Borrowed("auto_reject");
    records[3] = bytes(&edited, RecordFormat::Json);
    assert_eq!(first(&verify(&records)), (3, BreakKind::Edited));
    // Edited and re-hashed: the next record no longer links to it.
    let mut rehashed = t[3].clone();
    rehashed.decision = Cow::Borrowed("auto_reject");
    rehashed.seal(3, t[2].chain_hash.as_deref().unwrap());
    records[3] = bytes(&rehashed, RecordFormat::Json);
    assert_eq!(first(&verify(&records)), (4, BreakKind::Inserted));
}

#[test]
fn deleted_reordered_and_inserted_records_are_told_apart() {
    let t = trail(6);
    let records = encoded(&t);
    let mut deleted = records.clone();
    deleted.remove(2);
    assert_eq!(first(&verify(&deleted)), (2, BreakKind::Deleted));

    let mut swapped = records.clone();
    swapped.swap(2, 3);
    assert_eq!(first(&verify(&swapped)), (2, BreakKind::Reordered));
    let mut moved = records.clone();
    let r = moved.remove(1);
    moved.insert(3, r);
    assert_eq!(first(&verify(&moved)), (1, BreakKind::Reordered));

    // A record from elsewhere, a copy, and a fully forged record with the right links.
    let mut foreign = records.clone();
    foreign.insert(2, bytes(&trail(9)[7], RecordFormat::Json));
    assert_eq!(first(&verify(&foreign)), (2, BreakKind::Inserted));
    let mut copy = records.clone();
    copy.insert(4, records[1].clone());
    assert_eq!(first(&verify(&copy)), (4, BreakKind::Inserted));
    let mut forged = record(99);
    forged.seal(2, t[1].chain_hash.as_deref().unwrap());
    let mut with_forgery = records.clone();
    with_forgery.insert(2, bytes(&forged, RecordFormat::Json));
    assert_eq!(first(&verify(&with_forgery)), (3, BreakKind::Inserted));

    let mut junk = records.clone();
    junk.insert(1, b"not a record".to_vec());
    assert_eq!(first(&verify(&junk)), (1, BreakKind::Unreadable));
    let mut unchained = records;
    unchained.insert(1, bytes(&record(1), RecordFormat::Json));
    assert_eq!(first(&verify(&unchained)), (1, BreakKind::Unchained));
}

#[test]
fn a_trail_cut_short_of_the_committed_head_is_truncated() {
    let t = trail(5);
    let mut v = ChainVerifier::new();
    for (offset, b) in encoded(&t[..3]).iter().enumerate() {
        v.push(0, offset as i64, b);
    }
    let heads = BTreeMap::from([(0, (5, t[4].chain_hash.clone().unwrap().into_owned()))]);
    let report = v.finish(&heads);
    assert_eq!(first(&report), (2, BreakKind::Truncated));
    // The committed head of the whole trail: intact.
    let mut v = ChainVerifier::new();
    for (offset, b) in encoded(&t).iter().enumerate() {
        v.push(0, offset as i64, b);
    }
    assert!(v.finish(&heads).intact());
    // A partition with a committed head but no records at all.
    let report = ChainVerifier::new().finish(&heads);
    assert_eq!(first(&report), (-1, BreakKind::Truncated));
}
