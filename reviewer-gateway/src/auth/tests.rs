use super::*;
use crate::config::AuthSettings;
use jsonwebtoken::{encode, EncodingKey, Header};
use std::path::PathBuf;
use tollgate_common::HumanDuration;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/keys")
}

fn settings() -> AuthSettings {
    AuthSettings {
        issuer: "https://sso.test/".into(),
        audience: "tollgate-gateway".into(),
        hs256_secret: Some(SECRET.into()),
        jwks_file: Some(keys_dir().join("local-jwks.json")),
        role_claim: "role".into(),
        leeway: HumanDuration::secs(0),
    }
}

fn authenticator() -> Authenticator {
    let s = settings();
    Authenticator::new(&s, s.jwks_file.as_deref(), ["fraud_analyst".to_owned(), "auditor".to_owned()]).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(patch: serde_json::Value) -> serde_json::Value {
    let mut base = serde_json::json!({
        "sub": "ana", "iss": "https://sso.test/", "aud": "tollgate-gateway",
        "exp": now() + 600, "role": "fraud_analyst"
    });
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn rs256(claims: &serde_json::Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(keys_dir().join("local-rs256.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn check(token: &str) -> Result<Principal, AuthError> {
    authenticator().authenticate(Some(&format!("Bearer {token}")))
}

#[test]
fn valid_hs256_and_rs256_tokens_give_the_reviewer_and_role() {
    let expected = Principal { reviewer_id: "ana".into(), role: "fraud_analyst".into() };
    assert_eq!(check(&hs256(&claims(serde_json::json!({})), SECRET)).unwrap(), expected);
    assert_eq!(check(&rs256(&claims(serde_json::json!({})), Some("tollgate-local-1"))).unwrap(), expected);
    // One key in the set: a token without a key id is still unambiguous.
    assert_eq!(check(&rs256(&claims(serde_json::json!({})), None)).unwrap(), expected);
    // A role array with exactly one configured role.
    let t = hs256(&claims(serde_json::json!({"role": ["offline_access", "auditor"]})), SECRET);
    assert_eq!(check(&t).unwrap().role, "auditor");
}

#[test]
fn every_bad_token_is_refused_with_its_reason() {
    let ok = claims(serde_json::json!({}));
    assert_eq!(authenticator().authenticate(None), Err(AuthError::MissingToken));
    assert_eq!(authenticator().authenticate(Some("Basic YW5hOnB3")), Err(AuthError::MissingToken));
    assert_eq!(check(&hs256(&claims(serde_json::json!({"exp": now() - 60})), SECRET)), Err(AuthError::Expired));
    let cases = [
        (hs256(&ok, "another-secret-of-at-least-32-bytes!!"), "bad signature"),
        (hs256(&claims(serde_json::json!({"iss": "https://evil.test/"})), SECRET), "wrong issuer"),
        (hs256(&claims(serde_json::json!({"aud": "other-service"})), SECRET), "wrong audience"),
        (hs256(&claims(serde_json::json!({"nbf": now() + 600})), SECRET), "not valid yet"),
        (rs256(&ok, Some("unknown-kid")), "no RS256 key"),
        (hs256(&claims(serde_json::json!({"exp": null})), SECRET), "exp"),
        (hs256(&claims(serde_json::json!({"sub": ""})), SECRET), "empty subject"),
        ("not.a.token".to_owned(), ""),
    ];
    for (token, why) in cases {
        match check(&token) {
            Err(AuthError::Invalid(m)) => assert!(m.contains(why), "{m} should say {why}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    // Only HS256 and RS256 are accepted, whatever else the token's header claims.
    let mut header = Header::new(Algorithm::HS256);
    header.alg = Algorithm::HS384;
    let t = encode(&header, &ok, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    assert!(matches!(check(&t), Err(AuthError::Invalid(m)) if m.contains("not accepted")));
}

#[test]
fn a_token_without_exactly_one_configured_role_is_refused() {
    for role in [serde_json::json!(null), serde_json::json!("root"), serde_json::json!(["auditor", "fraud_analyst"])] {
        let t = hs256(&claims(serde_json::json!({ "role": role })), SECRET);
        assert!(matches!(check(&t), Err(AuthError::NoRole(_))), "{role}");
    }
}

#[test]
fn minted_local_tokens_pass_the_checks() {
    let s = settings();
    let token = mint_hs256(&s, "ben", "auditor", std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(check(&token).unwrap(), Principal { reviewer_id: "ben".into(), role: "auditor".into() });
    let no_secret = AuthSettings { hs256_secret: None, ..settings() };
    assert!(mint_hs256(&no_secret, "ben", "auditor", std::time::Duration::from_secs(60)).is_err());
}
