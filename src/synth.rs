//! A synthetic stream of payment events shaped like the reference example's, with score
//! distributions close to a real fraud model's: most events low-risk and confidently scored,
//! a minority uncertain or risky. Deterministic for a given seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::io::Write;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::LoggingContext;

const CATEGORIES: [&str; 8] =
    ["grocery", "electronics", "travel", "gambling", "utilities", "crypto", "gift_cards", "restaurants"];
const COUNTRIES: [(&str, &str); 8] = [
    ("US", "USD"),
    ("DE", "EUR"),
    ("FR", "EUR"),
    ("GB", "GBP"),
    ("NG", "NGN"),
    ("BR", "BRL"),
    ("ES", "EUR"),
    ("IN", "INR"),
];

/// The share of each kind of event the generator produces.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Confident, low-risk events (they auto-commit under the reference policy).
    pub routine: f64,
    /// Middling risk or confidence (async review).
    pub uncertain: f64,
    /// High risk or low confidence (sync review).
    pub risky: f64,
    /// Very high risk (auto-reject).
    pub blocked: f64,
    /// Records that are not valid events (dead letters).
    /// Shares are relative: they are divided by their sum.
    pub malformed: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { routine: 0.80, uncertain: 0.12, risky: 0.055, blocked: 0.02, malformed: 0.005 }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `routine=0.8,uncertain=0.12,risky=0.055,blocked=0.02,malformed=0.005`; kinds left out
    /// keep their default share.
    fn from_str(text: &str) -> Result<Mix, String> {
        let mut mix = Mix::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, share) = part.split_once('=').ok_or_else(|| format!("`{part}` is not kind=share"))?;
            let share: f64 = share.trim().parse().map_err(|_| format!("`{share}` is not a number"))?;
            if !share.is_finite() || share < 0.0 {
                return Err(format!("the share of {kind} must be a number of at least 0"));
            }
            match kind.trim() {
                "routine" => mix.routine = share,
                "uncertain" => mix.uncertain = share,
                "risky" => mix.risky = share,
                "blocked" => mix.blocked = share,
                "malformed" => mix.malformed = share,
                other => return Err(format!("unknown kind `{other}` (routine, uncertain, risky, blocked, malformed)")),
            }
        }
        if mix.routine + mix.uncertain + mix.risky + mix.blocked + mix.malformed <= 0.0 {
            return Err("the shares add up to 0".into());
        }
        Ok(mix)
    }
}

/// What to produce: a synthetic payment stream at a fixed rate or flat out.
#[derive(Debug, Clone)]
pub struct Load {
    pub topic: String,
    /// Events per second; 0: as fast as the producer takes them.
    pub rate: u64,
    /// Stop after this many; `None`: until cancelled.
    pub events: Option<u64>,
    pub seed: u64,
    pub mix: Mix,
    /// Event ids are `{prefix}-{n}`.
    pub prefix: String,
    /// librdkafka settings over the generator's own (a secured cluster's, for one).
    pub producer: Vec<(String, String)>,
}

/// Produces `load` to `brokers` until it is done or `stop` is cancelled; calls `progress` with
/// the count produced about every second. Returns the number produced.
pub fn produce(
    brokers: &str,
    load: &Load,
    stop: &CancellationToken,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<u64> {
    let mut settings = ClientConfig::new();
    settings
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        // Java's partitioner, like every Tollgate producer.
        .set("partitioner", "murmur2_random");
    for (key, value) in &load.producer {
        settings.set(key, value);
    }
    let producer: ThreadedProducer<LoggingContext> =
        settings.create_with_context(LoggingContext::new("load producer"))?;
    let mut generator = PaymentGenerator::new(load.seed, load.mix, &load.prefix);
    let mut buf = Vec::with_capacity(256);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut sent: u64 = 0;
    while !stop.is_cancelled() && load.events.is_none_or(|n| sent < n) {
        if load.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * load.rate as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        let key = generator.next_into(&mut buf);
        send_waiting(&producer, BaseRecord::to(&load.topic).key(key.as_str()).payload(buf.as_slice()), stop)?;
        sent += 1;
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress(sent);
            last_report = Instant::now();
        }
    }
    flush_delivered(&producer, Duration::from_secs(30), &format!("the load ({sent} events sent)"))?;
    progress(sent);
    Ok(sent)
}

/// Waits for `producer`'s records and fails when any of them was not delivered: a load or a
/// bench phase whose records did not all arrive would report work it did not do.
pub fn flush_delivered(
    producer: &ThreadedProducer<LoggingContext>,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    // A bench phase is timed to its last acknowledgement: a plain flush could add up to 100 ms.
    // A failed delivery ends the wait: the run stops anyway, and the rest would only time out.
    let failures = || producer.context().failed_deliveries();
    match tollgate_common::kafka::wait_delivered(producer, timeout, || failures() > 0) {
        Ok(()) => Ok(()),
        Err(tollgate_common::kafka::Undelivered::Failed) => {
            anyhow::bail!("{what}: {} records were not delivered (the first failure is in the log)", failures())
        }
        Err(e) => anyhow::bail!("{what}: {e}"),
    }
}

