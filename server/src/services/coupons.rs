//! Coupon campaigns and claims: buyers claim and list their coupons,
//! sellers create, read, list, pause, resume and extend their campaigns.
//! The rules are the domain's (`domain::coupons`); counting stock and
//! buyers is the claim store's; SQL is the record of campaigns.
//!
//! Campaigns are read on every claim, so this node keeps them in a cache
//! that its own changes update at once and a worker reloads every second
//! (another node may have changed one).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use qt_protocol::coupons::{CampaignPatch, CampaignView, CouponView, FundedBy, NewCampaign, OfferView};
use tracing::{info, warn};

use super::catalog::Catalog;
use crate::clock::{Clock, rfc3339};
use crate::domain::coupons::{Campaign, Coupon, FieldErrors, Fields, new_campaign_id, validate_new, validate_patch};
use crate::error::{AppError, AppResult};
use crate::metrics::{ClaimOutcome, Metrics};
use crate::store::StoreResult;
use crate::store::coupons::{BelowIssued, Claim, CouponClaims};
use crate::store::sql::{CampaignRecord, NotUpdated, SqlStore};

/// Items per page of a seller list unless asked otherwise, and at most.
pub const PAGE_DEFAULT: u32 = 50;
pub const PAGE_MAX: u32 = 500;

/// Whose campaigns a seller route sees.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Seller(&'a str),
    /// Every seller's.
    Admin,
}

impl Scope<'_> {
    pub fn sees(&self, seller: &str) -> bool {
        match self {
            Scope::Seller(s) => *s == seller,
            Scope::Admin => true,
        }
    }

    pub fn seller(&self) -> Option<&str> {
        match self {
            Scope::Seller(s) => Some(s),
            Scope::Admin => None,
        }
    }
}

pub struct CouponService {
    pub sql: SqlStore,
    pub claims: Arc<dyn CouponClaims>,
    pub catalog: Arc<Catalog>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Campaigns by id, as last read from SQL or changed here, each with
    /// the change number (`changes`) it was changed here at (0: read).
    cache: ArcSwap<HashMap<String, (u64, Arc<Campaign>)>>,
    /// Counts this node's changes, so a reload that read SQL before one
    /// keeps it rather than putting the old campaign back.
    changes: AtomicU64,
}

