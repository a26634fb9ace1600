//! Conventions shared by Tollgate's services (router and reviewer gateway), so that both read
//! their configuration and talk to Kafka the same way:
//!
//! - [`HumanDuration`]: durations in configuration files (`"30m"`, `"1h 30m"`, or seconds);
//! - [`load_toml`]: one TOML file plus `TOLLGATE__SECTION__KEY` environment overrides;
//! - [`kafka`]: the client settings every Tollgate producer starts from.
//!
//! It holds no record types (those are in `tollgate-schemas`) and no service logic.

pub mod kafka;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Prefix of environment variables that override configuration; `__` separates levels, so
/// `TOLLGATE__KAFKA__BROKERS=host:9092` sets `kafka.brokers`.
pub const ENV_PREFIX: &str = "TOLLGATE__";

/// Where configuration text comes from.
pub enum Source<'a> {
    /// A TOML file (must exist).
    File(&'a Path),
    /// TOML text, e.g. an embedded default.
    Text(&'a str),
}

/// Reads TOML from `source`, applies `TOLLGATE__*` environment overrides and deserializes.
/// Validation beyond what serde expresses is the caller's.
pub fn load_toml<T: DeserializeOwned>(source: Source<'_>) -> Result<T, Box<figment::Error>> {
    let figment = match source {
        Source::File(path) => Figment::from(Toml::file_exact(path)),
        Source::Text(text) => Figment::from(Toml::string(text)),
    };
    figment.merge(Env::prefixed(ENV_PREFIX).split("__")).extract().map_err(Box::new)
}

/// A duration written as text (`"30m"`, `"1h 30m"`, `"250ms"`) or as whole seconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
    pub const fn mins(m: u64) -> Self {
        HumanDuration(Duration::from_secs(m * 60))
    }
    /// The duration in whole milliseconds (saturating).
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(HumanDuration::secs(s)),
            Raw::Text(t) => humantime::parse_duration(&t)
                .map(HumanDuration)
                .map_err(|e| serde::de::Error::custom(format!("`{t}` is not a duration: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        wait: HumanDuration,
        name: String,
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn durations_and_environment_overrides() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOLLGATE__NAME", "from-env");
            let s: Sample = load_toml(Source::Text("wait = \"1h 30m\"\nname = \"file\"")).unwrap();
            assert_eq!(s.wait, HumanDuration::mins(90));
            assert_eq!(s.name, "from-env");
            let s: Sample = load_toml(Source::Text("wait = 7\nname = \"x\"")).unwrap();
            assert_eq!(s.wait.as_millis_i64(), 7_000);
            let err = load_toml::<Sample>(Source::Text("wait = \"soon\"\nname = \"x\"")).unwrap_err();
            assert!(err.to_string().contains("`soon` is not a duration"), "{err}");
            Ok(())
        });
    }
}
