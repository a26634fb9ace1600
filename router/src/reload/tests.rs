use super::*;
use crate::testing::example_copy;
use std::path::{Path, PathBuf};

fn setup() -> (PathBuf, Arc<PipelineSlot>, Reloader, Telemetry) {
    let dir = example_copy();
    let config = Arc::new(RouterConfig::load(&dir.join("router.toml")).unwrap());
    let slot = Arc::new(PipelineSlot::new(Pipeline::from_config(&config).unwrap()));
    let telemetry = Telemetry::new();
    let reloader = Reloader::new(config, slot.clone(), telemetry.clone());
    (dir, slot, reloader, telemetry)
}

fn rewrite_policy(dir: &Path, edit: impl Fn(String) -> String) {
    let path = dir.join("policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

fn reloads(t: &Telemetry, result: &str) -> String {
    let line = format!("tollgate_policy_reloads_total{{result=\"{result}\"}}");
    t.render().lines().find(|l| l.starts_with(&line)).unwrap_or_default().to_owned()
}

#[test]
fn a_valid_new_version_applies_and_an_invalid_one_is_refused() {
    let (dir, slot, mut reloader, telemetry) = setup();
    assert!(matches!(reloader.check(false), Ok(None)), "nothing changed");
    assert!(matches!(reloader.check(true), Ok(None)), "SIGHUP on an unchanged file");

    rewrite_policy(&dir, |t| {
        t.replace("version = \"payments-2026.11.1\"", "version = \"payments-2026.11.2\"")
            .replace("{ risk = { gte = 0.9 } }", "{ risk = { gte = 0.8 } }")
    });
    let applied = reloader.check(false).unwrap().unwrap();
    assert_eq!((applied.from.as_str(), applied.to.as_str()), ("payments-2026.11.1", "payments-2026.11.2"));
    assert_eq!(applied.sha256.len(), 64);
    assert_eq!((slot.generation(), slot.get().policy_version()), (1, "payments-2026.11.2"));
    assert!(reloads(&telemetry, "applied").ends_with(" 1"));
    assert!(telemetry.render().contains("tollgate_policy_info{policy_version=\"payments-2026.11.2\"} 1"));
    let audit = reloader.audit_record(&applied, "SIGHUP");
    assert_eq!((audit.action.as_ref(), audit.decision.as_ref()), ("policy_change", "payments-2026.11.2"));
    assert!(audit.input_snapshot.contains("payments-2026.11.1"));

    // Invalid: a threshold outside [0, 1]. Refused, counted; the running policy stays.
    rewrite_policy(&dir, |t| {
        t.replace("payments-2026.11.2", "payments-2026.11.3")
            .replace("{ risk = { gte = 0.8 } }", "{ risk = { gte = 1.8 } }")
    });
    let err = reloader.check(false).unwrap_err();
    assert!(matches!(err, ReloadError::Invalid(_)), "{err}");
    assert_eq!((slot.generation(), slot.get().policy_version()), (1, "payments-2026.11.2"));
    assert!(reloads(&telemetry, "refused").ends_with(" 1"));
    // Not retried until the file changes again; SIGHUP retries (and refuses) it.
    assert!(matches!(reloader.check(false), Ok(None)));
    assert!(matches!(reloader.check(true), Err(ReloadError::Invalid(_))));

    // A changed policy that kept its version is refused too.
    rewrite_policy(&dir, |t| t.replace("payments-2026.11.3", "payments-2026.11.2").replace("gte = 1.8", "gte = 0.85"));
    assert!(matches!(reloader.check(false), Err(ReloadError::SameVersion(v)) if v == "payments-2026.11.2"));
    // An unreadable file is refused.
    std::fs::remove_file(dir.join("policy.toml")).unwrap();
    assert!(matches!(reloader.check(false), Err(ReloadError::Invalid(_))));
    assert_eq!(slot.get().policy_version(), "payments-2026.11.2");
}
