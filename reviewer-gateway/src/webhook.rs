//! Notifications to a Slack-compatible webhook (a JSON body with a `text` field) when a case
//! enters sync review and when a case escalates to the configured tier.
//!
//! Sending never blocks the view: notices go through a bounded queue to one sender task, which
//! retries failures with doubling back-off. A full queue drops the notice; every outcome
//! (sent, failed after retries, dropped) is counted. The message carries no event fields: the
//! webhook's readers are not authenticated reviewers.

use crate::config::WebhookSettings;
use crate::service::iso;
use crate::store::CaseView;
use crate::telemetry::Telemetry;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    SyncReview,
    Escalation,
}

impl Trigger {
    pub const fn label(self) -> &'static str {
        match self {
            Trigger::SyncReview => "sync_review",
            Trigger::Escalation => "escalation",
        }
    }
}

/// Something worth a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub trigger: Trigger,
    pub event_id: Arc<str>,
    /// When it happened (ms since the epoch).
    pub at: i64,
    pub tier: i32,
}

/// The Slack-compatible message body.
#[derive(Debug, Serialize)]
pub struct Message {
    pub text: String,
}

struct Outgoing {
    trigger: Trigger,
    message: Message,
}

/// The sending side of the notification queue.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Outgoing>,
    case_url: Option<String>,
    telemetry: Telemetry,
}

impl Notifier {
    /// Queues a notice about `case`; drops it (counted) when the queue is full.
    pub fn notify(&self, notice: Notice, case: &CaseView) {
        let message = Message { text: self.text(&notice, case) };
        if self.tx.try_send(Outgoing { trigger: notice.trigger, message }).is_err() {
            self.telemetry.webhook(notice.trigger.label(), "dropped");
        }
    }

    fn text(&self, notice: &Notice, case: &CaseView) -> String {
        let r = &case.routed;
        let head = match notice.trigger {
            Trigger::SyncReview => format!(":rotating_light: Case {} needs a sync review", case.event_id),
            Trigger::Escalation => {
                format!(":arrow_double_up: Case {} escalated to tier {}", case.event_id, notice.tier)
            }
        };
        let deadline = case.deadline.map_or_else(|| "held (every tier ran out)".to_owned(), iso);
        let mut text = format!(
            "{head} (queue {}, risk {:.3}, confidence {:.3}, rule {}, policy {}). SLA deadline: {deadline}.",
            r.queue, r.risk, r.confidence, r.rule, r.policy_version
        );
        if let Some(url) = &self.case_url {
            text.push(' ');
            text.push_str(&url.replace("{event_id}", &case.event_id));
        }
        text
    }
}

/// Starts the sender task.
pub fn spawn(settings: WebhookSettings, telemetry: Telemetry, shutdown: CancellationToken) -> Notifier {
    let (tx, rx) = mpsc::channel(settings.queue);
    let notifier = Notifier { tx, case_url: settings.case_url.clone(), telemetry: telemetry.clone() };
    tokio::spawn(send_loop(settings, rx, telemetry, shutdown));
    notifier
}

async fn send_loop(
    settings: WebhookSettings,
    mut rx: mpsc::Receiver<Outgoing>,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder().timeout(settings.timeout.0).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "The webhook client could not be built; notifications are off.");
            return;
        }
    };
    loop {
        let outgoing = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = rx.recv() => match next {
                Some(o) => o,
                None => return,
            },
        };
        let trigger = outgoing.trigger.label();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            sent = deliver(&client, &settings, &outgoing.message, &telemetry) => sent,
        };
        match outcome {
            Ok(()) => telemetry.webhook(trigger, "sent"),
            Err(e) => {
                telemetry.webhook(trigger, "failed");
                tracing::warn!(error = %e, trigger, "A webhook notification failed after its retries.");
            }
        }
    }
}

/// Posts one message, retrying server errors, throttling and transport failures.
async fn deliver(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    message: &Message,
    telemetry: &Telemetry,
) -> Result<(), String> {
    let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    let mut backoff = settings.backoff.0;
    let mut attempt = 0;
    loop {
        let result = client
            .post(&settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let (retryable, why) = match result {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let s = r.status();
                (s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS, format!("HTTP {s}"))
            }
            Err(e) => (true, e.to_string()),
        };
        if !retryable || attempt >= settings.retries {
            return Err(why);
        }
        attempt += 1;
        telemetry.webhook_retry();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
