//! Settlement in the SQL store: fee plans, statements, the ledger history
//! a statement is worked out from, and the close that fixes a statement's
//! figures and claims its ledger entries.

use qt_protocol::statements::StatementStatus;
use sqlx::Row;

use super::orders::{parameter_list, parse_cursor};
use super::{BadCursor, SqlStore};
use crate::domain::settlement::{Entry, EntryKind, FeePlan, Line, Totals};
use crate::store::StoreResult;

/// A stored statement; its figures are meaningful once it is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRecord {
    pub id: String,
    pub seller_id: String,
    /// `None`: every event of the seller.
    pub event_id: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub status: StatementStatus,
    pub currency: String,
    pub created_ms: i64,
    pub closed_ms: Option<i64>,
    pub totals: Totals,
}

/// A ledger entry with what settlement needs beside it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub entry: Entry,
    pub currency: String,
    /// The closed statement that settled it.
    pub statement_id: Option<String>,
}

/// Lines per INSERT: 64 rows of 15 columns stay below SQLite's oldest
/// limit of 999 parameters.
const LINES_PER_INSERT: usize = 64;

const STATEMENT_COLUMNS: &str = "id, seller_id, event_id, from_ms, to_ms, status, currency, created_ms, closed_ms, \
     orders, tickets, gross, discounts_seller, discounts_platform, fees, fee_clawbacks, refunds, net";

const LINE_COLUMNS: &str = "entry_id, event_id, order_id, kind, at_ms, tickets, gross, discounts_seller, \
     discounts_platform, fees, fee_clawbacks, refunds, net";

fn statement(r: &sqlx::any::AnyRow) -> Result<StatementRecord, sqlx::Error> {
    let event: String = r.try_get("event_id")?;
    let status: String = r.try_get("status")?;
    Ok(StatementRecord {
        id: r.try_get("id")?,
        seller_id: r.try_get("seller_id")?,
        event_id: Some(event).filter(|e| !e.is_empty()),
        from_ms: r.try_get("from_ms")?,
        to_ms: r.try_get("to_ms")?,
        status: StatementStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown statement status {status:?}").into()))?,
        currency: r.try_get("currency")?,
        created_ms: r.try_get("created_ms")?,
        closed_ms: r.try_get("closed_ms")?,
        totals: Totals {
            orders: r.try_get("orders")?,
            tickets: r.try_get("tickets")?,
            gross: r.try_get("gross")?,
            discounts_seller: r.try_get("discounts_seller")?,
            discounts_platform: r.try_get("discounts_platform")?,
            fees: r.try_get("fees")?,
            fee_clawbacks: r.try_get("fee_clawbacks")?,
            refunds: r.try_get("refunds")?,
            net: r.try_get("net")?,
        },
    })
}

fn line(r: &sqlx::any::AnyRow) -> Result<Line, sqlx::Error> {
    let kind: String = r.try_get("kind")?;
    Ok(Line {
        entry: r.try_get("entry_id")?,
        event: r.try_get("event_id")?,
        order: r.try_get("order_id")?,
        kind: if kind == EntryKind::Refund.as_str() { EntryKind::Refund.as_str() } else { EntryKind::Sale.as_str() },
        at_ms: r.try_get("at_ms")?,
        tickets: r.try_get("tickets")?,
        gross: r.try_get("gross")?,
        discounts_seller: r.try_get("discounts_seller")?,
        discounts_platform: r.try_get("discounts_platform")?,
        fees: r.try_get("fees")?,
        fee_clawbacks: r.try_get("fee_clawbacks")?,
        refunds: r.try_get("refunds")?,
        net: r.try_get("net")?,
    })
}

/// A page cursor: where the last statement of the page sits in the list's
/// `(created_ms, id)` order.
fn cursor_of(s: &StatementRecord) -> String {
    format!("{}:{}", s.created_ms, s.id)
}

impl SqlStore {
    /// The seller's own fee plan; `None` when it has none (or is unknown).
    pub async fn fee_plan(&self, seller: &str) -> StoreResult<Option<FeePlan>> {
        let row =
            sqlx::query("SELECT fee_percent_bp, fee_fixed_per_ticket, fee_min_per_order FROM sellers WHERE id = $1")
                .bind(seller)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let percent: Option<i64> = row.try_get("fee_percent_bp")?;
        let fixed: Option<i64> = row.try_get("fee_fixed_per_ticket")?;
        let minimum: Option<i64> = row.try_get("fee_min_per_order")?;
        Ok(match (percent, fixed, minimum) {
            (Some(p), Some(fixed_per_ticket), Some(min_per_order)) => {
                Some(FeePlan { percent_bp: u32::try_from(p).unwrap_or(0), fixed_per_ticket, min_per_order })
            }
            _ => None,
        })
    }

