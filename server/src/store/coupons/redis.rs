//! Distributed coupon claims: the stock and each buyer's claim checked and
//! reserved in one Redis Lua script, the claim then produced to the claim
//! log (Kafka), and only once the brokers have it is the buyer told. The
//! claim writer (`claim_log::ClaimWriter`) moves the log into Postgres,
//! whose constraints refuse whatever Redis got wrong.
//!
//! # Keys
//!
//! Per campaign, all under `<prefix>:coupon:{<campaign id>}` (the hash tag
//! keeps them in one cluster slot, for the scripts):
//!
//! - `…:stock`: the stock, `-1` for unlimited. Its presence is the
//!   "loaded" marker: a script that finds it missing answers `cold`.
//! - `…:issued`: a counter of the units reserved (pending, failed or
//!   confirmed claims alike; a unit is never given back).
//! - `…:claims`: a hash, user id → the buyer's claim state:
//!   - `P|<attempt ms>|<claimed ms>|<instance>|<coupon id>`: reserved by the
//!     server process `<instance>` at `<attempt ms>`, its produce under
//!     way (the coupon was first claimed at `<claimed ms>`);
//!   - `F|<claimed ms>|<coupon id>`: the log refused it; the buyer's next
//!     claim sends the same coupon again;
//!   - `C|<coupon id>`: in the log (a load writes every stored claim so).
//! - `…:loading`: the loader's lock, a random token, `PX` `LOCK_MS`.
//! - `…:staged:<random>`: a load's claims while they are written (a hash
//!   as `claims`, `C|` states only), renamed onto `claims` by `load.lua`;
//!   one a dead loader left behind expires after `STAGE_TTL_MS`.
//!
//! `stock`, `issued` and `claims` expire together (`PEXPIREAT`, one
//! instant, so no script ever sees some of them without the others) a week
//! after the campaign ends (`KEEP_AFTER_END_MS`), and never sooner than a
//! day after they were made (`KEEP_AT_LEAST_MS`): `open.lua` and `load.lua`
//! set the instant, `set_stock.lua` keeps it, and a script that makes the
//! `claims` hash (a campaign's first claim) copies it from `stock`
//! (`PEXPIRETIME`: Redis 7). A campaign whose keys expired (one extended
//! past them) is loaded again, from Postgres, like after a Redis restart.
//!
//! Per server process: `<prefix>:coupon-instance:<instance>`, `1`, `PX`
//! `HEARTBEAT_TTL`, renewed every `HEARTBEAT_EVERY`: the process is alive,
//! so its `P|` states are claims still in flight.
//!
//! A user id is only ever a hash field, never part of a key or a value
//! (design invariant 8).
//!
//! # Loads
//!
//! This adapter never gives back a reserved unit: a claim whose produce
//! failed may be in the log all the same, and a unit handed to someone else
//! would then be one the database refuses. It never loads a campaign from
//! Postgres while claims are still on their way there: a new campaign is
//! made live empty (`open`), with no load; a cold one (Redis lost it, or
//! its keys expired) is loaded by whoever takes its lock, which first
//! waits out the produce window (`ClaimLog::produce_window`, so a claim
//! reserved before Redis lost its data is in the log or failed), then
//! takes the log's high watermarks and waits until the writer group has
//! committed up to them, and only then reads Postgres.
//!
//! The trade-off: after Redis loses its data, the first claims on each
//! campaign wait about 13 s (the window, then the writer) instead of being
//! told about a unit someone else already holds.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::claim_log::ClaimLog;
use super::{BelowIssued, Claim, CouponClaims};
use crate::domain::coupons::{Campaign, Coupon, new_coupon_id};
use crate::store::redis_reply::corrupt;
use crate::store::sql::SqlStore;
use crate::store::{StoreError, StoreResult};

/// A pending claim younger than this is another socket of the buyer still
/// claiming; older, it is taken to have died and is sent again. Longer
/// than a produce may take (`ClaimLog::produce_window` and the Redis calls).
pub const STALE_MS: i64 = 30_000;
/// How often a process says it is alive, and how long that holds. A live
/// process taken for dead costs little (its buyer's other socket sends the
/// same coupon again), so the time-to-live is short.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(2);
/// How long a claim waits for a cold campaign to be loaded, by itself or
/// by another node, before it is refused as unavailable: the produce
/// window (about 13 s), then the writer catching up, which may take a
/// writer group's rebalance after a node restart (about 10 s at our
/// session time-out).
const COLD_WAIT: Duration = Duration::from_secs(30);
/// Over the produce window: a claim's Redis reply on its way, clocks.
const PRODUCE_MARGIN: Duration = Duration::from_secs(1);
/// A loader that took the lock late in its claim's wait still gets this
/// long for the writer to catch up, past the produce window.
const MIN_DRAIN: Duration = Duration::from_secs(5);
/// The loader's lock lifetime: past every step a load may take (the
/// produce window and the writer within `COLD_WAIT`, then Postgres and the
/// staging). A lock that lapses mid-load is safe (each load stages apart,
/// and `load.lua` leaves a live campaign alone), only wasted work.
const LOCK_MS: u64 = 60_000;
/// How often a claim waiting for another loader looks again, at first and
/// at most (it backs off: a load takes seconds).
const LOAD_POLL: Duration = Duration::from_millis(20);
const LOAD_POLL_MAX: Duration = Duration::from_millis(250);
/// How often a loader waiting out the produce window looks whether the
/// campaign turned live meanwhile (opened, or loaded by another).
const WINDOW_POLL: Duration = Duration::from_millis(250);
/// How often the loader asks whether the writer has caught up.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// Our own bound on a Redis reply, over the connection's.
const REDIS_TIMEOUT: Duration = Duration::from_secs(6);
/// Reading a campaign and its claims from Postgres.
const SQL_TIMEOUT: Duration = Duration::from_secs(10);
/// Claims per HSET while staging a load.
const STAGE_CHUNK: usize = 1_000;
/// A staged hash left by a loader that died expires.
const STAGE_TTL_MS: u64 = 120_000;
/// A campaign's keys outlive its end by this (a late claim, a late look at
/// its count), then expire.
const KEEP_AFTER_END_MS: i64 = 7 * 86_400_000;
/// ... but never sooner than this after they are made: a campaign loaded
/// long after it ended (a stock change) must not vanish at once.
const KEEP_AT_LEAST_MS: i64 = 86_400_000;

struct Keys {
    stock: String,
    issued: String,
    claims: String,
    loading: String,
    base: String,
}

