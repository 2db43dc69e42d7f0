//! Coupon campaigns and claimed coupons in the SQL store: the record both
//! claim adapters write to (the embedded group commit, the Kafka consumer)
//! and load live stock from.
//!
//! `record_claims` writes a whole batch in one transaction and never lets a
//! constraint fail it (Postgres would abort the lot): each claim's fate is
//! decided with conflict-free statements and reported on its own.

use std::collections::HashMap;

use sqlx::{AnyConnection, FromRow, Row};

use super::{INSERT_CHUNK, SqlStore, placeholders};
use crate::domain::coupons::{Campaign, Coupon, FundedBy, Targets, Terms, kind_named};
use crate::store::coupons::BelowIssued;
use crate::store::{StoreError, StoreResult};

/// A stored campaign and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub campaign: Campaign,
    /// Coupons claimed so far.
    pub issued: u64,
    /// Of those, spent on a paid order.
    pub used: u64,
}

/// Why a campaign change was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotUpdated {
    /// The new stock is below what was issued.
    BelowIssued(BelowIssued),
    /// Someone changed the campaign since it was read.
    Changed,
}

/// What became of one claim of a `record_claims` batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now.
    Inserted,
    /// This coupon id is stored already: a replay.
    AlreadyThere,
    /// This buyer has another coupon of this campaign.
    Duplicate,
    /// The campaign's stock is all issued.
    OverStock,
    UnknownCampaign,
}

/// The campaign columns, and its used count, for `FROM campaigns c`.
const CAMPAIGN_COLUMNS: &str = "c.id, c.seller_id, c.name, c.kind, c.value, c.max_discount, c.min_spend, c.stock, \
     c.issued, c.starts_at_ms, c.ends_at_ms, c.paused, c.all_events, c.all_tiers, c.funded_seller_pct, \
     c.funded_platform_pct, c.created_ms, c.used";

#[derive(FromRow)]
struct CampaignRow {
    id: String,
    seller_id: String,
    name: String,
    kind: String,
    value: i64,
    max_discount: Option<i64>,
    min_spend: i64,
    stock: Option<i64>,
    issued: i64,
    starts_at_ms: i64,
    ends_at_ms: i64,
    paused: i64,
    all_events: i64,
    all_tiers: i64,
    funded_seller_pct: i64,
    funded_platform_pct: i64,
    created_ms: i64,
    used: i64,
}

fn corrupt(campaign: &str, what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Corrupt(format!("campaign {campaign:?}: {what} is {value:?}"))
}

fn flag(campaign: &str, what: &str, v: i64) -> StoreResult<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(corrupt(campaign, what, v)),
    }
}

fn unsigned<T: TryFrom<i64>>(campaign: &str, what: &str, v: i64) -> StoreResult<T> {
    T::try_from(v).map_err(|_| corrupt(campaign, what, v))
}

/// A domain stock as a BIGINT; one above `i64::MAX` cannot be stored.
fn stock_param(stock: Option<u64>) -> StoreResult<Option<i64>> {
    stock
        .map(|s| i64::try_from(s).map_err(|_| sqlx::Error::Encode(format!("stock {s} exceeds a BIGINT").into()).into()))
        .transpose()
}

impl CampaignRow {
    fn into_record(self, events: Option<Vec<String>>, tiers: Option<Vec<String>>) -> StoreResult<CampaignRecord> {
        let id = self.id.as_str();
        let kind = kind_named(&self.kind).ok_or_else(|| corrupt(id, "the coupon kind", &self.kind))?;
        let stock = self.stock.map(|s| unsigned(id, "the stock", s)).transpose()?;
        let paused = flag(id, "paused", self.paused)?;
        let funded_by = FundedBy {
            seller_pct: unsigned(id, "the seller's share", self.funded_seller_pct)?,
            platform_pct: unsigned(id, "the platform's share", self.funded_platform_pct)?,
        };
        let issued = unsigned(id, "issued", self.issued)?;
        let used = unsigned(id, "used", self.used)?;
        Ok(CampaignRecord {
            campaign: Campaign {
                id: self.id,
                seller_id: self.seller_id,
                name: self.name,
                kind,
                terms: Terms { value: self.value, max_discount: self.max_discount, min_spend: self.min_spend },
                stock,
                starts_at_ms: self.starts_at_ms,
                ends_at_ms: self.ends_at_ms,
                paused,
                targets: Targets { events, tiers },
                funded_by,
                created_ms: self.created_ms,
            },
            issued,
            used,
        })
    }
}

/// One target list's table: `(table, its target column)`.
const EVENT_TARGETS: (&str, &str) = ("campaign_events", "event_id");
const TIER_TARGETS: (&str, &str) = ("campaign_tiers", "tier_id");