impl CouponService {
    pub fn new(
        sql: SqlStore,
        claims: Arc<dyn CouponClaims>,
        catalog: Arc<Catalog>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            sql,
            claims,
            catalog,
            clock,
            metrics,
            cache: ArcSwap::from_pointee(HashMap::new()),
            changes: AtomicU64::new(0),
        }
    }

    /// Reloads every campaign from SQL; what this node changed meanwhile
    /// stays as it changed it.
    pub async fn reload(&self) -> StoreResult<()> {
        let started = self.changes.load(Ordering::SeqCst);
        let mut all = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.sql.campaigns(None, PAGE_MAX, after.as_deref()).await?;
            let full = page.len() == PAGE_MAX as usize;
            after = page.last().map(|r| r.campaign.id.clone());
            all.extend(page.into_iter().map(|r| (r.campaign.id.clone(), (0, Arc::new(r.campaign)))));
            if !full {
                break;
            }
        }
        self.cache.rcu(|cached| {
            let mut next = all.clone();
            for (id, entry) in cached.iter().filter(|(_, (change, _))| *change > started) {
                next.insert(id.clone(), entry.clone());
            }
            next
        });
        Ok(())
    }

    fn remember(&self, campaign: Campaign) -> Arc<Campaign> {
        let campaign = Arc::new(campaign);
        self.cache.rcu(|all| {
            // Numbered inside the update, so a reload that started before
            // it sees a higher number than it started with.
            let change = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
            let mut next = HashMap::clone(all);
            next.insert(campaign.id.clone(), (change, campaign.clone()));
            next
        });
        campaign
    }

    /// A campaign by id: from the cache, else from SQL (it may be new on
    /// another node).
    async fn campaign(&self, id: &str) -> AppResult<Arc<Campaign>> {
        if let Some((_, c)) = self.cache.load().get(id) {
            return Ok(c.clone());
        }
        match self.sql.campaign(id).await? {
            Some(record) => Ok(self.remember(record.campaign)),
            None => Err(AppError::NotFound("campaign")),
        }
    }

    // ------------------------------------------------------------ buyers

    /// Claims a coupon of `campaign` for `user`: the coupon, or why not,
    /// with nothing changed.
    pub async fn claim(&self, user: &str, campaign: &str) -> AppResult<(Coupon, Arc<Campaign>)> {
        let c = self.campaign(campaign).await?;
        let now = self.clock.now_ms();
        if let Err(why) = c.claimable(now) {
            self.metrics.coupon_claims.inc(ClaimOutcome::not_active);
            return Err(AppError::NotActive(why.reason().into()));
        }
        let claimed = match self.claims.claim(&c, user, now).await {
            Ok(claimed) => claimed,
            Err(e) => {
                self.metrics.coupon_claims.inc(ClaimOutcome::unavailable);
                return Err(e.into());
            }
        };
        match claimed {
            Claim::Claimed(coupon) => {
                self.metrics.coupon_claims.inc(ClaimOutcome::issued);
                Ok((coupon, c))
            }
            Claim::SoldOut => {
                self.metrics.coupon_claims.inc(ClaimOutcome::sold_out);
                Err(AppError::CouponSoldOut)
            }
            Claim::AlreadyClaimed => {
                self.metrics.coupon_claims.inc(ClaimOutcome::already_claimed);
                Err(AppError::AlreadyClaimed)
            }
        }
    }

    /// The buyer's unused coupons that have not expired, oldest claim
    /// first; with `event`, only those that may be used on it.
    pub async fn mine(&self, user: &str, event: Option<&str>) -> AppResult<Vec<(Coupon, Arc<Campaign>)>> {
        let event = event.map(|e| self.catalog.find(e)).transpose()?;
        let now = self.clock.now_ms();
        let mut mine = Vec::new();
        for coupon in self.sql.coupons_of(user).await? {
            if coupon.used_ms.is_some() {
                continue;
            }
            let c = match self.campaign(&coupon.campaign_id).await {
                Ok(c) => c,
                // A coupon outlives no campaign; a missing one is skipped.
                Err(AppError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if now >= c.ends_at_ms {
                continue;
            }
            if let Some((id, e)) = &event
                && !c.covers_event(&e.seller_id, id)
            {
                continue;
            }
            mine.push((coupon, c));
        }
        Ok(mine)
    }

    /// An event's campaigns that have not ended, for its buyers.
    ///
    /// Every buyer's page asks for this every few seconds, so it is read
    /// from the cache and the live counts, not from SQL.
    pub async fn offers(&self, event: &str) -> AppResult<Vec<OfferView>> {
        let (id, e) = self.catalog.find(event)?;
        let now = self.clock.now_ms();
        let mut live: Vec<Arc<Campaign>> = self
            .cache
            .load()
            .values()
            .map(|(_, c)| c.clone())
            .filter(|c| c.ends_at_ms > now && c.covers_event(&e.seller_id, &id))
            .collect();
        live.sort_by(|a, b| (a.starts_at_ms, &a.id).cmp(&(b.starts_at_ms, &b.id)));
        let mut offers = Vec::with_capacity(live.len());
        for c in live {
            let issued = self.issued(&c.id, None).await?;
            offers.push(offer_view(&c, issued, now));
        }
        Ok(offers)
    }

    /// Issued so far: the live count when this node has one (it runs ahead
    /// of the record in distributed mode), never below the record's
    /// (`recorded`, or read from SQL when the live count has none either).
    async fn issued(&self, id: &str, recorded: Option<u64>) -> AppResult<u64> {
        Ok(match (self.claims.issued(id).await?, recorded) {
            (Some(live), recorded) => live.max(recorded.unwrap_or(0)),
            (None, Some(recorded)) => recorded,
            (None, None) => self.sql.campaign(id).await?.map_or(0, |r| r.issued),
        })
    }

    // ------------------------------------------------------------ sellers

    /// Creates a campaign for `seller`; bad input names its fields and
    /// changes nothing.
    pub async fn create(&self, seller: &str, body: &NewCampaign) -> AppResult<CampaignView> {
        let now = self.clock.now_ms();
        let events = self.sql.seller_events(seller).await?;
        // The token names the seller; its row may not exist yet.
        self.sql.ensure_seller(seller, now).await?;
        let campaign = validate_new(body, seller, &events, new_campaign_id(rand::random()), now)?;
        if !self.sql.insert_campaign(&campaign).await? {
            return Err(AppError::Conflict("a campaign with this id exists already".into()));
        }
        // Nothing issued yet: live at once, with no load from the record.
        // Should that fail, the first claim loads it from the record.
        if let Err(e) = self.claims.open(&campaign).await {
            warn!(campaign = %campaign.id, error = %e, "could not open the campaign's live counts; it loads on first claim");
        }
        info!(campaign = %campaign.id, %seller, kind = campaign.kind.name(), stock = ?campaign.stock, "campaign created");
        let campaign = self.remember(campaign);
        Ok(campaign_view(&campaign, 0, 0, now))
    }

    /// One campaign the caller may see; another seller's is `not_found`.
    pub async fn get(&self, scope: Scope<'_>, id: &str) -> AppResult<CampaignView> {
        let record = self.sql.campaign(id).await?.filter(|r| scope.sees(&r.campaign.seller_id));
        let record = record.ok_or(AppError::NotFound("campaign"))?;
        self.view(&record).await
    }

    async fn view(&self, record: &CampaignRecord) -> AppResult<CampaignView> {
        let issued = self.issued(&record.campaign.id, Some(record.issued)).await?;
        Ok(campaign_view(&record.campaign, issued, record.used, self.clock.now_ms()))
    }

    /// A page of the caller's campaigns by id, after `after`.
    pub async fn list(
        &self,
        scope: Scope<'_>,
        limit: u32,
        after: Option<&str>,
    ) -> AppResult<(Vec<CampaignView>, Option<String>)> {
        let limit = limit.clamp(1, PAGE_MAX);
        // One more than asked tells whether a next page exists.
        let mut page = self.sql.campaigns(scope.seller(), limit + 1, after).await?;
        let next = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last().map(|r| r.campaign.id.clone())
        } else {
            None
        };
        let mut views = Vec::with_capacity(page.len());
        for record in &page {
            views.push(self.view(record).await?);
        }
        Ok((views, next))
    }

    /// Pauses, resumes, ends or restocks a campaign. Stock never goes
    /// below what was issued; nothing changes on a refusal.
    pub async fn patch(&self, scope: Scope<'_>, id: &str, patch: &CampaignPatch) -> AppResult<CampaignView> {
        let record = self.sql.campaign(id).await?.filter(|r| scope.sees(&r.campaign.seller_id));
        let record = record.ok_or(AppError::NotFound("campaign"))?;
        let issued = self.issued(&record.campaign.id, Some(record.issued)).await?;
        let next = validate_patch(&record.campaign, issued, patch)?;
        // The live count gates claims and the record backs it, so a lower
        // stock reaches the live count first (it refuses one below what it
        // has issued, which may be ahead of SQL) and a higher one the record
        // first: in between, neither lets through what the other refuses.
        // A stock the patch names is always applied to the live count, so a
        // retry after a failure there repairs it.
        let was = &record.campaign;
        let lowered = match (was.stock, next.stock) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(was), Some(now)) => now < was,
        };
        let names_stock = patch.stock.is_some();
        if names_stock && lowered {
            self.claims.set_stock(&next).await?.map_err(below_issued)?;
        }
        let stored = self.sql.update_campaign(was, &next).await;
        if !matches!(stored, Ok(Ok(()))) && names_stock && lowered {
            self.resync_stock(id).await;
        }
        if let Err(refused) = stored? {
            return Err(match refused {
                NotUpdated::BelowIssued(below) => below_issued(below),
                NotUpdated::Changed => AppError::Conflict("the campaign changed meanwhile; read it again".into()),
            });
        }
        if names_stock && !lowered {
            self.claims.set_stock(&next).await?.map_err(below_issued)?;
        }
        info!(campaign = %id, paused = next.paused, ends_at_ms = next.ends_at_ms, stock = ?next.stock, "campaign changed");
        let next = self.remember(next);
        Ok(campaign_view(&next, issued, record.used, self.clock.now_ms()))
    }
}