pub struct RedisCouponClaims {
    conn: ConnectionManager,
    prefix: String,
    /// This server process, in the pending claims it makes; its heartbeat
    /// key says it is alive, so another process may tell a claim still in
    /// flight from one its process died in.
    instance: String,
    log: Arc<ClaimLog>,
    sql: SqlStore,
    claim: Script,
    confirm: Script,
    fail: Script,
    load: Script,
    open: Script,
    set_stock: Script,
    unlock: Script,
}

/// A Redis call bounded by our own time-out as well as the connection's.
async fn bounded<T>(call: impl Future<Output = redis::RedisResult<T>>) -> StoreResult<T> {
    match tokio::time::timeout(REDIS_TIMEOUT, call).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Busy("redis did not answer in time")),
    }
}

fn stock_arg(stock: Option<u64>) -> i64 {
    stock.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX))
}

/// When a campaign ending at `ends_at_ms` should leave Redis, for keys
/// made at `now_ms` (unix ms).
fn expire_at(ends_at_ms: i64, now_ms: i64) -> i64 {
    ends_at_ms.saturating_add(KEEP_AFTER_END_MS).max(now_ms.saturating_add(KEEP_AT_LEAST_MS))
}

/// The wall clock, as Redis expires keys by it.
fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl RedisCouponClaims {
    /// `conn` should come from `store::redis_connection` (its response
    /// time-out); `log` is the cluster's claim log, whose writer group
    /// decides when a campaign may be loaded.
    pub fn new(conn: ConnectionManager, prefix: &str, log: Arc<ClaimLog>, sql: SqlStore) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            instance: format!("{:016x}", rand::random::<u64>()),
            log,
            sql,
            claim: Script::new(include_str!("lua/claim.lua")),
            confirm: Script::new(include_str!("lua/confirm.lua")),
            fail: Script::new(include_str!("lua/fail.lua")),
            load: Script::new(include_str!("lua/load.lua")),
            open: Script::new(include_str!("lua/open.lua")),
            set_stock: Script::new(include_str!("lua/set_stock.lua")),
            unlock: Script::new(include_str!("lua/unlock.lua")),
        }
    }

    pub async fn connect(url: &str, prefix: &str, log: Arc<ClaimLog>, sql: SqlStore) -> StoreResult<Self> {
        Ok(Self::new(crate::store::redis_connection(url).await?, prefix, log, sql))
    }

    fn heartbeat_key(&self, instance: &str) -> String {
        format!("{}:coupon-instance:{instance}", self.prefix)
    }

    /// Says this process is alive until `shutdown`: a key that lapses
    /// `HEARTBEAT_TTL` after the last beat, so a claim this process left
    /// pending when it died is taken over at once rather than after
    /// `STALE_MS`. Run it beside the adapter (supervised).
    pub async fn heartbeat(&self, shutdown: CancellationToken) {
        let key = self.heartbeat_key(&self.instance);
        let mut conn = self.conn.clone();
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = beat.tick() => {}
            }
            let ttl = HEARTBEAT_TTL.as_millis() as u64;
            let set: StoreResult<()> =
                bounded(redis::cmd("SET").arg(&key).arg(1).arg("PX").arg(ttl).query_async(&mut conn)).await;
            if let Err(e) = set {
                warn!(error = %e, "could not renew the coupon claim heartbeat");
            }
        }
        let _: StoreResult<()> = bounded(redis::cmd("DEL").arg(&key).query_async(&mut conn)).await;
    }

    /// Whether the process `instance` beat lately.
    async fn alive(&self, instance: &str) -> StoreResult<bool> {
        let mut conn = self.conn.clone();
        bounded(redis::cmd("EXISTS").arg(self.heartbeat_key(instance)).query_async(&mut conn)).await
    }

    fn keys(&self, campaign: &str) -> Keys {
        Self::keys_for(&self.prefix, campaign)
    }

    /// Campaign ids are `[a-z0-9-]`, so the id inside the hash tag never
    /// holds '}' and every key ends in a fixed name.
    fn keys_for(prefix: &str, campaign: &str) -> Keys {
        let base = format!("{prefix}:coupon:{{{campaign}}}");
        Keys {
            stock: format!("{base}:stock"),
            issued: format!("{base}:issued"),
            claims: format!("{base}:claims"),
            loading: format!("{base}:loading"),
            base,
        }
    }

    /// Whether the campaign is live in Redis.
    async fn live(&self, k: &Keys) -> StoreResult<bool> {
        bounded(redis::cmd("EXISTS").arg(&k.stock).query_async(&mut self.conn.clone())).await
    }

    /// `ensure_loaded`, unless `deadline` passed (a campaign that turned
    /// cold again right after a load: no claim loads it for ever).
    async fn load_in_time(&self, k: &Keys, campaign: &Campaign, deadline: Instant) -> StoreResult<()> {
        if Instant::now() >= deadline {
            return Err(StoreError::Busy("the coupon campaign is not loaded"));
        }
        self.ensure_loaded(k, campaign, deadline).await
    }

    /// Returns once the campaign is live in Redis, loading it if this
    /// caller gets the lock, else waiting for whoever has it.
    async fn ensure_loaded(&self, k: &Keys, campaign: &Campaign, deadline: Instant) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let mut poll = LOAD_POLL;
        loop {
            if self.live(k).await? {
                return Ok(());
            }
            let token = format!("{:032x}", rand::random::<u128>());
            let got: Option<String> = bounded(
                redis::cmd("SET").arg(&k.loading).arg(&token).arg("NX").arg("PX").arg(LOCK_MS).query_async(&mut conn),
            )
            .await?;
            if got.is_some() {
                // However late this caller got the lock, the load gets its
                // chance; the claim is then answered a little late.
                let at_least = Instant::now() + self.log.produce_window() + PRODUCE_MARGIN + MIN_DRAIN;
                let loaded = self.load_locked(k, campaign, deadline.max(at_least)).await;
                let unlocked: StoreResult<i64> =
                    bounded(self.unlock.key(&k.loading).arg(&token).invoke_async(&mut conn)).await;
                if let Err(e) = unlocked {
                    warn!(campaign = %campaign.id, error = %e, "could not release the coupon load lock; it expires");
                }
                return loaded;
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Busy("the coupon campaign is still loading"));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(LOAD_POLL_MAX);
        }
    }

    /// Loads the campaign from Postgres, once every claim that may have
    /// been reserved before Redis lost it is there: after the produce
    /// window, up to the log's high watermarks of then.
    async fn load_locked(&self, k: &Keys, campaign: &Campaign, deadline: Instant) -> StoreResult<()> {
        let id = campaign.id.as_str();
        // A claim reserved before Redis lost the campaign may still be on
        // its way to the log; past the window it is there, or it failed.
        let window_end = Instant::now() + self.log.produce_window() + PRODUCE_MARGIN;
        loop {
            let now = Instant::now();
            if now >= window_end {
                break;
            }
            tokio::time::sleep(WINDOW_POLL.min(window_end - now)).await;
            // Opened, or loaded by a loader whose lock we took over.
            if self.live(k).await? {
                return Ok(());
            }
        }
        // Claims in the log by now would otherwise count as free stock.
        // Those logged later are of other campaigns (this one is cold), so
        // a storm elsewhere does not keep this load waiting.
        let snapshot = loop {
            match self.log.watermarks().await {
                Ok(s) => break s,
                Err(e) => warn!(campaign = id, error = %e, "cannot read the claim log's watermarks"),
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Busy("the claim log did not tell its watermarks"));
            }
            tokio::time::sleep(DRAIN_POLL).await;
        };
        loop {
            match self.log.reached(&snapshot).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(campaign = id, error = %e, "cannot tell whether the coupon writer caught up"),
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Busy("the coupon writer has not caught up with the claim log"));
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        // The record's stock and end, not the caller's (which may be an
        // older copy): the stock as a seller last set it.
        let read = async { tokio::try_join!(self.sql.campaign(id), self.sql.claims_of(id)) };
        let (record, claims) = match tokio::time::timeout(SQL_TIMEOUT, read).await {
            Ok(r) => r?,
            Err(_) => return Err(StoreError::Busy("the database did not read the campaign in time")),
        };
        let (stock, ends_at_ms) = match &record {
            Some(r) => (r.campaign.stock, r.campaign.ends_at_ms),
            None => {
                warn!(campaign = id, "loading a campaign the database does not have; with the caller's stock");
                (campaign.stock, campaign.ends_at_ms)
            }
        };
        // Staged under a key of this load alone, so a loader whose lock
        // expired cannot mix its claims into ours.
        let staged = format!("{}:staged:{:016x}", k.base, rand::random::<u64>());
        let mut conn = self.conn.clone();
        for chunk in claims.chunks(STAGE_CHUNK) {
            let fields: Vec<(&str, String)> =
                chunk.iter().map(|(user, id)| (user.as_str(), format!("C|{id}"))).collect();
            let () = bounded(
                redis::pipe()
                    .hset_multiple(&staged, &fields)
                    .ignore()
                    .pexpire(&staged, STAGE_TTL_MS as i64)
                    .ignore()
                    .query_async(&mut conn),
            )
            .await?;
        }
        let issued = claims.len();
        let loaded: i64 = bounded(
            self.load
                .key(&k.stock)
                .key(&k.issued)
                .key(&k.claims)
                .key(&staged)
                .arg(stock_arg(stock))
                .arg(issued)
                .arg(expire_at(ends_at_ms, wall_ms()))
                .invoke_async(&mut conn),
        )
        .await?;
        if loaded == 1 {
            info!(campaign = id, issued, stock = stock_arg(stock), "loaded the coupon campaign from the database");
        }
        Ok(())
    }

    /// The brokers have the claim: mark it so, and answer the buyer.
    async fn confirm(&self, k: &Keys, coupon: Coupon) -> StoreResult<Claim> {
        let mut conn = self.conn.clone();
        let reply: StoreResult<String> = bounded(
            self.confirm
                .key(&k.stock)
                .key(&k.issued)
                .key(&k.claims)
                .arg(&coupon.user)
                .arg(&coupon.id)
                .invoke_async(&mut conn),
        )
        .await;
        let campaign = coupon.campaign_id.as_str();
        match reply.as_deref() {
            Ok("confirmed") => Ok(Claim::Claimed(coupon)),
            // Redis lost the campaign while the claim was on its way; the
            // next load waits out the produce window, so it counts it.
            Ok("cold") => {
                warn!(campaign, coupon = %coupon.id, "a claim reached the log while its campaign was not loaded");
                Ok(Claim::Claimed(coupon))
            }
            // The three below mean a load missed a claim in flight: one
            // slower than the produce window.
            Ok("adopted") => {
                error!(campaign, coupon = %coupon.id, "a claim landed after its campaign was reloaded; counted now");
                Ok(Claim::Claimed(coupon))
            }
            Ok("other") => {
                error!(campaign, coupon = %coupon.id, "a reloaded campaign gave the buyer another coupon meanwhile");
                Ok(Claim::AlreadyClaimed)
            }
            Ok("full") => {
                error!(campaign, coupon = %coupon.id, "a claim landed after its campaign was reloaded and sold out");
                Err(StoreError::Busy("the claim raced a reload of its campaign"))
            }
            Ok(other) => Err(corrupt(format!("confirm reply {other}"))),
            // The coupon is in the log, so the claim stands; the state
            // stays pending and a later claim sends it again, harmlessly.
            Err(e) => {
                warn!(campaign, coupon = %coupon.id, error = %e, "could not mark a logged claim as confirmed");
                Ok(Claim::Claimed(coupon))
            }
        }
    }
}

