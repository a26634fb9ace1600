//! Policy replay (backtest): re-route recorded events offline with the running policy and a
//! candidate, side by side, without producing anything.
//!
//! For each policy it reports the share of events per route, the expected review load per hour
//! per queue (events over the span of the records' timestamps), and, using recorded human
//! decisions (`tollgate.resolved`) as labels, the expected override rate (labelled events the
//! policy sends to review whose human outcome differs from the model's recommendation) and, per
//! score band, how many labelled events each policy would review and how many it would decide
//! automatically against the human label (auto errors). Labels exist only for events someone
//! reviewed (or sampled), so the figures cover that subset; the report says how many.

mod report;

pub use report::{BandFigures, PolicyFigures, ReplayReport};

use crate::config::RouterConfig;
use crate::kafka::reader::{Start, TopicReader};
use crate::pipeline::{Output, Pipeline, PipelineError, Source, Verdict};
use rdkafka::error::KafkaError;
use rdkafka::Message;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};
use tollgate_schemas::{AvroBytes, RecordFormat, ResolvedEvent, ReviewOutcome, Route};

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Pipeline(#[from] Box<PipelineError>),
    #[error("reading {topic}: {source}")]
    Kafka { topic: String, source: KafkaError },
}

/// The two policies and the tallies.
pub struct Replay {
    pipelines: [Pipeline; 2],
    tallies: [report::Tally; 2],
    labels: HashMap<String, ReviewOutcome>,
    recommendation_cut: f64,
    out: Output,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
}

impl Replay {
    /// The running policy of `config` against the policy file `candidate`.
    pub fn new(config: &RouterConfig, candidate: &Path) -> Result<Replay, ReplayError> {
        let current = Pipeline::from_config(config).map_err(Box::new)?;
        let mut other = config.clone();
        other.policy.file = candidate.to_owned();
        let candidate = Pipeline::from_config(&other).map_err(Box::new)?;
        let tallies = [report::Tally::new(current.policy_version()), report::Tally::new(candidate.policy_version())];
        Ok(Replay {
            pipelines: [current, candidate],
            tallies,
            labels: HashMap::new(),
            recommendation_cut: config.review.recommendation_cut,
            out: Output::default(),
            first_ts: None,
            last_ts: None,
        })
    }

    /// A human outcome for `event_id` (the last one given wins: a rollback after an approval).
    pub fn label(&mut self, event_id: &str, outcome: ReviewOutcome) {
        self.labels.insert(event_id.to_owned(), outcome);
    }

    /// One recorded input record, written at `timestamp` (ms since the epoch, when known).
    pub fn event(&mut self, payload: Option<&[u8]>, timestamp: Option<i64>) {
        if let Some(ts) = timestamp {
            self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
            self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
        }
        let source = Source { topic: "replay", partition: 0, offset: 0 };
        let now = SystemTime::now();
        for (pipeline, tally) in self.pipelines.iter().zip(self.tallies.iter_mut()) {
            match pipeline.process(payload, source, now, &mut self.out) {
                Verdict::Routed { route, risk, not_numeric, .. } => {
                    let label = self.labels.get(&self.out.event_id).copied();
                    let recommends_reject = risk >= self.recommendation_cut;
                    tally.routed(route, risk, label, recommends_reject);
                    if let Some(field) = not_numeric {
                        tally.bound_not_numeric(field);
                    }
                }
                Verdict::Rejected(_) => tally.dead_letter(),
            }
        }
    }

    /// The figures.
    pub fn report(&self) -> ReplayReport {
        let span_hours = match (self.first_ts, self.last_ts) {
            (Some(f), Some(l)) if l > f => Some((l - f) as f64 / 3_600_000.0),
            _ => None,
        };
        ReplayReport {
            span_hours,
            labels: self.labels.len(),
            current: self.tallies[0].figures(span_hours),
            candidate: self.tallies[1].figures(span_hours),
        }
    }
}

fn kafka(topic: &str) -> impl Fn(KafkaError) -> ReplayError + '_ {
    move |source| ReplayError::Kafka { topic: topic.to_owned(), source }
}

/// Reads the human outcomes on `decisions` and the events on `input`, and replays them.
pub fn run(
    config: &RouterConfig,
    candidate: &Path,
    input: &str,
    decisions: Option<&str>,
    idle: Duration,
    mut progress: impl FnMut(&str, u64),
) -> Result<ReplayReport, ReplayError> {
    let mut replay = Replay::new(config, candidate)?;
    if let Some(topic) = decisions {
        let reader = TopicReader::open(config, topic, Start::Beginning, idle).map_err(kafka(topic))?;
        let mut n = 0;
        reader
            .read(|m| {
                n += 1;
                if let Some((id, outcome)) = m.payload().and_then(human_outcome) {
                    replay.label(&id, outcome);
                }
                if n % 1_000 == 0 {
                    progress("decisions", n);
                }
                true
            })
            .map_err(kafka(topic))?;
    }
    let reader = TopicReader::open(config, input, Start::Beginning, idle).map_err(kafka(input))?;
    let mut n = 0;
    reader
        .read(|m| {
            n += 1;
            replay.event(m.payload(), m.timestamp().to_millis());
            if n % 10_000 == 0 {
                progress("events", n);
            }
            true
        })
        .map_err(kafka(input))?;
    progress("events", n);
    Ok(replay.report())
}

/// The event id and human outcome of a resolved record; `None` for a timeout fallback (the
/// policy decided, not a person) or a record that cannot be read.
fn human_outcome(bytes: &[u8]) -> Option<(String, ReviewOutcome)> {
    let (id, action, outcome) = if RecordFormat::of(bytes) == RecordFormat::Json {
        let r = ResolvedEvent::<serde_json::Value>::from_json(bytes).ok()?;
        (r.event_id.into_owned(), r.action, r.outcome)
    } else {
        let r = ResolvedEvent::<AvroBytes<'_>>::from_avro(bytes).ok()?;
        (r.event_id.into_owned(), r.action, r.outcome)
    };
    action.map(|_| (id, outcome))
}

/// True for the routes that decide without a person.
fn is_auto(route: Route) -> bool {
    !route.is_review()
}

#[cfg(test)]
mod tests;
