//! Kafka bus for many nodes (rdkafka). Diffs are JSON, keyed by event id so
//! each event's diffs share a partition and stay in order; the producer is
//! idempotent, so retries never reorder or duplicate within a session. Each
//! node consumes every partition in a consumer group of its own and fans
//! out to its own watchers.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use super::{BusError, BusEvent, SeatBus, Subscription};
use crate::domain::events::SeatDiff;

/// How long a broker may hold an empty fetch. librdkafka's default (500 ms)
/// is latency every watcher would see when the topic is quiet; some brokers
/// (librdkafka's mock among them) always wait it out.
const FETCH_WAIT_MS: &str = "10";

/// How long a publish may wait for the brokers before the relay retries.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaBus {
    brokers: String,
    topic: String,
    node: String,
    producer: FutureProducer,
}

impl KafkaBus {
    /// Connects a producer and makes sure the topic exists.
    pub async fn connect(brokers: &str, topic: &str, node: &str, partitions: i32) -> Result<Self, BusError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
            .create()?;
        if partitions > 0 {
            create_topic(brokers, topic, partitions, "seat diffs").await;
        }
        Ok(Self { brokers: brokers.to_owned(), topic: topic.to_owned(), node: node.to_owned(), producer })
    }
}

/// Creates `topic` (`what` it carries, for the log) if it is missing. Best
/// effort: a broker that creates topics on first use, or an operator who
/// made it already, is fine too.
pub(crate) async fn create_topic(brokers: &str, topic: &str, partitions: i32, what: &str) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new().set("bootstrap.servers", brokers).create()
    {
        Ok(a) => a,
        Err(e) => return warn!(error = %e, what, "no admin client to create a topic"),
    };
    let spec = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    match tokio::time::timeout(Duration::from_secs(10), admin.create_topics([&spec], &opts)).await {
        Ok(Ok(results)) => {
            for result in results {
                match result {
                    Ok(name) => info!(topic = %name, partitions, what, "created a topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => warn!(topic = %name, error = %code, what, "could not create a topic"),
                }
            }
        }
        Ok(Err(e)) => warn!(topic, error = %e, what, "could not create a topic"),
        Err(_) => warn!(topic, what, "creating a topic timed out"),
    }
}

#[async_trait]
impl SeatBus for KafkaBus {
    async fn publish(&self, diffs: &[SeatDiff]) -> Result<(), BusError> {
        let payloads = diffs.iter().map(serde_json::to_vec).collect::<Result<Vec<_>, _>>()?;
        // Queue all, then wait: the idempotent producer keeps their order.
        let sends = diffs
            .iter()
            .zip(&payloads)
            .map(|(d, p)| self.producer.send(FutureRecord::to(&self.topic).key(&d.event).payload(p), SEND_TIMEOUT));
        for result in join_all(sends).await {
            result.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscription>, BusError> {
        // A group of its own: this node sees every partition.
        let group = format!("qt-feed-{}-{:08x}", self.node, rand::random::<u32>());
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &group)
            .set("auto.offset.reset", "latest")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", FETCH_WAIT_MS)
            .create()?;
        consumer.subscribe(&[&self.topic])?;
        Ok(Box::new(KafkaSubscription { consumer }))
    }
}

struct KafkaSubscription {
    consumer: StreamConsumer,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Option<BusEvent> {
        loop {
            match self.consumer.recv().await {
                Ok(m) => match m.payload().map(serde_json::from_slice::<SeatDiff>) {
                    Some(Ok(diff)) => return Some(BusEvent::Diff(diff)),
                    Some(Err(e)) => warn!(error = %e, offset = m.offset(), "skipping an unreadable seat diff"),
                    None => {}
                },
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => {
                    warn!(error = %e, "seat-diff consumer error; replicas will check themselves");
                    return Some(BusEvent::Lost);
                }
            }
        }
    }
}