#[async_trait]
impl CouponClaims for RedisCouponClaims {
    async fn claim(&self, campaign: &Campaign, user: &str, now_ms: i64) -> StoreResult<Claim> {
        let k = self.keys(&campaign.id);
        let deadline = Instant::now() + COLD_WAIT;
        let mut conn = self.conn.clone();
        // An instance found dead on an earlier round: its pending claim for
        // this buyer is taken over.
        let mut dead = String::new();
        let (id, claimed_ms) = loop {
            let fresh = new_coupon_id(rand::random());
            let reply: Vec<String> = bounded(
                self.claim
                    .key(&k.stock)
                    .key(&k.issued)
                    .key(&k.claims)
                    .arg(user)
                    .arg(now_ms)
                    .arg(STALE_MS)
                    .arg(&fresh)
                    .arg(&self.instance)
                    .arg(&dead)
                    .invoke_async(&mut conn),
            )
            .await?;
            match reply.first().map(String::as_str) {
                Some("new") => break (fresh, now_ms),
                Some("retry") => {
                    let (Some(id), Some(claimed)) = (reply.get(1), reply.get(2)) else {
                        return Err(corrupt("claim retry reply"));
                    };
                    break (id.clone(), claimed.parse::<i64>().map_err(corrupt)?);
                }
                Some("already") => return Ok(Claim::AlreadyClaimed),
                Some("pending") => {
                    let owner = reply.get(1).cloned().unwrap_or_default();
                    // Another socket of the buyer, on a live process, is
                    // mid-claim: that one answers with the coupon.
                    if owner == dead || self.alive(&owner).await? {
                        return Ok(Claim::AlreadyClaimed);
                    }
                    warn!(campaign = %campaign.id, instance = %owner, "taking over a claim its server left pending");
                    dead = owner;
                }
                Some("sold_out") => return Ok(Claim::SoldOut),
                Some("cold") => self.load_in_time(&k, campaign, deadline).await?,
                Some("corrupt") => return Err(corrupt(format!("claim state of a buyer of {}", campaign.id))),
                _ => return Err(corrupt("claim reply")),
            }
        };
        let coupon = Coupon { id, campaign_id: campaign.id.clone(), user: user.to_owned(), claimed_ms, used_ms: None };
        match self.log.produce(&coupon).await {
            Ok(()) => self.confirm(&k, coupon).await,
            Err(e) => {
                warn!(campaign = %campaign.id, coupon = %coupon.id, error = %e, "the claim log refused a claim");
                let marked: StoreResult<i64> =
                    bounded(self.fail.key(&k.claims).arg(user).arg(&coupon.id).invoke_async(&mut conn)).await;
                if let Err(m) = marked {
                    // Still pending: it turns stale and is sent again.
                    warn!(campaign = %campaign.id, coupon = %coupon.id, error = %m, "could not mark a failed claim");
                }
                // Whatever the cause, the buyer is told to retry: the unit
                // is theirs and the retry sends the same coupon.
                if e.is_unavailable() { Err(e) } else { Err(StoreError::Busy("the claim log refused the claim")) }
            }
        }
    }

