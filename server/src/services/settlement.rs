//! Settlement statements: a seller's period (of one event or all) worked
//! out from the ledger with the seller's fee plan; open statements follow
//! the ledger, a closed one keeps the figures and lines it closed with.
//!
//! Which ledger entries a statement holds: those not settled by a closed
//! statement, dated in its period; and those dated before it in a period a
//! closed statement covers (a refund that came after that statement
//! closed), so nothing is lost and nothing is settled twice.

use std::fmt::Write as _;
use std::sync::Arc;

use qt_protocol::statements::{NewStatement, Statement, StatementPage, StatementStatus};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::catalog::Catalog;
use super::coupons::{PAGE_MAX, Scope};
use crate::clock::{Clock, rfc3339};
use crate::domain::coupons::{FieldErrors, Fields};
use crate::domain::settlement::{FeePlan, Line, Totals, lines};
use crate::error::{AppError, AppResult};
use crate::store::sql::{BadCursor, SqlStore, StatementRecord};

/// Longest period one statement covers: a little over a year.
const MAX_PERIOD_MS: i64 = 400 * 86_400_000;
/// Closing retries this often when another close claims an entry meanwhile.
const CLOSE_ATTEMPTS: usize = 3;

pub struct SettlementService {
    pub sql: SqlStore,
    pub catalog: Arc<Catalog>,
    pub clock: Clock,
    /// The plan of a seller without one of its own.
    pub default_plan: FeePlan,
}

fn time_of(s: &str, field: &str, errs: &mut Fields) -> Option<i64> {
    let ms = OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok());
    if ms.is_none() {
        errs.insert(field.to_owned(), "must be an RFC 3339 time, such as 2030-01-31T00:00:00Z".into());
    }
    ms
}

