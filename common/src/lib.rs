//! Conventions shared by Tollgate's services (router and reviewer gateway), so that both read
//! their configuration and talk to Kafka the same way:
//!
//! - [`HumanDuration`]: durations in configuration files (`"30m"`, `"1h 30m"`, or seconds);
//! - [`load_toml`]: one TOML file plus `TOLLGATE__SECTION__KEY` environment overrides;
//! - [`ServiceConfig`], [`load_file`], [`load_text`]: a service's configuration, loaded, located
//!   (relative paths resolve against its file's directory) and validated, with one
//!   [`ConfigError`];
//! - [`kafka`]: the client settings every Tollgate producer starts from, topic creation, and
//!   the context that reports a client's librdkafka logs and errors when it has none of its own.
//!
//! It holds no record types (those are in `tollgate-schemas`) and no service logic.

pub mod kafka;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors loading or validating a service's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("configuration is not valid: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration is not valid: {0}")]
    Invalid(String),
}

/// A service's configuration: where its file is, and the checks serde cannot express.
pub trait ServiceConfig: DeserializeOwned {
    /// Records the directory relative paths resolve against.
    fn set_base_dir(&mut self, dir: PathBuf);
    /// Cross-field checks, run once loaded.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads a configuration file, applies `TOLLGATE__*` environment overrides and validates.
pub fn load_file<T: ServiceConfig>(path: &Path) -> Result<T, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::Missing(path.to_owned()));
    }
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    finish(load_toml(Source::File(path))?, base)
}

/// Parses configuration text (e.g. an embedded default), applies environment overrides and
/// validates. Relative paths resolve against `base_dir`.
pub fn load_text<T: ServiceConfig>(text: &str, base_dir: &Path) -> Result<T, ConfigError> {
    finish(load_toml(Source::Text(text))?, base_dir.to_owned())
}

fn finish<T: ServiceConfig>(mut config: T, base_dir: PathBuf) -> Result<T, ConfigError> {
    config.set_base_dir(base_dir);
    config.validate()?;
    Ok(config)
}

/// `path` as given when absolute, else relative to `base_dir` (a configuration file's directory).
pub fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

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
