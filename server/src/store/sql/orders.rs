//! Orders, payments, sold seats, the transactional outbox, consumer
//! dedupe and the settlement ledger, on SQLite and Postgres.
//!
//! Every status change goes through `domain::orders::next_status` and is
//! written together with its transition row (time, reason) and, where it
//! announces something, its outbox row, in one transaction.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, FromRow, Row};
use thiserror::Error;

use super::{INSERT_CHUNK, SqlStore, placeholders};
use crate::domain::coupons::PricedLine;
use crate::domain::orders::{OrderStatus, Step, keeps_seats, kinds, next_status};
use crate::store::{StoreError, StoreResult};

/// Where an order's payment stands, apart from the order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// Never attempted.
    None,
    /// A confirm was sent; its outcome is not known yet.
    InFlight,
    Approved,
    Declined,
    /// The money must go back; the gateway has not confirmed the refund yet.
    RefundDue,
    Refunded,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::None => "none",
            PaymentState::InFlight => "in_flight",
            PaymentState::Approved => "approved",
            PaymentState::Declined => "declined",
            PaymentState::RefundDue => "refund_due",
            PaymentState::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentState> {
        [
            PaymentState::None,
            PaymentState::InFlight,
            PaymentState::Approved,
            PaymentState::Declined,
            PaymentState::RefundDue,
            PaymentState::Refunded,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: String,
    pub event_id: String,
    pub seller_id: String,
    pub user_id: String,
    pub status: OrderStatus,
    /// In the order the buyer's seats were priced.
    pub lines: Vec<PricedLine>,
    pub subtotal: i64,
    pub discount: i64,
    pub discount_seller: i64,
    pub discount_platform: i64,
    pub total: i64,
    pub currency: String,
    pub coupon_id: Option<String>,
    pub coupon_reason: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The buyer's payment key of the (one) payment attempt.
    pub payment_key: Option<String>,
    pub payment: PaymentState,
    pub payment_started_ms: Option<i64>,
    /// The gateway's key for the approved payment (refunds name it).
    pub gateway_key: Option<String>,
    pub paid_ms: Option<i64>,
    /// Why the order is where it is (a decline, an expiry, a refund).
    pub reason: Option<String>,
    pub updated_ms: i64,
}

impl OrderRecord {
    /// The order's seats, in its lines' order.
    pub fn seats(&self) -> Vec<String> {
        self.lines.iter().map(|l| l.seat.clone()).collect()
    }
}

/// One recorded status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub order_id: String,
    pub seq: i64,
    /// `None` for the order's creation.
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub at_ms: i64,
    pub reason: String,
}

/// What `insert_order` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    Inserted,
    /// The coupon is unknown, not the buyer's, used, or reserved by another
    /// pending order. Nothing was written.
    CouponUnavailable,
    /// The order to replace is no longer pending with no payment started.
    /// Nothing was written.
    ReplacedGone,
    /// The buyer has another pending order for the event (another tab
    /// checked out at the same time). Nothing was written.
    PendingExists,
}

/// What `complete_payment` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    /// Now paid: the sold seats, the order and the outbox row committed.
    Paid(OrderRecord),
    /// It was paid before; nothing changed.
    AlreadyPaid(OrderRecord),
    /// Another order holds these seats as sold; nothing changed.
    SeatsTaken(Vec<String>),
    /// The order cannot become paid (failed or refunded); nothing changed.
    NotPayable(OrderRecord),
}

/// An outbox row: one announced change, published by the relay in
/// `(created_ms, id)` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub event_id: String,
    pub order_id: String,
    /// `payment.completed`, `order.refunded`, `order.expired`,
    /// `order.failed`, `order.cancelled`.
    pub kind: String,
    /// JSON written by the service; the store does not read it.
    pub payload: String,
    pub created_ms: i64,
}

/// One settlement ledger line, fed by the outbox consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The outbox row that announced it: the ledger's dedupe key.
    pub outbox_id: String,
    pub seller_id: String,
    pub event_id: String,
    pub order_id: String,
    /// `sale` or `refund`.
    pub kind: String,
    pub tickets: i64,
    /// Ticket prices before discounts (negative for a refund).
    pub gross: i64,
    pub discount_seller: i64,
    pub discount_platform: i64,
    /// What the buyer paid (negative for a refund).
    pub amount: i64,
    pub currency: String,
    pub at_ms: i64,
}

/// A page cursor this store did not make (or made for no list it knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("this page cursor was not given out by this list")]
pub struct BadCursor;

/// Transition reasons the store writes itself.
const CHECKOUT: &str = "checkout";
const REPLACED: &str = "replaced by a new checkout";
const APPROVED: &str = "payment approved";
const APPROVED_LATE: &str = "payment approved after the order had expired; seats taken again";
const COUPON_SPENT_ELSEWHERE: &str =
    "; its coupon had been spent on another order meanwhile, and the discount was kept";
const EXPIRED: &str = "not paid in time";
const REFUNDED: &str = "refunded";

/// The order columns, in `OrderRow`'s order.
const ORDER_COLUMNS: &str = "id, event_id, seller_id, user_id, status, subtotal, discount, discount_seller, \
     discount_platform, total, currency, coupon_id, coupon_reason, created_ms, expires_ms, payment_key, \
     payment_state, payment_started_ms, gateway_key, paid_ms, reason, updated_ms";
const ORDER_COLUMN_COUNT: usize = 22;

#[derive(FromRow)]
struct OrderRow {
    id: String,
    event_id: String,
    seller_id: String,
    user_id: String,
    status: String,
    subtotal: i64,
    discount: i64,
    discount_seller: i64,
    discount_platform: i64,
    total: i64,
    currency: String,
    coupon_id: Option<String>,
    coupon_reason: Option<String>,
    created_ms: i64,
    expires_ms: i64,
    payment_key: Option<String>,
    payment_state: String,
    payment_started_ms: Option<i64>,
    gateway_key: Option<String>,
    paid_ms: Option<i64>,
    reason: Option<String>,
    updated_ms: i64,
}

fn corrupt(order: &str, what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Corrupt(format!("order {order:?}: {what} is {value:?}"))
}

fn status_named(order: &str, s: &str) -> StoreResult<OrderStatus> {
    OrderStatus::parse(s).ok_or_else(|| corrupt(order, "the status", s))
}

impl OrderRow {
    fn into_record(self, lines: Vec<PricedLine>) -> StoreResult<OrderRecord> {
        let status = status_named(&self.id, &self.status)?;
        let payment = PaymentState::parse(&self.payment_state)
            .ok_or_else(|| corrupt(&self.id, "the payment state", &self.payment_state))?;
        Ok(OrderRecord {
            id: self.id,
            event_id: self.event_id,
            seller_id: self.seller_id,
            user_id: self.user_id,
            status,
            lines,
            subtotal: self.subtotal,
            discount: self.discount,
            discount_seller: self.discount_seller,
            discount_platform: self.discount_platform,
            total: self.total,
            currency: self.currency,
            coupon_id: self.coupon_id,
            coupon_reason: self.coupon_reason,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            payment_key: self.payment_key,
            payment,
            payment_started_ms: self.payment_started_ms,
            gateway_key: self.gateway_key,
            paid_ms: self.paid_ms,
            reason: self.reason,
            updated_ms: self.updated_ms,
        })
    }
}

/// `($from, …, $(from + n - 1))`: a parenthesised list of `n` parameters.
pub(super) fn parameter_list(from: usize, n: usize) -> String {
    let cells: Vec<String> = (from..from + n).map(|i| format!("${i}")).collect();
    format!("({})", cells.join(", "))
}

/// A page cursor: where the last order of the page sits in the list's
/// `(created_ms, id)` order.
fn cursor_of(o: &OrderRecord) -> String {
    format!("{}:{}", o.created_ms, o.id)
}

/// Reads a `(created_ms, id)` cursor back; statements page the same way.
pub(super) fn parse_cursor(cursor: &str) -> Option<(i64, &str)> {
    let (created_ms, id) = cursor.split_once(':')?;
    Some((created_ms.parse().ok()?, id)).filter(|(_, id)| !id.is_empty())
}

fn ledger_entry(r: &sqlx::any::AnyRow) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        outbox_id: r.try_get("outbox_id")?,
        seller_id: r.try_get("seller_id")?,
        event_id: r.try_get("event_id")?,
        order_id: r.try_get("order_id")?,
        kind: r.try_get("kind")?,
        tickets: r.try_get("tickets")?,
        gross: r.try_get("gross")?,
        discount_seller: r.try_get("discount_seller")?,
        discount_platform: r.try_get("discount_platform")?,
        amount: r.try_get("amount")?,
        currency: r.try_get("currency")?,
        at_ms: r.try_get("at_ms")?,
    })
}

impl SqlStore {
    // ------------------------------------------------------------ checkout

