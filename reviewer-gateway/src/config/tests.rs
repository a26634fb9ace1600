use super::*;
use std::path::Path;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments")
}

fn example_text() -> String {
    std::fs::read_to_string(example_dir().join("gateway.toml")).unwrap()
}

fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::from_toml_str(text, &example_dir())
}

#[test]
fn the_example_loads() {
    let c = GatewayConfig::load(&example_dir().join("gateway.toml")).unwrap();
    assert_eq!(c.roles.len(), 4);
    assert!(c.roles["auditor"].actions.is_empty());
    assert!(c.roles["senior_analyst"].actions.contains(&Permission::Signoff));
    assert!(!format!("{:?}", c.auth).contains("0123456789"), "the secret is never printed");
}

#[test]
fn bad_configurations_are_refused_with_the_reason() {
    let base = example_text();
    let cases = [
        ("hs256_secret = \"local-only-secret-change-me-0123456789abcdef\"", "hs256_secret = \"short\"", "32 bytes"),
        ("jwks_file = \"keys/local-jwks.json\"", "jwks_file = \"keys/missing.json\"", "does not exist"),
        ("queues = [\"async_review\"]", "queues = [\"auto_commit\"]", "not a review queue"),
        ("recommendation_cut = 0.5", "recommendation_cut = 1.5", "outside [0, 1]"),
        ("claim_lease = \"15m\"", "claim_lease = \"soon\"", "not a duration"),
        ("default_page_size = 50", "default_page_size = 900", "between 1 and"),
        ("actions = []", "actions = [\"delete\"]", "unknown variant"),
        ("[http]", "[http]\nport = 1", "unknown field"),
    ];
    for (from, to, why) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(why), "{to}: {err}");
    }
    let no_keys = base
        .replace("hs256_secret = \"local-only-secret-change-me-0123456789abcdef\"", "")
        .replace("jwks_file = \"keys/local-jwks.json\"", "");
    assert!(parse(&no_keys).unwrap_err().to_string().contains("hs256_secret or jwks_file"));
    let webhook = format!("{base}\n[webhook]\nurl = \"ftp://x\"\n");
    assert!(parse(&webhook).unwrap_err().to_string().contains("not an http(s) URL"));
}
