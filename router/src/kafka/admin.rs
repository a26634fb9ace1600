//! Creates missing topics at start-up, with the configured partitions and replication.

use crate::config::RouterConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Creates the input and output topics that do not exist yet. Topics that exist are left as
/// they are; a topic created meanwhile by another router is not an error.
pub async fn ensure_topics(config: &RouterConfig) -> Result<Vec<String>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = super::producer_config(config).create()?;
    let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(10))?;
    let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let mut wanted = config.topics.all();
    wanted.push(&config.kafka.input_topic);
    let missing: Vec<NewTopic<'_>> = wanted
        .iter()
        .filter(|t| !existing.contains(t))
        .map(|t| {
            let topic = NewTopic::new(t, config.kafka.partitions, TopicReplication::Fixed(config.kafka.replication));
            // The changelog keeps the latest state per review; older states are compacted away.
            if *t == config.topics.pending_changelog {
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
                tracing::info!(topic = %name, partitions = config.kafka.partitions, "Created topic.");
                created.push(name);
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(topic = %name, error = %code, "Creating a topic failed.");
                })
            }
        }
    }
    Ok(created)
}