impl CouponService {
    /// Puts the record's stock back into the live count after a change
    /// that reached only the live count.
    async fn resync_stock(&self, id: &str) {
        let restored = match self.sql.campaign(id).await {
            Ok(Some(record)) => self.claims.set_stock(&record.campaign).await.map(|r| r.is_ok()),
            Ok(None) => Ok(true),
            Err(e) => Err(e),
        };
        if !matches!(restored, Ok(true)) {
            warn!(campaign = %id, outcome = ?restored, "could not put the recorded stock back into the live count");
        }
    }
}

fn below_issued(below: BelowIssued) -> AppError {
    let why = format!("cannot be below the {} coupons already issued", below.issued);
    AppError::Invalid(FieldErrors(Fields::from([("stock".to_owned(), why)])))
}

/// The wire view of a buyer's coupon.
pub fn coupon_view(coupon: &Coupon, c: &Campaign) -> CouponView {
    CouponView {
        coupon: coupon.id.clone(),
        campaign: c.id.clone(),
        name: c.name.clone(),
        kind: c.kind.name().into(),
        value: c.terms.value,
        max_discount: c.terms.max_discount,
        min_spend: c.terms.min_spend,
        expires_at: rfc3339(c.ends_at_ms),
        claimed_at: rfc3339(coupon.claimed_ms),
        events: c.targets.events.clone(),
        tiers: c.targets.tiers.clone(),
    }
}

