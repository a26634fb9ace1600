//! `TOLLGATE__*` environment variables override the gateway's configuration file, secrets
//! included. In a test binary of its own: the variables are the process's, and any configuration
//! loaded beside this test (unit tests run on parallel threads under `cargo test`) would read
//! them too.

use std::path::Path;
use tollgate_gateway::config::GatewayConfig;

#[test]
// The closure's error type is figment's, whose size is not ours to choose.
#[allow(clippy::result_large_err)]
fn environment_overrides_the_example() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/gateway.toml");
    figment::Jail::expect_with(|jail| {
        jail.set_env("TOLLGATE__KAFKA__BROKERS", "kafka-1:9092");
        jail.set_env("TOLLGATE__AUTH__HS256_SECRET", "a-secret-from-the-environment-0123456789");
        let c = GatewayConfig::load(&file).map_err(|e| e.to_string())?;
        assert_eq!(c.kafka.brokers, "kafka-1:9092");
        assert_eq!(c.auth.hs256_secret.as_deref(), Some("a-secret-from-the-environment-0123456789"));
        assert!(!format!("{:?}", c.auth).contains("0123456789"), "the secret is never printed");
        Ok(())
    });
}