/// Sends `record`, waiting while the producer's queue is full (its thread is sending), until the
/// producer takes it or `stop` is cancelled. Any other refusal is returned at once.
pub fn send_waiting<K: ToBytes + ?Sized, P: ToBytes + ?Sized, C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P>,
    stop: &CancellationToken,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) if !stop.is_cancelled() => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Generates payment events.
pub struct PaymentGenerator {
    rng: SmallRng,
    mix: Mix,
    next_id: u64,
    prefix: String,
}

impl PaymentGenerator {
    /// A generator with a fixed seed; ids are `{prefix}-{n}`.
    pub fn new(seed: u64, mix: Mix, prefix: &str) -> Self {
        PaymentGenerator { rng: SmallRng::seed_from_u64(seed), mix, next_id: 0, prefix: prefix.to_owned() }
    }

    /// Writes the next event's JSON into `out` (cleared first) and returns its account id, used
    /// as the record key.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> String {
        out.clear();
        self.next_id += 1;
        let id = self.next_id;
        let account = format!("acct-{:05}", self.rng.random_range(0..20_000));
        let m = self.mix;
        // Shares need not sum to 1: draw within their total.
        let total = m.routine + m.uncertain + m.risky + m.blocked + m.malformed;
        let u: f64 = self.rng.random::<f64>() * total;
        let (risk, confidence) = if u < m.routine {
            (self.rng.random_range(0.0..0.55f64).powi(2), self.rng.random_range(0.86..0.995))
        } else if u < m.routine + m.uncertain {
            (self.rng.random_range(0.3..0.88), self.rng.random_range(0.6..0.9))
        } else if u < m.routine + m.uncertain + m.risky {
            if self.rng.random_bool(0.5) {
                (self.rng.random_range(0.9..0.95), self.rng.random_range(0.7..0.99))
            } else {
                (self.rng.random_range(0.1..0.8), self.rng.random_range(0.3..0.6))
            }
        } else if u < m.routine + m.uncertain + m.risky + m.blocked {
            (self.rng.random_range(0.951..1.0), self.rng.random_range(0.8..0.99))
        } else {
            self.malformed(id, out);
            return account;
        };
        let (country, currency) = COUNTRIES[self.rng.random_range(0..COUNTRIES.len())];
        let category = CATEGORIES[self.rng.random_range(0..CATEGORIES.len())];
        // Log-normal-ish amounts: many small payments, a long tail of large ones.
        let amount = self.rng.random_range(1.0f64..9.5).exp();
        let _ = write!(
            out,
            r#"{{"event_id":"{}-{id}","account_id":"{account}","amount":{amount:.2},"currency":"{currency}","merchant_category":"{category}","country":"{country}","risk_score":{risk:.4},"model_confidence":{confidence:.4},"model_version":"fraud-gbm-2026.10"}}"#,
            self.prefix
        );
        account
    }

    fn malformed(&mut self, id: u64, out: &mut Vec<u8>) {
        let _ = match self.rng.random_range(0..3) {
            0 => write!(out, r#"{{"event_id":"{}-{id}","amount":12.0,"risk_score":"#, self.prefix),
            1 => write!(
                out,
                r#"{{"event_id":"{}-{id}","amount":12.0,"risk_score":1.7,"model_confidence":0.9,"model_version":"m"}}"#,
                self.prefix
            ),
            _ => write!(out, r#"{{"event_id":"{}-{id}","amount":12.0}}"#, self.prefix),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_events_parse() {
        let mut a = PaymentGenerator::new(7, Mix::default(), "t");
        let mut b = PaymentGenerator::new(7, Mix::default(), "t");
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut valid = 0;
        for _ in 0..2_000 {
            assert_eq!(a.next_into(&mut x), b.next_into(&mut y));
            assert_eq!(x, y);
            if serde_json::from_slice::<serde_json::Value>(&x).is_ok_and(|v| v.get("model_confidence").is_some()) {
                valid += 1;
            }
        }
        assert!(valid > 1_900 && valid < 2_000, "{valid}");
    }

    #[test]
    fn mixes_parse_from_text() {
        let m: Mix = "routine=0.5, risky=0.5, malformed=0".parse().unwrap();
        assert_eq!((m.routine, m.risky, m.malformed, m.uncertain), (0.5, 0.5, 0.0, Mix::default().uncertain));
        assert!("routine".parse::<Mix>().is_err());
        assert!("happy=1".parse::<Mix>().is_err());
        assert!("routine=-1".parse::<Mix>().is_err());
        assert!("routine=0,uncertain=0,risky=0,blocked=0,malformed=0".parse::<Mix>().is_err());
    }

    #[test]
    fn a_mix_without_malformed_events_yields_only_valid_ones() {
        let mut g = PaymentGenerator::new(3, Mix { malformed: 0.0, ..Mix::default() }, "v");
        let mut buf = Vec::new();
        for _ in 0..5_000 {
            g.next_into(&mut buf);
            let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            assert!(v["model_confidence"].is_number());
        }
    }
}
