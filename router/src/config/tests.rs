//! Configuration tests: defaults, environment overrides and start-up validation.
use super::*;
use std::time::Duration;

const MINIMAL: &str = r#"
    [kafka]
    brokers = "localhost:9092"
    input_topic = "payments"
    [policy]
    file = "policy.toml"
"#;

fn load(text: &str) -> Result<RouterConfig, ConfigError> {
    RouterConfig::from_toml_str(text, Path::new("/etc/tollgate"))
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.topics.auto_commit, "tollgate.auto-commit");
    assert_eq!(c.topics.dead_letter, "tollgate.dead-letter");
    assert_eq!(c.kafka.group_id, "tollgate-router");
    assert_eq!(c.review.sync_review.tiers[0].0, Duration::from_secs(1800));
    assert_eq!(c.resolve(&c.policy.file), PathBuf::from("/etc/tollgate/policy.toml"));
    assert_eq!(c.output.format, RecordFormat::Json);
    assert!(c.output.headers, "routed records carry their headers unless told not to");
    let without = load(&format!("{MINIMAL}\n[output]\nformat = \"json\"\nheaders = false")).unwrap();
    assert!(!without.output.headers);
}

#[test]
fn each_consumer_may_have_settings_of_its_own() {
    let c = load(MINIMAL).unwrap();
    assert!(c.kafka.consumers.routing.is_empty() && c.kafka.consumers.audit_chain.is_empty());
    let text = format!("{MINIMAL}\n[kafka.consumers.audit_chain]\n\"fetch.wait.max.ms\" = \"100\"\n");
    let c = load(&text).unwrap();
    assert_eq!(c.kafka.consumers.audit_chain.get("fetch.wait.max.ms").map(String::as_str), Some("100"));
    assert!(c.kafka.consumers.review_join.is_empty());
    // Only the router's own consumers have a table.
    let err = load(&format!("{MINIMAL}\n[kafka.consumers.gateway]\n\"a\" = \"b\"\n")).unwrap_err();
    assert!(err.to_string().contains("gateway"), "{err}");
}

#[test]
fn invalid_configs_say_what_is_wrong() {
    let cases = [
        ("[input]\nformat = \"avro\"", "set input.avro_schema"),
        ("[scorer]\nkind = \"logistic\"", "set scorer.model"),
        ("[topics]\naudit = \"payments\"", "is the input topic"),
        ("[topics]\naudit = \"tollgate.auto-commit\"", "two outputs"),
        ("[review.sync_review]\ntiers = []", "review.sync_review.tiers"),
        ("[processing]\nbatch_size = 0", "batch_size"),
        ("[processing]\nrouting_threads = 0", "routing_threads must be between 1 and 64"),
        ("[processing]\nrouting_threads = 65", "routing_threads must be between 1 and 64"),
        ("[kafka.producer]\npartitioner = \"fnv1a\"", "partitioner \"fnv1a\" is not supported"),
        ("[kafka.producer]\n\"message.max.bytes\" = \"1MB\"", "message.max.bytes `1MB` must be a number of bytes, at least 65536"),
        ("[kafka.producer]\n\"message.max.bytes\" = \"1000\"", "at least 65536"),
        ("[processing]\nchainer_join_wait = \"5m\"", "chainer_join_wait must be under the routing consumer's max.poll.interval.ms (300000 ms)"),
        (
            "[processing]\nchainer_join_wait = \"20s\"\n[kafka.consumers.review_join]\n\"max.poll.interval.ms\" = \"15000\"",
            "the review_join consumer's max.poll.interval.ms (15000 ms)",
        ),
        ("[kafka2]\nx = 1", "unknown field"),
        ("[review.async_review]\ntiers = [\"soon\"]", "not a duration"),
    ];
    for (extra, expected) in cases {
        let err = load(&format!("{MINIMAL}\n{extra}")).unwrap_err().to_string();
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
}

#[test]
fn each_routing_loop_has_its_own_transactional_id_and_the_first_keeps_the_instance_one() {
    let config =
        load(&format!("{MINIMAL}\n[processing]\ntransactional_id = \"router-a\"\nrouting_threads = 3")).unwrap();
    let ids: Vec<String> = (0..3).map(|i| config.routing_transactional_id(i)).collect();
    assert_eq!(ids, ["router-a", "router-a-1", "router-a-2"]);
    assert_eq!(config.transactional_id(), "router-a");
}

#[test]
fn the_chainer_join_wait_may_stay_under_any_poll_interval() {
    assert_eq!(load(MINIMAL).unwrap().processing.chainer_join_wait.0, std::time::Duration::from_secs(10));
    let text = format!(
        "{MINIMAL}\n[processing]\nchainer_join_wait = \"0s\"\n[kafka.consumer]\n\"max.poll.interval.ms\" = \"15000\""
    );
    assert!(load(&text).unwrap().processing.chainer_join_wait.0.is_zero());
}

#[test]
fn missing_file_is_reported() {
    let err = RouterConfig::load(Path::new("/nonexistent/router.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Missing(_)));
}
