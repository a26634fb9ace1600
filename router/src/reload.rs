//! Policy hot reload: on SIGHUP, or when the policy file changes, the router builds a new
//! pipeline from the configuration (which validates the new policy exactly as at start-up) and,
//! if it is valid and carries a new version, switches the routing loop to it between two
//! batches. An invalid policy, or a changed one that kept its version, is refused: the running
//! policy goes on, the refusal is logged and counted (`tollgate_policy_reloads_total{result=
//! "refused"}`). An applied change is logged, counted and audited (`policy_change`).

use crate::config::RouterConfig;
use crate::pipeline::{write_timestamp, Pipeline};
use crate::telemetry::Telemetry;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::LoggingContext;
use tollgate_schemas::{AuditAction, AuditRecord};

/// The pipeline the routing loop uses, replaceable while it runs.
pub struct PipelineSlot {
    current: RwLock<Arc<Pipeline>>,
    version: AtomicU64,
}

impl PipelineSlot {
    pub fn new(pipeline: Pipeline) -> Self {
        PipelineSlot { current: RwLock::new(Arc::new(pipeline)), version: AtomicU64::new(0) }
    }

    /// The current pipeline.
    pub fn get(&self) -> Arc<Pipeline> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Increases with every replacement; the loop compares it once per batch.
    pub fn generation(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn replace(&self, pipeline: Pipeline) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pipeline);
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new policy is not valid: {0}")]
    Invalid(String),
    #[error("the policy file changed but its version is still {0}: a changed policy needs a new version")]
    SameVersion(String),
}

/// An applied reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub from: String,
    pub to: String,
    /// SHA-256 of the new policy file.
    pub sha256: String,
}

/// Watches the policy file and applies valid changes.
pub struct Reloader {
    config: Arc<RouterConfig>,
    slot: Arc<PipelineSlot>,
    telemetry: Telemetry,
    /// Hash of the file content last looked at (applied or refused), so a refused file is not
    /// retried until it changes again.
    seen: String,
    /// Hash of the file content the running policy was built from.
    applied: String,
}

fn file_hash(config: &RouterConfig) -> Result<String, String> {
    let path = config.resolve(&config.policy.file);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl Reloader {
    pub fn new(config: Arc<RouterConfig>, slot: Arc<PipelineSlot>, telemetry: Telemetry) -> Self {
        let seen = file_hash(&config).unwrap_or_default();
        Reloader { config, slot, telemetry, applied: seen.clone(), seen }
    }

    /// Checks the file; `forced` (SIGHUP) re-validates even an unchanged file. Returns what
    /// happened: `Ok(None)` when there was nothing to do.
    pub fn check(&mut self, forced: bool) -> Result<Option<Reloaded>, ReloadError> {
        let hash = file_hash(&self.config).map_err(ReloadError::Invalid);
        let unchanged = hash.as_ref().is_ok_and(|h| *h == self.seen);
        if unchanged && !forced {
            return Ok(None);
        }
        let result = match hash {
            Ok(h) => {
                self.seen = h.clone();
                self.apply(h)
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(Some(r)) => {
                self.telemetry.policy_reload(true);
                let running = self.slot.get();
                self.telemetry.policy_loaded(&r.to, running.bounded_fields());
                tracing::info!(from = %r.from, to = %r.to, sha256 = %r.sha256, "Routing policy reloaded.");
            }
            Ok(None) => {}
            Err(e) => {
                self.telemetry.policy_reload(false);
                tracing::error!(error = %e, "Policy reload refused; the running policy stays.");
            }
        }
        result
    }

    fn apply(&mut self, hash: String) -> Result<Option<Reloaded>, ReloadError> {
        if hash == self.applied {
            return Ok(None);
        }
        let candidate = Pipeline::from_config(&self.config).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let running = self.slot.get();
        let (from, to) = (running.policy_version(), candidate.policy_version());
        if from == to {
            return Err(ReloadError::SameVersion(to.to_owned()));
        }
        let reloaded = Reloaded { from: from.to_owned(), to: to.to_owned(), sha256: hash.clone() };
        self.slot.replace(candidate);
        self.applied = hash;
        Ok(Some(reloaded))
    }

    /// The policy change's audit record.
    pub fn audit_record(&self, r: &Reloaded, trigger: &str) -> AuditRecord<'static> {
        let snapshot = serde_json::json!({
            "from": r.from, "to": r.to, "sha256": r.sha256, "trigger": trigger,
            "file": self.config.resolve(&self.config.policy.file).display().to_string(),
            "instance": self.config.transactional_id(),
        });
        let event_id = format!("policy/{}", r.to);
        let mut now = String::new();
        write_timestamp(std::time::SystemTime::now(), &mut now);
        AuditRecord {
            policy_version: Some(r.to.clone().into()),
            input_snapshot: snapshot.to_string().into(),
            rationale: Some(format!("policy {} replaced by {} ({trigger})", r.from, r.to).into()),
            ..AuditRecord::new(event_id, now, "router", AuditAction::PolicyChange, r.to.clone(), ("", -1, -1))
        }
    }
}

/// Checks for policy changes on SIGHUP and every `policy.watch`, until `shutdown`; audits each
/// applied change on the audit intake.
pub async fn watch(mut reloader: Reloader, shutdown: CancellationToken) {
    let config = Arc::clone(&reloader.config);
    let interval = config.policy.watch.0;
    let context = reloader.telemetry.client_context("policy change producer");
    let producer: Option<FutureProducer<LoggingContext>> = match crate::kafka::producer_config(&config)
        .create_with_context(context)
    {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %e, "No producer for policy-change audit records; reloads will not be audited.");
            None
        }
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        let tick = async {
            if interval.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(interval).await
            }
        };
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = signalled => "SIGHUP",
            _ = tick => "file change",
        };
        let Ok(Some(reloaded)) = reloader.check(trigger == "SIGHUP") else { continue };
        let record = reloader.audit_record(&reloaded, trigger);
        let mut value = Vec::new();
        record.write_intake(&mut value);
        if let Some(p) = &producer {
            let out = FutureRecord::to(&config.topics.audit_intake).key(record.event_id.as_ref()).payload(&value);
            if let Err((e, _)) = p.send(out, std::time::Duration::from_secs(30)).await {
                reloader.telemetry.delivery_failed(&config.topics.audit_intake, &e);
                tracing::error!(error = %e, "The policy-change audit record was not written.");
            }
        }
    }
}

#[cfg(test)]
mod tests;
