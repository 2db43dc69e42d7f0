//! The coupon claim log (Kafka) of the distributed coupon store: the
//! producer a claim must get through before its buyer is told, the check
//! that every claim logged so far is in the database, and the writer that
//! moves claims from the log into Postgres.
//!
//! Claims are JSON keyed by campaign id, so a campaign's claims keep their
//! order on one partition. The producer is idempotent with acks=all. The
//! writer is one consumer group shared by every node; it commits offsets
//! only after the database has the batch, so a claim is never lost, and it
//! may see one twice (the database takes it once). It never decides who
//! gets a coupon: it only reports what the database refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::domain::coupons::Coupon;
use crate::metrics::Counter;
use crate::store::sql::{Recorded, SqlStore};
use crate::store::{StoreError, StoreResult};

/// The writer's consumer group, one for the whole cluster.
pub const WRITER_GROUP: &str = "qt-coupon-writer";
/// How long a claim may wait for the brokers; the claim is then refused
/// as unavailable (its unit stays reserved for the buyer's retry).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time over the producer's own message time-out before we stop
/// waiting for its delivery report ourselves.
const SEND_GRACE: Duration = Duration::from_secs(2);
/// Each metadata, watermark or committed-offset request.
const META_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole drained check.
const DRAINED_TIMEOUT: Duration = Duration::from_secs(10);
/// One batch written to the database.
const RECORD_TIMEOUT: Duration = Duration::from_secs(15);
/// One synchronous offset commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most claims per database transaction.
const MAX_BATCH: usize = 2_000;
/// How long a batch waits for more claims after its first.
const BATCH_WAIT: Duration = Duration::from_millis(5);
/// A writer that died without leaving the group (a crashed node) holds
/// its partitions this long; meanwhile cold campaigns cannot load. Shorter
/// than Kafka's 45 s default for that reason.
const WRITER_SESSION_TIMEOUT_MS: &str = "10000";
/// Same as the seat-diff bus: a quiet topic must not cost 500 ms a fetch.
const FETCH_WAIT_MS: &str = "10";

/// One claim as logged.
#[derive(Debug, Serialize, Deserialize)]
struct ClaimEvent {
    coupon: String,
    campaign: String,
    user: String,
    claimed_ms: i64,
}

impl ClaimEvent {
    fn into_coupon(self) -> Coupon {
        Coupon {
            id: self.coupon,
            campaign_id: self.campaign,
            user: self.user,
            claimed_ms: self.claimed_ms,
            used_ms: None,
        }
    }
}

/// The writer group's name: the cluster's, or a test's own.
fn group_named(suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("{WRITER_GROUP}-{s}"),
        None => WRITER_GROUP.to_owned(),
    }
}

pub struct ClaimLog {
    brokers: String,
    topic: String,
    group: String,
    send_timeout: Duration,
    producer: FutureProducer,
    /// The writer group's committed offsets are read through this; it
    /// never subscribes, so it never joins the group.
    offsets: Arc<BaseConsumer>,
}

impl ClaimLog {
    /// The cluster's claim log on `topic`, created with `partitions`
    /// partitions if missing (0: leave the topic to the operator).
    pub async fn connect(brokers: &str, topic: &str, partitions: i32) -> StoreResult<Self> {
        Self::connect_with(brokers, topic, partitions, None, SEND_TIMEOUT).await
    }

