//! Embedded coupon claims: stock and buyers counted in process, each claim
//! answered only once it is in SQLite. Claims queue for one writer task
//! that commits whatever has queued in one transaction (group commit), so a
//! storm costs a handful of fsyncs a second rather than one per claim.
//!
//! Never answers `Claimed` before the commit: a crash loses only claims no
//! buyer was told about. The counts are rebuilt from SQLite per campaign on
//! first use, so a restart resumes exactly where the database is.
//!
//! Several nodes may share one Postgres this way (no Kafka): each counts
//! for itself and the database's constraints refuse what a node's counts
//! let through; such a claim is answered from the database's verdict.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{BelowIssued, Claim, CouponClaims};
use crate::domain::coupons::{Campaign, Coupon, new_coupon_id};
use crate::metrics::Counter;
use crate::store::sql::{Recorded, SqlStore};
use crate::store::{StoreError, StoreResult};

/// Most claims one transaction commits.
const BATCH_MAX: usize = 2_000;
/// Claims that may wait for the writer; beyond that a claim waits to queue.
const QUEUE_CAPACITY: usize = 65_536;
/// How long one group commit may take before its claims are refused.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// One campaign's live counts.
struct Live {
    stock: Option<u64>,
    /// Coupons issued or being committed.
    issued: u64,
    /// Buyers with a coupon, or one being committed.
    buyers: HashSet<String>,
}

/// A claim waiting for the writer, and who waits for its outcome.
struct Pending {
    coupon: Coupon,
    done: oneshot::Sender<StoreResult<Recorded>>,
}

pub struct MemoryCouponClaims {
    sql: SqlStore,
    live: Mutex<HashMap<String, Live>>,
    /// One load from SQL at a time, so two first claims load once.
    loading: tokio::sync::Mutex<()>,
    commits: mpsc::Sender<Pending>,
    /// Claims the database refused after the live count let them through.
    refused: Counter,
}

/// The writer task's side: what it reads claims from.
pub struct GroupCommit {
    sql: SqlStore,
    queue: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
}

impl MemoryCouponClaims {
    /// The adapter and its writer, which must run (`GroupCommit::run`) for
    /// claims to be answered.
    pub fn new(sql: SqlStore, refused: Counter) -> (Self, GroupCommit) {
        let (commits, queue) = mpsc::channel(QUEUE_CAPACITY);
        let claims = Self { sql: sql.clone(), live: Mutex::default(), loading: Default::default(), commits, refused };
        (claims, GroupCommit { sql, queue: tokio::sync::Mutex::new(queue) })
    }

    /// Loads a campaign's counts from SQL unless they are here already.
    async fn ensure_loaded(&self, campaign: &Campaign) -> StoreResult<()> {
        if self.live.lock().contains_key(&campaign.id) {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        if self.live.lock().contains_key(&campaign.id) {
            return Ok(());
        }
        let claims = self.sql.claims_of(&campaign.id).await?;
        let buyers: HashSet<String> = claims.into_iter().map(|(user, _)| user).collect();
        let live = Live { stock: campaign.stock, issued: buyers.len() as u64, buyers };
        self.live.lock().insert(campaign.id.clone(), live);
        Ok(())
    }

    /// Gives back a reservation the database did not take.
    fn undo(&self, coupon: &Coupon, keep_buyer: bool) {
        if let Some(live) = self.live.lock().get_mut(&coupon.campaign_id) {
            live.issued = live.issued.saturating_sub(1);
            if !keep_buyer {
                live.buyers.remove(&coupon.user);
            }
        }
    }
}

#[async_trait]
impl CouponClaims for MemoryCouponClaims {
    async fn claim(&self, campaign: &Campaign, user: &str, now_ms: i64) -> StoreResult<Claim> {
        self.ensure_loaded(campaign).await?;
        {
            let mut all = self.live.lock();
            let Some(live) = all.get_mut(&campaign.id) else {
                return Err(StoreError::Corrupt(format!("campaign {} not loaded", campaign.id)));
            };
            // The caller's campaign is the newest this node knows: another
            // node sharing the database may have restocked it.
            live.stock = campaign.stock;
            if live.buyers.contains(user) {
                return Ok(Claim::AlreadyClaimed);
            }
            if live.stock.is_some_and(|s| live.issued >= s) {
                return Ok(Claim::SoldOut);
            }
            live.issued += 1;
            live.buyers.insert(user.to_owned());
        }
        let coupon = Coupon {
            id: new_coupon_id(rand::random()),
            campaign_id: campaign.id.clone(),
            user: user.to_owned(),
            claimed_ms: now_ms,
            used_ms: None,
        };
        let (done, outcome) = oneshot::channel();
        if self.commits.send(Pending { coupon: coupon.clone(), done }).await.is_err() {
            self.undo(&coupon, false);
            return Err(StoreError::Busy("the coupon writer has stopped"));
        }
        // The writer always answers; a dropped answer means it died before
        // committing this batch, which then did not commit.
        let recorded = outcome.await.unwrap_or(Err(StoreError::Busy("the coupon writer has stopped")));
        match recorded {
            Ok(Recorded::Inserted | Recorded::AlreadyThere) => Ok(Claim::Claimed(coupon)),
            Ok(Recorded::Duplicate) => {
                error!(campaign = %coupon.campaign_id, user, "the database has a coupon the live count missed");
                self.refused.inc();
                self.undo(&coupon, true);
                Ok(Claim::AlreadyClaimed)
            }
            Ok(Recorded::OverStock) => {
                error!(campaign = %coupon.campaign_id, "the database is out of stock before the live count");
                self.refused.inc();
                self.undo(&coupon, false);
                Ok(Claim::SoldOut)
            }
            Ok(Recorded::UnknownCampaign) => {
                self.undo(&coupon, false);
                Err(StoreError::Corrupt(format!("campaign {} is not stored", coupon.campaign_id)))
            }
            Err(e) => {
                self.undo(&coupon, false);
                Err(e)
            }
        }
    }