    async fn open(&self, campaign: &Campaign) -> StoreResult<()> {
        let k = self.keys(&campaign.id);
        let opened: i64 = bounded(
            self.open
                .key(&k.stock)
                .key(&k.issued)
                .key(&k.claims)
                .arg(stock_arg(campaign.stock))
                .arg(expire_at(campaign.ends_at_ms, wall_ms()))
                .invoke_async(&mut self.conn.clone()),
        )
        .await?;
        if opened == 0 {
            debug!(campaign = %campaign.id, "a new coupon campaign was live already");
        }
        Ok(())
    }

    async fn set_stock(&self, campaign: &Campaign) -> StoreResult<Result<(), BelowIssued>> {
        let k = self.keys(&campaign.id);
        let deadline = Instant::now() + COLD_WAIT;
        let mut conn = self.conn.clone();
        loop {
            let reply: Vec<String> = bounded(
                self.set_stock.key(&k.stock).key(&k.issued).arg(stock_arg(campaign.stock)).invoke_async(&mut conn),
            )
            .await?;
            match reply.first().map(String::as_str) {
                Some("ok") => return Ok(Ok(())),
                Some("below") => {
                    let issued = reply.get(1).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| corrupt("issued"))?;
                    return Ok(Err(BelowIssued { issued }));
                }
                // Loaded with the stock the database has, then the new one
                // applied with the issued check like any other change.
                Some("cold") => self.load_in_time(&k, campaign, deadline).await?,
                _ => return Err(corrupt("set stock reply")),
            }
        }
    }

    async fn issued(&self, campaign: &str) -> StoreResult<Option<u64>> {
        let k = self.keys(campaign);
        let (stock, issued): (Option<String>, Option<u64>) =
            bounded(redis::cmd("MGET").arg(&k.stock).arg(&k.issued).query_async(&mut self.conn.clone())).await?;
        Ok(stock.map(|_| issued.unwrap_or(0)))
    }
}