    /// As `connect`, with the writer group `qt-coupon-writer-<suffix>`
    /// (tests sharing brokers) and a claim's own delivery time-out.
    pub async fn connect_with(
        brokers: &str,
        topic: &str,
        partitions: i32,
        group_suffix: Option<&str>,
        send_timeout: Duration,
    ) -> StoreResult<Self> {
        let group = group_named(group_suffix);
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", send_timeout.as_millis().to_string())
            .create()?;
        let offsets: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        if partitions > 0 {
            create_topic(brokers, topic, partitions).await;
        }
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group,
            send_timeout,
            producer,
            offsets: Arc::new(offsets),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Logs a claim and returns once the brokers have it (acks=all).
    pub async fn produce(&self, coupon: &Coupon) -> StoreResult<()> {
        let event = ClaimEvent {
            coupon: coupon.id.clone(),
            campaign: coupon.campaign_id.clone(),
            user: coupon.user.clone(),
            claimed_ms: coupon.claimed_ms,
        };
        let payload = serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let record = FutureRecord::to(&self.topic).key(&coupon.campaign_id).payload(&payload);
        let send = self.producer.send(record, self.send_timeout);
        match tokio::time::timeout(self.send_timeout + SEND_GRACE, send).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e.into()),
            Err(_) => Err(StoreError::Busy("the coupon claim log did not confirm in time")),
        }
    }

    /// Whether the writer group has committed every claim logged so far on
    /// every partition, i.e. the database has them all.
    pub async fn drained(&self) -> StoreResult<bool> {
        let (consumer, topic) = (self.offsets.clone(), self.topic.clone());
        // librdkafka's metadata calls block; keep them off the runtime.
        let check = tokio::task::spawn_blocking(move || drained_now(&consumer, &topic));
        match tokio::time::timeout(DRAINED_TIMEOUT, check).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::Busy("the claim log check failed")),
            Err(_) => Err(StoreError::Busy("the claim log did not answer in time")),
        }
    }
}