fn view(s: &StatementRecord, t: &Totals) -> Statement {
    Statement {
        id: s.id.clone(),
        seller: s.seller_id.clone(),
        event: s.event_id.clone(),
        from: rfc3339(s.from_ms),
        to: rfc3339(s.to_ms),
        status: s.status,
        currency: s.currency.clone(),
        orders: t.orders,
        tickets: t.tickets,
        gross: t.gross,
        discounts_seller: t.discounts_seller,
        discounts_platform: t.discounts_platform,
        fees: t.fees,
        fee_clawbacks: t.fee_clawbacks,
        refunds: t.refunds,
        net: t.net,
    }
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break.
fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

impl SettlementService {
    /// Makes the statement of the seller's period, or finds the one made
    /// before for the same event and period (`false`).
    pub async fn create(&self, scope: Scope<'_>, body: &NewStatement) -> AppResult<(Statement, bool)> {
        let mut errs = Fields::new();
        let from = time_of(&body.from, "from", &mut errs);
        let to = time_of(&body.to, "to", &mut errs);
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                errs.insert("to".into(), "must be after from".into());
            } else if to - from > MAX_PERIOD_MS {
                errs.insert("to".into(), "must be at most 400 days after from".into());
            }
        }
        let (seller, currency) = match (&body.event, scope) {
            (Some(event), _) => match self.catalog.find(event) {
                Ok((_, e)) if scope.sees(&e.seller_id) => (e.seller_id.clone(), e.currency.clone()),
                // Another seller's event is as absent as a missing one.
                _ => return Err(AppError::NotFound("event")),
            },
            (None, Scope::Admin) => {
                errs.insert("event".into(), "an admin names the event (a seller's token covers all its events)".into());
                (String::new(), String::new())
            }
            (None, Scope::Seller(seller)) => {
                let mut currencies: Vec<String> =
                    self.catalog.all().iter().filter(|e| e.seller_id == seller).map(|e| e.currency.clone()).collect();
                currencies.sort();
                currencies.dedup();
                if currencies.len() > 1 {
                    errs.insert(
                        "event".into(),
                        "your events use several currencies; ask for one event at a time".into(),
                    );
                }
                (seller.to_owned(), currencies.pop().unwrap_or_else(|| "KRW".into()))
            }
        };
        let (Some(from), Some(to), true) = (from, to, errs.is_empty()) else {
            return Err(FieldErrors(errs).into());
        };
        let record = StatementRecord {
            id: format!("st-{:016x}", rand::random::<u64>()),
            seller_id: seller,
            event_id: body.event.clone(),
            from_ms: from,
            to_ms: to,
            status: StatementStatus::Open,
            currency,
            created_ms: self.clock.now_ms(),
            closed_ms: None,
            totals: Totals::default(),
        };
        let (stored, created) = self.sql.insert_statement(&record).await?;
        let lines = self.lines_of(&stored).await?;
        Ok((view(&stored, &Totals::of(&lines)), created))
    }

    async fn own(&self, scope: Scope<'_>, id: &str) -> AppResult<StatementRecord> {
        match self.sql.statement(id).await? {
            Some(s) if scope.sees(&s.seller_id) => Ok(s),
            _ => Err(AppError::NotFound("statement")),
        }
    }

    /// The statement's lines: as closed, or as the ledger has them now.
    async fn lines_of(&self, s: &StatementRecord) -> AppResult<Vec<Line>> {
        if s.status == StatementStatus::Closed {
            return Ok(self.sql.statement_lines(&s.id).await?);
        }
        let plan = self.sql.fee_plan(&s.seller_id).await?.unwrap_or(self.default_plan);
        let history = self.sql.settlement_history(&s.seller_id, s.event_id.as_deref(), s.to_ms).await?;
        let closed = self.sql.closed_periods(&s.seller_id).await?;
        let charged = self.sql.settled_sale_fees(&s.seller_id, s.event_id.as_deref()).await?;
        // One currency per statement: an event in another is another's.
        let entries: Vec<_> = history.iter().filter(|h| h.currency == s.currency).map(|h| h.entry.clone()).collect();
        let unsettled: std::collections::HashSet<&str> =
            history.iter().filter(|h| h.statement_id.is_none()).map(|h| h.entry.id.as_str()).collect();
        Ok(lines(
            &entries,
            &plan,
            |e| charged.get(&e.id).copied(),
            |e| {
                unsettled.contains(e.id.as_str())
                    && (e.at_ms >= s.from_ms
                        || closed.iter().any(|(event, from, to)| {
                            event.as_deref().is_none_or(|ev| ev == e.event) && (*from..*to).contains(&e.at_ms)
                        }))
            },
        ))
    }

    pub async fn get(&self, scope: Scope<'_>, id: &str) -> AppResult<Statement> {
        let s = self.own(scope, id).await?;
        let lines = self.lines_of(&s).await?;
        Ok(view(&s, &Totals::of(&lines)))
    }

    pub async fn list(&self, scope: Scope<'_>, limit: u32, after: Option<&str>) -> AppResult<StatementPage> {
        let limit = limit.clamp(1, PAGE_MAX);
        let (page, next) = self
            .sql
            .statements_of(scope.seller(), limit, after)
            .await?
            .map_err(|BadCursor| AppError::BadRequest("after: not a cursor this list gave".into()))?;
        let mut items = Vec::with_capacity(page.len());
        for s in &page {
            let lines = self.lines_of(s).await?;
            items.push(view(s, &Totals::of(&lines)));
        }
        Ok(StatementPage { items, next })
    }

    /// Closes the statement with its lines as they are now; closing a
    /// closed one answers it unchanged.
    pub async fn close(&self, scope: Scope<'_>, id: &str) -> AppResult<Statement> {
        for _ in 0..CLOSE_ATTEMPTS {
            let s = self.own(scope, id).await?;
            if s.status == StatementStatus::Closed {
                return Ok(view(&s, &s.totals));
            }
            let lines = self.lines_of(&s).await?;
            match self.sql.close_statement(&s.id, &lines, self.clock.now_ms()).await? {
                // Closed by another request meanwhile, or an entry was
                // claimed by another statement: look again.
                None | Some(false) => continue,
                Some(true) => {
                    let closed = self.own(scope, id).await?;
                    return Ok(view(&closed, &closed.totals));
                }
            }
        }
        Err(AppError::Conflict("the ledger kept changing while closing; try again".into()))
    }

    /// The statement's lines as CSV (one per sale and per refund), with a
    /// header; its figures are the columns' sums.
    pub async fn csv(&self, scope: Scope<'_>, id: &str) -> AppResult<String> {
        let s = self.own(scope, id).await?;
        let lines = self.lines_of(&s).await?;
        let mut out = String::from(
            "entry,event,order,kind,at,tickets,gross,discounts_seller,discounts_platform,fees,fee_clawbacks,refunds,net,currency\n",
        );
        for l in &lines {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                cell(&l.entry),
                cell(&l.event),
                cell(&l.order),
                l.kind,
                rfc3339(l.at_ms),
                l.tickets,
                l.gross,
                l.discounts_seller,
                l.discounts_platform,
                l.fees,
                l.fee_clawbacks,
                l.refunds,
                l.net,
                cell(&s.currency),
            );
        }
        Ok(out)
    }
}