    async fn open(&self, campaign: &Campaign) -> StoreResult<()> {
        let live = Live { stock: campaign.stock, issued: 0, buyers: HashSet::new() };
        self.live.lock().entry(campaign.id.clone()).or_insert(live);
        Ok(())
    }

    async fn set_stock(&self, campaign: &Campaign) -> StoreResult<Result<(), BelowIssued>> {
        self.ensure_loaded(campaign).await?;
        let mut all = self.live.lock();
        let Some(live) = all.get_mut(&campaign.id) else {
            return Err(StoreError::Corrupt(format!("campaign {} not loaded", campaign.id)));
        };
        if campaign.stock.is_some_and(|s| s < live.issued) {
            return Ok(Err(BelowIssued { issued: live.issued }));
        }
        live.stock = campaign.stock;
        Ok(Ok(()))
    }

    async fn issued(&self, campaign: &str) -> StoreResult<Option<u64>> {
        Ok(self.live.lock().get(campaign).map(|l| l.issued))
    }
}

impl GroupCommit {
    /// Commits queued claims in batches until shutdown, then commits what
    /// is still queued and stops.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut queue = self.queue.lock().await;
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            let got = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = queue.recv_many(&mut batch, BATCH_MAX) => n,
            };
            if got == 0 {
                return;
            }
            self.commit(&mut batch).await;
        }
        queue.close();
        while queue.recv_many(&mut batch, BATCH_MAX).await > 0 {
            self.commit(&mut batch).await;
        }
    }

    async fn commit(&self, batch: &mut Vec<Pending>) {
        let coupons: Vec<Coupon> = batch.iter().map(|p| p.coupon.clone()).collect();
        let outcome = match tokio::time::timeout(COMMIT_TIMEOUT, self.sql.record_claims(&coupons)).await {
            Ok(Ok(recorded)) if recorded.len() == coupons.len() => Ok(recorded),
            Ok(Ok(_)) => Err("the database answered for a different number of claims".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the group commit timed out".to_owned()),
        };
        match outcome {
            Ok(recorded) => {
                for (pending, r) in batch.drain(..).zip(recorded) {
                    let _ = pending.done.send(Ok(r));
                }
            }
            Err(why) => {
                warn!(claims = batch.len(), error = %why, "a coupon group commit failed; its claims are refused");
                for pending in batch.drain(..) {
                    let _ = pending.done.send(Err(StoreError::Busy("the coupon database did not commit")));
                }
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use async_trait::async_trait;
    use tempfile::TempDir;

    use super::*;
    use crate::store::coupons::contract::Harness;

    /// The adapter on SQLite in a temporary directory, its writer running.
    pub async fn harness() -> Box<dyn Harness> {
        let dir = tempfile::Builder::new().prefix("qt-coupons-").tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("coupons.db").display());
        let sql = SqlStore::connect(&url).await.expect("SQLite");
        let mut h = Memory { sql, claims: None, stop: CancellationToken::new(), writer: None, _dir: dir };
        h.start();
        Box::new(h)
    }

    struct Memory {
        sql: SqlStore,
        claims: Option<Arc<MemoryCouponClaims>>,
        stop: CancellationToken,
        writer: Option<tokio::task::JoinHandle<()>>,
        _dir: TempDir,
    }

    impl Memory {
        fn start(&mut self) {
            let (claims, writer) = MemoryCouponClaims::new(self.sql.clone(), Default::default());
            self.stop = CancellationToken::new();
            self.writer = Some(tokio::spawn(Arc::new(writer).run(self.stop.clone())));
            self.claims = Some(Arc::new(claims));
        }

        async fn stop(&mut self) {
            self.stop.cancel();
            if let Some(w) = self.writer.take() {
                w.await.expect("the writer stops cleanly");
            }
        }
    }

    #[async_trait]
    impl Harness for Memory {
        fn claims(&self) -> Arc<dyn CouponClaims> {
            self.claims.clone().expect("started")
        }

        fn sql(&self) -> &SqlStore {
            &self.sql
        }

        async fn settle(&self) {}

        async fn restart(&mut self) {
            self.stop().await;
            self.claims = None;
            self.start();
        }

        async fn finish(mut self: Box<Self>) {
            self.stop().await;
            self.sql.close().await;
        }
    }

    /// Claims queued when the writer is told to stop are still committed
    /// and answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_queued_at_shutdown_are_committed() {
        let dir = tempfile::Builder::new().prefix("qt-coupons-").tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let sql = SqlStore::connect(&url).await.unwrap();
        let c = crate::store::coupons::contract::campaign(&sql, "late", Some(100)).await;
        let (claims, writer) = MemoryCouponClaims::new(sql.clone(), Default::default());
        let claims = Arc::new(claims);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (claims, c) = (claims.clone(), c.clone());
                tokio::spawn(async move { claims.claim(&c, &format!("u{i}"), 1).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stop = CancellationToken::new();
        stop.cancel();
        Arc::new(writer).run(stop).await;
        for t in tasks {
            assert!(matches!(t.await.unwrap().unwrap(), Claim::Claimed(_)));
        }
        assert_eq!(sql.claims_of("late").await.unwrap().len(), 50);
    }
}
