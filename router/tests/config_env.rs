//! `TOLLGATE__*` environment variables override the configuration file. In a test binary of its
//! own: the variables are the process's, and any configuration loaded beside this test (unit
//! tests run on parallel threads under `cargo test`) would read them too.

use std::path::Path;
use tollgate_router::config::RouterConfig;

#[test]
// The closure's error type is figment's, whose size is not ours to choose.
#[allow(clippy::result_large_err)]
fn environment_overrides_the_file() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/router.toml");
    figment::Jail::expect_with(|jail| {
        jail.set_env("TOLLGATE__KAFKA__BROKERS", "broker-a:9092,broker-b:9092");
        jail.set_env("TOLLGATE__KAFKA__GROUP_ID", "routers-eu");
        let c = RouterConfig::load(&file).map_err(|e| e.to_string())?;
        assert_eq!(c.kafka.brokers, "broker-a:9092,broker-b:9092");
        assert_eq!(c.kafka.group_id, "routers-eu");
        Ok(())
    });
}
