//! Creates missing topics at start-up, with the configured partitions and replication.

use crate::config::RouterConfig;
use rdkafka::error::KafkaError;
use tollgate_common::kafka::TopicSpec;

/// Creates the input and output topics that do not exist yet. Topics that exist are left as
/// they are; a topic created meanwhile by another router is not an error.
pub async fn ensure_topics(config: &RouterConfig) -> Result<Vec<String>, KafkaError> {
    let mut wanted: Vec<TopicSpec<'_>> = config
        .topics
        .all()
        .into_iter()
        // The changelog keeps the latest state per review; older states are compacted away.
        .map(|name| TopicSpec { name, compacted: name == config.topics.pending_changelog })
        .collect();
    wanted.push(TopicSpec { name: &config.kafka.input_topic, compacted: false });
    tollgate_common::kafka::ensure_topics(
        &super::producer_config(config),
        &wanted,
        config.kafka.partitions,
        config.kafka.replication,
    )
    .await
}