impl SqlStore {
    /// Stores a campaign with its targets, all or nothing; `false`, with
    /// nothing written, when its id is taken. A target listed twice is
    /// stored once.
    pub async fn insert_campaign(&self, c: &Campaign) -> StoreResult<bool> {
        let stock = stock_param(c.stock)?;
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO campaigns (id, seller_id, name, kind, value, max_discount, min_spend, stock, starts_at_ms, \
             ends_at_ms, paused, all_events, all_tiers, funded_seller_pct, funded_platform_pct, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&c.id)
        .bind(&c.seller_id)
        .bind(&c.name)
        .bind(c.kind.name())
        .bind(c.terms.value)
        .bind(c.terms.max_discount)
        .bind(c.terms.min_spend)
        .bind(stock)
        .bind(c.starts_at_ms)
        .bind(c.ends_at_ms)
        .bind(i64::from(c.paused))
        .bind(i64::from(c.targets.events.is_none()))
        .bind(i64::from(c.targets.tiers.is_none()))
        .bind(i64::from(c.funded_by.seller_pct))
        .bind(i64::from(c.funded_by.platform_pct))
        .bind(c.created_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            // Dropping the transaction rolls it back; nothing was written.
            return Ok(false);
        }
        for (targets, table) in [(&c.targets.events, EVENT_TARGETS), (&c.targets.tiers, TIER_TARGETS)] {
            let Some(targets) = targets else { continue };
            Self::insert_targets(&mut tx, table, &c.id, targets).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_targets(
        tx: &mut AnyConnection,
        (table, column): (&str, &str),
        campaign: &str,
        targets: &[String],
    ) -> StoreResult<()> {
        let mut position = 0_i64;
        for chunk in targets.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO {table} (campaign_id, {column}, position) VALUES {} ON CONFLICT DO NOTHING",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for target in chunk {
                q = q.bind(campaign).bind(target).bind(position);
                position += 1;
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Each listed campaign's targets in one table, in their stored order.
    async fn targets_of(
        &self,
        (table, column): (&str, &str),
        ids: &[&str],
    ) -> StoreResult<HashMap<String, Vec<String>>> {
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in ids.chunks(INSERT_CHUNK) {
            let sql = format!(
                "SELECT campaign_id, {column} AS target FROM {table} WHERE campaign_id IN {} \
                 ORDER BY campaign_id, position",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                found.entry(row.try_get("campaign_id")?).or_default().push(row.try_get("target")?);
            }
        }
        Ok(found)
    }

    /// Rows to records, their target lists read in two queries.
    async fn with_targets(&self, rows: Vec<CampaignRow>) -> StoreResult<Vec<CampaignRecord>> {
        let listed = |all: fn(&CampaignRow) -> i64| -> Vec<&str> {
            rows.iter().filter(|r| all(r) == 0).map(|r| r.id.as_str()).collect()
        };
        let mut events = self.targets_of(EVENT_TARGETS, &listed(|r| r.all_events)).await?;
        let mut tiers = self.targets_of(TIER_TARGETS, &listed(|r| r.all_tiers)).await?;
        rows.into_iter()
            .map(|row| {
                // Absent rows under a 0 flag: an empty list, not "all".
                let e =
                    (!flag(&row.id, "all_events", row.all_events)?).then(|| events.remove(&row.id).unwrap_or_default());
                let t =
                    (!flag(&row.id, "all_tiers", row.all_tiers)?).then(|| tiers.remove(&row.id).unwrap_or_default());
                row.into_record(e, t)
            })
            .collect()
    }

    pub async fn campaign(&self, id: &str) -> StoreResult<Option<CampaignRecord>> {
        let rows =
            sqlx::query_as::<_, CampaignRow>(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns c WHERE c.id = $1"))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok(self.with_targets(rows).await?.pop())
    }

    /// A page of campaigns in id order, from after the `after` id; a seller's
    /// own, or every seller's (`None`, for admins).
    pub async fn campaigns(
        &self,
        seller: Option<&str>,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<CampaignRecord>> {
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if seller.is_some() {
            conditions.push(format!("c.seller_id = ${}", next()));
        }
        if after.is_some() {
            conditions.push(format!("c.id > ${}", next()));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns c {filter} ORDER BY c.id LIMIT ${}", next());
        let mut q = sqlx::query_as::<_, CampaignRow>(&sql);
        if let Some(seller) = seller {
            q = q.bind(seller);
        }
        if let Some(after) = after {
            q = q.bind(after);
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        self.with_targets(rows).await
    }

    /// The seller's campaigns for `event` (targeting it, or every event) that
    /// have not ended at `now_ms`, by start then id. Paused and not yet
    /// started ones are included: the caller says why they cannot be claimed.
    pub async fn live_campaigns(&self, seller: &str, event: &str, now_ms: i64) -> StoreResult<Vec<CampaignRecord>> {
        let rows = sqlx::query_as::<_, CampaignRow>(&format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns c WHERE c.seller_id = $1 AND c.ends_at_ms > $2 \
             AND (c.all_events = 1 OR EXISTS \
             (SELECT 1 FROM campaign_events t WHERE t.campaign_id = c.id AND t.event_id = $3)) \
             ORDER BY c.starts_at_ms, c.id"
        ))
        .bind(seller)
        .bind(now_ms)
        .bind(event)
        .fetch_all(&self.pool)
        .await?;
        self.with_targets(rows).await
    }

    /// Saves a campaign's paused flag, end and stock; refused, with nothing
    /// changed, when the new stock is below what was issued.
    pub async fn update_campaign(&self, was: &Campaign, c: &Campaign) -> StoreResult<Result<(), NotUpdated>> {
        let stock = stock_param(c.stock)?;
        let old_stock = stock_param(was.stock)?;
        // The condition is on the new stock, in the same statement: a claim
        // committing meanwhile cannot slip under it (the row is locked). The
        // old values make it a compare-and-set: two sellers' changes made at
        // once never mix.
        let done = sqlx::query(
            "UPDATE campaigns SET paused = $1, ends_at_ms = $2, stock = $3 \
             WHERE id = $4 AND issued <= COALESCE($5, issued) \
             AND paused = $6 AND ends_at_ms = $7 AND COALESCE(stock, -1) = $8",
        )
        .bind(i64::from(c.paused))
        .bind(c.ends_at_ms)
        .bind(stock)
        .bind(&c.id)
        .bind(stock)
        .bind(i64::from(was.paused))
        .bind(was.ends_at_ms)
        .bind(old_stock.unwrap_or(-1))
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let row = sqlx::query("SELECT issued, stock, paused, ends_at_ms FROM campaigns WHERE id = $1")
            .bind(&c.id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let (issued, now_stock): (i64, Option<i64>) = (row.try_get("issued")?, row.try_get("stock")?);
        let (paused, ends_at_ms): (i64, i64) = (row.try_get("paused")?, row.try_get("ends_at_ms")?);
        if now_stock != old_stock || paused != i64::from(was.paused) || ends_at_ms != was.ends_at_ms {
            return Ok(Err(NotUpdated::Changed));
        }
        Ok(Err(NotUpdated::BelowIssued(BelowIssued { issued: unsigned(&c.id, "issued", issued)? })))
    }

    /// Writes a batch of claims in one transaction; one outcome per claim,
    /// in input order. Never exceeds a campaign's stock, whoever else writes
    /// at the same time.
    pub async fn record_claims(&self, claims: &[Coupon]) -> StoreResult<Vec<Recorded>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        // Campaigns in one global order, so two writers lock their rows in
        // the same order and do not deadlock; within a campaign, input order
        // (first come, first served). The sort is stable.
        let mut order: Vec<usize> = (0..claims.len()).collect();
        order.sort_by(|&a, &b| claims[a].campaign_id.cmp(&claims[b].campaign_id));
        let mut out = vec![Recorded::UnknownCampaign; claims.len()];
        let mut tx = self.writer.begin().await?;
        for group in order.chunk_by(|&a, &b| claims[a].campaign_id == claims[b].campaign_id) {
            Self::record_campaign_claims(&mut tx, claims, group, &mut out).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// One campaign's claims of a batch (`group`: their indices in `claims`).
    async fn record_campaign_claims(
        tx: &mut AnyConnection,
        claims: &[Coupon],
        group: &[usize],
        out: &mut [Recorded],
    ) -> StoreResult<()> {
        let Some(&first) = group.first() else { return Ok(()) };
        let campaign = claims[first].campaign_id.as_str();
        // Lock the campaign row before touching its coupons: concurrent
        // writers of this campaign then run one after the other, so the
        // stock read here stays true until commit and no two wait on each
        // other's coupon rows. A write first also keeps SQLite from having
        // to upgrade a read snapshot (which fails rather than waits).
        let Some(row) = sqlx::query("UPDATE campaigns SET issued = issued WHERE id = $1 RETURNING stock, issued")
            .bind(campaign)
            .fetch_optional(&mut *tx)
            .await?
        else {
            // Also keeps the coupons' foreign key from failing the batch.
            group.iter().for_each(|&i| out[i] = Recorded::UnknownCampaign);
            return Ok(());
        };
        let stock: Option<i64> = row.try_get("stock")?;
        let issued: i64 = row.try_get("issued")?;
        let mut left = stock.map(|s| s - issued);
        let mut added = 0_i64;
        for &i in group {
            let c = &claims[i];
            let fits = left.is_none_or(|l| l > 0);
            let inserted = fits
                && sqlx::query(
                    "INSERT INTO coupons (id, campaign_id, user_id, claimed_ms, used_ms) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&c.id)
                .bind(&c.campaign_id)
                .bind(&c.user)
                .bind(c.claimed_ms)
                .bind(c.used_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
            out[i] = if inserted {
                added += 1;
                left = left.map(|l| l - 1);
                Recorded::Inserted
            } else {
                Self::why_not_inserted(tx, c, fits).await?
            };
        }
        if added > 0 {
            // The stock guard once more, in SQL; under the lock it holds.
            let done = sqlx::query(
                "UPDATE campaigns SET issued = issued + $1 WHERE id = $2 AND (stock IS NULL OR stock - issued >= $3)",
            )
            .bind(added)
            .bind(campaign)
            .bind(added)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Corrupt(format!("campaign {campaign:?} changed under its row lock")));
            }
        }
        Ok(())
    }

    /// Why a claim was not stored: its id is (a replay), its buyer has a
    /// coupon of the campaign, or, when it did not `fit`, the stock is out.
    /// A replay wins over the stock: a retried claim that did get in must
    /// hear so, even once the campaign sold out.
    async fn why_not_inserted(tx: &mut AnyConnection, c: &Coupon, fits: bool) -> StoreResult<Recorded> {
        let rows = sqlx::query("SELECT id FROM coupons WHERE id = $1 OR (campaign_id = $2 AND user_id = $3)")
            .bind(&c.id)
            .bind(&c.campaign_id)
            .bind(&c.user)
            .fetch_all(&mut *tx)
            .await?;
        let mut duplicate = false;
        for row in rows {
            if row.try_get::<String, _>("id")? == c.id {
                return Ok(Recorded::AlreadyThere);
            }
            duplicate = true;
        }
        match (duplicate, fits) {
            (true, _) => Ok(Recorded::Duplicate),
            (false, false) => Ok(Recorded::OverStock),
            (false, true) => Err(StoreError::Corrupt(format!("coupon {:?} conflicted with no stored coupon", c.id))),
        }
    }

    /// A buyer's coupons, oldest first.
    pub async fn coupons_of(&self, user: &str) -> StoreResult<Vec<Coupon>> {
        sqlx::query(
            "SELECT id, campaign_id, user_id, claimed_ms, used_ms FROM coupons WHERE user_id = $1 \
             ORDER BY claimed_ms, id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Coupon {
                id: r.try_get("id")?,
                campaign_id: r.try_get("campaign_id")?,
                user: r.try_get("user_id")?,
                claimed_ms: r.try_get("claimed_ms")?,
                used_ms: r.try_get("used_ms")?,
            })
        })
        .collect()
    }

    /// `(user, coupon id)` of every coupon of a campaign: what a claim
    /// adapter rebuilds its live count and buyers from.
    pub async fn claims_of(&self, campaign: &str) -> StoreResult<Vec<(String, String)>> {
        sqlx::query("SELECT user_id, id FROM coupons WHERE campaign_id = $1 ORDER BY claimed_ms, id")
            .bind(campaign)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("user_id")?, r.try_get("id")?)))
            .collect()
    }

    /// Spends `user`'s coupon at `now_ms`; whether it did (not when it is
    /// someone else's, unknown, or spent already).
    pub async fn mark_coupon_used(&self, coupon_id: &str, user: &str, now_ms: i64) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("UPDATE coupons SET used_ms = $1 WHERE id = $2 AND user_id = $3 AND used_ms IS NULL")
            .bind(now_ms)
            .bind(coupon_id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        // Counted on the campaign, so reading its figures costs no scan.
        sqlx::query("UPDATE campaigns SET used = used + 1 WHERE id = (SELECT campaign_id FROM coupons WHERE id = $1)")
            .bind(coupon_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    //! The coupon part of the SQL contract, on SQLite and on Postgres, one
    //! test per scenario and backend (as `sql_contract!` in the parent).

    use std::time::Instant;

    use super::*;
    use crate::store::sql::tests::TestDb;

    const NOW: i64 = 1_700_000_000_000;
    const DAY: i64 = 86_400_000;

    macro_rules! coupons_contract {
        ($make:expr) => {
            crate::store::sql::tests::on_each_database!($make;
                a_campaign_round_trips_exactly,
                a_duplicate_campaign_id_is_refused_and_writes_nothing,
                pages_follow_the_cursor_within_the_seller,
                claims_issue_exactly_the_stock,
                a_replay_is_already_there_and_a_second_coupon_a_duplicate,
                concurrent_batches_never_exceed_the_stock,
                concurrent_replays_and_second_coupons_resolve_once,
                a_stock_below_issued_is_refused_and_changes_nothing,
                live_campaigns_filter_by_event_and_end,
                a_coupon_is_used_once_and_only_by_its_owner,
                odd_ids_round_trip,
                an_unknown_kind_is_corrupt,
                a_batch_of_2000_claims_commits_at_once,
            );
        };
    }

    mod sqlite {
        coupons_contract!(super::TestDb::sqlite());
    }

    mod postgres {
        coupons_contract!(super::TestDb::postgres());
    }

    const SELLER: &str = "s-1";

    /// A fresh store with sellers `s-1` and `s-2`.
    async fn store(db: &TestDb) -> SqlStore {
        let store = db.store().await;
        store.insert_seller(SELLER, "One", NOW).await.unwrap();
        store.insert_seller("s-2", "Two", NOW).await.unwrap();
        store
    }

    /// A fixed-amount campaign of `s-1`, open for a day, every event and tier.
    fn campaign(id: &str, stock: Option<u64>) -> Campaign {
        Campaign {
            id: id.into(),
            seller_id: SELLER.into(),
            name: format!("campaign {id}"),
            kind: kind_named("fixed").unwrap(),
            terms: Terms { value: 1_000, max_discount: None, min_spend: 0 },
            stock,
            starts_at_ms: NOW,
            ends_at_ms: NOW + DAY,
            paused: false,
            targets: Targets::default(),
            funded_by: FundedBy { seller_pct: 100, platform_pct: 0 },
            created_ms: NOW,
        }
    }

    async fn stored(store: &SqlStore, c: &Campaign) -> Campaign {
        assert!(store.insert_campaign(c).await.unwrap(), "a new campaign id");
        c.clone()
    }

    fn claim(campaign: &str, user: &str, n: usize) -> Coupon {
        Coupon {
            id: format!("cp-{campaign}-{user}-{n}"),
            campaign_id: campaign.into(),
            user: user.into(),
            claimed_ms: NOW + i64::try_from(n).unwrap(),
            used_ms: None,
        }
    }

    fn count(outcomes: &[Recorded], which: Recorded) -> usize {
        outcomes.iter().filter(|r| **r == which).count()
    }

    async fn record(store: &SqlStore, id: &str) -> CampaignRecord {
        store.campaign(id).await.unwrap().expect("the campaign is stored")
    }

    async fn a_campaign_round_trips_exactly(db: &TestDb) {
        let store = store(db).await;
        let plain = stored(&store, &campaign("c-plain", None)).await;
        let targeted = stored(
            &store,
            &Campaign {
                kind: kind_named("percent").unwrap(),
                terms: Terms { value: 15, max_discount: Some(5_000), min_spend: 20_000 },
                stock: Some(100),
                paused: true,
                targets: Targets {
                    events: Some(vec!["e-9".into(), "e-1".into(), "e-5".into()]),
                    tiers: Some(vec!["vip".into()]),
                },
                funded_by: FundedBy { seller_pct: 30, platform_pct: 70 },
                ..campaign("c-targeted", None)
            },
        )
        .await;
        let none = stored(
            &store,
            &Campaign { targets: Targets { events: Some(vec![]), tiers: None }, ..campaign("c-none", Some(0)) },
        )
        .await;
        for c in [plain, targeted, none] {
            let got = record(&store, &c.id).await;
            assert_eq!(got, CampaignRecord { campaign: c, issued: 0, used: 0 });
        }
        assert!(store.campaign("c-nope").await.unwrap().is_none());
        store.close().await;
    }

    async fn a_duplicate_campaign_id_is_refused_and_writes_nothing(db: &TestDb) {
        let store = store(db).await;
        let first = stored(&store, &campaign("c-1", Some(3))).await;
        let again = Campaign {
            name: "another".into(),
            stock: Some(9),
            targets: Targets { events: Some(vec!["e-1".into()]), tiers: Some(vec!["std".into()]) },
            ..first.clone()
        };
        assert!(!store.insert_campaign(&again).await.unwrap());
        assert_eq!(record(&store, "c-1").await.campaign, first, "the first one stands, targets and all");
        assert_eq!(store.live_campaigns(SELLER, "e-1", NOW).await.unwrap().len(), 1);
        let unknown_seller = Campaign { seller_id: "s-nope".into(), ..campaign("c-2", None) };
        assert!(store.insert_campaign(&unknown_seller).await.is_err());
        assert!(store.campaign("c-2").await.unwrap().is_none());
        store.close().await;
    }

    async fn pages_follow_the_cursor_within_the_seller(db: &TestDb) {
        let store = store(db).await;
        for id in ["c-5", "c-1", "c-3", "c-2", "c-4"] {
            stored(&store, &campaign(id, None)).await;
        }
        for id in ["c-0", "c-35"] {
            stored(&store, &Campaign { seller_id: "s-2".into(), ..campaign(id, None) }).await;
        }
        let ids = |page: Vec<CampaignRecord>| page.into_iter().map(|r| r.campaign.id).collect::<Vec<_>>();
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = ids(store.campaigns(Some(SELLER), 2, after.as_deref()).await.unwrap());
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            pages.push(page);
        }
        assert_eq!(pages, [vec!["c-1", "c-2"], vec!["c-3", "c-4"], vec!["c-5"]]);
        assert_eq!(ids(store.campaigns(Some("s-2"), 10, None).await.unwrap()), ["c-0", "c-35"]);
        assert_eq!(
            ids(store.campaigns(None, 10, None).await.unwrap()),
            ["c-0", "c-1", "c-2", "c-3", "c-35", "c-4", "c-5"],
            "an admin sees every seller's"
        );
        assert_eq!(ids(store.campaigns(None, 3, Some("c-3")).await.unwrap()), ["c-35", "c-4", "c-5"]);
        assert!(store.campaigns(None, 0, None).await.unwrap().is_empty());
        assert!(store.campaigns(Some("s-nope"), 10, None).await.unwrap().is_empty());
        store.close().await;
    }

    async fn claims_issue_exactly_the_stock(db: &TestDb) {
        let store = store(db).await;
        stored(&store, &campaign("c-5", Some(5))).await;
        stored(&store, &campaign("c-all", None)).await;
        // Interleaved with an unlimited campaign and an unknown one: the
        // outcomes come back in input order all the same.
        let mut batch = Vec::new();
        for n in 0..8 {
            batch.push(claim("c-5", &format!("u{n}"), n));
            batch.push(claim("c-all", &format!("u{n}"), n));
        }
        batch.insert(3, claim("c-nope", "u0", 0));
        let got = store.record_claims(&batch).await.unwrap();
        let mut want: Vec<Recorded> = (0..8)
            .flat_map(|n| [if n < 5 { Recorded::Inserted } else { Recorded::OverStock }, Recorded::Inserted])
            .collect();
        want.insert(3, Recorded::UnknownCampaign);
        assert_eq!(got, want);
        assert_eq!(record(&store, "c-5").await.issued, 5);
        assert_eq!(record(&store, "c-all").await.issued, 8);
        let mut users: Vec<String> = store.claims_of("c-5").await.unwrap().into_iter().map(|(u, _)| u).collect();
        users.sort();
        assert_eq!(users, ["u0", "u1", "u2", "u3", "u4"], "first come, first served");
        let more = store.record_claims(&[claim("c-5", "u9", 9)]).await.unwrap();
        assert_eq!(more, [Recorded::OverStock]);
        assert_eq!(store.claims_of("c-5").await.unwrap().len(), 5);
        assert!(store.claims_of("c-nope").await.unwrap().is_empty());
        assert!(store.record_claims(&[]).await.unwrap().is_empty());
        store.close().await;
    }

    async fn a_replay_is_already_there_and_a_second_coupon_a_duplicate(db: &TestDb) {
        let store = store(db).await;
        stored(&store, &campaign("c-2", Some(2))).await;
        let (a, b) = (claim("c-2", "u1", 1), claim("c-2", "u2", 2));
        assert_eq!(
            store.record_claims(&[a.clone(), a.clone()]).await.unwrap(),
            [Recorded::Inserted, Recorded::AlreadyThere]
        );
        let second_for_u1 = claim("c-2", "u1", 7);
        assert_eq!(
            store.record_claims(&[second_for_u1.clone(), b.clone(), a.clone()]).await.unwrap(),
            [Recorded::Duplicate, Recorded::Inserted, Recorded::AlreadyThere]
        );
        // Sold out now: a replay still hears it got in, a second coupon is
        // still a duplicate, and only a newcomer is over the stock.
        assert_eq!(
            store.record_claims(&[b.clone(), second_for_u1, claim("c-2", "u3", 3)]).await.unwrap(),
            [Recorded::AlreadyThere, Recorded::Duplicate, Recorded::OverStock]
        );
        assert_eq!(record(&store, "c-2").await.issued, 2);
        assert_eq!(store.coupons_of("u1").await.unwrap(), [a]);
        assert_eq!(store.coupons_of("u2").await.unwrap(), [b]);
        assert!(store.coupons_of("u3").await.unwrap().is_empty());
        store.close().await;
    }

    /// Eight writers on two stores (two pools: on Postgres, as two nodes
    /// would), five batches each on two campaigns of stock 50: `claims(w, b,
    /// k)` names writer `w`'s batch `b`'s `k`-th pair, and writers for whom
    /// `reversed(w)` send their batches backwards. Every claim with what it
    /// came to, and the stores to check (the first; close it afterwards).
    async fn race(
        db: &TestDb,
        claims: fn(usize, usize, usize) -> [Coupon; 2],
        reversed: fn(usize) -> bool,
    ) -> (SqlStore, Vec<(Coupon, Recorded)>) {
        let setup = store(db).await;
        stored(&setup, &campaign("c-a", Some(50))).await;
        stored(&setup, &campaign("c-b", Some(50))).await;
        let stores = [db.store().await, db.store().await];
        let mut tasks = Vec::new();
        for w in 0..8_usize {
            let store = stores[w % 2].clone();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for b in 0..5_usize {
                    let mut batch: Vec<Coupon> = (0..5_usize).flat_map(|k| claims(w, b, k)).collect();
                    if reversed(w) {
                        batch.reverse();
                    }
                    let got = store.record_claims(&batch).await.unwrap();
                    outcomes.extend(batch.into_iter().zip(got));
                }
                outcomes
            }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.extend(t.await.unwrap());
        }
        for s in stores {
            s.close().await;
        }
        (setup, outcomes)
    }

    /// Writers each naming the two campaigns in their own order.
    async fn concurrent_batches_never_exceed_the_stock(db: &TestDb) {
        let (setup, outcomes) = race(
            db,
            |w, b, k| {
                let n = (w * 5 + b) * 5 + k;
                [claim("c-a", &format!("u{n}"), n), claim("c-b", &format!("u{n}"), n)]
            },
            |w| w % 2 == 1,
        )
        .await;
        assert_eq!(outcomes.len(), 400, "200 claims per campaign");
        for id in ["c-a", "c-b"] {
            let mine: Vec<Recorded> = outcomes.iter().filter(|(c, _)| c.campaign_id == id).map(|(_, r)| *r).collect();
            assert_eq!(count(&mine, Recorded::Inserted), 50);
            assert_eq!(count(&mine, Recorded::OverStock), 150);
            assert_eq!(setup.claims_of(id).await.unwrap().len(), 50);
            assert_eq!(record(&setup, id).await.issued, 50);
        }
        setup.close().await;
    }

    /// Writers racing on the same buyers: half of them replay the others'
    /// claims (same coupon ids), half claim a second coupon (new ids).
    async fn concurrent_replays_and_second_coupons_resolve_once(db: &TestDb) {
        let (setup, outcomes) = race(
            db,
            |w, b, k| {
                let n = ((w % 4) * 5 + b) * 5 + k;
                let user = format!("u{n}");
                let again = if w >= 4 && w % 2 == 1 { n + 1_000 } else { n };
                [claim("c-a", &user, again), claim("c-b", &user, again)]
            },
            |w| w % 3 == 1,
        )
        .await;
        for id in ["c-a", "c-b"] {
            let mine: Vec<&(Coupon, Recorded)> = outcomes.iter().filter(|(c, _)| c.campaign_id == id).collect();
            assert_eq!(mine.len(), 200);
            let inserted: Vec<&Coupon> =
                mine.iter().filter(|(_, r)| *r == Recorded::Inserted).map(|(c, _)| c).collect();
            assert_eq!(inserted.len(), 50);
            let claims: HashMap<String, String> = setup.claims_of(id).await.unwrap().into_iter().collect();
            assert_eq!(claims.len(), 50, "one coupon per buyer, exactly the stock");
            assert_eq!(record(&setup, id).await.issued, 50);
            for (c, r) in &mine {
                let want: &[Recorded] = match claims.get(&c.user) {
                    Some(stored) if *stored == c.id => &[Recorded::Inserted, Recorded::AlreadyThere],
                    Some(_) => &[Recorded::Duplicate],
                    None => &[Recorded::OverStock],
                };
                assert!(want.contains(r), "{c:?} came to {r:?}, not one of {want:?}");
            }
        }
        setup.close().await;
    }

    async fn a_stock_below_issued_is_refused_and_changes_nothing(db: &TestDb) {
        let store = store(db).await;
        let c = stored(&store, &campaign("c-1", Some(5))).await;
        let batch: Vec<Coupon> = (0..3).map(|n| claim("c-1", &format!("u{n}"), n)).collect();
        store.record_claims(&batch).await.unwrap();
        let lower = Campaign { stock: Some(2), paused: true, ends_at_ms: NOW + 2 * DAY, ..c.clone() };
        let below = Err(NotUpdated::BelowIssued(BelowIssued { issued: 3 }));
        assert_eq!(store.update_campaign(&c, &lower).await.unwrap(), below);
        assert_eq!(record(&store, "c-1").await, CampaignRecord { campaign: c.clone(), issued: 3, used: 0 });
        let exact = Campaign { stock: Some(3), ..lower.clone() };
        assert_eq!(store.update_campaign(&lower, &exact).await.unwrap(), Err(NotUpdated::Changed), "not as read");
        assert_eq!(store.update_campaign(&c, &exact).await.unwrap(), Ok(()));
        assert_eq!(record(&store, "c-1").await.campaign, exact);
        assert_eq!(store.record_claims(&[claim("c-1", "u9", 9)]).await.unwrap(), [Recorded::OverStock]);
        let unlimited = Campaign { stock: None, paused: false, ..exact.clone() };
        assert_eq!(store.update_campaign(&exact, &unlimited).await.unwrap(), Ok(()));
        assert_eq!(record(&store, "c-1").await.campaign, unlimited);
        assert_eq!(store.record_claims(&[claim("c-1", "u9", 9)]).await.unwrap(), [Recorded::Inserted]);
        let nope = campaign("c-nope", None);
        assert!(store.update_campaign(&nope, &nope).await.is_err());
        store.close().await;
    }

    async fn live_campaigns_filter_by_event_and_end(db: &TestDb) {
        let store = store(db).await;
        let events = |ids: &[&str]| Targets { events: Some(ids.iter().map(|s| s.to_string()).collect()), tiers: None };
        let all = stored(&store, &Campaign { starts_at_ms: NOW + 10, ..campaign("c-all", None) }).await;
        let mine =
            stored(&store, &Campaign { targets: events(&["e-2", "e-1"]), paused: true, ..campaign("c-e1", None) })
                .await;
        let later =
            stored(&store, &Campaign { starts_at_ms: NOW + DAY, ends_at_ms: NOW + 2 * DAY, ..campaign("c-a", None) })
                .await;
        stored(&store, &Campaign { targets: events(&["e-2"]), ..campaign("c-e2", None) }).await;
        stored(&store, &Campaign { targets: events(&[]), ..campaign("c-none", None) }).await;
        stored(&store, &Campaign { starts_at_ms: NOW - DAY, ends_at_ms: NOW, ..campaign("c-ended", None) }).await;
        stored(&store, &Campaign { seller_id: "s-2".into(), ..campaign("c-other", None) }).await;
        let ids = |got: Vec<CampaignRecord>| got.into_iter().map(|r| r.campaign).collect::<Vec<_>>();
        assert_eq!(ids(store.live_campaigns(SELLER, "e-1", NOW).await.unwrap()), [mine, all.clone(), later.clone()]);
        assert_eq!(ids(store.live_campaigns(SELLER, "e-3", NOW + DAY).await.unwrap()), [later]);
        assert_eq!(ids(store.live_campaigns("s-2", "e-1", NOW).await.unwrap()).len(), 1);
        assert!(store.live_campaigns(SELLER, "e-1", NOW + 2 * DAY).await.unwrap().is_empty());
        store.close().await;
    }

    async fn a_coupon_is_used_once_and_only_by_its_owner(db: &TestDb) {
        let store = store(db).await;
        stored(&store, &campaign("c-1", None)).await;
        let (a, b) = (claim("c-1", "u1", 1), claim("c-1", "u2", 2));
        store.record_claims(&[a.clone(), b.clone()]).await.unwrap();
        assert!(!store.mark_coupon_used(&a.id, "u2", NOW + 5).await.unwrap(), "not someone else's");
        assert!(!store.mark_coupon_used("cp-nope", "u1", NOW + 5).await.unwrap());
        assert!(store.mark_coupon_used(&a.id, "u1", NOW + 5).await.unwrap());
        assert!(!store.mark_coupon_used(&a.id, "u1", NOW + 6).await.unwrap(), "once");
        assert_eq!(store.coupons_of("u1").await.unwrap(), [Coupon { used_ms: Some(NOW + 5), ..a }]);
        assert_eq!(store.coupons_of("u2").await.unwrap(), [b]);
        let r = record(&store, "c-1").await;
        assert_eq!((r.issued, r.used), (2, 1));
        store.close().await;
    }

    async fn odd_ids_round_trip(db: &TestDb) {
        let store = store(db).await;
        let id = "c-'quoted', \"twice\"; ünï 😀";
        let c = stored(
            &store,
            &Campaign {
                name: "50% off — ½ price, 'really'".into(),
                targets: Targets { events: Some(vec!["e,1".into(), "e'2".into()]), tiers: Some(vec!["vip|a".into()]) },
                ..campaign(id, None)
            },
        )
        .await;
        assert_eq!(record(&store, id).await.campaign, c);
        assert_eq!(store.live_campaigns(SELLER, "e'2", NOW).await.unwrap().len(), 1);
        let users = ["auth0|1", "a,b", "it's \"me\"", "ünï😀", "%_\\", "a b"];
        let batch: Vec<Coupon> =
            users.iter().enumerate().map(|(n, u)| Coupon { id: format!("cp|{u}|{n}"), ..claim(id, u, n) }).collect();
        assert_eq!(count(&store.record_claims(&batch).await.unwrap(), Recorded::Inserted), users.len());
        for coupon in &batch {
            assert_eq!(store.coupons_of(&coupon.user).await.unwrap(), std::slice::from_ref(coupon));
        }
        let mut got = store.claims_of(id).await.unwrap();
        let mut want: Vec<(String, String)> = batch.iter().map(|c| (c.user.clone(), c.id.clone())).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(store.mark_coupon_used(&batch[0].id, "auth0|1", NOW).await.unwrap());
        store.close().await;
    }

    async fn an_unknown_kind_is_corrupt(db: &TestDb) {
        let store = store(db).await;
        stored(&store, &campaign("c-1", None)).await;
        sqlx::query("UPDATE campaigns SET kind = 'bogus' WHERE id = 'c-1'").execute(&store.pool).await.unwrap();
        assert!(matches!(store.campaign("c-1").await, Err(StoreError::Corrupt(_))));
        assert!(matches!(store.campaigns(None, 10, None).await, Err(StoreError::Corrupt(_))));
        store.close().await;
    }

    /// The largest batch a writer makes, timed (printed, not asserted).
    async fn a_batch_of_2000_claims_commits_at_once(db: &TestDb) {
        let store = store(db).await;
        stored(&store, &campaign("c-big", Some(1_500))).await;
        stored(&store, &campaign("c-free", None)).await;
        let batch: Vec<Coupon> =
            (0..2_000).map(|n| claim(if n % 4 == 0 { "c-free" } else { "c-big" }, &format!("u{n}"), n)).collect();
        let started = Instant::now();
        let got = store.record_claims(&batch).await.unwrap();
        let took = started.elapsed();
        let backend = store.pool.acquire().await.unwrap().backend_name().to_owned();
        println!("{backend}: record_claims of {} claims: {took:?}", batch.len());
        assert_eq!(count(&got, Recorded::Inserted), 2_000);
        let started = Instant::now();
        let again = store.record_claims(&batch).await.unwrap();
        println!("{backend}: record_claims of {} replays: {:?}", batch.len(), started.elapsed());
        assert_eq!(count(&again, Recorded::AlreadyThere), 2_000);
        assert_eq!(record(&store, "c-big").await.issued, 1_500);
        store.close().await;
    }
}