    /// Stores a new order (pending, no payment, whatever `order` says of
    /// those), its lines and its first transition, and keeps its coupon for
    /// it; first cancels the order it `replaces` (the same buyer's, pending
    /// with no payment). All or nothing.
    pub async fn insert_order(
        &self,
        order: &OrderRecord,
        replaces: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<Inserted> {
        let mut tx = self.writer.begin().await?;
        if let Some(old_id) = replaces {
            let Some(old) = Self::lock_order(&mut tx, old_id).await? else {
                return Ok(Inserted::ReplacedGone);
            };
            let to = next_status(old.status, Step::Cancel).ok();
            let Some(to) = to.filter(|_| old.user_id == order.user_id && old.payment == PaymentState::None) else {
                return Ok(Inserted::ReplacedGone);
            };
            let after = OrderRecord { status: to, reason: Some(REPLACED.into()), updated_ms: now_ms, ..old.clone() };
            Self::save_order(&mut tx, &after).await?;
            Self::announce(&mut tx, old.status, &after, REPLACED, None).await?;
        }
        if let Some(coupon) = &order.coupon_id
            && !Self::reserve_coupon(&mut tx, coupon, &order.user_id, &order.id).await?
        {
            return Ok(Inserted::CouponUnavailable);
        }
        // One pending order per buyer and event (a partial unique index):
        // two tabs checking out at once get one order between them.
        let sql = format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES {} \
             ON CONFLICT (user_id, event_id) WHERE status = 'pending' DO NOTHING",
            parameter_list(1, ORDER_COLUMN_COUNT)
        );
        let inserted = sqlx::query(&sql)
            .bind(&order.id)
            .bind(&order.event_id)
            .bind(&order.seller_id)
            .bind(&order.user_id)
            .bind(OrderStatus::Pending.as_str())
            .bind(order.subtotal)
            .bind(order.discount)
            .bind(order.discount_seller)
            .bind(order.discount_platform)
            .bind(order.total)
            .bind(&order.currency)
            .bind(&order.coupon_id)
            .bind(&order.coupon_reason)
            .bind(order.created_ms)
            .bind(order.expires_ms)
            .bind(&order.payment_key)
            .bind(PaymentState::None.as_str())
            .bind(order.payment_started_ms)
            .bind(&order.gateway_key)
            .bind(order.paid_ms)
            .bind(&order.reason)
            .bind(order.updated_ms)
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() != 1 {
            return Ok(Inserted::PendingExists);
        }
        let mut position = 0_i64;
        for chunk in order.lines.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO order_lines (order_id, seat_id, tier_id, price, position) VALUES {}",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for line in chunk {
                q = q.bind(&order.id).bind(&line.seat).bind(&line.tier).bind(line.price).bind(position);
                position += 1;
            }
            q.execute(&mut *tx).await?;
        }
        Self::add_transition(&mut tx, &order.id, None, OrderStatus::Pending, now_ms, CHECKOUT).await?;
        // The buyer's other sockets hear of the new order.
        Self::insert_outbox(&mut tx, &crate::store::outbox::outbox_row(kinds::ORDER_CREATED, order, false, now_ms))
            .await?;
        tx.commit().await?;
        Ok(Inserted::Inserted)
    }

    /// Keeps `user`'s coupon for `order`: not when it is unknown, someone
    /// else's, spent, or kept for another order still pending.
    async fn reserve_coupon(tx: &mut AnyConnection, coupon: &str, user: &str, order: &str) -> StoreResult<bool> {
        // Lock the coupon first: on Postgres the conditional update below
        // then reads, in a snapshot of its own, whatever order an earlier
        // writer kept it for, committed (its check of that order would
        // otherwise see the snapshot from before the wait).
        let exists = sqlx::query("UPDATE coupons SET reserved_order = reserved_order WHERE id = $1 RETURNING id")
            .bind(coupon)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE coupons SET reserved_order = $1 WHERE id = $2 AND user_id = $3 AND used_ms IS NULL \
             AND (reserved_order IS NULL OR NOT EXISTS \
             (SELECT 1 FROM orders o WHERE o.id = coupons.reserved_order AND o.status = $4))",
        )
        .bind(order)
        .bind(coupon)
        .bind(user)
        .bind(OrderStatus::Pending.as_str())
        .execute(&mut *tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // ------------------------------------------------------------ reads

    pub async fn order(&self, id: &str) -> StoreResult<Option<OrderRecord>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query_as::<_, OrderRow>(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        Ok(Self::with_lines(&mut conn, rows).await?.pop())
    }

    /// An order's status changes, oldest first.
    pub async fn transitions(&self, order_id: &str) -> StoreResult<Vec<Transition>> {
        let rows = sqlx::query(
            "SELECT order_id, seq, from_status, to_status, at_ms, reason FROM order_transitions \
             WHERE order_id = $1 ORDER BY seq",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let from: Option<String> = r.try_get("from_status")?;
                let to: String = r.try_get("to_status")?;
                Ok(Transition {
                    order_id: r.try_get("order_id")?,
                    seq: r.try_get("seq")?,
                    from: from.map(|f| status_named(order_id, &f)).transpose()?,
                    to: status_named(order_id, &to)?,
                    at_ms: r.try_get("at_ms")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    /// The buyer's newest pending order for the event.
    pub async fn pending_order_of(&self, user: &str, event: &str) -> StoreResult<Option<OrderRecord>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND event_id = $2 AND status = $3 \
             ORDER BY created_ms DESC, id DESC LIMIT 1"
        ))
        .bind(user)
        .bind(event)
        .bind(OrderStatus::Pending.as_str())
        .fetch_all(&mut *conn)
        .await?;
        Ok(Self::with_lines(&mut conn, rows).await?.pop())
    }

    /// A page of the buyer's orders (of one event, or all), newest first,
    /// from after the `after` cursor.
    pub async fn orders_of_user(
        &self,
        user: &str,
        event: Option<&str>,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Result<(Vec<OrderRecord>, Option<String>), BadCursor>> {
        self.order_page(&[("user_id", Some(user)), ("event_id", event)], limit, after).await
    }

    /// A page of a seller's orders (every seller's with `None`, for admins),
    /// of one event or all, newest first, from after the `after` cursor.
    pub async fn orders_of_seller(
        &self,
        seller: Option<&str>,
        event: Option<&str>,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Result<(Vec<OrderRecord>, Option<String>), BadCursor>> {
        self.order_page(&[("seller_id", seller), ("event_id", event)], limit, after).await
    }

    /// Orders matching every `(column, Some(value))` of `filters`, in
    /// `(created_ms, id)` order from the newest, keyset-paged.
    async fn order_page(
        &self,
        filters: &[(&str, Option<&str>)],
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Result<(Vec<OrderRecord>, Option<String>), BadCursor>> {
        let after = match after.map(parse_cursor) {
            None => None,
            Some(None) => return Ok(Err(BadCursor)),
            Some(Some(at)) => Some(at),
        };
        if limit == 0 {
            return Ok(Ok((Vec::new(), None)));
        }
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        for (column, value) in filters {
            if let Some(value) = value {
                values.push(*value);
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        let n = values.len();
        if after.is_some() {
            conditions.push(format!("(created_ms, id) < (${}, ${})", n + 1, n + 2));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let limit_at = if after.is_some() { n + 3 } else { n + 1 };
        let sql =
            format!("SELECT {ORDER_COLUMNS} FROM orders {filter} ORDER BY created_ms DESC, id DESC LIMIT ${limit_at}");
        let mut q = sqlx::query_as::<_, OrderRow>(&sql);
        for value in values {
            q = q.bind(value);
        }
        if let Some((created_ms, id)) = after {
            q = q.bind(created_ms).bind(id);
        }
        // One more than asked: whether there is a next page at all.
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut conn = self.pool.acquire().await?;
        let mut rows = q.bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1).fetch_all(&mut *conn).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let page = Self::with_lines(&mut conn, rows).await?;
        let next = if more { page.last().map(cursor_of) } else { None };
        Ok(Ok((page, next)))
    }

    /// Each listed order's lines, in position order.
    async fn lines_of(conn: &mut AnyConnection, ids: &[&str]) -> StoreResult<HashMap<String, Vec<PricedLine>>> {
        let mut found: HashMap<String, Vec<PricedLine>> = HashMap::new();
        for chunk in ids.chunks(INSERT_CHUNK) {
            let sql = format!(
                "SELECT order_id, seat_id, tier_id, price FROM order_lines WHERE order_id IN {} \
                 ORDER BY order_id, position",
                parameter_list(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&mut *conn).await? {
                found.entry(row.try_get("order_id")?).or_default().push(PricedLine {
                    seat: row.try_get("seat_id")?,
                    tier: row.try_get("tier_id")?,
                    price: row.try_get("price")?,
                });
            }
        }
        Ok(found)
    }

    /// Rows to records, their lines read in one query per chunk.
    async fn with_lines(conn: &mut AnyConnection, rows: Vec<OrderRow>) -> StoreResult<Vec<OrderRecord>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut lines = Self::lines_of(conn, &ids).await?;
        rows.into_iter()
            .map(|row| {
                let mine = lines.remove(&row.id).unwrap_or_default();
                row.into_record(mine)
            })
            .collect()
    }

    // ------------------------------------------------------------ the steps

    /// Locks the order's row for the rest of the transaction and reads it.
    /// A write first: on Postgres concurrent changers of one order queue
    /// here and each reads what the one before committed; on SQLite the
    /// transaction holds the write lock from here on (a read first would
    /// have to upgrade its snapshot later, which fails rather than waits).
    async fn lock_order(tx: &mut AnyConnection, id: &str) -> StoreResult<Option<OrderRecord>> {
        let rows = sqlx::query_as::<_, OrderRow>(&format!(
            "UPDATE orders SET status = status WHERE id = $1 RETURNING {ORDER_COLUMNS}"
        ))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Self::with_lines(tx, rows).await?.pop())
    }

    /// Writes what a step may change of a locked order.
    async fn save_order(tx: &mut AnyConnection, o: &OrderRecord) -> StoreResult<()> {
        sqlx::query(
            "UPDATE orders SET status = $1, payment_state = $2, payment_key = $3, payment_started_ms = $4, \
             gateway_key = $5, paid_ms = $6, reason = $7, updated_ms = $8 WHERE id = $9",
        )
        .bind(o.status.as_str())
        .bind(o.payment.as_str())
        .bind(&o.payment_key)
        .bind(o.payment_started_ms)
        .bind(&o.gateway_key)
        .bind(o.paid_ms)
        .bind(&o.reason)
        .bind(o.updated_ms)
        .bind(&o.id)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// What goes with a saved change of a locked order: the transition (if
    /// the status changed), the coupon given back (if the order no longer
    /// keeps it), and the outbox row.
    async fn announce(
        tx: &mut AnyConnection,
        from: OrderStatus,
        after: &OrderRecord,
        reason: &str,
        outbox: Option<&OutboxRow>,
    ) -> StoreResult<()> {
        if after.status != from {
            Self::add_transition(tx, &after.id, Some(from), after.status, after.updated_ms, reason).await?;
            if !keeps_seats(after.status)
                && let Some(coupon) = &after.coupon_id
            {
                // Only this order's reservation, and only of an unspent coupon:
                // a spent one keeps naming the order that spent it.
                sqlx::query(
                    "UPDATE coupons SET reserved_order = NULL \
                     WHERE id = $1 AND reserved_order = $2 AND used_ms IS NULL",
                )
                .bind(coupon)
                .bind(&after.id)
                .execute(&mut *tx)
                .await?;
            }
        }
        if let Some(row) = outbox {
            Self::insert_outbox(tx, row).await?;
        }
        Ok(())
    }

    /// The next transition of an order; under its row lock, so `seq` is
    /// the one after the last.
    async fn add_transition(
        tx: &mut AnyConnection,
        order: &str,
        from: Option<OrderStatus>,
        to: OrderStatus,
        at_ms: i64,
        reason: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO order_transitions (order_id, seq, from_status, to_status, at_ms, reason) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM order_transitions WHERE order_id = $1",
        )
        .bind(order)
        .bind(from.map(OrderStatus::as_str))
        .bind(to.as_str())
        .bind(at_ms)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn insert_outbox(tx: &mut AnyConnection, row: &OutboxRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO outbox (id, event_id, order_id, kind, payload, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.event_id)
        .bind(&row.order_id)
        .bind(&row.kind)
        .bind(&row.payload)
        .bind(row.created_ms)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Starts the order's one payment attempt: only `user`'s pending order
    /// with no payment yet, before it expires. Whether it did.
    ///
    /// The order then keeps its seats until at least `keep_until_ms`, so a
    /// payment started in time is not lost to the order's expiry while the
    /// gateway decides.
    pub async fn start_payment(
        &self,
        order_id: &str,
        user: &str,
        payment_key: &str,
        now_ms: i64,
        keep_until_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE orders SET payment_state = $1, payment_key = $2, payment_started_ms = $3, updated_ms = $3, \
             expires_ms = CASE WHEN expires_ms < $8 THEN $8 ELSE expires_ms END \
             WHERE id = $4 AND user_id = $5 AND status = $6 AND payment_state = $7 AND expires_ms > $3",
        )
        .bind(PaymentState::InFlight.as_str())
        .bind(payment_key)
        .bind(now_ms)
        .bind(order_id)
        .bind(user)
        .bind(OrderStatus::Pending.as_str())
        .bind(PaymentState::None.as_str())
        .bind(keep_until_ms)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Makes an approved payment a sale, in one transaction: the seats
    /// sold, the order paid, its coupon spent, the outbox row. A late
    /// payment (the order expired or was cancelled) is a sale too while
    /// its seats are free. An unknown order is an error.
    pub async fn complete_payment(
        &self,
        order_id: &str,
        gateway_key: &str,
        outbox: &OutboxRow,
        now_ms: i64,
    ) -> StoreResult<Completed> {
        let mut tx = self.writer.begin().await?;
        let before = Self::lock_order(&mut tx, order_id).await?.ok_or(sqlx::Error::RowNotFound)?;
        if before.status == OrderStatus::Paid {
            return Ok(Completed::AlreadyPaid(before));
        }
        // Money on its way back is not taken again.
        let to = match next_status(before.status, Step::Paid) {
            Ok(to) if !matches!(before.payment, PaymentState::RefundDue | PaymentState::Refunded) => to,
            _ => return Ok(Completed::NotPayable(before)),
        };
        let mut seats: Vec<&str> = before.lines.iter().map(|l| l.seat.as_str()).collect();
        // One global order: two sales of overlapping seats wait on each
        // other's rows in the same order, never in a circle.
        seats.sort_unstable();
        seats.dedup();
        let taken: Vec<String> =
            Self::sold_of(&mut tx, &before.event_id, &seats).await?.into_iter().map(|(seat, _)| seat).collect();
        if !taken.is_empty() {
            return Ok(Completed::SeatsTaken(taken));
        }
        match Self::insert_sold(&mut tx, &before, &seats, now_ms).await {
            Ok(missed) if missed.is_empty() => {}
            // Sold by a writer that committed after the check above.
            Ok(missed) => return Ok(Completed::SeatsTaken(missed)),
            Err(StoreError::Sql(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                // The conflict-free insert makes this unexpected, but the
                // key is the guard: whatever broke it, it is a sale refused.
                tx.rollback().await?;
                let owned: Vec<String> = seats.iter().map(|s| (*s).to_owned()).collect();
                let taken: Vec<String> = self
                    .sold_seats_of(&before.event_id, &owned)
                    .await?
                    .into_iter()
                    .filter(|(_, order)| *order != before.id)
                    .map(|(seat, _)| seat)
                    .collect();
                return Ok(Completed::SeatsTaken(if taken.is_empty() { owned } else { taken }));
            }
            Err(e) => return Err(e),
        }
        let mut reason = if before.status == OrderStatus::Pending { APPROVED } else { APPROVED_LATE }.to_owned();
        if let Some(coupon) = &before.coupon_id {
            let spent =
                sqlx::query("UPDATE coupons SET used_ms = $1, reserved_order = $2 WHERE id = $3 AND used_ms IS NULL")
                    .bind(now_ms)
                    .bind(&before.id)
                    .bind(coupon)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
            if spent {
                // As `mark_coupon_used` counts it.
                sqlx::query(
                    "UPDATE campaigns SET used = used + 1 WHERE id = (SELECT campaign_id FROM coupons WHERE id = $1)",
                )
                .bind(coupon)
                .execute(&mut *tx)
                .await?;
            } else {
                // The money was taken with the discount: the sale stands.
                reason.push_str(COUPON_SPENT_ELSEWHERE);
            }
        }
        let after = OrderRecord {
            status: to,
            payment: PaymentState::Approved,
            gateway_key: Some(gateway_key.to_owned()),
            paid_ms: Some(now_ms),
            reason: None,
            updated_ms: now_ms,
            ..before.clone()
        };
        Self::save_order(&mut tx, &after).await?;
        Self::announce(&mut tx, before.status, &after, &reason, Some(outbox)).await?;
        tx.commit().await?;
        Ok(Completed::Paid(after))
    }

    /// `(seat, order)` of those of `seats` sold in the event, by seat.
    async fn sold_of(tx: &mut AnyConnection, event: &str, seats: &[&str]) -> StoreResult<Vec<(String, String)>> {
        let mut sold = Vec::new();
        for chunk in seats.chunks(INSERT_CHUNK) {
            let sql = format!(
                "SELECT seat_id, order_id FROM sold_seats WHERE event_id = $1 AND seat_id IN {} ORDER BY seat_id",
                parameter_list(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(event);
            for seat in chunk {
                q = q.bind(*seat);
            }
            for row in q.fetch_all(&mut *tx).await? {
                sold.push((row.try_get("seat_id")?, row.try_get("order_id")?));
            }
        }
        sold.sort();
        Ok(sold)
    }

    /// Sells `seats` (sorted) to the order; the ones another order holds
    /// already, which are left as they are. Never fails on the key: on
    /// Postgres a concurrent seller's uncommitted row is waited for, then
    /// skipped if it committed.
    async fn insert_sold(
        tx: &mut AnyConnection,
        o: &OrderRecord,
        seats: &[&str],
        now_ms: i64,
    ) -> StoreResult<Vec<String>> {
        let mut inserted: HashSet<String> = HashSet::new();
        for chunk in seats.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO sold_seats (event_id, seat_id, order_id, sold_ms) VALUES {} \
                 ON CONFLICT DO NOTHING RETURNING seat_id",
                placeholders(chunk.len(), 4)
            );
            let mut q = sqlx::query(&sql);
            for seat in chunk {
                q = q.bind(&o.event_id).bind(*seat).bind(&o.id).bind(now_ms);
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get("seat_id")?);
            }
        }
        Ok(seats.iter().filter(|s| !inserted.contains(**s)).map(|s| (*s).to_owned()).collect())
    }

    /// A final decline: the payment is `declined`, and a pending order
    /// `failed` (its coupon given back, `outbox` written). An order that
    /// expired or was cancelled meanwhile only records the decline; one
    /// whose payment was approved (or is going back) is left alone. `None`
    /// for an unknown order.
    pub async fn decline_payment(
        &self,
        order_id: &str,
        reason: &str,
        outbox: Option<&OutboxRow>,
        now_ms: i64,
    ) -> StoreResult<Option<OrderRecord>> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = Self::lock_order(&mut tx, order_id).await? else {
            return Ok(None);
        };
        if !matches!(before.payment, PaymentState::None | PaymentState::InFlight) {
            return Ok(Some(before));
        }
        let mut after = OrderRecord { payment: PaymentState::Declined, updated_ms: now_ms, ..before.clone() };
        if let Ok(to) = next_status(before.status, Step::Declined) {
            after.status = to;
            after.reason = Some(reason.to_owned());
        }
        // Announced whatever the status: a buyer told `pending` hears the
        // outcome even when the order expired meanwhile.
        Self::save_order(&mut tx, &after).await?;
        Self::announce(&mut tx, before.status, &after, reason, outbox).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    /// Expires up to `max` pending orders whose time ran out at `now_ms`,
    /// the longest overdue first, each in a small transaction of its own
    /// (its transition, its coupon given back, its outbox row from
    /// `make_outbox`, which gets the order as expired). The orders after.
    pub async fn expire_orders(
        &self,
        now_ms: i64,
        max: u32,
        make_outbox: impl Fn(&OrderRecord) -> OutboxRow,
    ) -> StoreResult<Vec<OrderRecord>> {
        let pending = OrderStatus::Pending;
        let Ok(to) = next_status(pending, Step::Expire) else {
            return Ok(Vec::new());
        };
        let due: Vec<String> = sqlx::query(
            "SELECT id FROM orders WHERE status = $1 AND expires_ms <= $2 ORDER BY expires_ms, id LIMIT $3",
        )
        .bind(pending.as_str())
        .bind(now_ms)
        .bind(i64::from(max))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        let mut expired = Vec::with_capacity(due.len());
        for id in due {
            let mut tx = self.writer.begin().await?;
            // Compare-and-set: an order paid or cancelled since the query
            // above is left alone.
            let rows = sqlx::query_as::<_, OrderRow>(&format!(
                "UPDATE orders SET status = $1, reason = $2, updated_ms = $3 \
                 WHERE id = $4 AND status = $5 AND expires_ms <= $3 RETURNING {ORDER_COLUMNS}"
            ))
            .bind(to.as_str())
            .bind(EXPIRED)
            .bind(now_ms)
            .bind(&id)
            .bind(pending.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let Some(after) = Self::with_lines(&mut tx, rows).await?.pop() else {
                continue;
            };
            Self::announce(&mut tx, pending, &after, EXPIRED, Some(&make_outbox(&after))).await?;
            tx.commit().await?;
            expired.push(after);
        }
        Ok(expired)
    }

    /// The buyer gives up an unpaid order (pending, no payment started):
    /// `cancelled`, its coupon given back, `outbox` written. `Err(Some)`
    /// with the order as it is when it cannot be cancelled; `Err(None)`
    /// when it is unknown or someone else's.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        user: &str,
        reason: &str,
        outbox: &OutboxRow,
        now_ms: i64,
    ) -> StoreResult<Result<OrderRecord, Option<OrderRecord>>> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = Self::lock_order(&mut tx, order_id).await?.filter(|o| o.user_id == user) else {
            return Ok(Err(None));
        };
        let to = next_status(before.status, Step::Cancel).ok();
        let Some(to) = to.filter(|_| before.payment == PaymentState::None) else {
            return Ok(Err(Some(before)));
        };
        let after = OrderRecord { status: to, reason: Some(reason.to_owned()), updated_ms: now_ms, ..before.clone() };
        Self::save_order(&mut tx, &after).await?;
        Self::announce(&mut tx, before.status, &after, reason, Some(outbox)).await?;
        tx.commit().await?;
        Ok(Ok(after))
    }

    /// Records that the order's money must go back (a refund of a paid
    /// order, or a payment approved once its seats were gone): payment
    /// `refund_due`, `reason` kept for the refund's transition, status
    /// unchanged. `gateway_key` names the payment when the order has none
    /// stored yet (a late approval of a payment in flight). Only from an
    /// approved or in-flight payment of an order that can be refunded; an
    /// order already due is returned as it is; otherwise `None`.
    pub async fn mark_refund_due(
        &self,
        order_id: &str,
        gateway_key: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<Option<OrderRecord>> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = Self::lock_order(&mut tx, order_id).await? else {
            return Ok(None);
        };
        match before.payment {
            PaymentState::RefundDue => return Ok(Some(before)),
            // Declined: an approval that arrived after the order had failed.
            PaymentState::Approved | PaymentState::InFlight | PaymentState::Declined
                if next_status(before.status, Step::Refund).is_ok() => {}
            _ => return Ok(None),
        }
        let after = OrderRecord {
            payment: PaymentState::RefundDue,
            gateway_key: before.gateway_key.clone().or_else(|| Some(gateway_key.to_owned())),
            reason: Some(reason.to_owned()),
            updated_ms: now_ms,
            ..before.clone()
        };
        Self::save_order(&mut tx, &after).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    /// The gateway gave the money back: in one transaction the order is
    /// `refunded` (payment too), its sold seats are on sale again, the
    /// transition carries the stored reason, `outbox` is written. An order
    /// refunded already is returned as it is, with nothing written. `None`
    /// when the order is unknown, or no money was taken for it (no
    /// approved, in-flight or due payment) or its status cannot be refunded.
    pub async fn complete_refund(&self, order_id: &str, now_ms: i64) -> StoreResult<Option<OrderRecord>> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = Self::lock_order(&mut tx, order_id).await? else {
            return Ok(None);
        };
        if before.status == OrderStatus::Refunded {
            return Ok(Some(before));
        }
        let took_money =
            matches!(before.payment, PaymentState::Approved | PaymentState::InFlight | PaymentState::RefundDue);
        let Some(to) = next_status(before.status, Step::Refund).ok().filter(|_| took_money) else {
            return Ok(None);
        };
        let after = OrderRecord { status: to, payment: PaymentState::Refunded, updated_ms: now_ms, ..before.clone() };
        sqlx::query("DELETE FROM sold_seats WHERE order_id = $1").bind(&before.id).execute(&mut *tx).await?;
        Self::save_order(&mut tx, &after).await?;
        let reason = before.reason.as_deref().unwrap_or(REFUNDED);
        // Made under the lock: whether its seats had been sold is what the
        // consumers need to know, and only the locked row says it.
        let was_paid = before.status == OrderStatus::Paid;
        let outbox = crate::store::outbox::outbox_row(kinds::ORDER_REFUNDED, &after, was_paid, now_ms);
        Self::announce(&mut tx, before.status, &after, reason, Some(&outbox)).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    /// What the reconciler looks at, longest waiting first, at most `max`:
    /// payments in flight since `older_than_ms` before `now_ms` or longer,
    /// and every refund due, however recent.
    pub async fn payments_in_doubt(&self, now_ms: i64, older_than_ms: i64, max: u32) -> StoreResult<Vec<OrderRecord>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders \
             WHERE (payment_state = $1 AND payment_started_ms <= $2) OR payment_state = $3 \
             ORDER BY COALESCE(payment_started_ms, updated_ms), id LIMIT $4"
        ))
        .bind(PaymentState::InFlight.as_str())
        .bind(now_ms.saturating_sub(older_than_ms))
        .bind(PaymentState::RefundDue.as_str())
        .bind(i64::from(max))
        .fetch_all(&mut *conn)
        .await?;
        Self::with_lines(&mut conn, rows).await
    }

    // ------------------------------------------------------------ sold seats

    /// `(seat, order)` of those of `seats` sold in the event, by seat.
    pub async fn sold_seats_of(&self, event: &str, seats: &[String]) -> StoreResult<Vec<(String, String)>> {
        let seats: Vec<&str> = seats.iter().map(String::as_str).collect();
        let mut conn = self.pool.acquire().await?;
        Self::sold_of(&mut conn, event, &seats).await
    }

    /// `(seat, order)` of every sold seat of the event, by seat: what a
    /// seat store is rebuilt from.
    pub async fn sold_seats(&self, event: &str) -> StoreResult<Vec<(String, String)>> {
        sqlx::query("SELECT seat_id, order_id FROM sold_seats WHERE event_id = $1 ORDER BY seat_id")
            .bind(event)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("seat_id")?, r.try_get("order_id")?)))
            .collect()
    }

    // ------------------------------------------------------------ outbox

    /// Up to `max` rows not yet sent, in `(created_ms, id)` order.
    pub async fn outbox_unsent(&self, max: u32) -> StoreResult<Vec<OutboxRow>> {
        sqlx::query(
            "SELECT id, event_id, order_id, kind, payload, created_ms FROM outbox WHERE sent_ms IS NULL \
             ORDER BY created_ms, id LIMIT $1",
        )
        .bind(i64::from(max))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(OutboxRow {
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                order_id: r.try_get("order_id")?,
                kind: r.try_get("kind")?,
                payload: r.try_get("payload")?,
                created_ms: r.try_get("created_ms")?,
            })
        })
        .collect()
    }

    /// Stamps the rows sent at `now_ms`; one sent before keeps its stamp.
    pub async fn mark_sent(&self, ids: &[String], now_ms: i64) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for chunk in ids.chunks(INSERT_CHUNK) {
            let sql = format!(
                "UPDATE outbox SET sent_ms = $1 WHERE sent_ms IS NULL AND id IN {}",
                parameter_list(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(now_ms);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many rows wait to be sent, and since when the oldest has.
    pub async fn outbox_backlog(&self) -> StoreResult<(u64, Option<i64>)> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_ms) AS oldest FROM outbox WHERE sent_ms IS NULL")
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        let count = u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("the outbox counts {n} rows")))?;
        Ok((count, row.try_get("oldest")?))
    }

    // ------------------------------------------------------------ consumers

    /// Records that `consumer` handled the outbox row; whether it is the
    /// first time (a redelivery answers `false`).
    pub async fn consume_once(&self, consumer: &str, outbox_id: &str, now_ms: i64) -> StoreResult<bool> {
        let mut conn = self.writer.acquire().await?;
        Self::consume_in(&mut conn, consumer, outbox_id, now_ms).await
    }

    async fn consume_in(conn: &mut AnyConnection, consumer: &str, outbox_id: &str, now_ms: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("INSERT INTO consumed (consumer, outbox_id, at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(consumer)
                .bind(outbox_id)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes a ledger line and marks its outbox row consumed by
    /// `consumer`, in one transaction; whether the line is new. A replay
    /// changes nothing.
    pub async fn record_ledger(&self, entry: &LedgerEntry, consumer: &str, now_ms: i64) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        if !Self::consume_in(&mut tx, consumer, &entry.outbox_id, now_ms).await? {
            return Ok(false);
        }
        let e = entry;
        let inserted = sqlx::query(
            "INSERT INTO ledger_entries (outbox_id, seller_id, event_id, order_id, kind, tickets, gross, \
             discount_seller, discount_platform, amount, currency, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(&e.outbox_id)
        .bind(&e.seller_id)
        .bind(&e.event_id)
        .bind(&e.order_id)
        .bind(&e.kind)
        .bind(e.tickets)
        .bind(e.gross)
        .bind(e.discount_seller)
        .bind(e.discount_platform)
        .bind(e.amount)
        .bind(&e.currency)
        .bind(e.at_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(inserted)
    }

    /// A seller's ledger lines (of one event, or all), in time order.
    pub async fn ledger(&self, seller: &str, event: Option<&str>) -> StoreResult<Vec<LedgerEntry>> {
        let sql = "SELECT outbox_id, seller_id, event_id, order_id, kind, tickets, gross, discount_seller, \
             discount_platform, amount, currency, at_ms FROM ledger_entries \
             WHERE seller_id = $1 AND ($2 IS NULL OR event_id = $2) ORDER BY at_ms, outbox_id";
        let rows = sqlx::query(sql).bind(seller).bind(event).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(ledger_entry).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    //! The order part of the SQL contract, on SQLite and on Postgres, one
    //! test per scenario and backend (as `sql_contract!` in the parent).
    //! Every scenario ends by checking that each order's transitions chain
    //! from its checkout to its status now.

    use super::*;
    use crate::domain::coupons::Coupon;
    use crate::domain::demo;
    use crate::domain::event::{Event, Seat, Tier, Venue};
    use crate::domain::orders::Announcement;
    use crate::store::outbox::announcement;
    use crate::store::sql::tests::TestDb;

    const NOW: i64 = 1_700_000_000_000;
    const MIN: i64 = 60_000;
    const EVENT: &str = demo::EVENT_ID;
    const SELLER: &str = demo::SELLER_ID;
    /// The demo's fixed-amount campaign.
    const CAMPAIGN: &str = "demo-10000-off";

    macro_rules! orders_contract {
        ($make:expr) => {
            crate::store::sql::tests::on_each_database!($make;
                an_order_reads_back_with_its_lines_in_order,
                a_coupon_is_kept_for_one_pending_order_at_a_time,
                concurrent_checkouts_keep_a_coupon_for_one_order,
                a_new_checkout_replaces_the_pending_order,
                a_buyer_has_one_pending_order_per_event,
                ten_checkouts_of_one_buyer_race_and_one_wins,
                every_inserted_order_announces_itself_once,
                a_payment_starts_once_and_only_before_expiry,
                a_started_payment_keeps_the_order_until_asked,
                a_payment_completes_once,
                a_seat_sold_once_is_refused_to_another_order,
                twenty_payments_race_for_one_seat_and_one_wins,
                a_late_payment_takes_the_seats_again,
                a_late_payment_keeps_a_coupon_spent_meanwhile,
                a_decline_fails_only_a_pending_order,
                a_decline_after_expiry_or_cancel_is_announced_and_keeps_the_status,
                the_sweep_expires_due_orders_longest_overdue_first,
                only_the_buyer_cancels_an_unpaid_order,
                a_refund_puts_the_seats_back_on_sale_once,
                a_late_approval_for_gone_seats_is_refunded,
                a_late_approval_of_a_failed_order_is_refunded,
                the_refund_row_says_whether_the_seats_were_sold,
                payments_in_doubt_are_old_ones_in_flight_and_refunds_due,
                the_outbox_comes_out_in_order_and_is_sent_once,
                consumers_handle_each_row_once,
                pages_cover_every_order_exactly_once,
                random_walks_keep_every_order_consistent,
            );
        };
    }

    mod sqlite {
        orders_contract!(super::TestDb::sqlite());
    }

    mod postgres {
        orders_contract!(super::TestDb::postgres());
    }

    /// A fresh store with the demo (seller, event, the demo's fixed-amount
    /// campaign) and a second seller `s-2` with event `e-2`.
    async fn store(db: &TestDb) -> SqlStore {
        let store = db.store().await;
        assert!(store.seed_demo(NOW).await.unwrap());
        let campaign = demo::campaigns(NOW).into_iter().find(|c| c.id == CAMPAIGN).expect("the demo campaign");
        assert!(store.insert_campaign(&campaign).await.unwrap());
        store.insert_seller("s-2", "Other", NOW).await.unwrap();
        let venue = Venue { id: "v-2".into(), seller_id: "s-2".into(), name: "Small room".into() };
        let seat = Seat {
            id: "A-1-1".into(),
            section: "A".into(),
            row: "1".into(),
            number: 1,
            x: 0,
            y: 0,
            tier: "std".into(),
        };
        store.insert_venue(&venue, &[seat], NOW).await.unwrap();
        let other = Event {
            id: "e-2".into(),
            seller_id: "s-2".into(),
            venue_id: "v-2".into(),
            tiers: vec![Tier { id: "std".into(), name: "Standard".into(), price: 10_000 }],
            refund_until_ms: None,
            ..demo::event(NOW)
        };
        store.insert_event(&other, NOW).await.unwrap();
        store
    }

    /// Checks every order's transitions, its one `order.created` row and
    /// the one pending order per buyer and event, then closes the store.
    async fn done(store: SqlStore) {
        every_order_chains(&store).await;
        every_order_is_announced_once(&store).await;
        let doubles = count_rows(
            &store,
            "(SELECT user_id, event_id FROM orders WHERE status = 'pending' \
             GROUP BY user_id, event_id HAVING COUNT(*) > 1) d",
        )
        .await;
        assert_eq!(doubles, 0, "one pending order per buyer and event");
        store.close().await;
    }

    /// A pending demo order of `user` for `seats`, alternating tiers a and
    /// r, created at `NOW` and kept for ten minutes.
    fn order(id: &str, user: &str, seats: &[&str]) -> OrderRecord {
        let lines: Vec<PricedLine> = seats
            .iter()
            .enumerate()
            .map(|(i, seat)| {
                let (tier, price) = if i % 2 == 0 { ("a", 99_000) } else { ("r", 165_000) };
                PricedLine { seat: (*seat).into(), tier: tier.into(), price }
            })
            .collect();
        let subtotal = lines.iter().map(|l| l.price).sum();
        OrderRecord {
            id: id.into(),
            event_id: EVENT.into(),
            seller_id: SELLER.into(),
            user_id: user.into(),
            status: OrderStatus::Pending,
            lines,
            subtotal,
            discount: 0,
            discount_seller: 0,
            discount_platform: 0,
            total: subtotal,
            currency: "KRW".into(),
            coupon_id: None,
            coupon_reason: None,
            created_ms: NOW,
            expires_ms: NOW + 10 * MIN,
            payment_key: None,
            payment: PaymentState::None,
            payment_started_ms: None,
            gateway_key: None,
            paid_ms: None,
            reason: None,
            updated_ms: NOW,
        }
    }

    /// The order with 10,000 off by `coupon`, funded by the seller.
    fn with_coupon(o: OrderRecord, coupon: &str) -> OrderRecord {
        OrderRecord {
            discount: 10_000,
            discount_seller: 10_000,
            total: o.subtotal - 10_000,
            coupon_id: Some(coupon.into()),
            coupon_reason: Some("the only coupon that applies".into()),
            ..o
        }
    }

    fn outbox(id: &str, o: &OrderRecord, kind: &str, at_ms: i64) -> OutboxRow {
        OutboxRow {
            id: id.into(),
            event_id: o.event_id.clone(),
            order_id: o.id.clone(),
            kind: kind.into(),
            payload: format!("{{\"order\":{:?},\"kind\":{kind:?}}}", o.id),
            created_ms: at_ms,
        }
    }

    /// `user`'s coupon of the demo campaign.
    async fn coupon(store: &SqlStore, user: &str) -> String {
        let c = Coupon {
            id: format!("cp-{user}"),
            campaign_id: CAMPAIGN.into(),
            user: user.into(),
            claimed_ms: NOW,
            used_ms: None,
        };
        assert_eq!(store.record_claims(std::slice::from_ref(&c)).await.unwrap(), [super::super::Recorded::Inserted]);
        c.id
    }

    async fn placed(store: &SqlStore, o: OrderRecord) -> OrderRecord {
        assert_eq!(store.insert_order(&o, None, o.created_ms).await.unwrap(), Inserted::Inserted);
        o
    }

    async fn get(store: &SqlStore, id: &str) -> OrderRecord {
        store.order(id).await.unwrap().expect("the order is stored")
    }

    /// Starts and completes the order's payment at `at_ms`; the order paid.
    async fn paid(store: &SqlStore, o: &OrderRecord, at_ms: i64) -> OrderRecord {
        assert!(store.start_payment(&o.id, &o.user_id, &format!("ok-{}", o.id), at_ms, 0).await.unwrap());
        let row = outbox(&format!("ob-paid-{}", o.id), o, "payment.completed", at_ms);
        match store.complete_payment(&o.id, &format!("gk-{}", o.id), &row, at_ms).await.unwrap() {
            Completed::Paid(after) => after,
            other => panic!("{} was not paid: {other:?}", o.id),
        }
    }

    async fn expire_all(store: &SqlStore, at_ms: i64) -> Vec<OrderRecord> {
        store
            .expire_orders(at_ms, 100, |o| outbox(&format!("ob-exp-{}", o.id), o, "order.expired", at_ms))
            .await
            .unwrap()
    }

    async fn reserved_for(store: &SqlStore, coupon: &str) -> Option<String> {
        sqlx::query("SELECT reserved_order FROM coupons WHERE id = $1")
            .bind(coupon)
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .try_get("reserved_order")
            .unwrap()
    }

    async fn coupon_used_ms(store: &SqlStore, coupon: &str) -> Option<i64> {
        sqlx::query("SELECT used_ms FROM coupons WHERE id = $1")
            .bind(coupon)
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .try_get("used_ms")
            .unwrap()
    }

    async fn campaign_used(store: &SqlStore) -> u64 {
        store.campaign(CAMPAIGN).await.unwrap().unwrap().used
    }

    /// The id of every outbox row but the `order.created` ones (whose ids
    /// the store makes up), sent or not, in publishing order.
    async fn announced_ids(store: &SqlStore) -> Vec<String> {
        sqlx::query("SELECT id FROM outbox WHERE kind <> $1 ORDER BY created_ms, id")
            .bind(kinds::ORDER_CREATED)
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("id").unwrap())
            .collect()
    }

    /// Every outbox row of `kind` (of one order, or all), sent or not, in
    /// publishing order.
    async fn rows_of(store: &SqlStore, kind: &str, order: Option<&str>) -> Vec<OutboxRow> {
        sqlx::query(
            "SELECT id, event_id, order_id, kind, payload, created_ms FROM outbox \
             WHERE kind = $1 AND ($2 IS NULL OR order_id = $2) ORDER BY created_ms, id",
        )
        .bind(kind)
        .bind(order)
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| OutboxRow {
            id: r.try_get("id").unwrap(),
            event_id: r.try_get("event_id").unwrap(),
            order_id: r.try_get("order_id").unwrap(),
            kind: r.try_get("kind").unwrap(),
            payload: r.try_get("payload").unwrap(),
            created_ms: r.try_get("created_ms").unwrap(),
        })
        .collect()
    }

    /// The one row of `kind` of the order.
    async fn the_row(store: &SqlStore, kind: &str, order: &str) -> OutboxRow {
        let mut rows = rows_of(store, kind, Some(order)).await;
        assert_eq!(rows.len(), 1, "{order} has one {kind} row: {rows:?}");
        rows.pop().unwrap()
    }

    /// What the row announces (the consumers' reading of it).
    fn announced(row: &OutboxRow) -> Announcement {
        announcement(&row.payload).unwrap_or_else(|| panic!("{} carries an announcement: {}", row.id, row.payload))
    }

    /// The announcement `outbox_row` makes of `o` at `at_ms`.
    fn announcement_of(o: &OrderRecord, was_paid: bool, at_ms: i64) -> Announcement {
        Announcement {
            order_id: o.id.clone(),
            event_id: o.event_id.clone(),
            seller_id: o.seller_id.clone(),
            user_id: o.user_id.clone(),
            status: o.status,
            seats: o.seats(),
            gross: o.subtotal,
            discount_seller: o.discount_seller,
            discount_platform: o.discount_platform,
            total: o.total,
            currency: o.currency.clone(),
            was_paid,
            reason: o.reason.clone(),
            at_ms,
        }
    }

    /// An id the store made for a row: `ob-` and 32 hex digits.
    fn assert_made_up_id(id: &str) {
        let hex = id.strip_prefix("ob-").unwrap_or_else(|| panic!("{id:?} starts with ob-"));
        assert!(hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()), "{id:?}");
    }

    /// How many rows the order has in `table` (its `order_id` column).
    async fn rows_of_order(store: &SqlStore, table: &str, order: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table} WHERE order_id = $1"))
            .bind(order)
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }

    async fn count_rows(store: &SqlStore, table: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }

    /// The order's path: each transition's status and reason.
    async fn path(store: &SqlStore, id: &str) -> Vec<(OrderStatus, String)> {
        store.transitions(id).await.unwrap().into_iter().map(|t| (t.to, t.reason)).collect()
    }

    fn step(to: OrderStatus, reason: &str) -> (OrderStatus, String) {
        (to, reason.to_owned())
    }

    /// The order's transitions chain: numbered from 1, created pending,
    /// each from where the one before went, each a step the state machine
    /// allows, in time order, ending where the order is now.
    async fn assert_chained(store: &SqlStore, o: &OrderRecord) {
        let ts = store.transitions(&o.id).await.unwrap();
        let first = ts.first().unwrap_or_else(|| panic!("{} has no transitions", o.id));
        assert_eq!((first.from, first.to, first.reason.as_str()), (None, OrderStatus::Pending, CHECKOUT), "{}", o.id);
        for (n, t) in ts.iter().enumerate() {
            assert_eq!((t.order_id.as_str(), t.seq), (o.id.as_str(), i64::try_from(n).unwrap() + 1));
        }
        for pair in ts.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert_eq!(b.from, Some(a.to), "{}: transition {} starts where {} ended", o.id, b.seq, a.seq);
            assert!(
                Step::ALL.iter().any(|s| next_status(a.to, *s) == Ok(b.to)),
                "{}: {:?} → {:?} is no step",
                o.id,
                a.to,
                b.to
            );
            assert!(b.at_ms >= a.at_ms, "{}: in time order", o.id);
        }
        assert_eq!(ts.last().map(|t| t.to), Some(o.status), "{}: the last transition is the status", o.id);
    }

    async fn every_order_chains(store: &SqlStore) {
        let ids: Vec<String> = sqlx::query("SELECT id FROM orders ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("id").unwrap())
            .collect();
        for id in ids {
            assert_chained(store, &get(store, &id).await).await;
        }
        let orphans =
            count_rows(store, "order_transitions t WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = t.order_id)")
                .await;
        assert_eq!(orphans, 0);
    }

    /// Each order has one `order.created` row, made at its checkout from
    /// the order as it was then, and no such row names anything else.
    async fn every_order_is_announced_once(store: &SqlStore) {
        let ids: Vec<String> = sqlx::query("SELECT id FROM orders ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("id").unwrap())
            .collect();
        for id in &ids {
            let o = get(store, id).await;
            let row = the_row(store, kinds::ORDER_CREATED, id).await;
            let checkout = store.transitions(id).await.unwrap()[0].at_ms;
            assert_made_up_id(&row.id);
            assert_eq!((row.event_id.as_str(), row.created_ms), (o.event_id.as_str(), checkout), "{id}");
            let a = announced(&row);
            assert_eq!(
                (a.order_id.as_str(), a.user_id.as_str(), a.status, a.was_paid, a.at_ms),
                (id.as_str(), o.user_id.as_str(), OrderStatus::Pending, false, checkout),
                "{id}"
            );
            let seats = o.seats();
            assert_eq!((a.seats, a.total), (seats, o.total), "{id}");
        }
        assert_eq!(rows_of(store, kinds::ORDER_CREATED, None).await.len(), ids.len(), "none for anything else");
    }

    // ------------------------------------------------------------ scenarios

    async fn an_order_reads_back_with_its_lines_in_order(db: &TestDb) {
        let store = store(db).await;
        let o = placed(
            &store,
            OrderRecord {
                coupon_reason: Some("why: 'quoted', ünï".into()),
                ..order("o-1", "u1", &["C-5-5", "A-1-1", "B-2-3"])
            },
        )
        .await;
        assert_eq!(get(&store, "o-1").await, o, "lines in the order they were priced");
        assert!(store.order("o-nope").await.unwrap().is_none());
        assert_eq!(
            store.transitions("o-1").await.unwrap(),
            [Transition {
                order_id: "o-1".into(),
                seq: 1,
                from: None,
                to: OrderStatus::Pending,
                at_ms: NOW,
                reason: CHECKOUT.into()
            }]
        );
        assert!(store.transitions("o-nope").await.unwrap().is_empty());

        // More lines than one insert takes.
        let seats: Vec<String> = (0..450).map(|n| format!("Z-{n}")).collect();
        let seat_refs: Vec<&str> = seats.iter().map(String::as_str).collect();
        let big = placed(&store, OrderRecord { created_ms: NOW + 1, ..order("o-big", "u2", &seat_refs) }).await;
        assert_eq!(get(&store, "o-big").await, big);

        // The buyer's pending one for the event, of each event on its own.
        let elsewhere = placed(
            &store,
            OrderRecord {
                event_id: "e-2".into(),
                seller_id: "s-2".into(),
                created_ms: NOW + 5,
                ..order("o-2", "u1", &["A-1-1"])
            },
        )
        .await;
        assert_eq!(store.pending_order_of("u1", EVENT).await.unwrap(), Some(o.clone()));
        assert_eq!(store.pending_order_of("u1", "e-2").await.unwrap(), Some(elsewhere.clone()));
        assert_eq!(store.pending_order_of("u2", EVENT).await.unwrap(), Some(big));
        assert!(store.pending_order_of("u2", "e-2").await.unwrap().is_none());
        assert!(store.pending_order_of("u9", EVENT).await.unwrap().is_none());
        assert_eq!(
            store
                .cancel_order("o-2", "u1", "no", &outbox("ob-1", &elsewhere, "order.cancelled", NOW + 6), NOW + 6)
                .await
                .unwrap()
                .map(|o| o.status),
            Ok(OrderStatus::Cancelled)
        );
        assert!(store.pending_order_of("u1", "e-2").await.unwrap().is_none(), "a cancelled one is no longer");
        assert_eq!(store.pending_order_of("u1", EVENT).await.unwrap(), Some(o.clone()), "the other event's stays");

        // A duplicate id is refused and leaves nothing half-written.
        let again = order("o-1", "u3", &["E-1-1"]);
        let refused = store.insert_order(&again, None, NOW).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(get(&store, "o-1").await, o);
        assert_eq!(store.transitions("o-1").await.unwrap().len(), 1);
        assert_eq!(rows_of_order(&store, "order_lines", "o-1").await, 3);
        assert!(store.pending_order_of("u3", EVENT).await.unwrap().is_none());
        // An unknown event is refused by its key.
        assert!(
            store
                .insert_order(&OrderRecord { event_id: "e-nope".into(), ..order("o-3", "u1", &["A"]) }, None, NOW)
                .await
                .is_err()
        );
        assert!(store.order("o-3").await.unwrap().is_none());
        done(store).await;
    }

    async fn a_coupon_is_kept_for_one_pending_order_at_a_time(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let first = placed(&store, with_coupon(order("o-1", "u1", &["A-1-1"]), &cp)).await;
        assert_eq!(reserved_for(&store, &cp).await.as_deref(), Some("o-1"));
        let second = with_coupon(
            OrderRecord { created_ms: NOW + 1, expires_ms: NOW + 30 * MIN, ..order("o-2", "u1", &["A-1-2"]) },
            &cp,
        );
        assert_eq!(store.insert_order(&second, None, NOW + 1).await.unwrap(), Inserted::CouponUnavailable);
        assert!(store.order("o-2").await.unwrap().is_none(), "nothing written");
        assert!(store.transitions("o-2").await.unwrap().is_empty());
        let theirs = with_coupon(order("o-3", "u2", &["A-1-3"]), &cp);
        assert_eq!(
            store.insert_order(&theirs, None, NOW).await.unwrap(),
            Inserted::CouponUnavailable,
            "someone else's"
        );
        let unknown = with_coupon(order("o-4", "u1", &["A-1-4"]), "cp-nope");
        assert_eq!(store.insert_order(&unknown, None, NOW).await.unwrap(), Inserted::CouponUnavailable);
        assert_eq!(count_rows(&store, "orders").await, 1);

        // Once the first expires, the coupon is free for another order.
        assert_eq!(expire_all(&store, first.expires_ms).await.len(), 1);
        assert_eq!(reserved_for(&store, &cp).await, None, "given back on expiry");
        assert_eq!(store.insert_order(&second, None, NOW + 11 * MIN).await.unwrap(), Inserted::Inserted);
        assert_eq!(reserved_for(&store, &cp).await.as_deref(), Some("o-2"));
        // A reservation of an order that is no longer pending does not count
        // (even one left behind).
        sqlx::query("UPDATE coupons SET reserved_order = 'o-1' WHERE id = $1")
            .bind(&cp)
            .execute(&store.pool)
            .await
            .unwrap();
        paid(&store, &second, NOW + 12 * MIN).await;
        assert_eq!(coupon_used_ms(&store, &cp).await, Some(NOW + 12 * MIN));
        let third = with_coupon(OrderRecord { created_ms: NOW + 13 * MIN, ..order("o-5", "u1", &["A-1-5"]) }, &cp);
        assert_eq!(
            store.insert_order(&third, None, NOW + 13 * MIN).await.unwrap(),
            Inserted::CouponUnavailable,
            "spent"
        );
        done(store).await;
    }

    /// Ten checkouts with one coupon at once, on two stores (two nodes):
    /// it is kept for exactly one.
    async fn concurrent_checkouts_keep_a_coupon_for_one_order(db: &TestDb) {
        let setup = store(db).await;
        let cp = coupon(&setup, "u1").await;
        let stores = [db.store().await, db.store().await];
        let mut tasks = Vec::new();
        for n in 0..10_usize {
            let store = stores[n % 2].clone();
            // Half for each event: one pending order per buyer and event
            // alone would let two through.
            let o = order(&format!("o-{n}"), "u1", &[&format!("A-1-{n}")]);
            let o = if n < 5 { o } else { OrderRecord { event_id: "e-2".into(), seller_id: "s-2".into(), ..o } };
            let o = with_coupon(o, &cp);
            tasks.push(tokio::spawn(async move { store.insert_order(&o, None, NOW).await.unwrap() }));
        }
        let mut inserted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Inserted::Inserted => inserted += 1,
                // The coupon is looked at first.
                other => assert_eq!(other, Inserted::CouponUnavailable),
            }
        }
        assert_eq!(inserted, 1);
        assert_eq!(count_rows(&setup, "orders").await, 1);
        assert_eq!(rows_of(&setup, kinds::ORDER_CREATED, None).await.len(), 1);
        let kept = reserved_for(&setup, &cp).await.expect("kept for the one");
        assert!(setup.order(&kept).await.unwrap().is_some());
        for s in stores {
            s.close().await;
        }
        done(setup).await;
    }

    async fn a_new_checkout_replaces_the_pending_order(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        placed(&store, with_coupon(order("o-1", "u1", &["A-1-1"]), &cp)).await;
        let new = with_coupon(OrderRecord { created_ms: NOW + 1, ..order("o-2", "u1", &["A-1-1", "A-1-2"]) }, &cp);
        assert_eq!(store.insert_order(&new, Some("o-1"), NOW + 1).await.unwrap(), Inserted::Inserted);
        let old = get(&store, "o-1").await;
        assert_eq!(
            (old.status, old.reason.as_deref(), old.updated_ms),
            (OrderStatus::Cancelled, Some(REPLACED), NOW + 1)
        );
        assert_eq!(
            path(&store, "o-1").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Cancelled, REPLACED)]
        );
        assert_eq!(reserved_for(&store, &cp).await.as_deref(), Some("o-2"), "the coupon moves to the new order");
        assert_eq!(get(&store, "o-2").await, new);
        assert_eq!(store.pending_order_of("u1", EVENT).await.unwrap(), Some(new.clone()));
        assert_eq!(
            announced(&the_row(&store, kinds::ORDER_CREATED, "o-2").await),
            announcement_of(&new, false, NOW + 1)
        );
        assert!(announced_ids(&store).await.is_empty(), "the replaced order is not announced again");

        let gone = |id: &str, user: &str| OrderRecord { created_ms: NOW + 2, ..order(id, user, &["A-1-3"]) };
        assert_eq!(
            store.insert_order(&gone("o-3", "u2"), Some("o-2"), NOW + 2).await.unwrap(),
            Inserted::ReplacedGone,
            "someone else's"
        );
        assert_eq!(
            store.insert_order(&gone("o-3", "u1"), Some("o-nope"), NOW + 2).await.unwrap(),
            Inserted::ReplacedGone
        );
        assert_eq!(
            store.insert_order(&gone("o-3", "u1"), Some("o-1"), NOW + 2).await.unwrap(),
            Inserted::ReplacedGone,
            "cancelled"
        );
        assert!(store.start_payment("o-2", "u1", "ok-2", NOW + 3, 0).await.unwrap());
        assert_eq!(
            store.insert_order(&gone("o-3", "u1"), Some("o-2"), NOW + 3).await.unwrap(),
            Inserted::ReplacedGone,
            "its payment started"
        );
        assert!(store.order("o-3").await.unwrap().is_none(), "nothing written");
        assert!(rows_of(&store, kinds::ORDER_CREATED, Some("o-3")).await.is_empty());
        assert_eq!(get(&store, "o-2").await.status, OrderStatus::Pending);
        // A replacement that cannot have its coupon leaves the old order be.
        let cp2 = coupon(&store, "u2").await;
        placed(&store, order("o-4", "u2", &["B-1-1"])).await;
        let bad = with_coupon(order("o-5", "u2", &["B-1-1"]), &cp);
        assert_eq!(store.insert_order(&bad, Some("o-4"), NOW + 4).await.unwrap(), Inserted::CouponUnavailable);
        assert_eq!(get(&store, "o-4").await.status, OrderStatus::Pending, "rolled back");
        let good = with_coupon(order("o-5", "u2", &["B-1-1"]), &cp2);
        assert_eq!(store.insert_order(&good, Some("o-4"), NOW + 4).await.unwrap(), Inserted::Inserted);
        done(store).await;
    }

    /// A buyer has at most one pending order per event: a second checkout
    /// (another tab) is refused whole, whatever it carries; another event,
    /// another buyer, or a checkout once the first is no longer pending
    /// (paid, cancelled, expired, failed) goes through.
    async fn a_buyer_has_one_pending_order_per_event(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let first = placed(&store, order("o-1", "u1", &["A-1-1"])).await;
        let rows_before = count_rows(&store, "outbox").await;
        let second = with_coupon(
            OrderRecord { created_ms: NOW + 1, expires_ms: NOW + 30 * MIN, ..order("o-2", "u1", &["A-1-2", "A-1-3"]) },
            &cp,
        );
        assert_eq!(store.insert_order(&second, None, NOW + 1).await.unwrap(), Inserted::PendingExists);
        assert!(store.order("o-2").await.unwrap().is_none(), "nothing written");
        for table in ["order_lines", "order_transitions", "outbox"] {
            assert_eq!(rows_of_order(&store, table, "o-2").await, 0, "no {table} row");
        }
        assert_eq!(count_rows(&store, "outbox").await, rows_before);
        assert_eq!(reserved_for(&store, &cp).await, None, "the coupon is not kept for it");
        assert_eq!(count_rows(&store, "orders").await, 1);
        assert_eq!(get(&store, "o-1").await, first, "the first is untouched");
        assert_eq!(store.pending_order_of("u1", EVENT).await.unwrap(), Some(first.clone()));
        // The same seats again: the same answer.
        let same = OrderRecord { id: "o-2b".into(), ..first.clone() };
        assert_eq!(store.insert_order(&same, None, NOW + 1).await.unwrap(), Inserted::PendingExists);
        // An order whose payment is in flight is still pending.
        assert!(store.start_payment("o-1", "u1", "ok-1", NOW + 2, 0).await.unwrap());
        assert_eq!(store.insert_order(&second, None, NOW + 2).await.unwrap(), Inserted::PendingExists);

        // Another event, another buyer: each their own.
        let elsewhere =
            OrderRecord { event_id: "e-2".into(), seller_id: "s-2".into(), ..order("o-3", "u1", &["A-1-1"]) };
        let elsewhere = placed(&store, elsewhere).await;
        placed(&store, order("o-4", "u2", &["A-1-1"])).await;
        // Replacing the other event's order by a second pending one here:
        // all rolled back, the replaced order too.
        let swap = OrderRecord { created_ms: NOW + 3, ..order("o-5", "u1", &["A-1-5"]) };
        assert_eq!(store.insert_order(&swap, Some("o-3"), NOW + 3).await.unwrap(), Inserted::PendingExists);
        assert_eq!(get(&store, "o-3").await, elsewhere, "not cancelled");
        assert_eq!(path(&store, "o-3").await.len(), 1);
        assert!(store.order("o-5").await.unwrap().is_none());

        // Paid: the next goes through (and keeps the coupon).
        let row = outbox("ob-paid-o-1", &first, "payment.completed", NOW + 4);
        assert!(matches!(store.complete_payment("o-1", "gk-1", &row, NOW + 4).await.unwrap(), Completed::Paid(_)));
        assert_eq!(store.insert_order(&second, None, NOW + 5).await.unwrap(), Inserted::Inserted);
        assert_eq!(reserved_for(&store, &cp).await.as_deref(), Some("o-2"));
        assert_eq!(get(&store, "o-2").await, second);
        assert_eq!(store.insert_order(&swap, None, NOW + 5).await.unwrap(), Inserted::PendingExists);
        // Cancelled.
        let row = outbox("ob-c", &second, "order.cancelled", NOW + 6);
        store.cancel_order("o-2", "u1", "changed my mind", &row, NOW + 6).await.unwrap().unwrap();
        let third = placed(&store, OrderRecord { created_ms: NOW + 6, ..order("o-6", "u1", &["A-1-6"]) }).await;
        // Expired.
        expire_all(&store, third.expires_ms).await;
        let fourth =
            OrderRecord { created_ms: NOW + 11 * MIN, expires_ms: NOW + 21 * MIN, ..order("o-7", "u1", &["A-1-7"]) };
        placed(&store, fourth).await;
        // Failed.
        store.decline_payment("o-7", "card rejected", None, NOW + 12 * MIN).await.unwrap().unwrap();
        let fifth =
            OrderRecord { created_ms: NOW + 12 * MIN, expires_ms: NOW + 22 * MIN, ..order("o-8", "u1", &["A-1-8"]) };
        let fifth = placed(&store, fifth).await;
        assert_eq!(store.pending_order_of("u1", EVENT).await.unwrap(), Some(fifth));
        let mut statuses = Vec::new();
        for id in ["o-1", "o-2", "o-6", "o-7", "o-8"] {
            statuses.push(get(&store, id).await.status);
        }
        assert_eq!(
            statuses,
            [
                OrderStatus::Paid,
                OrderStatus::Cancelled,
                OrderStatus::Expired,
                OrderStatus::Failed,
                OrderStatus::Pending
            ]
        );
        done(store).await;
    }

    /// Ten checkouts of one buyer for one event at once (ten tabs), on two
    /// stores (two nodes): exactly one order is written, whole; the others
    /// are told a pending one exists.
    async fn ten_checkouts_of_one_buyer_race_and_one_wins(db: &TestDb) {
        let setup = store(db).await;
        let stores = [db.store().await, db.store().await];
        let mut tasks = Vec::new();
        for n in 0..10_usize {
            let store = stores[n % 2].clone();
            let o = order(&format!("o-{n}"), "u1", &[&format!("A-1-{n}"), &format!("B-1-{n}")]);
            tasks.push(tokio::spawn(async move {
                let got = store.insert_order(&o, None, NOW).await.unwrap();
                (o.id, got)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (id, Inserted::Inserted) => winners.push(id),
                (_, other) => assert_eq!(other, Inserted::PendingExists),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one order: {winners:?}");
        let w = get(&setup, &winners[0]).await;
        assert_eq!(w.lines.len(), 2);
        assert_eq!(setup.pending_order_of("u1", EVENT).await.unwrap(), Some(w.clone()));
        assert_eq!(count_rows(&setup, "orders").await, 1);
        assert_eq!(count_rows(&setup, "order_lines").await, 2, "the losers' lines are gone");
        assert_eq!(count_rows(&setup, "order_transitions").await, 1);
        assert_eq!(count_rows(&setup, "outbox").await, 1, "one order.created");
        assert_eq!(the_row(&setup, kinds::ORDER_CREATED, &w.id).await.order_id, w.id);
        for s in stores {
            s.close().await;
        }
        done(setup).await;
    }

    /// Each order the store takes writes one `order.created` row (the
    /// buyer's other sockets hear of it): made from the order, with an id
    /// of its own, at the checkout's time, unsent. A refused checkout
    /// writes none, and no later step writes another.
    async fn every_inserted_order_announces_itself_once(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let o = with_coupon(OrderRecord { created_ms: NOW + 1, ..order("o-1", "u1", &["B-2-3", "A-1-1"]) }, &cp);
        assert_eq!(store.insert_order(&o, None, NOW + 2).await.unwrap(), Inserted::Inserted);
        let row = the_row(&store, kinds::ORDER_CREATED, "o-1").await;
        assert_made_up_id(&row.id);
        assert_eq!(
            (row.event_id.as_str(), row.order_id.as_str(), row.kind.as_str(), row.created_ms),
            (EVENT, "o-1", kinds::ORDER_CREATED, NOW + 2),
            "at the checkout's time"
        );
        assert_eq!(announced(&row), announcement_of(&o, false, NOW + 2));
        assert_eq!(store.outbox_unsent(10).await.unwrap(), std::slice::from_ref(&row), "unsent");
        assert_eq!(store.outbox_backlog().await.unwrap(), (1, Some(NOW + 2)));

        // One each, each with an id of its own.
        let other = OrderRecord { event_id: "e-2".into(), seller_id: "s-2".into(), ..order("o-2", "u1", &["A-1-1"]) };
        let other = placed(&store, other).await;
        let theirs = placed(&store, order("o-3", "u2", &["A-1-2"])).await;
        for o in [&other, &theirs] {
            assert_eq!(announced(&the_row(&store, kinds::ORDER_CREATED, &o.id).await), announcement_of(o, false, NOW));
        }
        let ids: HashSet<String> =
            rows_of(&store, kinds::ORDER_CREATED, None).await.into_iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 3);

        // Refused checkouts: none.
        let refused = [
            (order("o-4", "u1", &["A-1-4"]), None, Inserted::PendingExists),
            (with_coupon(order("o-5", "u3", &["A-1-5"]), &cp), None, Inserted::CouponUnavailable),
            (order("o-6", "u3", &["A-1-6"]), Some("o-nope"), Inserted::ReplacedGone),
        ];
        for (o, replaces, why) in refused {
            assert_eq!(store.insert_order(&o, replaces, NOW + 3).await.unwrap(), why);
            assert_eq!(rows_of_order(&store, "outbox", &o.id).await, 0, "{why:?}");
        }
        assert_eq!(count_rows(&store, "outbox").await, 3);

        // A replacement: the new order is announced, the old one no more.
        let new = OrderRecord { created_ms: NOW + 4, ..order("o-7", "u2", &["A-1-2", "A-1-3"]) };
        assert_eq!(store.insert_order(&new, Some("o-3"), NOW + 4).await.unwrap(), Inserted::Inserted);
        assert_eq!(
            announced(&the_row(&store, kinds::ORDER_CREATED, "o-7").await),
            announcement_of(&new, false, NOW + 4)
        );
        assert_eq!(rows_of(&store, kinds::ORDER_CREATED, Some("o-3")).await.len(), 1);
        // Later steps write rows of their own kinds.
        paid(&store, &new, NOW + 5).await;
        store.complete_refund("o-7", NOW + 6).await.unwrap().unwrap();
        let row = outbox("ob-c", &other, "order.cancelled", NOW + 7);
        store.cancel_order("o-2", "u1", "no", &row, NOW + 7).await.unwrap().unwrap();
        assert_eq!(rows_of(&store, kinds::ORDER_CREATED, None).await.len(), 4);
        assert_eq!(count_rows(&store, "outbox").await, 7);
        done(store).await;
    }

    async fn a_payment_starts_once_and_only_before_expiry(db: &TestDb) {
        let store = store(db).await;
        let o = placed(&store, order("o-1", "u1", &["A-1-1"])).await;
        assert!(!store.start_payment("o-1", "u2", "ok-x", NOW + 1, 0).await.unwrap(), "not someone else's");
        assert!(!store.start_payment("o-nope", "u1", "ok-x", NOW + 1, 0).await.unwrap());
        assert!(store.start_payment("o-1", "u1", "ok-1", NOW + 1, 0).await.unwrap());
        assert!(!store.start_payment("o-1", "u1", "ok-2", NOW + 2, 0).await.unwrap(), "once");
        assert!(!store.start_payment("o-1", "u1", "ok-1", NOW + 2, 0).await.unwrap(), "once, whatever the key");
        assert_eq!(
            get(&store, "o-1").await,
            OrderRecord {
                payment: PaymentState::InFlight,
                payment_key: Some("ok-1".into()),
                payment_started_ms: Some(NOW + 1),
                updated_ms: NOW + 1,
                ..o
            }
        );
        assert_eq!(path(&store, "o-1").await.len(), 1, "no status change");
        let late = placed(&store, order("o-2", "u2", &["A-1-2"])).await;
        assert!(!store.start_payment("o-2", "u2", "ok-3", late.expires_ms, 0).await.unwrap(), "its time is up");
        placed(&store, order("o-3", "u3", &["A-1-3"])).await;
        expire_all(&store, NOW + 10 * MIN).await;
        assert!(!store.start_payment("o-3", "u3", "ok-4", NOW + 1, 0).await.unwrap(), "expired");
        assert_eq!(get(&store, "o-2").await.payment, PaymentState::None);
        done(store).await;
    }

    /// A payment started in time keeps its order (and so its seats) at
    /// least until `keep_until_ms`, so the sweep leaves it to the gateway;
    /// it never shortens an order's time, and a refused start raises none.
    async fn a_started_payment_keeps_the_order_until_asked(db: &TestDb) {
        let store = store(db).await;
        let o = placed(&store, order("o-1", "u1", &["A-1-1"])).await;
        let keep = NOW + 15 * MIN;
        assert!(!store.start_payment("o-1", "u2", "ok-x", NOW + 1, NOW + 60 * MIN).await.unwrap(), "not theirs");
        assert_eq!(get(&store, "o-1").await, o, "a refused start changes nothing");
        assert!(store.start_payment("o-1", "u1", "ok-1", NOW + 1, keep).await.unwrap());
        let want = OrderRecord {
            payment: PaymentState::InFlight,
            payment_key: Some("ok-1".into()),
            payment_started_ms: Some(NOW + 1),
            expires_ms: keep,
            updated_ms: NOW + 1,
            ..o.clone()
        };
        assert_eq!(get(&store, "o-1").await, want);
        assert!(!store.start_payment("o-1", "u1", "ok-2", NOW + 2, NOW + 60 * MIN).await.unwrap(), "once");
        assert_eq!(get(&store, "o-1").await, want, "raised once");
        // Never shortened, by an earlier or the same time.
        let long = placed(&store, OrderRecord { expires_ms: NOW + 20 * MIN, ..order("o-2", "u2", &["A-1-2"]) }).await;
        assert!(store.start_payment("o-2", "u2", "ok-2", NOW + 1, NOW + 5 * MIN).await.unwrap());
        assert_eq!(get(&store, "o-2").await.expires_ms, long.expires_ms, "never shortened");
        let even = placed(&store, order("o-3", "u3", &["A-1-3"])).await;
        assert!(store.start_payment("o-3", "u3", "ok-3", NOW + 1, even.expires_ms).await.unwrap());
        assert_eq!(get(&store, "o-3").await.expires_ms, even.expires_ms);
        // Too late to start: a later keep does not bring the order back.
        let late = placed(&store, order("o-4", "u4", &["A-1-4"])).await;
        assert!(
            !store.start_payment("o-4", "u4", "ok-4", late.expires_ms, late.expires_ms + 5 * MIN).await.unwrap(),
            "its time is up"
        );
        assert_eq!(get(&store, "o-4").await, late);
        let kept = placed(&store, order("o-5", "u5", &["A-1-5"])).await;
        assert!(store.start_payment("o-5", "u5", "ok-5", NOW + 1, NOW + 14 * MIN).await.unwrap());

        // The sweep at their first end takes only those not kept longer.
        let ids = |got: Vec<OrderRecord>| got.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(ids(expire_all(&store, o.expires_ms).await), ["o-3", "o-4"]);
        assert_eq!(ids(expire_all(&store, NOW + 14 * MIN - 1).await), Vec::<String>::new());
        assert_eq!(ids(expire_all(&store, NOW + 14 * MIN).await), ["o-5"], "kept until then");
        assert_eq!(get(&store, "o-5").await.expires_ms, NOW + 14 * MIN);
        assert_eq!(kept.expires_ms, o.expires_ms);
        // Paid while kept: an approval in time, not a late one.
        let row = outbox("ob-1", &o, "payment.completed", NOW + 14 * MIN + 1);
        let Completed::Paid(after) = store.complete_payment("o-1", "gk-1", &row, NOW + 14 * MIN + 1).await.unwrap()
        else {
            panic!("kept for its payment");
        };
        assert_eq!((after.status, after.expires_ms), (OrderStatus::Paid, keep));
        assert_eq!(
            path(&store, "o-1").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Paid, APPROVED)]
        );
        assert_eq!(ids(expire_all(&store, NOW + 20 * MIN).await), ["o-2"]);
        done(store).await;
    }

    async fn a_payment_completes_once(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let o = placed(&store, with_coupon(order("o-1", "u1", &["A-1-2", "A-1-1"]), &cp)).await;
        assert!(store.start_payment("o-1", "u1", "ok-1", NOW + 1, 0).await.unwrap());
        let row = outbox("ob-1", &o, "payment.completed", NOW + 2);
        let Completed::Paid(after) = store.complete_payment("o-1", "gk-1", &row, NOW + 2).await.unwrap() else {
            panic!("not paid");
        };
        let want = OrderRecord {
            status: OrderStatus::Paid,
            payment: PaymentState::Approved,
            payment_key: Some("ok-1".into()),
            payment_started_ms: Some(NOW + 1),
            gateway_key: Some("gk-1".into()),
            paid_ms: Some(NOW + 2),
            reason: None,
            updated_ms: NOW + 2,
            ..o.clone()
        };
        assert_eq!(after, want);
        assert_eq!(get(&store, "o-1").await, want);
        let sold = vec![("A-1-1".to_owned(), "o-1".to_owned()), ("A-1-2".to_owned(), "o-1".to_owned())];
        assert_eq!(store.sold_seats(EVENT).await.unwrap(), sold);
        assert_eq!(store.sold_seats_of(EVENT, &["A-1-2".into(), "B-1-1".into()]).await.unwrap(), sold[1..]);
        assert!(store.sold_seats("e-2").await.unwrap().is_empty());
        let created = the_row(&store, kinds::ORDER_CREATED, "o-1").await;
        assert_eq!(store.outbox_unsent(10).await.unwrap(), [created, row.clone()]);
        assert_eq!(coupon_used_ms(&store, &cp).await, Some(NOW + 2));
        assert_eq!(reserved_for(&store, &cp).await.as_deref(), Some("o-1"), "names the order that spent it");
        assert_eq!(campaign_used(&store).await, 1);
        assert_eq!(
            path(&store, "o-1").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Paid, APPROVED)]
        );

        // Again: nothing changes, no second row.
        let again = outbox("ob-2", &o, "payment.completed", NOW + 3);
        assert_eq!(
            store.complete_payment("o-1", "gk-1", &again, NOW + 3).await.unwrap(),
            Completed::AlreadyPaid(want.clone())
        );
        assert_eq!(announced_ids(&store).await, ["ob-1"]);
        assert_eq!(campaign_used(&store).await, 1);
        assert_eq!(path(&store, "o-1").await.len(), 2);

        // A failed order cannot be paid; nothing is written.
        let f = placed(&store, order("o-2", "u2", &["B-1-1"])).await;
        store.decline_payment("o-2", "card rejected", None, NOW + 4).await.unwrap();
        let failed = get(&store, "o-2").await;
        let refused = outbox("ob-3", &f, "payment.completed", NOW + 5);
        assert_eq!(
            store.complete_payment("o-2", "gk-2", &refused, NOW + 5).await.unwrap(),
            Completed::NotPayable(failed.clone())
        );
        assert_eq!(get(&store, "o-2").await, failed);
        assert_eq!(store.sold_seats_of(EVENT, &["B-1-1".into()]).await.unwrap(), []);
        assert_eq!(announced_ids(&store).await, ["ob-1"]);
        assert!(store.complete_payment("o-nope", "gk", &refused, NOW + 5).await.is_err(), "an unknown order");
        done(store).await;
    }

    async fn a_seat_sold_once_is_refused_to_another_order(db: &TestDb) {
        let store = store(db).await;
        let first = placed(&store, order("o-1", "u1", &["A-1-1", "A-1-2"])).await;
        let cp = coupon(&store, "u2").await;
        let second = placed(&store, with_coupon(order("o-2", "u2", &["A-1-3", "A-1-2"]), &cp)).await;
        paid(&store, &first, NOW + 1).await;
        assert!(store.start_payment("o-2", "u2", "ok-2", NOW + 2, 0).await.unwrap());
        let before = get(&store, "o-2").await;
        let row = outbox("ob-2", &second, "payment.completed", NOW + 3);
        assert_eq!(
            store.complete_payment("o-2", "gk-2", &row, NOW + 3).await.unwrap(),
            Completed::SeatsTaken(vec!["A-1-2".into()])
        );
        assert_eq!(get(&store, "o-2").await, before, "nothing changed");
        assert_eq!(
            store.sold_seats(EVENT).await.unwrap(),
            [("A-1-1".to_owned(), "o-1".to_owned()), ("A-1-2".to_owned(), "o-1".to_owned())],
            "not even its free seat"
        );
        assert_eq!(announced_ids(&store).await, ["ob-paid-o-1"]);
        assert_eq!(coupon_used_ms(&store, &cp).await, None);
        assert_eq!(campaign_used(&store).await, 0);
        assert_eq!(path(&store, "o-2").await.len(), 1);
        // The same seat in another event is another seat.
        let elsewhere = placed(
            &store,
            OrderRecord { event_id: "e-2".into(), seller_id: "s-2".into(), ..order("o-3", "u3", &["A-1-1"]) },
        )
        .await;
        paid(&store, &elsewhere, NOW + 4).await;
        done(store).await;
    }

    /// Twenty orders of one seat (each with a seat of its own too) paid at
    /// once on two stores: exactly one sale, the others refused whole.
    async fn twenty_payments_race_for_one_seat_and_one_wins(db: &TestDb) {
        let setup = store(db).await;
        for n in 0..20 {
            let o = placed(&setup, order(&format!("o-{n}"), &format!("u{n}"), &["A-1-1", &format!("Z-{n}")])).await;
            assert!(setup.start_payment(&o.id, &o.user_id, &format!("ok-{n}"), NOW + 1, 0).await.unwrap());
        }
        let stores = [db.store().await, db.store().await];
        let mut tasks = Vec::new();
        for n in 0..20 {
            let store = stores[n % 2].clone();
            let o = get(&setup, &format!("o-{n}")).await;
            tasks.push(tokio::spawn(async move {
                let row = outbox(&format!("ob-{n}"), &o, "payment.completed", NOW + 2);
                store.complete_payment(&o.id, &format!("gk-{n}"), &row, NOW + 2).await.unwrap()
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Completed::Paid(o) => winners.push(o),
                Completed::SeatsTaken(seats) => assert_eq!(seats, ["A-1-1"]),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one sale");
        let w = &winners[0];
        let own = w.lines[1].seat.clone();
        assert_eq!(store_sold(&setup).await, [("A-1-1".to_owned(), w.id.clone()), (own, w.id.clone())]);
        assert_eq!(announced_ids(&setup).await, [format!("ob-{}", w.id.trim_start_matches("o-"))], "one sale");
        assert_eq!(count_rows(&setup, "outbox").await, 21, "and the twenty checkouts");
        for n in 0..20 {
            let o = get(&setup, &format!("o-{n}")).await;
            if o.id != w.id {
                assert_eq!((o.status, o.payment), (OrderStatus::Pending, PaymentState::InFlight));
            }
        }
        for s in stores {
            s.close().await;
        }
        done(setup).await;
    }

    async fn store_sold(store: &SqlStore) -> Vec<(String, String)> {
        store.sold_seats(EVENT).await.unwrap()
    }

    async fn a_late_payment_takes_the_seats_again(db: &TestDb) {
        let store = store(db).await;
        let o = placed(&store, order("o-1", "u1", &["A-1-1"])).await;
        assert!(store.start_payment("o-1", "u1", "ok-1", NOW + 1, 0).await.unwrap());
        let expired = expire_all(&store, o.expires_ms).await;
        assert_eq!(
            expired.iter().map(|o| (o.id.as_str(), o.status)).collect::<Vec<_>>(),
            [("o-1", OrderStatus::Expired)]
        );
        let row = outbox("ob-late", &o, "payment.completed", o.expires_ms + 1);
        let Completed::Paid(after) = store.complete_payment("o-1", "gk-1", &row, o.expires_ms + 1).await.unwrap()
        else {
            panic!("a late payment is a sale while the seats are free");
        };
        assert_eq!((after.status, after.payment, after.reason), (OrderStatus::Paid, PaymentState::Approved, None));
        assert_eq!(
            path(&store, "o-1").await,
            [
                step(OrderStatus::Pending, CHECKOUT),
                step(OrderStatus::Expired, EXPIRED),
                step(OrderStatus::Paid, APPROVED_LATE)
            ]
        );
        assert_eq!(store_sold(&store).await, [("A-1-1".to_owned(), "o-1".to_owned())]);

        // Cancelled, then the money arrives anyway.
        let c = placed(&store, order("o-2", "u2", &["A-1-2"])).await;
        store
            .cancel_order("o-2", "u2", "changed my mind", &outbox("ob-c", &c, "order.cancelled", NOW + 2), NOW + 2)
            .await
            .unwrap()
            .unwrap();
        let row = outbox("ob-late-2", &c, "payment.completed", NOW + 3);
        assert!(matches!(store.complete_payment("o-2", "gk-2", &row, NOW + 3).await.unwrap(), Completed::Paid(_)));
        assert_eq!(
            path(&store, "o-2").await,
            [
                step(OrderStatus::Pending, CHECKOUT),
                step(OrderStatus::Cancelled, "changed my mind"),
                step(OrderStatus::Paid, APPROVED_LATE)
            ]
        );
        assert_eq!(announced_ids(&store).await, ["ob-c", "ob-late-2", "ob-exp-o-1", "ob-late"]);
        done(store).await;
    }

    async fn a_late_payment_keeps_a_coupon_spent_meanwhile(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let first = placed(&store, with_coupon(order("o-1", "u1", &["A-1-1"]), &cp)).await;
        assert!(store.start_payment("o-1", "u1", "ok-1", NOW + 1, 0).await.unwrap());
        expire_all(&store, first.expires_ms).await;
        let later =
            OrderRecord { created_ms: NOW + 11 * MIN, expires_ms: NOW + 21 * MIN, ..order("o-2", "u1", &["A-1-2"]) };
        let second = placed(&store, with_coupon(later, &cp)).await;
        paid(&store, &second, NOW + 12 * MIN).await;
        assert_eq!(campaign_used(&store).await, 1);
        let row = outbox("ob-late", &first, "payment.completed", NOW + 13 * MIN);
        let Completed::Paid(after) = store.complete_payment("o-1", "gk-1", &row, NOW + 13 * MIN).await.unwrap() else {
            panic!("the money was taken: the sale stands");
        };
        assert_eq!((after.discount, after.total, after.coupon_id.as_deref()), (10_000, first.total, Some(cp.as_str())));
        let reasons = path(&store, "o-1").await;
        assert_eq!(reasons.last().map(|(s, _)| *s), Some(OrderStatus::Paid));
        assert_eq!(reasons.last().map(|(_, r)| r.clone()), Some(format!("{APPROVED_LATE}{COUPON_SPENT_ELSEWHERE}")));
        assert_eq!(campaign_used(&store).await, 1, "spent once");
        assert_eq!(coupon_used_ms(&store, &cp).await, Some(NOW + 12 * MIN));
        assert_eq!(reserved_for(&store, &cp).await.as_deref(), Some("o-2"));
        done(store).await;
    }

    async fn a_decline_fails_only_a_pending_order(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let o = placed(&store, with_coupon(order("o-1", "u1", &["A-1-1"]), &cp)).await;
        assert!(store.start_payment("o-1", "u1", "decline-1", NOW + 1, 0).await.unwrap());
        let row = outbox("ob-1", &o, "order.failed", NOW + 2);
        let failed = store.decline_payment("o-1", "card rejected", Some(&row), NOW + 2).await.unwrap().unwrap();
        assert_eq!(
            (failed.status, failed.payment, failed.reason.as_deref(), failed.updated_ms),
            (OrderStatus::Failed, PaymentState::Declined, Some("card rejected"), NOW + 2)
        );
        assert_eq!(get(&store, "o-1").await, failed);
        assert_eq!(
            path(&store, "o-1").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Failed, "card rejected")]
        );
        assert_eq!(reserved_for(&store, &cp).await, None, "the coupon is given back");
        assert_eq!(announced_ids(&store).await, ["ob-1"]);
        // Declined again (a replay): failed stays failed, nothing more.
        let again = outbox("ob-1b", &o, "order.failed", NOW + 3);
        assert_eq!(store.decline_payment("o-1", "card rejected", Some(&again), NOW + 3).await.unwrap(), Some(failed));
        assert_eq!(announced_ids(&store).await, ["ob-1"]);

        // Paid: a stray decline changes nothing.
        let p = paid(&store, &placed(&store, order("o-3", "u3", &["A-1-3"])).await, NOW + 2).await;
        let row = outbox("ob-3", &p, "order.failed", NOW + 3);
        assert_eq!(store.decline_payment("o-3", "late decline", Some(&row), NOW + 3).await.unwrap(), Some(p));
        assert_eq!(announced_ids(&store).await, ["ob-1", "ob-paid-o-3"]);
        // Going back: neither.
        let r = paid(&store, &placed(&store, order("o-4", "u4", &["A-1-4"])).await, NOW + 2).await;
        let due = store.mark_refund_due("o-4", "gk-o-4", "refunded by the seller", NOW + 3).await.unwrap().unwrap();
        let row = outbox("ob-4", &r, "order.failed", NOW + 4);
        assert_eq!(store.decline_payment("o-4", "late decline", Some(&row), NOW + 4).await.unwrap(), Some(due));
        assert!(!announced_ids(&store).await.contains(&"ob-4".to_owned()));
        assert_eq!(store.decline_payment("o-nope", "x", None, NOW).await.unwrap(), None);
        done(store).await;
    }

    /// A decline that lands once the order expired or was cancelled leaves
    /// the status be (no transition, the reason kept), records the decline
    /// and still writes its outbox row: the buyer told `pending` hears the
    /// outcome. Once.
    async fn a_decline_after_expiry_or_cancel_is_announced_and_keeps_the_status(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let e = placed(&store, with_coupon(order("o-1", "u1", &["A-1-1"]), &cp)).await;
        assert!(store.start_payment("o-1", "u1", "decline-1", NOW + 1, 0).await.unwrap());
        let expired = expire_all(&store, e.expires_ms).await.pop().unwrap();
        assert_eq!(reserved_for(&store, &cp).await, None);
        let at = e.expires_ms + 1;
        let row = outbox("ob-1", &expired, "order.failed", at);
        let after = store.decline_payment("o-1", "card rejected", Some(&row), at).await.unwrap().unwrap();
        let want = OrderRecord { payment: PaymentState::Declined, updated_ms: at, ..expired.clone() };
        assert_eq!(after, want);
        assert_eq!((after.status, after.reason.as_deref()), (OrderStatus::Expired, Some(EXPIRED)));
        assert_eq!(get(&store, "o-1").await, want);
        assert_eq!(
            path(&store, "o-1").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Expired, EXPIRED)],
            "no transition"
        );
        assert_eq!(rows_of(&store, "order.failed", Some("o-1")).await, std::slice::from_ref(&row), "announced");
        assert_eq!(announced_ids(&store).await, ["ob-exp-o-1", "ob-1"]);
        assert_eq!(reserved_for(&store, &cp).await, None, "the coupon stays free");
        // A replay: nothing more.
        let again = outbox("ob-1b", &expired, "order.failed", at + 1);
        assert_eq!(store.decline_payment("o-1", "card rejected", Some(&again), at + 1).await.unwrap(), Some(want));
        assert_eq!(announced_ids(&store).await, ["ob-exp-o-1", "ob-1"]);

        // Cancelled before any payment started, and then a decline.
        let c = placed(&store, order("o-2", "u2", &["A-1-2"])).await;
        let cancelled = store
            .cancel_order("o-2", "u2", "changed my mind", &outbox("ob-c", &c, "order.cancelled", NOW + 2), NOW + 2)
            .await
            .unwrap()
            .unwrap();
        let row = outbox("ob-2", &cancelled, "order.failed", NOW + 3);
        let after = store.decline_payment("o-2", "card rejected", Some(&row), NOW + 3).await.unwrap().unwrap();
        assert_eq!(after, OrderRecord { payment: PaymentState::Declined, updated_ms: NOW + 3, ..cancelled });
        assert_eq!(
            path(&store, "o-2").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Cancelled, "changed my mind")]
        );
        assert_eq!(announced_ids(&store).await, ["ob-c", "ob-2", "ob-exp-o-1", "ob-1"]);

        // Without a row to write, only the payment records it.
        let n = placed(&store, order("o-3", "u3", &["A-1-3"])).await;
        let expired = expire_all(&store, n.expires_ms).await.pop().unwrap();
        let after = store.decline_payment("o-3", "card rejected", None, n.expires_ms + 2).await.unwrap().unwrap();
        assert_eq!(after, OrderRecord { payment: PaymentState::Declined, updated_ms: n.expires_ms + 2, ..expired });
        assert_eq!(announced_ids(&store).await, ["ob-c", "ob-2", "ob-exp-o-1", "ob-exp-o-3", "ob-1"]);
        done(store).await;
    }

    async fn the_sweep_expires_due_orders_longest_overdue_first(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let due = |id: &str, user: &str, expires_in: i64| OrderRecord {
            expires_ms: NOW + expires_in,
            ..order(id, user, &[id])
        };
        placed(&store, with_coupon(due("o-a", "u1", 5 * MIN), &cp)).await;
        placed(&store, due("o-b", "u2", 3 * MIN)).await;
        placed(&store, due("o-c", "u3", 20 * MIN)).await;
        let d = placed(&store, due("o-d", "u4", MIN)).await;
        paid(&store, &d, NOW + 1).await;
        let at = NOW + 10 * MIN;
        let sweep = |max: u32| {
            store.expire_orders(at, max, |o| {
                assert_eq!((o.status, o.reason.as_deref(), o.updated_ms), (OrderStatus::Expired, Some(EXPIRED), at));
                outbox(&format!("ob-{}", o.id), o, "order.expired", at)
            })
        };
        assert!(sweep(0).await.unwrap().is_empty());
        let first = sweep(1).await.unwrap();
        assert_eq!(first.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["o-b"]);
        assert_eq!(first[0], get(&store, "o-b").await);
        let rest = sweep(10).await.unwrap();
        assert_eq!(rest.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["o-a"]);
        assert!(sweep(10).await.unwrap().is_empty(), "nothing twice");
        assert_eq!(get(&store, "o-c").await.status, OrderStatus::Pending, "not due yet");
        assert_eq!(get(&store, "o-d").await.status, OrderStatus::Paid);
        assert_eq!(reserved_for(&store, &cp).await, None);
        assert_eq!(announced_ids(&store).await, ["ob-paid-o-d", "ob-o-a", "ob-o-b"]);
        assert_eq!(
            path(&store, "o-a").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Expired, EXPIRED)]
        );
        // Due exactly now counts.
        assert_eq!(expire_all(&store, NOW + 20 * MIN).await.len(), 1);
        done(store).await;
    }

    async fn only_the_buyer_cancels_an_unpaid_order(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let o = placed(&store, with_coupon(order("o-1", "u1", &["A-1-1"]), &cp)).await;
        let row = outbox("ob-1", &o, "order.cancelled", NOW + 1);
        assert_eq!(
            store.cancel_order("o-1", "u2", "mine now", &row, NOW + 1).await.unwrap(),
            Err(None),
            "someone else's"
        );
        assert_eq!(store.cancel_order("o-nope", "u1", "x", &row, NOW + 1).await.unwrap(), Err(None));
        assert!(announced_ids(&store).await.is_empty());
        let cancelled = store.cancel_order("o-1", "u1", "changed my mind", &row, NOW + 1).await.unwrap().unwrap();
        assert_eq!(
            cancelled,
            OrderRecord {
                status: OrderStatus::Cancelled,
                reason: Some("changed my mind".into()),
                updated_ms: NOW + 1,
                ..o
            }
        );
        assert_eq!(announced_ids(&store).await, ["ob-1"]);
        assert_eq!(reserved_for(&store, &cp).await, None);
        let row2 = outbox("ob-2", &cancelled, "order.cancelled", NOW + 2);
        assert_eq!(store.cancel_order("o-1", "u1", "again", &row2, NOW + 2).await.unwrap(), Err(Some(cancelled)));
        assert_eq!(announced_ids(&store).await, ["ob-1"]);
        placed(&store, with_coupon(order("o-2", "u1", &["A-1-1"]), &cp)).await;

        let f = placed(&store, order("o-3", "u3", &["A-1-3"])).await;
        assert!(store.start_payment("o-3", "u3", "ok-3", NOW + 1, 0).await.unwrap());
        let in_flight = get(&store, "o-3").await;
        let row3 = outbox("ob-3", &f, "order.cancelled", NOW + 2);
        assert_eq!(store.cancel_order("o-3", "u3", "x", &row3, NOW + 2).await.unwrap(), Err(Some(in_flight)), "paying");
        let p = paid(&store, &placed(&store, order("o-4", "u4", &["A-1-4"])).await, NOW + 2).await;
        assert_eq!(store.cancel_order("o-4", "u4", "x", &row3, NOW + 3).await.unwrap(), Err(Some(p)));
        assert_eq!(announced_ids(&store).await, ["ob-1", "ob-paid-o-4"]);
        done(store).await;
    }

    async fn a_refund_puts_the_seats_back_on_sale_once(db: &TestDb) {
        let store = store(db).await;
        let o = paid(&store, &placed(&store, order("o-1", "u1", &["A-1-1", "A-1-2"])).await, NOW + 1).await;
        let due = store.mark_refund_due("o-1", "gk-other", "refunded by the seller", NOW + 2).await.unwrap().unwrap();
        assert_eq!(
            due,
            OrderRecord {
                payment: PaymentState::RefundDue,
                reason: Some("refunded by the seller".into()),
                updated_ms: NOW + 2,
                ..o.clone()
            },
            "status and the stored gateway key unchanged"
        );
        assert_eq!(
            store.mark_refund_due("o-1", "gk-o-1", "again", NOW + 3).await.unwrap(),
            Some(due.clone()),
            "due already"
        );
        assert_eq!(store_sold(&store).await.len(), 2, "sold until the money is back");
        assert!(rows_of(&store, kinds::ORDER_REFUNDED, None).await.is_empty());
        let refunded = store.complete_refund("o-1", NOW + 4).await.unwrap().unwrap();
        assert_eq!(
            refunded,
            OrderRecord { status: OrderStatus::Refunded, payment: PaymentState::Refunded, updated_ms: NOW + 4, ..due }
        );
        assert_eq!(get(&store, "o-1").await, refunded);
        assert!(store_sold(&store).await.is_empty(), "back on sale");
        assert_eq!(
            path(&store, "o-1").await,
            [
                step(OrderStatus::Pending, CHECKOUT),
                step(OrderStatus::Paid, APPROVED),
                step(OrderStatus::Refunded, "refunded by the seller")
            ]
        );
        // The store's own row, made from the order as refunded.
        let row = the_row(&store, kinds::ORDER_REFUNDED, "o-1").await;
        assert_made_up_id(&row.id);
        assert_eq!((row.event_id.as_str(), row.created_ms), (EVENT, NOW + 4));
        assert_eq!(announced(&row), announcement_of(&refunded, true, NOW + 4));
        assert_eq!(announced_ids(&store).await, ["ob-paid-o-1".to_owned(), row.id.clone()]);
        assert_eq!(store.complete_refund("o-1", NOW + 5).await.unwrap(), Some(refunded.clone()), "once");
        assert_eq!(announced_ids(&store).await, ["ob-paid-o-1".to_owned(), row.id.clone()]);
        assert_eq!(store.mark_refund_due("o-1", "gk-o-1", "again", NOW + 5).await.unwrap(), None);

        // The seats sell again, to someone else.
        let next = placed(&store, OrderRecord { created_ms: NOW + 6, ..order("o-2", "u2", &["A-1-2", "A-1-1"]) }).await;
        paid(&store, &next, NOW + 7).await;
        assert_eq!(
            store_sold(&store).await,
            [("A-1-1".to_owned(), "o-2".to_owned()), ("A-1-2".to_owned(), "o-2".to_owned())]
        );

        // No money taken, nothing to give back.
        let unpaid = placed(&store, order("o-3", "u3", &["A-1-3"])).await;
        assert_eq!(store.mark_refund_due("o-3", "gk", "x", NOW + 8).await.unwrap(), None);
        assert_eq!(store.complete_refund("o-3", NOW + 8).await.unwrap(), None);
        assert_eq!(get(&store, "o-3").await, unpaid);
        store.decline_payment("o-3", "card rejected", None, NOW + 9).await.unwrap();
        let failed = get(&store, "o-3").await;
        assert_eq!(store.complete_refund("o-3", NOW + 9).await.unwrap(), None, "a decline took no money");
        assert_eq!(get(&store, "o-3").await, failed);
        // Nor did an expiry.
        let lapsed = placed(&store, order("o-4", "u4", &["A-1-4"])).await;
        let lapsed = expire_all(&store, lapsed.expires_ms).await.into_iter().find(|e| e.id == "o-4").unwrap();
        assert_eq!(store.mark_refund_due("o-4", "gk", "x", NOW + 11 * MIN).await.unwrap(), None);
        assert_eq!(store.complete_refund("o-4", NOW + 11 * MIN).await.unwrap(), None);
        assert_eq!(get(&store, "o-4").await, lapsed);
        assert_eq!(store.complete_refund("o-nope", NOW + 9).await.unwrap(), None);
        assert_eq!(store.mark_refund_due("o-nope", "gk", "x", NOW + 9).await.unwrap(), None);
        assert_eq!(rows_of(&store, kinds::ORDER_REFUNDED, None).await.len(), 1, "o-1's only");
        done(store).await;
    }

    /// A payment approved once its order expired and its seats were sold to
    /// someone else: the money goes back and the order ends refunded, the
    /// other buyer's seats untouched.
    async fn a_late_approval_for_gone_seats_is_refunded(db: &TestDb) {
        let store = store(db).await;
        let o = placed(&store, order("o-1", "u1", &["A-1-1"])).await;
        assert!(store.start_payment("o-1", "u1", "slow-1", NOW + 1, 0).await.unwrap());
        expire_all(&store, o.expires_ms).await;
        let other =
            OrderRecord { created_ms: NOW + 11 * MIN, expires_ms: NOW + 21 * MIN, ..order("o-2", "u2", &["A-1-1"]) };
        paid(&store, &placed(&store, other).await, NOW + 12 * MIN).await;
        let row = outbox("ob-late", &o, "payment.completed", NOW + 13 * MIN);
        assert_eq!(
            store.complete_payment("o-1", "gk-late", &row, NOW + 13 * MIN).await.unwrap(),
            Completed::SeatsTaken(vec!["A-1-1".into()])
        );
        let reason = "the seats were taken by someone else before the payment arrived";
        let due = store.mark_refund_due("o-1", "gk-late", reason, NOW + 14 * MIN).await.unwrap().unwrap();
        assert_eq!(
            (due.status, due.payment, due.gateway_key.as_deref()),
            (OrderStatus::Expired, PaymentState::RefundDue, Some("gk-late")),
            "the gateway key is kept for the refund"
        );
        assert_eq!(
            store.complete_payment("o-1", "gk-late", &row, NOW + 14 * MIN).await.unwrap(),
            Completed::NotPayable(due.clone()),
            "money on its way back is not taken again"
        );
        let refunded = store.complete_refund("o-1", NOW + 15 * MIN).await.unwrap().unwrap();
        assert_eq!((refunded.status, refunded.payment), (OrderStatus::Refunded, PaymentState::Refunded));
        let row = announced(&the_row(&store, kinds::ORDER_REFUNDED, "o-1").await);
        assert_eq!(row, announcement_of(&refunded, false, NOW + 15 * MIN), "its seats were never sold");
        assert_eq!(
            path(&store, "o-1").await,
            [
                step(OrderStatus::Pending, CHECKOUT),
                step(OrderStatus::Expired, EXPIRED),
                step(OrderStatus::Refunded, reason)
            ]
        );
        assert_eq!(store_sold(&store).await, [("A-1-1".to_owned(), "o-2".to_owned())], "the other sale stands");
        done(store).await;
    }

    /// The gateway approves a payment the order had failed on (a decline
    /// taken as final, then the money came after all): a failed order is
    /// not paid, its money goes back and it ends refunded (failed →
    /// refunded), its seats never sold, the other buyer's untouched.
    async fn a_late_approval_of_a_failed_order_is_refunded(db: &TestDb) {
        let store = store(db).await;
        let cp = coupon(&store, "u1").await;
        let o = placed(&store, with_coupon(order("o-1", "u1", &["A-1-1"]), &cp)).await;
        assert!(store.start_payment("o-1", "u1", "ok-1", NOW + 1, 0).await.unwrap());
        let row = outbox("ob-fail", &o, "order.failed", NOW + 2);
        let failed = store.decline_payment("o-1", "not confirmed in time", Some(&row), NOW + 2).await.unwrap().unwrap();
        assert_eq!((failed.status, failed.payment), (OrderStatus::Failed, PaymentState::Declined));
        assert_eq!(store.complete_refund("o-1", NOW + 3).await.unwrap(), None, "a decline alone took no money");
        assert_eq!(get(&store, "o-1").await, failed);
        let other = placed(&store, order("o-2", "u2", &["A-1-1"])).await;
        paid(&store, &other, NOW + 4).await;

        let late = outbox("ob-late", &o, "payment.completed", NOW + 5);
        assert_eq!(
            store.complete_payment("o-1", "gk-late", &late, NOW + 5).await.unwrap(),
            Completed::NotPayable(failed.clone())
        );
        let reason = "the payment was approved after the order had failed";
        let due = store.mark_refund_due("o-1", "gk-late", reason, NOW + 6).await.unwrap().unwrap();
        assert_eq!(
            due,
            OrderRecord {
                payment: PaymentState::RefundDue,
                gateway_key: Some("gk-late".into()),
                reason: Some(reason.into()),
                updated_ms: NOW + 6,
                ..failed.clone()
            },
            "still failed; the gateway key kept for the refund"
        );
        assert_eq!(get(&store, "o-1").await, due);
        assert_eq!(store.mark_refund_due("o-1", "gk-x", "again", NOW + 7).await.unwrap(), Some(due.clone()));
        let ids = |got: Vec<OrderRecord>| got.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(ids(store.payments_in_doubt(NOW + 7, 3 * MIN, 10).await.unwrap()), ["o-1"], "for the reconciler");
        assert_eq!(
            store.complete_payment("o-1", "gk-late", &late, NOW + 7).await.unwrap(),
            Completed::NotPayable(due.clone())
        );

        let refunded = store.complete_refund("o-1", NOW + 8).await.unwrap().unwrap();
        assert_eq!(
            refunded,
            OrderRecord { status: OrderStatus::Refunded, payment: PaymentState::Refunded, updated_ms: NOW + 8, ..due }
        );
        assert_eq!(get(&store, "o-1").await, refunded);
        assert_eq!(
            path(&store, "o-1").await,
            [
                step(OrderStatus::Pending, CHECKOUT),
                step(OrderStatus::Failed, "not confirmed in time"),
                step(OrderStatus::Refunded, reason)
            ]
        );
        let last = store.transitions("o-1").await.unwrap().pop().unwrap();
        assert_eq!((last.from, last.to, last.at_ms), (Some(OrderStatus::Failed), OrderStatus::Refunded, NOW + 8));
        let row = the_row(&store, kinds::ORDER_REFUNDED, "o-1").await;
        assert_eq!(announced(&row), announcement_of(&refunded, false, NOW + 8), "its seats were never sold");
        assert_eq!(store_sold(&store).await, [("A-1-1".to_owned(), "o-2".to_owned())], "the other sale stands");
        assert_eq!((reserved_for(&store, &cp).await, coupon_used_ms(&store, &cp).await), (None, None));
        assert_eq!(campaign_used(&store).await, 0);

        // Once.
        assert_eq!(store.complete_refund("o-1", NOW + 9).await.unwrap(), Some(refunded));
        assert_eq!(store.mark_refund_due("o-1", "gk-late", "again", NOW + 9).await.unwrap(), None);
        assert!(store.payments_in_doubt(NOW + 9, 0, 10).await.unwrap().is_empty());
        assert_eq!(announced_ids(&store).await, ["ob-fail".to_owned(), "ob-paid-o-2".to_owned(), row.id]);
        done(store).await;
    }

    /// `complete_refund` makes its `order.refunded` row itself, from the
    /// order as refunded, under its row lock: `was_paid` says whether the
    /// order's seats had been sold (it was paid), so the consumers put
    /// seats back on sale and book a refund only then.
    async fn the_refund_row_says_whether_the_seats_were_sold(db: &TestDb) {
        let store = store(db).await;
        // Paid, then refunded as due.
        let a = placed(&store, order("o-1", "u1", &["A-1-1", "A-1-2"])).await;
        paid(&store, &a, NOW + 1).await;
        store.mark_refund_due("o-1", "gk", "refunded by the seller", NOW + 2).await.unwrap().unwrap();
        let ra = store.complete_refund("o-1", NOW + 3).await.unwrap().unwrap();
        // Paid, and the refund confirmed without being marked due first.
        let b = placed(&store, order("o-2", "u2", &["A-1-3"])).await;
        paid(&store, &b, NOW + 1).await;
        let rb = store.complete_refund("o-2", NOW + 4).await.unwrap().unwrap();
        assert_eq!(rb.reason, None);
        assert_eq!(path(&store, "o-2").await.last(), Some(&step(OrderStatus::Refunded, REFUNDED)));
        // A late payment for seats sold meanwhile.
        let c = placed(&store, order("o-3", "u3", &["A-1-4"])).await;
        assert!(store.start_payment("o-3", "u3", "slow-3", NOW + 1, 0).await.unwrap());
        assert_eq!(expire_all(&store, c.expires_ms).await.len(), 1);
        let taker =
            OrderRecord { created_ms: NOW + 11 * MIN, expires_ms: NOW + 21 * MIN, ..order("o-5", "u5", &["A-1-4"]) };
        paid(&store, &placed(&store, taker).await, NOW + 12 * MIN).await;
        let row = outbox("ob-late", &c, "payment.completed", NOW + 13 * MIN);
        assert!(matches!(
            store.complete_payment("o-3", "gk-late", &row, NOW + 13 * MIN).await.unwrap(),
            Completed::SeatsTaken(_)
        ));
        store.mark_refund_due("o-3", "gk-late", "seats gone", NOW + 13 * MIN).await.unwrap().unwrap();
        let rc = store.complete_refund("o-3", NOW + 14 * MIN).await.unwrap().unwrap();
        // Pending with its payment in flight: the gateway gave it back first.
        let d =
            OrderRecord { created_ms: NOW + 11 * MIN, expires_ms: NOW + 21 * MIN, ..order("o-4", "u4", &["A-1-6"]) };
        placed(&store, d).await;
        assert!(store.start_payment("o-4", "u4", "ok-4", NOW + 11 * MIN, 0).await.unwrap());
        let rd = store.complete_refund("o-4", NOW + 15 * MIN).await.unwrap().unwrap();
        assert_eq!(
            path(&store, "o-4").await,
            [step(OrderStatus::Pending, CHECKOUT), step(OrderStatus::Refunded, REFUNDED)]
        );

        let mut ids = HashSet::new();
        for (refunded, was_paid, at) in
            [(&ra, true, NOW + 3), (&rb, true, NOW + 4), (&rc, false, NOW + 14 * MIN), (&rd, false, NOW + 15 * MIN)]
        {
            assert_eq!((refunded.status, refunded.payment), (OrderStatus::Refunded, PaymentState::Refunded));
            let row = the_row(&store, kinds::ORDER_REFUNDED, &refunded.id).await;
            assert_made_up_id(&row.id);
            assert_eq!((row.event_id.as_str(), row.created_ms), (EVENT, at), "{}", refunded.id);
            assert_eq!(announced(&row), announcement_of(refunded, was_paid, at), "{}", refunded.id);
            ids.insert(row.id);
        }
        assert_eq!(ids.len(), 4, "each row its own id");
        assert_eq!(store_sold(&store).await, [("A-1-4".to_owned(), "o-5".to_owned())], "only the taker's sale");
        done(store).await;
    }

    async fn payments_in_doubt_are_old_ones_in_flight_and_refunds_due(db: &TestDb) {
        let store = store(db).await;
        for (id, user) in [("o-1", "u1"), ("o-2", "u2"), ("o-3", "u3"), ("o-4", "u4"), ("o-5", "u5")] {
            placed(&store, order(id, user, &[id])).await;
        }
        assert!(store.start_payment("o-1", "u1", "lost-1", NOW, 0).await.unwrap());
        assert!(store.start_payment("o-2", "u2", "ok-2", NOW + 5 * MIN, 0).await.unwrap());
        let p = paid(&store, &get(&store, "o-3").await, NOW + 7 * MIN).await;
        store.mark_refund_due(&p.id, "gk", "refunded by the seller", NOW + 7 * MIN).await.unwrap().unwrap();
        paid(&store, &get(&store, "o-4").await, NOW + MIN).await;
        let ids = |got: Vec<OrderRecord>| got.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.payments_in_doubt(NOW + 7 * MIN, 3 * MIN, 10).await.unwrap()),
            ["o-1", "o-3"],
            "o-2 is recent; o-4 settled"
        );
        assert_eq!(ids(store.payments_in_doubt(NOW + 7 * MIN, 3 * MIN, 1).await.unwrap()), ["o-1"]);
        assert_eq!(
            ids(store.payments_in_doubt(NOW + 7 * MIN, 2 * MIN, 10).await.unwrap()),
            ["o-1", "o-2", "o-3"],
            "started exactly that long ago counts"
        );
        assert_eq!(ids(store.payments_in_doubt(NOW + 7 * MIN, 0, 10).await.unwrap()), ["o-1", "o-2", "o-3"]);
        let got = store.payments_in_doubt(NOW + 7 * MIN, 3 * MIN, 10).await.unwrap();
        assert_eq!(got[0], get(&store, "o-1").await, "whole records, lines and all");
        done(store).await;
    }

    async fn the_outbox_comes_out_in_order_and_is_sent_once(db: &TestDb) {
        let store = store(db).await;
        assert_eq!(store.outbox_backlog().await.unwrap(), (0, None));
        let mut rows = Vec::new();
        for (id, ob, at) in [("o-1", "ob-b", NOW + 5), ("o-2", "ob-a", NOW + 5), ("o-3", "ob-z", NOW + 1)] {
            let o = placed(&store, order(id, "u1", &[id])).await;
            let row = outbox(ob, &o, "order.cancelled", at);
            store.cancel_order(id, "u1", "x", &row, at).await.unwrap().unwrap();
            rows.push(row);
        }
        let ids = |got: Vec<OutboxRow>| got.into_iter().map(|r| r.id).collect::<Vec<_>>();
        // First the checkouts' rows (all at NOW, by their made-up ids).
        let created = rows_of(&store, kinds::ORDER_CREATED, None).await;
        assert_eq!(created.len(), 3);
        let created_ids = ids(created.clone());
        let mut all = created.clone();
        all.extend([rows[2].clone(), rows[1].clone(), rows[0].clone()]);
        assert_eq!(store.outbox_unsent(10).await.unwrap(), all);
        assert_eq!(store.outbox_unsent(2).await.unwrap(), created[..2]);
        assert!(store.outbox_unsent(0).await.unwrap().is_empty());
        assert_eq!(store.outbox_backlog().await.unwrap(), (6, Some(NOW)));
        store.mark_sent(&created_ids, NOW + 9).await.unwrap();
        assert_eq!(store.outbox_unsent(10).await.unwrap(), [rows[2].clone(), rows[1].clone(), rows[0].clone()]);
        assert_eq!(ids(store.outbox_unsent(2).await.unwrap()), ["ob-z", "ob-a"]);
        assert_eq!(store.outbox_backlog().await.unwrap(), (3, Some(NOW + 1)));
        store.mark_sent(&["ob-z".into(), "ob-a".into(), "ob-nope".into()], NOW + 10).await.unwrap();
        assert_eq!(ids(store.outbox_unsent(10).await.unwrap()), ["ob-b"]);
        assert_eq!(store.outbox_backlog().await.unwrap(), (1, Some(NOW + 5)));
        store.mark_sent(&[], NOW + 11).await.unwrap();
        store.mark_sent(&["ob-b".into(), "ob-z".into()], NOW + 12).await.unwrap();
        assert!(store.outbox_unsent(10).await.unwrap().is_empty());
        assert_eq!(store.outbox_backlog().await.unwrap(), (0, None));
        store.mark_sent(&created_ids, NOW + 13).await.unwrap();
        let sent: Vec<(String, Option<i64>)> = sqlx::query("SELECT id, sent_ms FROM outbox ORDER BY created_ms, id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.try_get("id").unwrap(), r.try_get("sent_ms").unwrap()))
            .collect();
        let mut want: Vec<(String, Option<i64>)> = created_ids.iter().map(|id| (id.clone(), Some(NOW + 9))).collect();
        want.extend([
            ("ob-z".to_owned(), Some(NOW + 10)),
            ("ob-a".to_owned(), Some(NOW + 10)),
            ("ob-b".to_owned(), Some(NOW + 12)),
        ]);
        assert_eq!(sent, want, "a row sent keeps its first stamp");
        // Many at once: more than one statement's worth of ids.
        let many: Vec<String> = (0..450).map(|n| format!("ob-m-{n:03}")).collect();
        for (n, id) in many.iter().enumerate() {
            let o = OrderRecord { created_ms: NOW + 20, ..order("o-1", "u1", &[]) };
            SqlStore::insert_outbox(
                &mut store.pool.acquire().await.unwrap(),
                &outbox(id, &o, "x", NOW + 20 + i64::try_from(n).unwrap()),
            )
            .await
            .unwrap();
        }
        assert_eq!(ids(store.outbox_unsent(1_000).await.unwrap()), many);
        store.mark_sent(&many, NOW + 30).await.unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap(), (0, None));
        done(store).await;
    }

    fn entry(outbox_id: &str, event: &str, kind: &str, sign: i64, at_ms: i64) -> LedgerEntry {
        LedgerEntry {
            outbox_id: outbox_id.into(),
            seller_id: if event == EVENT { SELLER.into() } else { "s-2".into() },
            event_id: event.into(),
            order_id: format!("o-{outbox_id}"),
            kind: kind.into(),
            tickets: sign * 2,
            gross: sign * 198_000,
            discount_seller: sign * 5_000,
            discount_platform: sign * 5_000,
            amount: sign * 188_000,
            currency: "KRW".into(),
            at_ms,
        }
    }

    async fn consumers_handle_each_row_once(db: &TestDb) {
        let store = store(db).await;
        assert!(store.consume_once("seats", "ob-1", NOW).await.unwrap());
        assert!(!store.consume_once("seats", "ob-1", NOW + 1).await.unwrap(), "a redelivery");
        assert!(store.consume_once("pushes", "ob-1", NOW + 1).await.unwrap(), "each consumer on its own");

        let sale = entry("ob-1", EVENT, "sale", 1, NOW + 1);
        let refund = entry("ob-2", EVENT, "refund", -1, NOW + 2);
        let elsewhere = entry("ob-3", "e-2", "sale", 1, NOW);
        assert!(store.record_ledger(&sale, "ledger", NOW + 1).await.unwrap());
        assert!(!store.record_ledger(&sale, "ledger", NOW + 2).await.unwrap(), "a replay");
        let different = LedgerEntry { amount: sale.amount * 10, ..sale.clone() };
        assert!(!store.record_ledger(&different, "ledger", NOW + 2).await.unwrap(), "a replay changes nothing");
        assert!(store.record_ledger(&refund, "ledger", NOW + 2).await.unwrap());
        assert!(store.record_ledger(&elsewhere, "ledger", NOW + 3).await.unwrap());
        assert_eq!(store.ledger(SELLER, None).await.unwrap(), [sale.clone(), refund.clone()]);
        assert_eq!(store.ledger(SELLER, Some(EVENT)).await.unwrap(), [sale.clone(), refund.clone()]);
        assert!(store.ledger(SELLER, Some("e-2")).await.unwrap().is_empty());
        assert_eq!(store.ledger("s-2", None).await.unwrap(), [elsewhere]);
        assert!(!store.consume_once("ledger", "ob-2", NOW + 4).await.unwrap(), "marked consumed with its line");

        // Replays racing on two stores: one line, one true.
        let stores = [db.store().await, db.store().await];
        let raced = entry("ob-9", EVENT, "sale", 1, NOW + 5);
        let mut tasks = Vec::new();
        for n in 0..10_usize {
            let (store, e) = (stores[n % 2].clone(), raced.clone());
            tasks.push(tokio::spawn(async move { store.record_ledger(&e, "ledger", NOW + 5).await.unwrap() }));
        }
        let mut firsts = 0;
        for t in tasks {
            firsts += usize::from(t.await.unwrap());
        }
        assert_eq!(firsts, 1);
        assert_eq!(store.ledger(SELLER, None).await.unwrap(), [sale, refund, raced]);
        for s in stores {
            s.close().await;
        }
        done(store).await;
    }

    async fn pages_cover_every_order_exactly_once(db: &TestDb) {
        let store = store(db).await;
        let mut ids = Vec::new();
        let specs: [(&str, &str, &str, i64); 11] = [
            ("o-01", "u1", EVENT, 0),
            ("o-02", "u1", EVENT, 0),
            ("o-03", "u1", EVENT, 1),
            ("o-04", "u1", "e-2", 1),
            ("o-05", "u1", EVENT, 2),
            ("o-06", "u1", EVENT, 2),
            ("o-07", "u1", "e-2", 3),
            ("o-08", "u2", EVENT, 1),
            ("o-09", "u2", EVENT, 4),
            ("o-10", "u2", "e-2", 0),
            ("o-11", "u1", EVENT, 5),
        ];
        for (id, user, event, at) in specs {
            let seller = if event == EVENT { SELLER } else { "s-2" };
            let o = OrderRecord {
                event_id: event.into(),
                seller_id: seller.into(),
                created_ms: NOW + at,
                ..order(id, user, &[id, "X"])
            };
            // One pending order per buyer and event: the one before goes.
            if let Some(before) = store.pending_order_of(user, event).await.unwrap() {
                let row = outbox(&format!("ob-{}", before.id), &before, "order.cancelled", NOW + 6);
                store.cancel_order(&before.id, user, "next", &row, NOW + 6).await.unwrap().unwrap();
            }
            ids.push(placed(&store, o).await.id);
        }
        let mut all = Vec::new();
        for id in &ids {
            all.push(get(&store, id).await);
        }
        assert_eq!(all.iter().filter(|o| o.status == OrderStatus::Cancelled).count(), 7);
        // Newest first; ties by id, the larger first.
        all.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        let want = |f: &dyn Fn(&OrderRecord) -> bool| all.iter().filter(|o| f(o)).cloned().collect::<Vec<_>>();

        for size in [1, 2, 3, 4, 50] {
            let cases: [(Option<&str>, Option<&str>, Option<&str>); 7] = [
                (Some("u1"), None, None),
                (Some("u1"), Some(EVENT), None),
                (Some("u2"), Some("e-2"), None),
                (None, None, Some(SELLER)),
                (None, Some("e-2"), Some("s-2")),
                (None, None, None),
                (None, Some(EVENT), None),
            ];
            for (user, event, seller) in cases {
                let expected = want(&|o| {
                    user.is_none_or(|u| o.user_id == u)
                        && event.is_none_or(|e| o.event_id == e)
                        && seller.is_none_or(|s| o.seller_id == s)
                });
                let mut got: Vec<OrderRecord> = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let (page, next) = match user {
                        Some(u) => store.orders_of_user(u, event, size, after.as_deref()).await,
                        None => store.orders_of_seller(seller, event, size, after.as_deref()).await,
                    }
                    .unwrap()
                    .expect("our own cursor");
                    assert!(page.len() <= size as usize);
                    assert!(!page.is_empty() || (got.is_empty() && expected.is_empty()), "no empty page in between");
                    got.extend(page);
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                assert_eq!(got, expected, "user {user:?} event {event:?} seller {seller:?} by {size}");
            }
        }
        assert_eq!(store.orders_of_user("u1", None, 0, None).await.unwrap(), Ok((Vec::new(), None)));
        assert_eq!(store.orders_of_user("u9", None, 10, None).await.unwrap(), Ok((Vec::new(), None)));
        for bad in ["garbage", "12:", ":o-1", "x:o-1", ""] {
            assert_eq!(store.orders_of_user("u1", None, 10, Some(bad)).await.unwrap(), Err(BadCursor), "{bad:?}");
            assert_eq!(store.orders_of_seller(None, None, 10, Some(bad)).await.unwrap(), Err(BadCursor), "{bad:?}");
        }
        done(store).await;
    }

    /// Orders pushed around at random (a fixed seed) by every step there
    /// is, whether it applies or not, new checkouts among them (some of a
    /// buyer who has a pending order already, some replacing it):
    /// afterwards every order's transitions chain, its payment state fits
    /// its status, each refund was announced once saying whether the order
    /// had been paid, and the sold seats are exactly the paid orders' seats.
    async fn random_walks_keep_every_order_consistent(db: &TestDb) {
        let store = store(db).await;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut roll = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        const BUYERS: u64 = 8;
        let mut now = NOW;
        let mut ids = Vec::new();
        for i in 0..BUYERS {
            let seat = format!("W-{}", i % 6);
            let o = OrderRecord {
                expires_ms: NOW + (1 + i64::try_from(i % 7).unwrap()) * MIN,
                ..order(&format!("o-{i:02}"), &format!("u{i}"), &[&seat])
            };
            ids.push(placed(&store, o).await.id);
        }
        let mut checkouts = Vec::new();
        for n in 0..300 {
            now += 5_000 * i64::try_from(roll(12)).unwrap();
            let o = get(&store, &ids[usize::try_from(roll(u64::try_from(ids.len()).unwrap())).unwrap()]).await;
            let row = outbox(&format!("ob-{n}"), &o, "x", now);
            match roll(9) {
                0 | 1 => {
                    let keep_until = now + i64::try_from(roll(4)).unwrap() * MIN;
                    if store.start_payment(&o.id, &o.user_id, &format!("ok-{n}"), now, keep_until).await.unwrap() {
                        assert_eq!(get(&store, &o.id).await.expires_ms, o.expires_ms.max(keep_until));
                    }
                }
                2 => {
                    store.complete_payment(&o.id, &format!("gk-{n}"), &row, now).await.unwrap();
                }
                3 => {
                    store.decline_payment(&o.id, "declined", Some(&row), now).await.unwrap();
                }
                4 => {
                    let _ = store.cancel_order(&o.id, &o.user_id, "cancelled", &row, now).await.unwrap();
                }
                5 => {
                    store.expire_orders(now, 3, |e| outbox(&format!("ob-{n}-{}", e.id), e, "x", now)).await.unwrap();
                }
                6 => {
                    store.mark_refund_due(&o.id, &format!("gk-{n}"), "refund", now).await.unwrap();
                }
                7 => {
                    store.complete_refund(&o.id, now).await.unwrap();
                }
                _ => {
                    let user = format!("u{}", roll(BUYERS));
                    let pending = store.pending_order_of(&user, EVENT).await.unwrap();
                    // None, the buyer's pending order, or any order at all.
                    let replaces = match roll(3) {
                        0 => None,
                        1 => pending.clone(),
                        _ => Some(o.clone()),
                    };
                    let id = format!("o-{:02}", ids.len());
                    let seat = format!("W-{}", roll(6));
                    let new = OrderRecord {
                        created_ms: now,
                        expires_ms: now + (1 + i64::try_from(roll(7)).unwrap()) * MIN,
                        updated_ms: now,
                        ..order(&id, &user, &[&seat])
                    };
                    let want = match &replaces {
                        Some(r)
                            if r.status == OrderStatus::Pending
                                && r.user_id == user
                                && r.payment == PaymentState::None =>
                        {
                            Inserted::Inserted
                        }
                        Some(_) => Inserted::ReplacedGone,
                        None if pending.is_some() => Inserted::PendingExists,
                        None => Inserted::Inserted,
                    };
                    let got = store.insert_order(&new, replaces.as_ref().map(|r| r.id.as_str()), now).await.unwrap();
                    assert_eq!(got, want, "{id} of {user}, who has {pending:?}, replacing {replaces:?}");
                    if got == Inserted::Inserted {
                        ids.push(id);
                    } else {
                        assert!(store.order(&id).await.unwrap().is_none());
                    }
                    if let Some(old) = &pending {
                        let status = get(&store, &old.id).await.status;
                        let replaced = replaces.is_some() && got == Inserted::Inserted;
                        assert_eq!(status, if replaced { OrderStatus::Cancelled } else { OrderStatus::Pending });
                    }
                    checkouts.push(got);
                }
            }
        }
        let mut sold_by_paid = Vec::new();
        let mut statuses = HashSet::new();
        for id in &ids {
            let o = get(&store, id).await;
            statuses.insert(o.status);
            let fits = match o.status {
                OrderStatus::Pending => {
                    matches!(o.payment, PaymentState::None | PaymentState::InFlight | PaymentState::RefundDue)
                }
                OrderStatus::Paid => matches!(o.payment, PaymentState::Approved | PaymentState::RefundDue),
                // Due: an approval that came after the decline.
                OrderStatus::Failed => matches!(o.payment, PaymentState::Declined | PaymentState::RefundDue),
                OrderStatus::Refunded => o.payment == PaymentState::Refunded,
                OrderStatus::Expired | OrderStatus::Cancelled => o.payment != PaymentState::Approved,
            };
            assert!(fits, "{}: {:?} with payment {:?}", o.id, o.status, o.payment);
            if o.status == OrderStatus::Paid {
                sold_by_paid.extend(o.lines.iter().map(|l| (l.seat.clone(), o.id.clone())));
            }
            let refunds = rows_of(&store, kinds::ORDER_REFUNDED, Some(id)).await;
            if o.status == OrderStatus::Refunded {
                let ts = store.transitions(id).await.unwrap();
                let refund = ts.last().unwrap();
                let was_paid = refund.from == Some(OrderStatus::Paid);
                assert_eq!(refunds.len(), 1, "{id}: refunded once");
                assert_eq!(announced(&refunds[0]), announcement_of(&o, was_paid, refund.at_ms), "{id}");
            } else {
                assert!(refunds.is_empty(), "{id}: {:?} announced no refund", o.status);
            }
        }
        sold_by_paid.sort();
        assert_eq!(store_sold(&store).await, sold_by_paid, "sold seats are the paid orders' seats, each once");
        assert!(statuses.len() >= 5, "the walk went places: {statuses:?}");
        for outcome in [Inserted::Inserted, Inserted::PendingExists, Inserted::ReplacedGone] {
            assert!(checkouts.contains(&outcome), "the walk checked out every way: {checkouts:?}");
        }
        done(store).await;
    }
}
