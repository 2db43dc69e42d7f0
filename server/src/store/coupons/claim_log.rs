//! The coupon claim log (Kafka) of the distributed coupon store: the
//! producer a claim must get through before its buyer is told, the check
//! that every claim logged so far is in the database, and the writer that
//! moves claims from the log into Postgres.
//!
//! Claims are JSON keyed by campaign id, so a campaign's claims keep their
//! order on one partition. The producer is idempotent with acks=all. The
//! writer is one consumer group shared by every node; it commits offsets
//! only after the database has the batch, so a claim is never lost (but
//! for one the database fails on alone, below), and it may see one twice
//! (the database takes it once). It never decides who gets a coupon: it
//! only reports what the database refused.
//!
//! Whether the database has every claim logged up to some instant is a
//! snapshot of the high watermarks (`watermarks`) that the writer group's
//! commits then reach (`reached`): claims logged after the snapshot, on
//! any campaign, do not hold it up.
//!
//! A commit that fails is tried again (backing off) until it goes through,
//! also while no claims arrive, since loads wait for the commits. A batch
//! the database keeps refusing with an error of its data (not one of the
//! database being out of reach or broken) is recorded one claim at a time
//! after `WHOLE_TRIES` attempts, and a claim that still fails alone is
//! logged in full, counted as refused and skipped, so one bad claim cannot
//! stop the writer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::bus::kafka::create_topic;
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
/// One whole watermark snapshot or committed-offsets check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// One batch written to the database.
const RECORD_TIMEOUT: Duration = Duration::from_secs(15);
/// One synchronous offset commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed commit is tried again after this, doubling up to
/// `COMMIT_BACKOFF_MAX`.
const COMMIT_BACKOFF: Duration = Duration::from_millis(100);
const COMMIT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A failed batch write is tried again after this, doubling up to
/// `RECORD_BACKOFF_MAX`.
const RECORD_BACKOFF: Duration = Duration::from_millis(100);
const RECORD_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Attempts of a whole batch failing on its data before its claims are
/// recorded one at a time.
const WHOLE_TRIES: u32 = 5;
/// Attempts of one claim failing on its data before it is skipped.
const ALONE_TRIES: u32 = 3;
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
            create_topic(brokers, topic, partitions, "coupon claims").await;
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

    /// The longest a claim produced through this log may take to reach
    /// the brokers or fail: the producer's message time-out and our grace
    /// over it. Every node makes its log with the same time-out
    /// (`connect`), so this holds for the cluster's claims too.
    pub fn produce_window(&self) -> Duration {
        self.send_timeout + SEND_GRACE
    }

    /// The claims logged so far: each partition's high watermark now.
    pub async fn watermarks(&self) -> StoreResult<Snapshot> {
        let (consumer, topic) = (self.offsets.clone(), self.topic.clone());
        blocking(move || watermarks_now(&consumer, &topic)).await
    }

    /// Whether the writer group has committed every claim of `snapshot`,
    /// i.e. the database has them all. Claims logged since do not count,
    /// so this comes true under a steady stream of new claims too.
    pub async fn reached(&self, snapshot: &Snapshot) -> StoreResult<bool> {
        if snapshot.high.is_empty() {
            return Ok(true);
        }
        let (consumer, topic, snapshot) = (self.offsets.clone(), self.topic.clone(), snapshot.clone());
        blocking(move || reached_now(&consumer, &topic, &snapshot)).await
    }

    /// Whether the writer group has committed every claim logged so far.
    pub async fn drained(&self) -> StoreResult<bool> {
        let snapshot = self.watermarks().await?;
        self.reached(&snapshot).await
    }
}

/// Each partition's high watermark at one instant (`ClaimLog::watermarks`):
/// every claim logged by then lies below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// (partition, high watermark), partitions holding no claims left out.
    high: Vec<(i32, i64)>,
}

/// librdkafka's metadata calls block: off the runtime, bounded.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    match tokio::time::timeout(CHECK_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(StoreError::Busy("the claim log check failed")),
        Err(_) => Err(StoreError::Busy("the claim log did not answer in time")),
    }
}

fn watermarks_now(consumer: &BaseConsumer, topic: &str) -> StoreResult<Snapshot> {
    // Never subscribed, so this only clears queued client events.
    let _ = consumer.poll(Duration::ZERO);
    let meta = consumer.fetch_metadata(Some(topic), META_TIMEOUT)?;
    let Some(t) = meta.topics().iter().find(|t| t.name() == topic) else { return Ok(Snapshot::default()) };
    if let Some(err) = t.error() {
        // A topic nobody has written to holds no claims.
        if RDKafkaErrorCode::from(err) == RDKafkaErrorCode::UnknownTopicOrPartition {
            return Ok(Snapshot::default());
        }
        return Err(StoreError::Busy("the claim log topic is not readable"));
    }
    let mut high = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let (low, h) = consumer.fetch_watermarks(topic, p.id(), META_TIMEOUT)?;
        if h > low {
            high.push((p.id(), h));
        }
    }
    Ok(Snapshot { high })
}

