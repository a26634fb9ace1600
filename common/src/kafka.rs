//! Kafka conventions of every Tollgate service: producer settings and topic creation.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::Duration;

/// A producer that is durable and duplicate-free on retries (`acks=all`, idempotence), batches
/// for a few milliseconds, and partitions like Java clients (`murmur2_random`), so a record keyed
/// by event id lands on the same partition number whichever Tollgate service or Kafka client
/// wrote it. The review join depends on that co-partitioning.
pub fn producer_base(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // A few milliseconds of batching buys most of the throughput at little latency.
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random");
    c
}

/// A topic a service needs.
pub struct TopicSpec<'a> {
    pub name: &'a str,
    /// Keep only the latest value per key (changelogs and state topics).
    pub compacted: bool,
}

/// Creates the topics of `wanted` that do not exist yet, with `partitions` and `replication`.
/// Topics that exist are left as they are; a topic created meanwhile by another client is not
/// an error. Returns the names created.
pub async fn ensure_topics(
    client: &ClientConfig,
    wanted: &[TopicSpec<'_>],
    partitions: i32,
    replication: i32,
) -> Result<Vec<String>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(10))?;
    let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let mut seen = Vec::new();
    let missing: Vec<NewTopic<'_>> = wanted
        .iter()
        .filter(|t| {
            !existing.contains(&t.name) && !seen.contains(&t.name) && {
                seen.push(t.name);
                true
            }
        })
        .map(|t| {
            let topic = NewTopic::new(t.name, partitions, TopicReplication::Fixed(replication));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut created = Vec::new();
    for result in admin.create_topics(missing.iter(), &opts).await? {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions, "Created topic.");
                created.push(name);
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "Creating a topic failed.");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(created)
}