fn drained_now(consumer: &BaseConsumer, topic: &str) -> StoreResult<bool> {
    // Never subscribed, so this only clears queued client events.
    let _ = consumer.poll(Duration::ZERO);
    let meta = consumer.fetch_metadata(Some(topic), META_TIMEOUT)?;
    let Some(t) = meta.topics().iter().find(|t| t.name() == topic) else { return Ok(true) };
    if let Some(err) = t.error() {
        // A topic nobody has written to holds no claims.
        return Ok(RDKafkaErrorCode::from(err) == RDKafkaErrorCode::UnknownTopicOrPartition);
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(tpl, META_TIMEOUT)?;
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), META_TIMEOUT)?;
        // No commit yet: the writer starts at the low watermark, so an
        // empty partition is drained and one with data is not.
        let done = match committed.find_partition(topic, p.id()).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => n.max(low),
            _ => low,
        };
        if done < high {
            debug!(topic, partition = p.id(), done, high, "claim log not drained");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Creates the topic if it is missing. Best effort: a broker that creates
/// topics on first use, or an operator who made it already, is fine too.
async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new().set("bootstrap.servers", brokers).create()
    {
        Ok(a) => a,
        Err(e) => return warn!(error = %e, "no admin client to create the coupon claim topic"),
    };
    let spec = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    match tokio::time::timeout(Duration::from_secs(10), admin.create_topics([&spec], &opts)).await {
        Ok(Ok(results)) => {
            for result in results {
                match result {
                    Ok(name) => info!(topic = %name, partitions, "created the coupon claim topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => warn!(topic = %name, error = %code, "could not create the coupon claim topic"),
                }
            }
        }
        Ok(Err(e)) => warn!(topic, error = %e, "could not create the coupon claim topic"),
        Err(_) => warn!(topic, "creating the coupon claim topic timed out"),
    }
}

/// The consumer that writes logged claims to the database.
pub struct ClaimWriter {
    brokers: String,
    topic: String,
    group: String,
    sql: SqlStore,
    /// Claims the database refused (a second coupon for a buyer, one past
    /// the stock, an unknown campaign): each one Redis got wrong.
    pub refused: Counter,
    /// Claims the database took (new or seen before).
    pub stored: AtomicU64,
}

/// One batch: its claims, and the offset to commit per partition.
struct Batch {
    /// Messages taken, readable or not.
    taken: usize,
    coupons: Vec<Coupon>,
    next: BTreeMap<i32, i64>,
}

impl ClaimWriter {
    /// A writer for `log`'s topic in `log`'s writer group.
    /// `refused` counts what the database refused.
    pub fn new(log: &ClaimLog, sql: SqlStore, refused: Counter) -> Self {
        Self {
            brokers: log.brokers.clone(),
            topic: log.topic.clone(),
            group: log.group.clone(),
            sql,
            refused,
            stored: AtomicU64::new(0),
        }
    }

    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// Consumes until `shutdown`. Returns early only if the consumer cannot
    /// be made; each call makes its own, so a restart starts clean from the
    /// group's committed offsets.
    pub async fn run(&self, shutdown: &CancellationToken) -> StoreResult<()> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", FETCH_WAIT_MS)
            .set("session.timeout.ms", WRITER_SESSION_TIMEOUT_MS)
            .create()?;
        consumer.subscribe(&[&self.topic])?;
        let consumer = Arc::new(consumer);
        info!(topic = %self.topic, group = %self.group, "coupon writer consuming");
        loop {
            let Some(batch) = self.next_batch(&consumer, shutdown).await else { return Ok(()) };
            if !batch.coupons.is_empty() && !self.record(&batch.coupons, shutdown).await {
                // Shut down mid-retry: uncommitted, so the next writer has it.
                return Ok(());
            }
            self.commit(&consumer, &batch).await;
        }
    }

    /// The next message, then whatever else arrives within `BATCH_WAIT`;
    /// `None` on shutdown.
    async fn next_batch(&self, consumer: &StreamConsumer, shutdown: &CancellationToken) -> Option<Batch> {
        let mut batch = Batch { taken: 0, coupons: Vec::new(), next: BTreeMap::new() };
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return None,
                m = consumer.recv() => m,
            };
            match first {
                Ok(m) => {
                    self.take(&mut batch, &m);
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "coupon writer consumer error");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
        let until = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.taken < MAX_BATCH {
            match tokio::time::timeout_at(until, consumer.recv()).await {
                Ok(Ok(m)) => self.take(&mut batch, &m),
                Ok(Err(e)) => {
                    warn!(error = %e, "coupon writer consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }

    fn take(&self, batch: &mut Batch, m: &impl Message) {
        batch.taken += 1;
        batch.next.insert(m.partition(), m.offset() + 1);
        match m.payload().map(serde_json::from_slice::<ClaimEvent>) {
            Some(Ok(event)) => batch.coupons.push(event.into_coupon()),
            Some(Err(e)) => {
                error!(error = %e, partition = m.partition(), offset = m.offset(), "skipping an unreadable claim")
            }
            None => error!(partition = m.partition(), offset = m.offset(), "skipping a claim without payload"),
        }
    }

    /// Writes the batch, retrying until the database takes it; `false` if
    /// shut down first.
    async fn record(&self, coupons: &[Coupon], shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let why = match tokio::time::timeout(RECORD_TIMEOUT, self.sql.record_claims(coupons)).await {
                Ok(Ok(outcomes)) => {
                    self.count(coupons, &outcomes);
                    return true;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            warn!(claims = coupons.len(), error = %why, "recording coupon claims failed; retrying the batch");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn count(&self, coupons: &[Coupon], outcomes: &[Recorded]) {
        if outcomes.len() != coupons.len() {
            error!(claims = coupons.len(), outcomes = outcomes.len(), "the database answered a claim batch unevenly");
        }
        for (c, outcome) in coupons.iter().zip(outcomes) {
            let refusal = match outcome {
                Recorded::Inserted | Recorded::AlreadyThere => {
                    self.stored.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Recorded::Duplicate => "a second coupon for the buyer",
                Recorded::OverStock => "past the campaign's stock",
                Recorded::UnknownCampaign => "an unknown campaign",
            };
            self.refused.inc();
            error!(
                coupon = %c.id,
                campaign = %c.campaign_id,
                user = %c.user,
                refusal,
                "the database refused a claim the live counts allowed"
            );
        }
    }

    /// Commits the batch's offsets. A failed commit only means the batch
    /// is read again, and the database takes it once.
    async fn commit(&self, consumer: &Arc<StreamConsumer>, batch: &Batch) {
        let mut tpl = TopicPartitionList::new();
        for (&partition, &next) in &batch.next {
            if let Err(e) = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next)) {
                return warn!(error = %e, partition, "no offset to commit");
            }
        }
        let consumer = consumer.clone();
        // A synchronous commit blocks its thread until the broker answers.
        let commit = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
        match tokio::time::timeout(COMMIT_TIMEOUT, commit).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "committing coupon claim offsets failed; they will be read again"),
            Ok(Err(e)) => warn!(error = %e, "the offset commit task failed; the claims will be read again"),
            Err(_) => warn!("committing coupon claim offsets timed out; they will be read again"),
        }
    }
}
