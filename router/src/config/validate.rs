//! Start-up validation of the router's configuration: the cross-field checks serde cannot
//! express, each refusing with what to change.

use super::{ConfigError, InputFormat, RouterConfig, ScorerKind, MAX_ROUTING_THREADS};
use crate::kafka::group::Member;
use crate::kafka::intake::RECORD_HEADROOM;
use std::time::Duration;

/// librdkafka's default `max.poll.interval.ms`.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

impl RouterConfig {
    /// Cross-field checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return bad("kafka.brokers may not be empty".into());
        }
        if k.input_topic.trim().is_empty() || k.group_id.trim().is_empty() {
            return bad("kafka.input_topic and kafka.group_id may not be empty".into());
        }
        if k.partitions < 1 || k.replication < 1 {
            return bad("kafka.partitions and kafka.replication must be at least 1".into());
        }
        // The router sizes its records and audit batches under the producer's limit.
        if let Some(v) = k.producer.get("message.max.bytes") {
            let least = 4 * RECORD_HEADROOM;
            if v.trim().parse::<usize>().map_or(true, |n| n < least) {
                return bad(format!(
                    "kafka.producer message.max.bytes `{v}` must be a number of bytes, at least {least}"
                ));
            }
        }
        let t = &self.topics;
        for (name, value) in [
            ("auto_commit", &t.auto_commit),
            ("async_review", &t.async_review),
            ("sync_review", &t.sync_review),
            ("dead_letter", &t.dead_letter),
            ("audit", &t.audit),
            ("audit_intake", &t.audit_intake),
            ("review_decisions", &t.review_decisions),
            ("pending_changelog", &t.pending_changelog),
            ("resolved", &t.resolved),
            ("escalations", &t.escalations),
            ("rollbacks", &t.rollbacks),
        ] {
            if value.trim().is_empty() {
                return bad(format!("topics.{name} may not be empty"));
            }
        }
        let all = t.all();
        for (i, a) in all.iter().enumerate() {
            if *a == k.input_topic {
                return bad(format!("output topic `{a}` is the input topic: the router would consume its own output"));
            }
            if all[i + 1..].contains(a) {
                return bad(format!("topic `{a}` is configured for two outputs"));
            }
        }
        match (self.input.format, &self.input.avro_schema) {
            (InputFormat::Json, Some(_)) => return bad("input.avro_schema is set but input.format is json".into()),
            (InputFormat::Avro | InputFormat::AvroConfluent, None) => {
                return bad("input.format is Avro: set input.avro_schema to the schema file".into())
            }
            _ => {}
        }
        if self.input.fields.event_id.is_empty() {
            return bad("input.fields.event_id may not be empty".into());
        }
        match (self.scorer.kind, &self.scorer.model) {
            (ScorerKind::Logistic, None) => {
                return bad("scorer.kind is logistic: set scorer.model to the model file".into())
            }
            (ScorerKind::Field, Some(_)) => return bad("scorer.model is only used by the logistic scorer".into()),
            (ScorerKind::Field, None)
                if self.input.fields.model_version.is_empty() && self.scorer.model_version.is_none() =>
            {
                return bad("the field scorer needs input.fields.model_version or scorer.model_version".into())
            }
            _ => {}
        }
        for (name, q) in [("sync_review", &self.review.sync_review), ("async_review", &self.review.async_review)] {
            if q.tiers.is_empty() || q.tiers.iter().any(|d| d.0.is_zero()) {
                return bad(format!("review.{name}.tiers needs at least one non-zero duration"));
            }
        }
        if !(0.0..=1.0).contains(&self.review.audit_sample_rate) {
            return bad(format!("review.audit_sample_rate {} is outside [0, 1]", self.review.audit_sample_rate));
        }
        if !(0.0..=1.0).contains(&self.review.recommendation_cut) {
            return bad(format!("review.recommendation_cut {} is outside [0, 1]", self.review.recommendation_cut));
        }
        if let Some(b) = &self.drift.baseline_risk {
            let sum: f64 = b.iter().sum();
            if b.len() != crate::drift::BINS || b.iter().any(|x| !(0.0..=1.0).contains(x)) || (sum - 1.0).abs() > 0.01 {
                return bad(format!("drift.baseline_risk needs ten shares in [0, 1] summing to 1 (sum {sum:.3})"));
            }
        }
        if self.drift.baseline_confidence_mean.is_some_and(|m| !(0.0..=1.0).contains(&m))
            || self.drift.window_events == 0
        {
            return bad("drift: baseline_confidence_mean must be in [0, 1] and window_events positive".into());
        }
        let p = &self.processing;
        if p.max_in_flight == 0 || p.batch_size == 0 || p.batch_size > p.max_in_flight {
            return bad("processing: need 0 < batch_size <= max_in_flight".into());
        }
        // librdkafka takes a consumer that has not polled for max.poll.interval.ms out of its
        // group; the routing loops and the review join do not poll while they wait for the
        // chainer.
        for member in [Member::Routing, Member::ReviewJoin] {
            // The setting the consumer is created with: Tollgate's, `kafka.consumer`'s, its own.
            let poll_interval = crate::kafka::consumer_config(self, member)
                .get("max.poll.interval.ms")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map_or(DEFAULT_MAX_POLL_INTERVAL, Duration::from_millis);
            if p.chainer_join_wait.0 >= poll_interval {
                return bad(format!(
                    "processing.chainer_join_wait must be under the {} consumer's max.poll.interval.ms ({} ms)",
                    member.as_str(),
                    poll_interval.as_millis()
                ));
            }
        }
        if !(1..=MAX_ROUTING_THREADS).contains(&p.routing_threads) {
            return bad(format!("processing.routing_threads must be between 1 and {MAX_ROUTING_THREADS}"));
        }
        // The routing loop places its batched audit records as the producer places keys.
        if let Some(name) = self.kafka.producer.get("partitioner") {
            if crate::kafka::intake::KeyHash::of_partitioner(name).is_none() {
                return bad(format!(
                    "kafka.producer.partitioner {name:?} is not supported: use murmur2_random (the default), murmur2, consistent_random, consistent or random"
                ));
            }
        }
        Ok(())
    }
}