    /// Sets the seller's fee plan (a checked one); whether the seller exists.
    pub async fn set_fee_plan(&self, seller: &str, plan: &FeePlan) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE sellers SET fee_percent_bp = $1, fee_fixed_per_ticket = $2, fee_min_per_order = $3 WHERE id = $4",
        )
        .bind(i64::from(plan.percent_bp))
        .bind(plan.fixed_per_ticket)
        .bind(plan.min_per_order)
        .bind(seller)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores `s` (open, figures zero) unless the seller has a statement
    /// for the same event and period; either way, that statement and
    /// whether it is new.
    pub async fn insert_statement(&self, s: &StatementRecord) -> StoreResult<(StatementRecord, bool)> {
        let event = s.event_id.as_deref().unwrap_or("");
        let done = sqlx::query(
            "INSERT INTO statements (id, seller_id, event_id, from_ms, to_ms, status, currency, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (seller_id, event_id, from_ms, to_ms) DO NOTHING",
        )
        .bind(&s.id)
        .bind(&s.seller_id)
        .bind(event)
        .bind(s.from_ms)
        .bind(s.to_ms)
        .bind(StatementStatus::Open.as_str())
        .bind(&s.currency)
        .bind(s.created_ms)
        .execute(&self.writer)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {STATEMENT_COLUMNS} FROM statements \
             WHERE seller_id = $1 AND event_id = $2 AND from_ms = $3 AND to_ms = $4"
        ))
        .bind(&s.seller_id)
        .bind(event)
        .bind(s.from_ms)
        .bind(s.to_ms)
        .fetch_one(&self.writer)
        .await?;
        Ok((statement(&row)?, done.rows_affected() == 1))
    }

    pub async fn statement(&self, id: &str) -> StoreResult<Option<StatementRecord>> {
        let row = sqlx::query(&format!("SELECT {STATEMENT_COLUMNS} FROM statements WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(statement).transpose()?)
    }

    /// Statements of `seller` (every seller's when `None`), oldest first,
    /// keyset-paged.
    pub async fn statements_of(
        &self,
        seller: Option<&str>,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Result<(Vec<StatementRecord>, Option<String>), BadCursor>> {
        let after = match after.map(parse_cursor) {
            None => None,
            Some(None) => return Ok(Err(BadCursor)),
            Some(Some(at)) => Some(at),
        };
        let mut conditions = Vec::new();
        let mut n = 0;
        if seller.is_some() {
            n += 1;
            conditions.push(format!("seller_id = ${n}"));
        }
        if after.is_some() {
            conditions.push(format!("(created_ms, id) > (${}, ${})", n + 1, n + 2));
            n += 2;
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql =
            format!("SELECT {STATEMENT_COLUMNS} FROM statements {filter} ORDER BY created_ms, id LIMIT ${}", n + 1);
        let mut q = sqlx::query(&sql);
        if let Some(seller) = seller {
            q = q.bind(seller);
        }
        if let Some((created_ms, id)) = after {
            q = q.bind(created_ms).bind(id);
        }
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        // One more than asked: whether there is a next page at all.
        let rows = q.bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1).fetch_all(&self.pool).await?;
        let mut page = rows.iter().map(statement).collect::<Result<Vec<_>, _>>()?;
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more { page.last().map(cursor_of) } else { None };
        Ok(Ok((page, next)))
    }

    /// Every ledger entry of the seller (of one event, or all) before
    /// `to_ms`, in time order: a statement's entries and the history its
    /// refunds need.
    pub async fn settlement_history(
        &self,
        seller: &str,
        event: Option<&str>,
        to_ms: i64,
    ) -> StoreResult<Vec<HistoryEntry>> {
        let by_event = if event.is_some() { "AND event_id = $3" } else { "" };
        let sql = format!(
            "SELECT outbox_id, event_id, order_id, kind, tickets, gross, discount_seller, discount_platform, \
             currency, at_ms, statement_id FROM ledger_entries \
             WHERE seller_id = $1 AND at_ms < $2 {by_event} \
             ORDER BY at_ms, CASE kind WHEN 'sale' THEN 0 ELSE 1 END, outbox_id"
        );
        let mut q = sqlx::query(&sql).bind(seller).bind(to_ms);
        if let Some(event) = event {
            q = q.bind(event);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            // The ledger signs refunds negative; settlement reads what
            // they give back.
            let (kind, sign) =
                if kind == EntryKind::Refund.as_str() { (EntryKind::Refund, -1) } else { (EntryKind::Sale, 1) };
            out.push(HistoryEntry {
                entry: Entry {
                    id: r.try_get("outbox_id")?,
                    event: r.try_get("event_id")?,
                    order: r.try_get("order_id")?,
                    kind,
                    at_ms: r.try_get("at_ms")?,
                    tickets: sign * r.try_get::<i64, _>("tickets")?,
                    gross: sign * r.try_get::<i64, _>("gross")?,
                    discount_seller: sign * r.try_get::<i64, _>("discount_seller")?,
                    discount_platform: sign * r.try_get::<i64, _>("discount_platform")?,
                },
                currency: r.try_get("currency")?,
                statement_id: r.try_get("statement_id")?,
            });
        }
        Ok(out)
    }

    /// The fee each sale of the seller (of one event, or all) was settled
    /// with, by ledger entry, for the sales a closed statement holds.
    pub async fn settled_sale_fees(
        &self,
        seller: &str,
        event: Option<&str>,
    ) -> StoreResult<std::collections::HashMap<String, i64>> {
        let by_event = if event.is_some() { "AND e.event_id = $3" } else { "" };
        let sql = format!(
            "SELECT l.entry_id, l.fees FROM statement_lines l \
             JOIN ledger_entries e ON e.outbox_id = l.entry_id AND e.statement_id = l.statement_id \
             WHERE e.seller_id = $1 AND l.kind = $2 {by_event}"
        );
        let mut q = sqlx::query(&sql).bind(seller).bind(EntryKind::Sale.as_str());
        if let Some(event) = event {
            q = q.bind(event);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("entry_id")?, r.try_get("fees")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The closed statements of the seller: `(event or every event, from, to)`.
    pub async fn closed_periods(&self, seller: &str) -> StoreResult<Vec<(Option<String>, i64, i64)>> {
        let rows = sqlx::query("SELECT event_id, from_ms, to_ms FROM statements WHERE seller_id = $1 AND status = $2")
            .bind(seller)
            .bind(StatementStatus::Closed.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let event: String = r.try_get("event_id")?;
                Ok((Some(event).filter(|e| !e.is_empty()), r.try_get("from_ms")?, r.try_get("to_ms")?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Closes the open statement `id` with `lines` and their totals, and
    /// claims the lines' ledger entries for it, all or nothing. `None` when
    /// it is not open any more; `Some(false)` when another statement
    /// claimed one of the entries meanwhile (nothing is written).
    pub async fn close_statement(&self, id: &str, lines: &[Line], now_ms: i64) -> StoreResult<Option<bool>> {
        let t = Totals::of(lines);
        let mut tx = self.writer.begin().await?;
        // One close per seller at a time: two overlapping closes would
        // otherwise lock the same ledger rows in different orders.
        sqlx::query("UPDATE sellers SET name = name WHERE id = (SELECT seller_id FROM statements WHERE id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "UPDATE statements SET status = $1, closed_ms = $2, orders = $3, tickets = $4, gross = $5, \
             discounts_seller = $6, discounts_platform = $7, fees = $8, fee_clawbacks = $9, refunds = $10, net = $11 \
             WHERE id = $12 AND status = $13",
        )
        .bind(StatementStatus::Closed.as_str())
        .bind(now_ms)
        .bind(t.orders)
        .bind(t.tickets)
        .bind(t.gross)
        .bind(t.discounts_seller)
        .bind(t.discounts_platform)
        .bind(t.fees)
        .bind(t.fee_clawbacks)
        .bind(t.refunds)
        .bind(t.net)
        .bind(id)
        .bind(StatementStatus::Open.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        for (k, chunk) in lines.chunks(LINES_PER_INSERT).enumerate() {
            let sql = format!(
                "INSERT INTO statement_lines (statement_id, {LINE_COLUMNS}, position) VALUES {}",
                super::placeholders(chunk.len(), 15)
            );
            let mut q = sqlx::query(&sql);
            for (i, l) in chunk.iter().enumerate() {
                q = q
                    .bind(id)
                    .bind(&l.entry)
                    .bind(&l.event)
                    .bind(&l.order)
                    .bind(l.kind)
                    .bind(l.at_ms)
                    .bind(l.tickets)
                    .bind(l.gross)
                    .bind(l.discounts_seller)
                    .bind(l.discounts_platform)
                    .bind(l.fees)
                    .bind(l.fee_clawbacks)
                    .bind(l.refunds)
                    .bind(l.net)
                    .bind(i64::try_from(k * LINES_PER_INSERT + i).unwrap_or(i64::MAX));
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in lines.chunks(500) {
            let sql = format!(
                "UPDATE ledger_entries SET statement_id = $1 WHERE statement_id IS NULL AND outbox_id IN {}",
                parameter_list(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(id);
            for l in chunk {
                q = q.bind(&l.entry);
            }
            if q.execute(&mut *tx).await?.rows_affected() != chunk.len() as u64 {
                return Ok(Some(false));
            }
        }
        tx.commit().await?;
        Ok(Some(true))
    }

    /// The lines a closed statement was closed with, in their order.
    pub async fn statement_lines(&self, id: &str) -> StoreResult<Vec<Line>> {
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM statement_lines WHERE statement_id = $1 ORDER BY position"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(line).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    //! The statement part of the SQL contract, on SQLite and on Postgres.

    use super::*;
    use crate::domain::demo;
    use crate::store::sql::LedgerEntry;
    use crate::store::sql::tests::TestDb;

    const NOW: i64 = 1_700_000_000_000;
    const SELLER: &str = demo::SELLER_ID;
    const EVENT: &str = demo::EVENT_ID;

    macro_rules! statements_contract {
        ($make:expr) => {
            crate::store::sql::tests::on_each_database!($make;
                a_statement_is_made_once_per_period,
                closing_fixes_the_lines_and_claims_the_entries_once,
                the_history_reads_refunds_as_what_they_give_back,
                fee_plans_round_trip,
                pages_cover_every_statement_once,
            );
        };
    }

    mod sqlite {
        statements_contract!(super::TestDb::sqlite());
    }

    mod postgres {
        statements_contract!(super::TestDb::postgres());
    }

    async fn store(db: &TestDb) -> SqlStore {
        let store = db.store().await;
        assert!(store.seed_demo(NOW).await.unwrap());
        store
    }

    fn record(id: &str, from_ms: i64, to_ms: i64) -> StatementRecord {
        StatementRecord {
            id: id.into(),
            seller_id: SELLER.into(),
            event_id: Some(EVENT.into()),
            from_ms,
            to_ms,
            status: StatementStatus::Open,
            currency: "KRW".into(),
            created_ms: NOW,
            closed_ms: None,
            totals: Totals::default(),
        }
    }

    async fn ledger(store: &SqlStore, id: &str, order: &str, sign: i64, at_ms: i64) {
        let entry = LedgerEntry {
            outbox_id: id.into(),
            seller_id: SELLER.into(),
            event_id: EVENT.into(),
            order_id: order.into(),
            kind: if sign > 0 { "sale" } else { "refund" }.into(),
            tickets: sign * 2,
            gross: sign * 110_000,
            discount_seller: sign * 10_000,
            discount_platform: sign * 5_000,
            amount: sign * 95_000,
            currency: "KRW".into(),
            at_ms,
        };
        assert!(store.record_ledger(&entry, "ledger", at_ms).await.unwrap());
    }

    async fn a_statement_is_made_once_per_period(db: &TestDb) {
        let store = store(db).await;
        let (first, created) = store.insert_statement(&record("st-1", 0, NOW)).await.unwrap();
        assert!(created);
        assert_eq!(first.id, "st-1");
        // The same period under another id answers the first.
        let (again, created) = store.insert_statement(&record("st-2", 0, NOW)).await.unwrap();
        assert!(!created);
        assert_eq!(again, first);
        assert!(store.statement("st-2").await.unwrap().is_none());
        // Every event, or another period: a statement of its own.
        let all = StatementRecord { event_id: None, ..record("st-3", 0, NOW) };
        assert!(store.insert_statement(&all).await.unwrap().1);
        assert_eq!(store.statement("st-3").await.unwrap().unwrap().event_id, None);
        assert!(store.insert_statement(&record("st-4", 0, NOW + 1)).await.unwrap().1);
        store.close().await;
    }

    fn sale_line(entry: &str, order: &str) -> Line {
        Line {
            entry: entry.into(),
            event: EVENT.into(),
            order: order.into(),
            kind: "sale",
            at_ms: 5,
            tickets: 2,
            gross: 110_000,
            discounts_seller: 10_000,
            discounts_platform: 5_000,
            fees: 3_000,
            fee_clawbacks: 0,
            refunds: 0,
            net: 97_000,
        }
    }

    async fn closing_fixes_the_lines_and_claims_the_entries_once(db: &TestDb) {
        let store = store(db).await;
        ledger(&store, "ob-1", "o-1", 1, 5).await;
        ledger(&store, "ob-2", "o-2", 1, 6).await;
        store.insert_statement(&record("st-a", 0, 100)).await.unwrap();
        store.insert_statement(&StatementRecord { event_id: None, ..record("st-b", 0, 100) }).await.unwrap();
        let lines = vec![sale_line("ob-1", "o-1")];
        assert_eq!(store.close_statement("st-a", &lines, NOW).await.unwrap(), Some(true));
        let closed = store.statement("st-a").await.unwrap().unwrap();
        assert_eq!(closed.status, StatementStatus::Closed);
        assert_eq!(closed.closed_ms, Some(NOW));
        assert_eq!(closed.totals, Totals::of(&lines));
        assert_eq!(store.statement_lines("st-a").await.unwrap(), lines);
        // Closed once: a second close changes nothing.
        assert_eq!(store.close_statement("st-a", &[], NOW + 1).await.unwrap(), None);
        assert_eq!(store.statement_lines("st-a").await.unwrap(), lines);
        // Another statement cannot claim a settled entry: nothing of it is written.
        let both = vec![sale_line("ob-2", "o-2"), sale_line("ob-1", "o-1")];
        assert_eq!(store.close_statement("st-b", &both, NOW).await.unwrap(), Some(false));
        let b = store.statement("st-b").await.unwrap().unwrap();
        assert_eq!(b.status, StatementStatus::Open);
        assert!(store.statement_lines("st-b").await.unwrap().is_empty());
        let history = store.settlement_history(SELLER, None, 100).await.unwrap();
        let claimed: Vec<_> = history.iter().map(|h| (h.entry.id.as_str(), h.statement_id.as_deref())).collect();
        assert_eq!(claimed, vec![("ob-1", Some("st-a")), ("ob-2", None)]);
        // Many lines go in several statements, in order.
        for i in 0..150 {
            ledger(&store, &format!("x-{i}"), &format!("o-x{i}"), 1, 100 + i).await;
        }
        let many: Vec<Line> =
            (0..150).map(|i| Line { at_ms: 100 + i, ..sale_line(&format!("x-{i}"), &format!("o-x{i}")) }).collect();
        store.insert_statement(&record("st-c", 100, 200)).await.unwrap();
        assert_eq!(store.close_statement("st-c", &many, NOW).await.unwrap(), Some(true));
        assert_eq!(store.statement_lines("st-c").await.unwrap(), many);
        assert_eq!(store.closed_periods(SELLER).await.unwrap().len(), 2);
        store.close().await;
    }

    async fn the_history_reads_refunds_as_what_they_give_back(db: &TestDb) {
        let store = store(db).await;
        ledger(&store, "ob-1", "o-1", 1, 5).await;
        ledger(&store, "ob-2", "o-1", -1, 7).await;
        ledger(&store, "ob-3", "o-2", 1, 100).await;
        let history = store.settlement_history(SELLER, Some(EVENT), 100).await.unwrap();
        assert_eq!(history.len(), 2, "before `to` only");
        let refund = &history[1].entry;
        assert_eq!(refund.kind, EntryKind::Refund);
        assert_eq!((refund.tickets, refund.gross, refund.discount_seller), (2, 110_000, 10_000));
        assert_eq!(history[0].entry.kind, EntryKind::Sale);
        assert!(store.settlement_history(SELLER, Some("e-none"), 1_000).await.unwrap().is_empty());
        assert!(store.settlement_history("s-none", None, 1_000).await.unwrap().is_empty());
        store.close().await;
    }

    async fn fee_plans_round_trip(db: &TestDb) {
        let store = store(db).await;
        assert_eq!(store.fee_plan(SELLER).await.unwrap(), None);
        let plan = FeePlan { percent_bp: 250, fixed_per_ticket: 500, min_per_order: 1_000 };
        assert!(store.set_fee_plan(SELLER, &plan).await.unwrap());
        assert_eq!(store.fee_plan(SELLER).await.unwrap(), Some(plan));
        assert!(!store.set_fee_plan("s-none", &plan).await.unwrap());
        store.close().await;
    }

    async fn pages_cover_every_statement_once(db: &TestDb) {
        let store = store(db).await;
        for i in 0..7 {
            let r = StatementRecord { created_ms: NOW + i / 2, ..record(&format!("st-{i}"), i, i + 1) };
            store.insert_statement(&r).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = store.statements_of(Some(SELLER), 3, after.as_deref()).await.unwrap().unwrap();
            seen.extend(page.into_iter().map(|s| s.id));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (0..7).map(|i| format!("st-{i}")).collect::<Vec<_>>());
        assert!(store.statements_of(Some("s-none"), 3, None).await.unwrap().unwrap().0.is_empty());
        assert!(store.statements_of(None, 50, Some("bogus")).await.unwrap().is_err());
        store.close().await;
    }
}
