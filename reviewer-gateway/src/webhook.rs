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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering each request with the next status of `statuses` (then the last one);
    /// returns its URL and a counter of requests.
    async fn server(statuses: Vec<u16>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                let mut buf = vec![0; 65536];
                let _ = s.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        (url, count)
    }

    fn settings(url: String, retries: u32) -> WebhookSettings {
        WebhookSettings {
            url,
            escalation_tier: 3,
            case_url: None,
            timeout: tollgate_common::HumanDuration(Duration::from_secs(2)),
            retries,
            backoff: tollgate_common::HumanDuration(Duration::from_millis(10)),
            queue: 10,
            replay_window: tollgate_common::HumanDuration::mins(15),
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_client_errors_are_not() {
        let client = reqwest::Client::new();
        let message = Message { text: "case e1 needs a sync review".into() };
        let t = Telemetry::new();
        let (url, count) = server(vec![503, 429, 200]).await;
        assert_eq!(deliver(&client, &settings(url, 3), &message, &t).await, Ok(()));
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
        let (url, count) = server(vec![500]).await;
        assert_eq!(
            deliver(&client, &settings(url, 2), &message, &t).await,
            Err("HTTP 500 Internal Server Error".into())
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3, "the first attempt and two retries");
        let (url, count) = server(vec![400]).await;
        assert!(deliver(&client, &settings(url, 5), &message, &t).await.is_err());
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1, "a client error is not retried");
        assert!(t.render().contains("tollgate_gateway_webhook_retries_total 4"));
    }
}