#[cfg(test)]
pub mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use rdkafka::mocking::MockCluster;
    use redis::AsyncCommands;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use crate::store::coupons::claim_log::ClaimWriter;
    use crate::store::coupons::contract::{Harness, T0, campaign};
    use crate::store::waiting::contract::{REDIS_URL, require_redis};
    use crate::testsupport::PgDatabase;

    const TOPIC: &str = "qt.test-coupon-claims";
    /// Shorter than the cluster's, so that a cold load (which waits out the
    /// produce window this makes) costs a test seconds, not tens of them.
    const TEST_SEND_TIMEOUT: Duration = Duration::from_secs(2);

    /// What a test asks of the mock cluster, on its thread.
    enum Mock {
        /// The next `n` offset commits fail (with an error librdkafka does
        /// not retry itself).
        FailCommits(usize, std::sync::mpsc::Sender<()>),
    }

    /// A mock Kafka cluster on a thread of its own (the handle is not
    /// `Send`), alive until this is dropped.
    struct Cluster {
        servers: String,
        mock: std::sync::mpsc::Sender<Mock>,
    }

    impl Cluster {
        fn start() -> Self {
            let (ready, servers) = std::sync::mpsc::channel();
            let (mock, asked) = std::sync::mpsc::channel::<Mock>();
            std::thread::spawn(move || {
                let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
                cluster.create_topic(TOPIC, 4, 1).expect("the claim topic");
                ready.send(cluster.bootstrap_servers()).expect("the test waits");
                // Until the sender drops.
                while let Ok(ask) = asked.recv() {
                    match ask {
                        Mock::FailCommits(n, done) => {
                            let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; n];
                            cluster.request_errors(RDKafkaApiKey::OffsetCommit, &errors);
                            let _ = done.send(());
                        }
                    }
                }
            });
            Self { servers: servers.recv().expect("the mock cluster starts"), mock }
        }

        fn fail_commits(&self, n: usize) {
            let (done, wait) = std::sync::mpsc::channel();
            self.mock.send(Mock::FailCommits(n, done)).expect("the mock cluster runs");
            wait.recv().expect("the mock cluster answers");
        }
    }

    pub struct RedisHarness {
        claims: Arc<RedisCouponClaims>,
        sql: SqlStore,
        log: Arc<ClaimLog>,
        writer: Arc<ClaimWriter>,
        stop: CancellationToken,
        task: Option<JoinHandle<()>>,
        conn: ConnectionManager,
        prefix: String,
        db: Option<PgDatabase>,
        // Last: everything above talks to it.
        cluster: Cluster,
    }

    pub async fn harness() -> Box<dyn Harness> {
        Box::new(fresh().await)
    }

    async fn fresh() -> RedisHarness {
        require_redis().await;
        let db = PgDatabase::create("qt_coupons").await;
        let sql = SqlStore::connect(&db.url).await.expect("the test database");
        let prefix = format!("qt-test-{:016x}", rand::random::<u64>());
        let cluster = Cluster::start();
        let group = format!("{:016x}", rand::random::<u64>());
        let log = Arc::new(
            ClaimLog::connect_with(&cluster.servers, TOPIC, 0, Some(&group), TEST_SEND_TIMEOUT)
                .await
                .expect("the claim log"),
        );
        let conn = crate::store::redis_connection(REDIS_URL).await.expect("a Redis connection");
        let claims = Arc::new(RedisCouponClaims::new(conn.clone(), &prefix, log.clone(), sql.clone()));
        let writer = Arc::new(ClaimWriter::new(&log, sql.clone(), Default::default()));
        let mut h = RedisHarness {
            claims,
            sql,
            log,
            writer,
            stop: CancellationToken::new(),
            task: None,
            conn,
            prefix,
            db: Some(db),
            cluster,
        };
        h.start_writer();
        h
    }

    impl RedisHarness {
        fn start_writer(&mut self) {
            self.stop = CancellationToken::new();
            let run = crate::workers::coupon_writer::run(self.writer.clone(), self.stop.clone());
            self.task = Some(tokio::spawn(run));
        }

        async fn stop_writer(&mut self) {
            self.stop.cancel();
            if let Some(task) = self.task.take() {
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("the writer stops")
                    .expect("the writer task");
            }
        }

        async fn delete_keys(&self) {
            let mut conn = self.conn.clone();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}:*", self.prefix))
                    .arg("COUNT")
                    .arg(1_000)
                    .query_async(&mut conn)
                    .await
                    .expect("scan the test keys");
                if !keys.is_empty() {
                    let () = conn.del(keys).await.expect("delete the test keys");
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }

        fn keys(&self, campaign: &str) -> Keys {
            RedisCouponClaims::keys_for(&self.prefix, campaign)
        }

        async fn state(&self, campaign: &str, user: &str) -> Option<String> {
            self.conn.clone().hget(self.keys(campaign).claims, user).await.expect("read a claim state")
        }

        async fn stored(&self, campaign: &str) -> HashMap<String, String> {
            self.settle().await;
            self.sql.claims_of(campaign).await.expect("read the claims").into_iter().collect()
        }

        /// A key's expiry (unix ms); -1 for none, -2 for no such key.
        async fn expiry(&self, key: &str) -> i64 {
            redis::cmd("PEXPIRETIME").arg(key).query_async(&mut self.conn.clone()).await.expect("read an expiry")
        }

        /// A stored campaign ending at `ends_at_ms`.
        async fn campaign_ending(&self, id: &str, stock: Option<u64>, ends_at_ms: i64) -> Campaign {
            let was = campaign(&self.sql, id, stock).await;
            let c = Campaign { ends_at_ms, ..was.clone() };
            assert!(self.sql.update_campaign(&was, &c).await.unwrap().is_ok(), "the campaign's end moved");
            c
        }
    }

    #[async_trait]
    impl Harness for RedisHarness {
        fn claims(&self) -> Arc<dyn CouponClaims> {
            self.claims.clone()
        }

        fn sql(&self) -> &SqlStore {
            &self.sql
        }

        async fn settle(&self) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.log.drained().await.unwrap_or(false) {
                assert!(Instant::now() < deadline, "the coupon writer never caught up with the claim log");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        async fn restart(&mut self) {
            // A Redis restart that lost everything, and a fresh node.
            self.delete_keys().await;
            self.claims =
                Arc::new(RedisCouponClaims::new(self.conn.clone(), &self.prefix, self.log.clone(), self.sql.clone()));
        }

        async fn finish(mut self: Box<Self>) {
            self.stop_writer().await;
            self.delete_keys().await;
            self.sql.close().await;
            if let Some(db) = self.db.take() {
                db.finish().await;
            }
        }
    }

    fn coupon(campaign: &str, user: &str, claimed_ms: i64) -> Coupon {
        Coupon {
            id: new_coupon_id(rand::random()),
            campaign_id: campaign.into(),
            user: user.into(),
            claimed_ms,
            used_ms: None,
        }
    }

    fn claimed(c: Claim) -> Coupon {
        match c {
            Claim::Claimed(c) => c,
            other => panic!("expected a coupon, got {other:?}"),
        }
    }

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn keys_expire_a_week_after_the_end_and_never_at_once() {
        let now = 1_800_000_000_000;
        assert_eq!(expire_at(now + DAY_MS, now), now + 8 * DAY_MS);
        assert_eq!(expire_at(now - 30 * DAY_MS, now), now + DAY_MS, "ended long ago: a day still");
        assert_eq!(expire_at(i64::MAX, now), i64::MAX);
    }

    #[test]
    fn keys_are_hash_tagged_by_campaign() {
        let k = RedisCouponClaims::keys_for("p", "spring-10");
        assert_eq!(k.stock, "p:coupon:{spring-10}:stock");
        assert_eq!(k.claims, "p:coupon:{spring-10}:claims");
        assert_eq!(stock_arg(None), -1);
        assert_eq!(stock_arg(Some(u64::MAX)), i64::MAX);
    }

    /// A claim left pending by a process that died (nothing logged) is sent
    /// again by the buyer's next claim, on the same unit and coupon id: at
    /// once when the process's heartbeat has lapsed, and after `STALE_MS`
    /// whatever the heartbeat says.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_claim_of_a_dead_process_is_sent_again_with_its_coupon() {
        let h = Box::new(fresh().await);
        let c = campaign(h.sql(), "stale", Some(2)).await;
        let other = claimed(h.claims().claim(&c, "other", T0).await.unwrap());
        let k = h.keys("stale");
        let id = new_coupon_id(rand::random());
        let old = T0 - 1_000;
        let heartbeat = format!("{}:coupon-instance:elsewhere", h.prefix);
        let () = redis::pipe()
            .hset(&k.claims, "buyer", format!("P|{old}|{old}|elsewhere|{id}"))
            .ignore()
            .incr(&k.issued, 1)
            .ignore()
            .set(&heartbeat, 1)
            .ignore()
            .query_async(&mut h.conn.clone())
            .await
            .unwrap();
        assert_eq!(
            h.claims().claim(&c, "buyer", T0).await.unwrap(),
            Claim::AlreadyClaimed,
            "a young pending claim of a live process is another socket mid-claim"
        );
        assert!(
            matches!(h.claims().claim(&c, "buyer", old + STALE_MS + 1).await.unwrap(), Claim::Claimed(_)),
            "an overdue one is sent again even if its process still beats"
        );
        assert_eq!(h.state("stale", "buyer").await, Some(format!("C|{id}")));
        // Pending again, from a process that stopped beating.
        let () = redis::pipe()
            .hset(&k.claims, "buyer", format!("P|{old}|{old}|elsewhere|{id}"))
            .ignore()
            .del(&heartbeat)
            .ignore()
            .query_async(&mut h.conn.clone())
            .await
            .unwrap();
        let again = claimed(h.claims().claim(&c, "buyer", T0 + 1).await.unwrap());
        assert_eq!((again.id.as_str(), again.claimed_ms), (id.as_str(), old));
        assert_eq!(h.state("stale", "buyer").await, Some(format!("C|{id}")));
        assert_eq!(h.claims().issued("stale").await.unwrap(), Some(2), "no second unit");
        assert_eq!(h.claims().claim(&c, "third", T0 + 2).await.unwrap(), Claim::SoldOut);
        assert_eq!(
            h.stored("stale").await,
            HashMap::from([("other".to_string(), other.id), ("buyer".to_string(), id)])
        );
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_logged_twice_is_stored_once() {
        let h = Box::new(fresh().await);
        let c = campaign(h.sql(), "twice", Some(5)).await;
        let first = claimed(h.claims().claim(&c, "buyer", T0 + 1).await.unwrap());
        h.log.produce(&first).await.unwrap();
        h.log.produce(&first).await.unwrap();
        assert_eq!(h.stored("twice").await, HashMap::from([("buyer".to_string(), first.id.clone())]));
        assert_eq!(h.writer.refused(), 0, "a repeat is no refusal");
        assert_eq!(h.writer.stored.load(Ordering::Relaxed), 3, "seen three times");
        assert_eq!(h.sql.campaign("twice").await.unwrap().expect("the campaign").issued, 1);
        h.finish().await;
    }

    /// Kafka out of reach: the claim is refused as unavailable, its unit
    /// stays the buyer's, and the buyer's retry once Kafka is back gets
    /// that same coupon.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_log_keeps_the_unit_for_the_retry() {
        let h = Box::new(fresh().await);
        let c = campaign(h.sql(), "down", Some(1)).await;
        assert_eq!(h.claims().set_stock(&c).await.unwrap(), Ok(()), "loads the campaign");
        let broken = ClaimLog::connect_with("127.0.0.1:1", TOPIC, 0, Some("broken"), Duration::from_millis(1_500))
            .await
            .expect("a producer, if no broker");
        let down = RedisCouponClaims::new(h.conn.clone(), &h.prefix, Arc::new(broken), h.sql.clone());
        let started = Instant::now();
        let err = down.claim(&c, "buyer", T0 + 1).await.expect_err("no broker to take the claim");
        assert!(err.is_unavailable(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "bounded by the produce time-out");
        let state = h.state("down", "buyer").await.expect("a state");
        assert!(state.starts_with(&format!("F|{}|cp-", T0 + 1)), "{state}");
        assert_eq!(down.issued("down").await.unwrap(), Some(1), "the unit stays reserved");
        assert_eq!(h.claims().claim(&c, "other", T0 + 2).await.unwrap(), Claim::SoldOut, "nobody else takes it");
        let got = claimed(h.claims().claim(&c, "buyer", T0 + 3).await.unwrap());
        assert_eq!(format!("F|{}|{}", got.claimed_ms, got.id), state, "the same coupon");
        assert_eq!(h.stored("down").await, HashMap::from([("buyer".to_string(), got.id)]));
        h.finish().await;
    }

    /// What Redis got wrong the database refuses, and the writer counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_database_refuses_what_the_live_counts_got_wrong() {
        let h = Box::new(fresh().await);
        let c = campaign(h.sql(), "wrong", Some(2)).await;
        let u = claimed(h.claims().claim(&c, "u", T0 + 1).await.unwrap());
        let v = claimed(h.claims().claim(&c, "v", T0 + 2).await.unwrap());
        h.log.produce(&coupon("wrong", "u", T0 + 3)).await.unwrap();
        h.log.produce(&coupon("wrong", "w", T0 + 4)).await.unwrap();
        assert_eq!(h.stored("wrong").await, HashMap::from([("u".to_string(), u.id), ("v".to_string(), v.id)]));
        assert_eq!(h.writer.refused(), 2, "a second coupon for u, one past the stock");
        h.finish().await;
    }

    /// Redis lost while claims were still in the log: the reload waits for
    /// the writer, so every logged claim counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_waits_for_claims_still_in_the_log() {
        let mut h = Box::new(fresh().await);
        let c = campaign(h.sql(), "behind", Some(4)).await;
        h.stop_writer().await;
        let mut won = HashMap::new();
        for u in ["a", "b", "c"] {
            won.insert(u.to_string(), claimed(h.claims().claim(&c, u, T0 + 1).await.unwrap()).id);
        }
        assert!(!h.log.drained().await.unwrap(), "the claims wait in the log");
        h.restart().await;
        let claims = h.claims();
        let (c2, late) = (c.clone(), claims.clone());
        let first = tokio::spawn(async move { late.claim(&c2, "a", T0 + 9).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(claims.issued("behind").await.unwrap(), None, "not loaded while the log is behind");
        h.start_writer();
        assert_eq!(first.await.unwrap().unwrap(), Claim::AlreadyClaimed);
        let d = claimed(claims.claim(&c, "d", T0 + 10).await.unwrap());
        won.insert("d".to_string(), d.id);
        assert_eq!(claims.claim(&c, "e", T0 + 11).await.unwrap(), Claim::SoldOut);
        assert_eq!(h.stored("behind").await, won);
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }

    /// The writer restarted (as the supervisor does after a panic) picks up
    /// where the group's commits left off.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_writer_carries_on() {
        let mut h = Box::new(fresh().await);
        let c = campaign(h.sql(), "carry", None).await;
        let a = claimed(h.claims().claim(&c, "a", T0 + 1).await.unwrap());
        h.settle().await;
        h.stop_writer().await;
        let b = claimed(h.claims().claim(&c, "b", T0 + 2).await.unwrap());
        h.start_writer();
        assert_eq!(h.stored("carry").await, HashMap::from([("a".to_string(), a.id), ("b".to_string(), b.id)]));
        h.finish().await;
    }

    /// A new campaign is live once opened: its first claims need no load
    /// (no produce window), one waiting on a load of it is answered once it
    /// opens, and opening it again changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_makes_a_new_campaign_live_at_once() {
        let h = Box::new(fresh().await);
        let c = campaign(h.sql(), "new", Some(2)).await;
        h.claims.open(&c).await.unwrap();
        assert_eq!(h.claims().issued("new").await.unwrap(), Some(0));
        let started = Instant::now();
        let a = claimed(h.claims().claim(&c, "a", T0 + 1).await.unwrap());
        assert!(started.elapsed() < h.log.produce_window(), "no load: {:?}", started.elapsed());
        h.claims.open(&c).await.unwrap();
        assert_eq!(h.claims().issued("new").await.unwrap(), Some(1), "a second open resets nothing");
        assert_eq!(h.state("new", "a").await, Some(format!("C|{}", a.id)));
        let b = claimed(h.claims().claim(&c, "b", T0 + 2).await.unwrap());
        assert_eq!(h.claims().claim(&c, "c", T0 + 3).await.unwrap(), Claim::SoldOut);
        // A claim that came before the open waits for a load, and is
        // answered as soon as the campaign opens.
        let late = campaign(h.sql(), "new-open", None).await;
        let (claims, l) = (h.claims(), late.clone());
        let started = Instant::now();
        let first = tokio::spawn(async move { claims.claim(&l, "x", T0 + 4).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.claims.open(&late).await.unwrap();
        assert!(matches!(first.await.unwrap().unwrap(), Claim::Claimed(_)));
        assert!(started.elapsed() < h.log.produce_window(), "not the whole window: {:?}", started.elapsed());
        let stock: String = h.conn.clone().get(h.keys("new-open").stock).await.unwrap();
        assert_eq!(stock, "-1", "unlimited");
        assert_eq!(h.stored("new").await, HashMap::from([("a".to_string(), a.id), ("b".to_string(), b.id)]));
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }

    /// A cold load takes the stock the database has, not the caller's
    /// older copy; a campaign the database lacks loads with the caller's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cold_load_takes_the_stock_from_the_database() {
        let h = Box::new(fresh().await);
        let c = campaign(h.sql(), "restocked", Some(3)).await;
        let stale = Campaign { stock: Some(1), ..c.clone() };
        for u in ["a", "b", "c"] {
            assert!(matches!(h.claims().claim(&stale, u, T0 + 1).await.unwrap(), Claim::Claimed(_)), "{u}");
        }
        assert_eq!(h.claims().claim(&stale, "d", T0 + 2).await.unwrap(), Claim::SoldOut);
        assert_eq!(h.stored("restocked").await.len(), 3);
        let ghost = Campaign { id: "ghost".into(), stock: Some(7), ..c.clone() };
        assert_eq!(h.claims().set_stock(&ghost).await.unwrap(), Ok(()));
        let stock: String = h.conn.clone().get(h.keys("ghost").stock).await.unwrap();
        assert_eq!((stock.as_str(), h.claims().issued("ghost").await.unwrap()), ("7", Some(0)));
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }

    /// Redis lost its data while a claim reserved before was still on its
    /// way to the log: the load waits out the produce window, so that
    /// claim counts, and nobody is given its unit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_in_flight_when_redis_lost_its_data_is_counted() {
        let mut h = Box::new(fresh().await);
        let c = campaign(h.sql(), "flight", Some(1)).await;
        h.claims.open(&c).await.unwrap();
        // "a" reserves the only unit; its produce is slow, and meanwhile
        // Redis loses everything.
        let a = coupon("flight", "a", T0 + 1);
        h.restart().await;
        let (claims, c2) = (h.claims(), c.clone());
        let other = tokio::spawn(async move { claims.claim(&c2, "b", T0 + 2).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        h.log.produce(&a).await.expect("the slow produce lands");
        let k = h.keys("flight");
        assert_eq!(h.claims.confirm(&k, a.clone()).await.unwrap(), Claim::Claimed(a.clone()), "a is told");
        assert_eq!(other.await.unwrap().unwrap(), Claim::SoldOut, "the load counted a's claim");
        assert_eq!(h.claims().issued("flight").await.unwrap(), Some(1));
        assert_eq!(h.state("flight", "a").await, Some(format!("C|{}", a.id)));
        assert_eq!(h.stored("flight").await, HashMap::from([("a".to_string(), a.id)]));
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }

    /// A storm of claims on one campaign keeps the log's head moving; a
    /// cold campaign still loads meanwhile (the writer reaching a snapshot
    /// of the watermarks is enough, not the moving head).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_storm_on_one_campaign_does_not_keep_another_from_loading() {
        let h = Box::new(fresh().await);
        let storm = campaign(h.sql(), "storm", None).await;
        h.claims.open(&storm).await.unwrap();
        let quiet = campaign(h.sql(), "quiet", Some(10)).await;
        let stop = CancellationToken::new();
        let won = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let (claims, c, stop, won) = (h.claims(), storm.clone(), stop.clone(), won.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.is_cancelled() {
                        let r = claims.claim(&c, &format!("s{t}-{n}"), T0 + n).await.expect("a storm claim");
                        assert!(matches!(r, Claim::Claimed(_)), "{r:?}");
                        won.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut behind = 0;
        for _ in 0..10 {
            behind += usize::from(!h.log.drained().await.unwrap_or(true));
        }
        let before = won.load(Ordering::Relaxed);
        assert!(before > 0, "the storm is on");
        let started = Instant::now();
        let got = h.claims().claim(&quiet, "buyer", T0).await.expect("the quiet campaign loads under the storm");
        let (took, during) = (started.elapsed(), won.load(Ordering::Relaxed) - before);
        stop.cancel();
        for t in tasks {
            t.await.expect("a storm task");
        }
        eprintln!("storm: {during} claims while the other campaign loaded in {took:?}; log behind {behind}/10 looks");
        assert!(during > 0, "the storm went on throughout the load");
        let got = claimed(got);
        assert_eq!(h.stored("quiet").await, HashMap::from([("buyer".to_string(), got.id)]));
        assert_eq!(h.stored("storm").await.len() as u64, won.load(Ordering::Relaxed));
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }

    /// An offset commit that fails is tried again though no claim follows,
    /// so a load waiting for the writer is not held up until the next one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_offset_commit_is_tried_again_while_idle() {
        let h = Box::new(fresh().await);
        let c = campaign(h.sql(), "commit", None).await;
        h.claims.open(&c).await.unwrap();
        let a = claimed(h.claims().claim(&c, "a", T0 + 1).await.unwrap());
        h.settle().await;
        h.cluster.fail_commits(3);
        let b = claimed(h.claims().claim(&c, "b", T0 + 2).await.unwrap());
        // Nothing else is claimed: only the writer's retries commit b.
        h.settle().await;
        assert!(h.writer.commits_failed.load(Ordering::Relaxed) >= 1, "the commits did fail");
        assert_eq!(h.stored("commit").await, HashMap::from([("a".to_string(), a.id), ("b".to_string(), b.id)]));
        h.finish().await;
    }

    /// A claim the database fails on (a user id Postgres cannot store, as
    /// a stand-in for any bad claim) fails its whole batch; after a few
    /// tries the writer records the batch's claims one by one and skips
    /// that claim alone, counted as refused, and carries on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_the_database_fails_on_alone_is_skipped() {
        let mut h = Box::new(fresh().await);
        let c = campaign(h.sql(), "poison", Some(10)).await;
        h.claims.open(&c).await.unwrap();
        h.stop_writer().await;
        // All three wait in the log, so the writer takes them in one batch.
        let a = claimed(h.claims().claim(&c, "a", T0 + 1).await.unwrap());
        h.log.produce(&coupon("poison", "nul\0user", T0 + 2)).await.unwrap();
        let b = claimed(h.claims().claim(&c, "b", T0 + 3).await.unwrap());
        h.start_writer();
        let all = HashMap::from([("a".to_string(), a.id), ("b".to_string(), b.id)]);
        assert_eq!(h.stored("poison").await, all);
        assert_eq!(h.writer.refused(), 1, "the bad claim, skipped");
        let d = claimed(h.claims().claim(&c, "d", T0 + 4).await.unwrap());
        assert_eq!(h.stored("poison").await.get("d"), Some(&d.id), "the writer carries on");
        assert_eq!(h.writer.refused(), 1);
        h.finish().await;
    }

    /// A database out of reach fails every batch: the writer keeps trying
    /// and never skips a claim for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_out_of_reach_never_makes_the_writer_skip_a_claim() {
        let mut h = Box::new(fresh().await);
        let c = campaign(h.sql(), "reach", Some(5)).await;
        h.claims.open(&c).await.unwrap();
        h.stop_writer().await;
        let url = h.db.as_ref().expect("the test database").url.clone();
        let closed = SqlStore::connect(&url).await.expect("the test database");
        closed.close().await;
        let writer = Arc::new(ClaimWriter::new(&h.log, closed, Default::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::workers::coupon_writer::run(writer.clone(), stop.clone()));
        let a = claimed(h.claims().claim(&c, "a", T0 + 1).await.unwrap());
        // Past the tries after which a batch failing on its data is split.
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(writer.refused(), 0, "nothing skipped");
        assert!(!h.log.drained().await.unwrap(), "nothing committed");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the writer stops").unwrap();
        h.start_writer();
        assert_eq!(h.stored("reach").await, HashMap::from([("a".to_string(), a.id)]));
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }

    /// A campaign's stock, count and claims expire together a week after
    /// it ends, as opened, claimed, restocked and loaded; one that ended
    /// long ago and is loaded stays a day.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_campaigns_keys_expire_together_a_week_after_it_ends() {
        let mut h = Box::new(fresh().await);
        let ends = wall_ms() + 30 * DAY_MS;
        let c = h.campaign_ending("expiring", Some(5), ends).await;
        let k = h.keys("expiring");
        let at = ends + KEEP_AFTER_END_MS;
        h.claims.open(&c).await.unwrap();
        assert_eq!((h.expiry(&k.stock).await, h.expiry(&k.issued).await), (at, at));
        assert_eq!(h.expiry(&k.claims).await, -2, "no claims yet");
        claimed(h.claims().claim(&c, "a", T0 + 1).await.unwrap());
        assert_eq!(h.expiry(&k.claims).await, at, "the first claim's hash expires with the rest");
        let more = Campaign { stock: Some(6), ..c.clone() };
        assert!(h.sql.update_campaign(&c, &more).await.unwrap().is_ok());
        assert_eq!(h.claims().set_stock(&more).await.unwrap(), Ok(()));
        assert_eq!(h.expiry(&k.stock).await, at, "a restock keeps the expiry");
        h.settle().await;
        h.restart().await;
        claimed(h.claims().claim(&more, "b", T0 + 2).await.unwrap());
        let loaded = (h.expiry(&k.stock).await, h.expiry(&k.issued).await, h.expiry(&k.claims).await);
        assert_eq!(loaded, (at, at, at), "a load sets them again");
        let old = campaign(h.sql(), "ended", Some(1)).await;
        assert_eq!(h.claims().set_stock(&old).await.unwrap(), Ok(()));
        let day = wall_ms() + DAY_MS;
        let kept = h.expiry(&h.keys("ended").stock).await;
        assert!((day - 60_000..=day).contains(&kept), "{kept} vs {day}");
        h.finish().await;
    }

    /// Keys that expired (a week past the end) come back by a load when
    /// the seller extends the campaign: every coupon counts, and the keys
    /// take the new end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_campaign_extended_later_is_loaded_again() {
        let h = Box::new(fresh().await);
        let ends = wall_ms() + DAY_MS;
        let c = h.campaign_ending("extended", Some(2), ends).await;
        h.claims.open(&c).await.unwrap();
        let a = claimed(h.claims().claim(&c, "a", T0 + 1).await.unwrap());
        h.settle().await;
        let k = h.keys("extended");
        let now = wall_ms();
        let () = redis::pipe()
            .pexpire_at(&k.stock, now)
            .ignore()
            .pexpire_at(&k.issued, now)
            .ignore()
            .pexpire_at(&k.claims, now)
            .ignore()
            .query_async(&mut h.conn.clone())
            .await
            .unwrap();
        assert_eq!(h.claims().issued("extended").await.unwrap(), None, "expired");
        let longer = Campaign { ends_at_ms: ends + 30 * DAY_MS, ..c.clone() };
        assert!(h.sql.update_campaign(&c, &longer).await.unwrap().is_ok());
        assert_eq!(h.claims().claim(&longer, "a", T0 + 2).await.unwrap(), Claim::AlreadyClaimed);
        let b = claimed(h.claims().claim(&longer, "b", T0 + 3).await.unwrap());
        assert_eq!(h.claims().claim(&longer, "c", T0 + 4).await.unwrap(), Claim::SoldOut);
        assert_eq!(h.expiry(&k.stock).await, longer.ends_at_ms + KEEP_AFTER_END_MS);
        assert_eq!(h.stored("extended").await, HashMap::from([("a".to_string(), a.id), ("b".to_string(), b.id)]));
        assert_eq!(h.writer.refused(), 0);
        h.finish().await;
    }
}