fn reached_now(consumer: &BaseConsumer, topic: &str, snapshot: &Snapshot) -> StoreResult<bool> {
    let _ = consumer.poll(Duration::ZERO);
    let mut tpl = TopicPartitionList::new();
    for &(partition, _) in &snapshot.high {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(tpl, META_TIMEOUT)?;
    for &(partition, high) in &snapshot.high {
        let done = match committed.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => n,
            _ => -1,
        };
        if done >= high {
            continue;
        }
        // No commit yet: the writer starts at the low watermark, so claims
        // below it (gone by retention) are none it will write.
        let (low, _) = consumer.fetch_watermarks(topic, partition, META_TIMEOUT)?;
        if done.max(low) < high {
            debug!(topic, partition, done, high, "the claim writer has not reached the snapshot");
            return Ok(false);
        }
    }
    Ok(true)
}

/// The consumer that writes logged claims to the database.
pub struct ClaimWriter {
    brokers: String,
    topic: String,
    group: String,
    sql: SqlStore,
    /// Claims the database refused (a second coupon for a buyer, one past
    /// the stock, an unknown campaign): each one Redis got wrong; and
    /// claims skipped because the database failed on them alone.
    pub refused: Counter,
    /// Claims the database took (new or seen before).
    pub stored: AtomicU64,
    /// Offset commits that failed (each is tried again).
    pub commits_failed: AtomicU64,
}

/// One batch: its claims, and the offset to commit per partition.
struct Batch {
    /// Messages taken, readable or not.
    taken: usize,
    coupons: Vec<Coupon>,
    next: BTreeMap<i32, i64>,
}

/// Offsets whose claims the database has, not committed yet.
struct Owed {
    next: BTreeMap<i32, i64>,
    /// When a failed commit is tried again; `None` when none failed.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Owed {
    fn new() -> Self {
        Self { next: BTreeMap::new(), retry_at: None, backoff: COMMIT_BACKOFF }
    }

    fn add(&mut self, next: &BTreeMap<i32, i64>) {
        for (&partition, &offset) in next {
            let owed = self.next.entry(partition).or_insert(offset);
            *owed = (*owed).max(offset);
        }
    }
}

/// How a write of claims came out.
enum Attempts {
    Recorded,
    /// It kept failing on its data; the last error.
    GaveUp(StoreError),
    Shutdown,
}