fn active(c: &Campaign, issued: u64, now_ms: i64) -> bool {
    c.claimable(now_ms).is_ok() && c.remaining(issued) != Some(0)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn campaign_view(c: &Campaign, issued: u64, used: u64, now_ms: i64) -> CampaignView {
    CampaignView {
        id: c.id.clone(),
        seller: c.seller_id.clone(),
        name: c.name.clone(),
        kind: c.kind.name().into(),
        value: c.terms.value,
        max_discount: c.terms.max_discount,
        min_spend: c.terms.min_spend,
        stock: c.stock.map(count),
        starts_at: rfc3339(c.starts_at_ms),
        ends_at: rfc3339(c.ends_at_ms),
        events: c.targets.events.clone(),
        tiers: c.targets.tiers.clone(),
        funded_by: FundedBy {
            seller: i64::from(c.funded_by.seller_pct),
            platform: i64::from(c.funded_by.platform_pct),
        },
        paused: c.paused,
        active: active(c, issued, now_ms),
        issued: count(issued),
        used: count(used),
        remaining: c.remaining(issued).map(count),
    }
}

fn offer_view(c: &Campaign, issued: u64, now_ms: i64) -> OfferView {
    OfferView {
        id: c.id.clone(),
        name: c.name.clone(),
        kind: c.kind.name().into(),
        value: c.terms.value,
        max_discount: c.terms.max_discount,
        min_spend: c.terms.min_spend,
        stock: c.stock.map(count),
        remaining: c.remaining(issued).map(count),
        starts_at: rfc3339(c.starts_at_ms),
        ends_at: rfc3339(c.ends_at_ms),
        tiers: c.targets.tiers.clone(),
        active: active(c, issued, now_ms),
    }
}