/// Whether a failed write may be the claims' fault: an error of their data
/// that trying again will not change. Anything else (the database out of
/// reach, busy, deadlocked, or broken for every claim alike: a missing
/// table, no permission) is tried again without ever skipping a claim.
fn data_error(e: &StoreError) -> bool {
    match e {
        StoreError::Corrupt(_) => true,
        StoreError::Sql(sqlx::Error::Encode(_)) => true,
        // SQLSTATE class 22: data exception; 23: integrity constraint.
        StoreError::Sql(sqlx::Error::Database(d)) => {
            d.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
        }
        _ => false,
    }
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
            commits_failed: AtomicU64::new(0),
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
        let mut owed = Owed::new();
        loop {
            let Some(batch) = self.next_batch(&consumer, &mut owed, shutdown).await else { break };
            if !batch.coupons.is_empty() && !self.record(&batch.coupons, shutdown).await {
                // Shut down mid-retry: uncommitted, so the next writer has it.
                break;
            }
            owed.add(&batch.next);
            self.commit(&consumer, &mut owed).await;
        }
        if !owed.next.is_empty() {
            // One last try, so the next writer need not read these again.
            self.commit(&consumer, &mut owed).await;
        }
        Ok(())
    }

    /// The next message, then whatever else arrives within `BATCH_WAIT`;
    /// `None` on shutdown. While it waits for the first, it tries again a
    /// commit that failed.
    async fn next_batch(
        &self,
        consumer: &Arc<StreamConsumer>,
        owed: &mut Owed,
        shutdown: &CancellationToken,
    ) -> Option<Batch> {
        let mut batch = Batch { taken: 0, coupons: Vec::new(), next: BTreeMap::new() };
        loop {
            let retry_at = owed.retry_at;
            let first = tokio::select! {
                _ = shutdown.cancelled() => return None,
                // `recv` is cancel safe: a message is never lost here.
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.commit(consumer, owed).await;
                    continue;
                }
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
        let until = Instant::now() + BATCH_WAIT;
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

    /// Writes the batch until the database takes it; `false` if shut down
    /// first. A batch that keeps failing on its data is written one claim
    /// at a time, and a claim that still fails alone is skipped.
    async fn record(&self, coupons: &[Coupon], shutdown: &CancellationToken) -> bool {
        let why = match self.attempts(coupons, WHOLE_TRIES, shutdown).await {
            Attempts::Recorded => return true,
            Attempts::Shutdown => return false,
            Attempts::GaveUp(e) => e,
        };
        if let [coupon] = coupons {
            self.skip(coupon, &why);
            return true;
        }
        error!(claims = coupons.len(), error = %why, "a claim batch keeps failing; writing its claims one at a time");
        for coupon in coupons {
            match self.attempts(std::slice::from_ref(coupon), ALONE_TRIES, shutdown).await {
                Attempts::Recorded => {}
                Attempts::Shutdown => return false,
                Attempts::GaveUp(e) => self.skip(coupon, &e),
            }
        }
        true
    }

    /// Writes `coupons` in one transaction, backing off between attempts:
    /// until it succeeds, it failed `tries` times on its data, or shutdown.
    /// Other failures are tried again without end.
    async fn attempts(&self, coupons: &[Coupon], tries: u32, shutdown: &CancellationToken) -> Attempts {
        let mut backoff = RECORD_BACKOFF;
        let mut failed = 0;
        loop {
            match tokio::time::timeout(RECORD_TIMEOUT, self.sql.record_claims(coupons)).await {
                Ok(Ok(outcomes)) => {
                    self.count(coupons, &outcomes);
                    return Attempts::Recorded;
                }
                Ok(Err(e)) if data_error(&e) => {
                    failed += 1;
                    warn!(claims = coupons.len(), error = %e, failed, "recording coupon claims failed on their data");
                    if failed >= tries {
                        return Attempts::GaveUp(e);
                    }
                }
                Ok(Err(e)) => warn!(claims = coupons.len(), error = %e, "recording coupon claims failed; retrying"),
                Err(_) => warn!(claims = coupons.len(), "recording coupon claims timed out; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Attempts::Shutdown,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECORD_BACKOFF_MAX);
        }
    }

    /// Gives up on a claim the database fails on alone (dead-lettered: its
    /// fields are in the log line, for an operator to replay).
    fn skip(&self, c: &Coupon, why: &StoreError) {
        self.refused.inc();
        error!(
            coupon = %c.id,
            campaign = %c.campaign_id,
            user = %c.user,
            claimed_ms = c.claimed_ms,
            error = %why,
            "skipping a claim the database fails on; it is not stored"
        );
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

    /// Commits what is owed, for the partitions this writer still has (a
    /// partition handed to another writer is that one's to commit; ours
    /// could move its offset back). A failed commit stays owed and is tried
    /// again after a backoff, by the next batch or while idle; meanwhile
    /// the claims would only be read again, and the database takes them once.
    async fn commit(&self, consumer: &Arc<StreamConsumer>, owed: &mut Owed) {
        let (topic, next) = (self.topic.clone(), owed.next.clone());
        let consumer = consumer.clone();
        // Both block their thread until librdkafka (the broker) answers.
        let commit = tokio::task::spawn_blocking(move || {
            let assigned = consumer.assignment()?;
            let mut tpl = TopicPartitionList::new();
            let mut kept = BTreeMap::new();
            for (&partition, &offset) in &next {
                if assigned.find_partition(&topic, partition).is_some() {
                    tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
                    kept.insert(partition, offset);
                }
            }
            if kept.is_empty() {
                return Ok(kept);
            }
            consumer.commit(&tpl, CommitMode::Sync).map(|()| kept)
        });
        let why = match tokio::time::timeout(COMMIT_TIMEOUT, commit).await {
            Ok(Ok(Ok(committed))) => {
                if committed.len() < owed.next.len() {
                    debug!(owed = ?owed.next, ?committed, "dropped offsets of partitions the writer no longer has");
                }
                owed.next.clear();
                owed.retry_at = None;
                owed.backoff = COMMIT_BACKOFF;
                return;
            }
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(e)) => format!("the commit task failed: {e}"),
            Err(_) => "timed out".to_owned(),
        };
        self.commits_failed.fetch_add(1, Ordering::Relaxed);
        warn!(error = %why, offsets = ?owed.next, retry_in = ?owed.backoff, "committing coupon claim offsets failed");
        owed.retry_at = Some(Instant::now() + owed.backoff);
        owed.backoff = (owed.backoff * 2).min(COMMIT_BACKOFF_MAX);
    }
}
