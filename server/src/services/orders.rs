//! Checkout and payment: pricing the buyer's held seats into an order,
//! paying it through the gateway, cancelling and refunding, and the two
//! background duties that keep every order honest (expiring unpaid orders,
//! reconciling payments whose outcome is not known yet).
//!
//! The SQL store is the record: an order is paid when its row, its sold
//! seats (unique per event and seat) and its `payment.completed` outbox row
//! commit together. The seat store learns of the sale from the outbox
//! consumer. Money is only ever taken with `Idempotency-Key` = order id, and
//! an outcome that is not known is looked up, never guessed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use qt_protocol::orders::{OrderLine, OrderPage, OrderView, PaymentStatus, PaymentView};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::catalog::Catalog;
use super::coupons::{CouponService, PAGE_MAX, Scope};
use super::queue::QueueService;
use crate::clock::{Clock, rfc3339};
use crate::domain::UserId;
use crate::domain::coupons::{Money, Split, best_coupon, coupon_discount};
use crate::domain::orders::{OrderStatus, Totals, buyer_may_refund, kinds, new_order_id, order_expiry, price_seats};
use crate::error::{AppError, AppResult};
use crate::gateway::{Approval, Gateway, Lookup, Outcome};
use crate::metrics::Metrics;
use crate::store::StoreResult;
use crate::store::outbox::outbox_row;
use crate::store::seats::SeatStore;
use crate::store::sql::{Completed, Inserted, OrderRecord, PaymentState, SqlStore};

/// How a coupon was asked for at checkout.
const BEST: &str = "best";
/// Longest payment key accepted; Toss keys are at most 200 characters.
const MAX_PAYMENT_KEY: usize = 200;
/// Longest refund reason: what the Toss API takes as `cancelReason`.
const MAX_REFUND_REASON: usize = 200;
/// A paid order's seats stay held for its buyer at least this long after
/// the approval, so the outbox consumer finds them held when it sells them.
const SETTLE_HOLD_MS: i64 = 120_000;
/// A payment started in time keeps its order this long past the point the
/// reconciler takes it over.
const KEEP_MARGIN_MS: i64 = 35_000;
/// `checkout` tries this many of the buyer's coupons when `best` picks one
/// another of their pending orders keeps.
const BEST_ATTEMPTS: usize = 8;
/// Payments the reconciler looks up at the same time.
const RECONCILE_AT_ONCE: usize = 8;
/// Orders a sweep or a reconciliation step handles at once.
const SWEEP_BATCH: u32 = 200;

/// Timings of payment handling (`--pay-answer-wait-ms`,
/// `--pg-in-doubt-after-ms`, `--pg-give-up-after-ms`).
#[derive(Debug, Clone, Copy)]
pub struct PaymentTimings {
    /// How long `pay` waits for the outcome before answering `pending`.
    pub answer_wait: Duration,
    /// A payment still in flight this long after it started is the
    /// reconciler's (the live attempt's retries have run out by then).
    pub in_doubt_after_ms: i64,
    /// A payment the gateway still has no record of this long after it
    /// started is logged as an error for an operator; it is confirmed again
    /// under its idempotency key until the gateway answers.
    pub give_up_after_ms: i64,
}

pub struct OrderService {
    pub sql: SqlStore,
    pub seats: Arc<dyn SeatStore>,
    pub catalog: Arc<Catalog>,
    /// Checkout and payment need an admission.
    pub queue: Arc<QueueService>,
    pub coupons: Arc<CouponService>,
    pub gateway: Arc<dyn Gateway>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Woken when outbox rows were written, so the relay publishes at once.
    pub outbox_written: Arc<Notify>,
    pub timings: PaymentTimings,
    /// Payments being confirmed; they finish even after their request was
    /// answered `pending`.
    pub payments: TaskTracker,
    /// Refunds the gateway refused, tried again less and less often.
    pub refund_backoff: Backoff,
}

/// The order as the buyer sees it.
pub fn order_view(o: &OrderRecord) -> OrderView {
    OrderView {
        order: o.id.clone(),
        event: o.event_id.clone(),
        seats: o.seats(),
        lines: o
            .lines
            .iter()
            .map(|l| OrderLine { seat: l.seat.clone(), tier: l.tier.clone(), price: l.price })
            .collect(),
        subtotal: o.subtotal,
        discount: o.discount,
        total: o.total,
        currency: o.currency.clone(),
        coupon: o.coupon_id.clone(),
        coupon_reason: o.coupon_reason.clone(),
        status: o.status,
        reason: o.reason.clone(),
        expires_at: rfc3339(o.expires_ms),
        created_at: rfc3339(o.created_ms),
        paid_at: o.paid_ms.map(rfc3339),
    }
}

/// The payment as the buyer sees it, from the order's state.
pub fn payment_view(o: &OrderRecord) -> PaymentView {
    let (status, reason) = match (o.status, o.payment) {
        (OrderStatus::Paid, _) => (PaymentStatus::Paid, None),
        (OrderStatus::Failed, _) => (PaymentStatus::Failed, o.reason.clone()),
        // A payment that landed too late and went back.
        (OrderStatus::Refunded, _) if o.paid_ms.is_none() => (PaymentStatus::Failed, o.reason.clone()),
        (OrderStatus::Refunded, _) => (PaymentStatus::Failed, Some("the payment was refunded".into())),
        (_, PaymentState::InFlight | PaymentState::Approved | PaymentState::RefundDue) => {
            (PaymentStatus::Pending, Some("the gateway has not confirmed the payment yet".into()))
        }
        (_, PaymentState::Declined) => (PaymentStatus::Failed, o.reason.clone()),
        (status, _) => (PaymentStatus::Failed, Some(format!("the order is {}", status.as_str()))),
    };
    PaymentView { order: o.id.clone(), status, reason }
}

/// The coupon an order gets: none, the one named, or the best one.
struct Chosen {
    coupon: Option<String>,
    reason: Option<String>,
    discount: Money,
    split: Split,
}

impl OrderService {
    fn wake_relay(&self) {
        self.outbox_written.notify_one();
    }

    async fn own_order(&self, user: &str, order: &str) -> AppResult<OrderRecord> {
        match self.sql.order(order).await? {
            // Someone else's order is as absent as a missing one.
            Some(o) if o.user_id == user => Ok(o),
            _ => Err(AppError::NotFound("order")),
        }
    }

    // ------------------------------------------------------------ checkout

    /// Prices every seat the buyer holds at `event` into an order, with the
    /// coupon asked for, and keeps the seats (and the coupon) for payment.
    pub async fn checkout(&self, user: &UserId, event: &str, coupon: Option<&str>) -> AppResult<OrderView> {
        let (id, window_end) = self.queue.require_admission(user, event).await?;
        let (_, e) = self.catalog.find(&id)?;
        let layout = self.catalog.layout(&e).await?;
        let (held, earliest) = self.seats.holds_of(&id, user).await?;
        let Some(earliest) = earliest.filter(|_| !held.is_empty()) else {
            return Err(AppError::BadRequest("no held seats to check out: hold some first".into()));
        };
        let priced = price_seats(&e, &layout, &held).map_err(|why| AppError::BadRequest(why.to_string()))?;
        let replaces = match self.sql.pending_order_of(user, &id).await? {
            Some(old) if old.payment != PaymentState::None => {
                return Err(AppError::Conflict(format!(
                    "a payment for your order {} is in progress; wait for its outcome",
                    old.id
                )));
            }
            other => other.map(|o| o.id),
        };
        let now = self.clock.now_ms();
        // The coupon first: one that does not apply changes nothing.
        let mut skip: HashSet<String> = HashSet::new();
        let mut chosen = self.choose_coupon(user, &id, coupon, &priced, &skip, now).await?;
        // Paying needs the admission too, so an order ends with the window.
        let until = order_expiry(earliest, now, e.queue.hold_s).min(window_end.max(earliest));
        let expires_ms = match self.seats.checkout(&id, user, &held, until).await? {
            Ok(expires) => expires,
            Err(_) => return Err(AppError::Conflict("your holds changed meanwhile; check out again".into())),
        };
        for attempt in 0..BEST_ATTEMPTS {
            if attempt + 1 == BEST_ATTEMPTS && coupon == Some(BEST) {
                // Every coupon tried is kept by another pending order of the
                // buyer's: this order goes without one rather than not at all.
                chosen = Chosen {
                    coupon: None,
                    reason: Some("Your coupons that apply are kept for your other pending orders.".into()),
                    discount: 0,
                    split: Split::default(),
                };
            } else if attempt > 0 {
                chosen = match self.choose_coupon(user, &id, coupon, &priced, &skip, now).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.undo_checkout(&id, user, &held, replaces.is_none()).await;
                        return Err(e);
                    }
                };
            }
            let totals = Totals::new(priced.subtotal(), chosen.discount, |_| chosen.split);
            let record = OrderRecord {
                id: new_order_id(rand::random()),
                event_id: id.to_string(),
                seller_id: e.seller_id.clone(),
                user_id: user.to_string(),
                status: OrderStatus::Pending,
                lines: priced.lines.clone(),
                subtotal: totals.subtotal,
                discount: totals.discount,
                discount_seller: totals.split.seller,
                discount_platform: totals.split.platform,
                total: totals.total,
                currency: e.currency.clone(),
                coupon_id: chosen.coupon.clone(),
                coupon_reason: chosen.reason.clone(),
                created_ms: now,
                expires_ms,
                payment_key: None,
                payment: PaymentState::None,
                payment_started_ms: None,
                gateway_key: None,
                paid_ms: None,
                reason: None,
                updated_ms: now,
            };
            match self.sql.insert_order(&record, replaces.as_deref(), now).await {
                Ok(Inserted::Inserted) => {
                    self.wake_relay();
                    self.metrics.orders.inc(OrderStatus::Pending);
                    info!(order = %record.id, event = %id, user = %user, total = record.total, "order created");
                    return Ok(order_view(&record));
                }
                Ok(Inserted::CouponUnavailable) if coupon == Some(BEST) => {
                    skip.extend(chosen.coupon.clone());
                }
                Ok(Inserted::CouponUnavailable) => {
                    self.undo_checkout(&id, user, &held, replaces.is_none()).await;
                    return Err(AppError::NotActive("this coupon is kept for another of your orders".into()));
                }
                // Another checkout of this buyer won the race; its order
                // keeps the seats, so they stay checked out.
                Ok(Inserted::PendingExists) => {
                    return Err(AppError::Conflict("another checkout of yours made an order just now".into()));
                }
                Ok(Inserted::ReplacedGone) => {
                    return Err(AppError::Conflict("your earlier order changed meanwhile; check out again".into()));
                }
                Err(err) => {
                    self.undo_checkout(&id, user, &held, replaces.is_none()).await;
                    return Err(err.into());
                }
            }
        }
        self.undo_checkout(&id, user, &held, replaces.is_none()).await;
        Err(AppError::Conflict("your coupons are kept for other orders; check out again".into()))
    }

    /// A checkout that made no order gives the holds back as ordinary ones
    /// (unless an earlier order still keeps them).
    async fn undo_checkout(&self, id: &str, user: &str, seats: &[String], no_order_keeps_them: bool) {
        if no_order_keeps_them && let Err(e) = self.seats.uncheckout(id, user, seats).await {
            warn!(event = id, user, error = %e, "could not give checked-out holds back; they expire as usual");
        }
    }

    async fn choose_coupon(
        &self,
        user: &str,
        event: &str,
        asked: Option<&str>,
        priced: &crate::domain::coupons::PricedOrder,
        skip: &HashSet<String>,
        now: i64,
    ) -> AppResult<Chosen> {
        let none = Chosen { coupon: None, reason: None, discount: 0, split: Split::default() };
        let Some(asked) = asked else { return Ok(none) };
        let mine = self.coupons.mine(user, Some(event)).await?;
        if asked == BEST {
            let candidates: Vec<_> =
                mine.iter().filter(|(c, _)| !skip.contains(&c.id)).map(|(c, k)| (c, k.as_ref())).collect();
            return Ok(match best_coupon(&candidates, priced, now) {
                Some(best) => Chosen {
                    coupon: Some(best.coupon.id.clone()),
                    split: best.campaign.funded_by.split(best.discount),
                    discount: best.discount,
                    reason: Some(best.reason),
                },
                None if candidates.is_empty() => {
                    Chosen { reason: Some("You have no coupons for this event.".into()), ..none }
                }
                None => Chosen { reason: Some("None of your coupons applies to this order.".into()), ..none },
            });
        }
        let Some((c, campaign)) = mine.iter().find(|(c, _)| c.id == asked) else {
            // Unknown, someone else's, used or expired: all "does not apply".
            return Err(AppError::NotActive("this coupon is not one of your usable coupons for this event".into()));
        };
        let discount = coupon_discount(c, campaign, priced, now).map_err(|why| AppError::NotActive(why.reason()))?;
        Ok(Chosen { coupon: Some(c.id.clone()), reason: None, discount, split: campaign.funded_by.split(discount) })
    }

    // ------------------------------------------------------------ paying

    /// Pays `order` with the buyer's `payment_key`: the amount is the stored
    /// order's. Answers the outcome, or `pending` when the gateway has not
    /// given one within the answer wait (the final one is pushed).
    pub async fn pay(self: &Arc<Self>, user: &UserId, order: &str, payment_key: &str) -> AppResult<PaymentView> {
        if payment_key.is_empty()
            || payment_key.len() > MAX_PAYMENT_KEY
            || !payment_key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(AppError::BadRequest(format!(
                "payment_key must be 1 to {MAX_PAYMENT_KEY} printable ASCII characters"
            )));
        }
        for _ in 0..2 {
            let o = self.own_order(user, order).await?;
            // A payment already made or under way answers for itself, whatever
            // became of the order meanwhile.
            if o.payment != PaymentState::None {
                return if o.payment_key.as_deref() == Some(payment_key) || o.status != OrderStatus::Pending {
                    Ok(payment_view(&o))
                } else {
                    Err(AppError::Conflict("another payment for this order is in progress".into()))
                };
            }
            match o.status {
                OrderStatus::Pending => {}
                OrderStatus::Expired => return Err(AppError::OrderExpired),
                OrderStatus::Cancelled => return Err(AppError::BadRequest("this order was cancelled".into())),
                _ => return Ok(payment_view(&o)),
            }
            let now = self.clock.now_ms();
            if now >= o.expires_ms {
                return Err(AppError::OrderExpired);
            }
            self.queue.require_admission(user, &o.event_id).await?;
            // While the gateway decides, the order and its seats are kept
            // for as long as the reconciler could take to learn the outcome.
            let keep_until = now + self.timings.in_doubt_after_ms + KEEP_MARGIN_MS;
            if !self.sql.start_payment(&o.id, user, payment_key, now, keep_until).await? {
                // Someone (another tab) started first, or it just expired.
                continue;
            }
            // What the update just stored, without reading it back.
            let o = OrderRecord {
                payment: PaymentState::InFlight,
                payment_key: Some(payment_key.to_owned()),
                payment_started_ms: Some(now),
                updated_ms: now,
                expires_ms: o.expires_ms.max(keep_until),
                ..o
            };
            let seats = o.seats();
            if let Err(taken) = self.seats.retake(&o.event_id, user, &seats, keep_until).await? {
                // Cannot happen while the order keeps them; if it did, the
                // approval's own retake decides (a refund if they are gone).
                warn!(order, taken = ?taken, "an order's seats were not the buyer's when its payment started");
            }
            self.metrics.payments.inc(PaymentStatus::Pending);
            let this = self.clone();
            let key = payment_key.to_owned();
            let mut task = self.payments.spawn(async move { this.confirm(o, &key).await });
            let pending = |reason: &str| PaymentView {
                order: order.to_owned(),
                status: PaymentStatus::Pending,
                reason: Some(reason.into()),
            };
            return Ok(match tokio::time::timeout(self.timings.answer_wait, &mut task).await {
                Ok(Ok(Ok(view))) => view,
                Ok(Ok(Err(e))) => {
                    // The payment stays in flight; the reconciler finishes it.
                    warn!(order, error = %e, "payment step failed; the reconciler will finish it");
                    pending("the payment is being confirmed")
                }
                Ok(Err(join)) => {
                    warn!(order, error = %join, "payment task ended abnormally; the reconciler will finish it");
                    pending("the payment is being confirmed")
                }
                Err(_) => pending("the gateway has not confirmed the payment yet"),
            });
        }
        Err(AppError::Conflict("the order changed meanwhile; look at it again".into()))
    }

    /// Asks the gateway and records what it said.
    async fn confirm(&self, o: OrderRecord, payment_key: &str) -> StoreResult<PaymentView> {
        let started = std::time::Instant::now();
        let outcome = self.gateway.confirm(payment_key, &o.id, o.total).await;
        self.metrics.gateway_seconds.observe(started.elapsed().as_secs_f64());
        self.record_outcome(o, outcome).await
    }

    /// Records a confirm's outcome for `o`, an order with its payment in
    /// flight as last read (every step that writes locks and reads it again).
    async fn record_outcome(&self, o: OrderRecord, outcome: Outcome) -> StoreResult<PaymentView> {
        match outcome {
            Outcome::Approved(a) => self.approved(o, a).await,
            Outcome::Declined(d) => {
                let reason = format!("{} ({})", d.message, d.code);
                self.declined(o, &reason).await
            }
            Outcome::Unknown(why) => {
                info!(order = %o.id, why, "payment outcome not known yet; the reconciler will look it up");
                Ok(payment_view(&o))
            }
        }
    }

    async fn declined(&self, o: OrderRecord, reason: &str) -> StoreResult<PaymentView> {
        let now = self.clock.now_ms();
        let mut after = o.clone();
        after.status = OrderStatus::Failed;
        after.reason = Some(reason.to_owned());
        let row = outbox_row(kinds::ORDER_FAILED, &after, false, now);
        let Some(done) = self.sql.decline_payment(&o.id, reason, Some(&row), now).await? else {
            return Ok(payment_view(&o));
        };
        self.wake_relay();
        if done.status == OrderStatus::Failed {
            self.metrics.orders.inc(OrderStatus::Failed);
            self.metrics.payments.inc(PaymentStatus::Failed);
            let seats = done.seats();
            // The buyer may try again with the seats they still hold.
            self.seats.uncheckout(&done.event_id, &done.user_id, &seats).await?;
        }
        Ok(payment_view(&done))
    }

    /// An approval: checked against the stored order, then the seats are
    /// made the buyer's and the sale committed; money that cannot become a
    /// ticket goes back.
    async fn approved(&self, o: OrderRecord, a: Approval) -> StoreResult<PaymentView> {
        if a.order_id != o.id || a.amount != o.total {
            return self.mismatched(o, a).await;
        }
        match a.status.as_str() {
            "DONE" => {}
            // Refunded at the gateway already (a retried refund, or by hand).
            "CANCELED" => return self.finish_refund(o).await,
            other => {
                warn!(order = %o.id, status = other, "gateway payment in an unexpected state; looking again later");
                return Ok(payment_view(&o));
            }
        }
        crate::faults::point(crate::faults::AFTER_APPROVAL).await;
        self.settle(o, &a.payment_key).await
    }

    /// The gateway's reply does not match the order: ask it again by order
    /// id; what it has on record decides.
    async fn mismatched(&self, o: OrderRecord, a: Approval) -> StoreResult<PaymentView> {
        warn!(order = %o.id, replied_order = %a.order_id, replied_amount = a.amount, total = o.total,
            "gateway reply does not match the order; looking it up");
        match self.gateway.lookup(&o.id).await {
            Lookup::Found(found) if found.order_id == o.id && found.amount == o.total && found.status == "DONE" => {
                self.settle(o, &found.payment_key).await
            }
            Lookup::Found(found) => {
                // A charge we did not ask for: it goes back, the order fails.
                let reason = "the gateway charged a different amount; the charge was cancelled";
                self.refund_money(o.clone(), &found.payment_key, reason).await?;
                let o = self.sql.order(&o.id).await?.unwrap_or(o);
                self.declined(o, reason).await
            }
            // An approving reply and no record: not known, never guessed.
            Lookup::NotFound | Lookup::Unknown(_) => Ok(payment_view(&o)),
        }
    }

    /// Makes an approved payment a sale.
    async fn settle(&self, o: OrderRecord, gateway_key: &str) -> StoreResult<PaymentView> {
        if o.status == OrderStatus::Paid {
            return Ok(payment_view(&o));
        }
        let now = self.clock.now_ms();
        let seats = o.seats();
        // The seats are the buyer's again if still free (a late payment), and
        // stay held until the sale reaches the seat store.
        let until = now + SETTLE_HOLD_MS;
        if let Err(taken) = self.seats.retake(&o.event_id, &o.user_id, &seats, until).await? {
            info!(order = %o.id, taken = ?taken, "seats gone before the payment arrived; refunding");
            let reason = "the seats were taken by someone else before the payment arrived; the payment was refunded";
            return self.refund_late(&o.id, gateway_key, reason).await;
        }
        let mut after = o.clone();
        after.status = OrderStatus::Paid;
        after.paid_ms = Some(now);
        after.gateway_key = Some(gateway_key.to_owned());
        let row = outbox_row(kinds::PAYMENT_COMPLETED, &after, true, now);
        match self.sql.complete_payment(&o.id, gateway_key, &row, now).await? {
            Completed::Paid(paid) => {
                self.wake_relay();
                self.metrics.orders.inc(OrderStatus::Paid);
                self.metrics.payments.inc(PaymentStatus::Paid);
                info!(order = %paid.id, total = paid.total, "order paid");
                // At once, not only when the outbox consumer gets to it (it
                // does so again, which changes nothing): a lagging consumer
                // must not let the hold run out on a sold seat.
                if let Err(e) = self.seats.sell(&paid.event_id, &paid.user_id, &seats).await {
                    warn!(order = %paid.id, error = %e, "marking seats sold failed; the outbox consumer will");
                }
                Ok(payment_view(&paid))
            }
            Completed::AlreadyPaid(paid) => Ok(payment_view(&paid)),
            Completed::SeatsTaken(taken) => {
                warn!(order = %o.id, taken = ?taken, "the database says these seats are sold already; refunding");
                let reason = "the seats were sold to someone else before the payment arrived; the payment was refunded";
                self.refund_late(&o.id, gateway_key, reason).await
            }
            Completed::NotPayable(now_is) if now_is.status == OrderStatus::Refunded => Ok(payment_view(&now_is)),
            Completed::NotPayable(now_is) => {
                let reason = format!(
                    "the order was {} when the payment arrived; the payment was refunded",
                    now_is.status.as_str()
                );
                self.refund_late(&now_is.id, gateway_key, &reason).await
            }
        }
    }

    /// Sends back money that arrived for an order that cannot have it, as
    /// the order is now: never the money of an order that got paid
    /// meanwhile (another node settled the same approval first).
    async fn refund_late(&self, order: &str, gateway_key: &str, reason: &str) -> StoreResult<PaymentView> {
        let Some(now_is) = self.sql.order(order).await? else {
            return Err(crate::store::StoreError::Corrupt(format!("order {order:?} vanished")));
        };
        if matches!(now_is.status, OrderStatus::Paid | OrderStatus::Refunded) {
            return Ok(payment_view(&now_is));
        }
        self.refund_money(now_is, gateway_key, reason).await
    }

    /// Sends money back through the gateway and records the refund once it
    /// is confirmed; until then the order is `refund_due` and the
    /// reconciler retries.
    async fn refund_money(&self, o: OrderRecord, gateway_key: &str, reason: &str) -> StoreResult<PaymentView> {
        let Some(due) = self.sql.mark_refund_due(&o.id, gateway_key, reason, self.clock.now_ms()).await? else {
            return Ok(payment_view(&o));
        };
        match self.gateway.cancel(gateway_key, reason, &refund_key(&o.id)).await {
            Outcome::Approved(_) => self.finish_refund(due).await,
            Outcome::Declined(d) if d.code == "ALREADY_CANCELED_PAYMENT" => self.finish_refund(due).await,
            Outcome::Declined(d) => {
                warn!(order = %o.id, code = %d.code, message = %d.message, "the gateway refused a refund; retrying later");
                Ok(payment_view(&due))
            }
            Outcome::Unknown(why) => {
                warn!(order = %o.id, why, "refund outcome unknown; retrying later");
                Ok(payment_view(&due))
            }
        }
    }

    async fn finish_refund(&self, o: OrderRecord) -> StoreResult<PaymentView> {
        let now = self.clock.now_ms();
        let Some(done) = self.sql.complete_refund(&o.id, now).await? else {
            return Ok(payment_view(&o));
        };
        self.wake_relay();
        self.metrics.orders.inc(OrderStatus::Refunded);
        if done.paid_ms.is_none() {
            // Its seats were never sold; whatever the buyer holds of them
            // stays an ordinary hold.
            let seats = done.seats();
            self.seats.uncheckout(&done.event_id, &done.user_id, &seats).await?;
        }
        Ok(payment_view(&done))
    }

    // ------------------------------------------------------------ cancel, refund

    /// The buyer gives up an unpaid order (its holds stay theirs until
    /// they expire), or has a paid one refunded where the event allows.
    pub async fn cancel(&self, user: &UserId, order: &str) -> AppResult<OrderView> {
        let o = self.own_order(user, order).await?;
        match o.status {
            OrderStatus::Pending => {
                let now = self.clock.now_ms();
                let mut after = o.clone();
                after.status = OrderStatus::Cancelled;
                after.reason = Some("cancelled by the buyer".into());
                let row = outbox_row(kinds::ORDER_CANCELLED, &after, false, now);
                match self.sql.cancel_order(&o.id, user, "cancelled by the buyer", &row, now).await? {
                    Ok(done) => {
                        self.wake_relay();
                        self.metrics.orders.inc(OrderStatus::Cancelled);
                        let seats = done.seats();
                        self.seats.uncheckout(&done.event_id, user, &seats).await?;
                        Ok(order_view(&done))
                    }
                    Err(Some(_)) => Err(AppError::Conflict(
                        "a payment for this order is in progress; it cannot be cancelled now".into(),
                    )),
                    Err(None) => Err(AppError::NotFound("order")),
                }
            }
            OrderStatus::Paid => {
                let (_, e) = self.catalog.find(&o.event_id)?;
                if !buyer_may_refund(e.refund_until_ms, self.clock.now_ms()) {
                    return Err(AppError::Forbidden("this event's refund policy does not allow a refund now"));
                }
                self.refund_paid(o, "cancelled by the buyer under the event's refund policy").await
            }
            // Asked again: the same answer.
            OrderStatus::Cancelled | OrderStatus::Refunded => Ok(order_view(&o)),
            other => Err(AppError::Conflict(format!("an order that is {} cannot be cancelled", other.as_str()))),
        }
    }

    async fn refund_paid(&self, o: OrderRecord, reason: &str) -> AppResult<OrderView> {
        let Some(key) = o.gateway_key.clone() else {
            return Err(AppError::Store(crate::store::StoreError::Corrupt(format!(
                "paid order {:?} has no gateway payment key",
                o.id
            ))));
        };
        let id = o.id.clone();
        self.refund_money(o, &key, reason).await?;
        let now = self.sql.order(&id).await?.ok_or(AppError::NotFound("order"))?;
        Ok(order_view(&now))
    }

    /// A seller (or an admin) refunds a paid order.
    pub async fn seller_refund(&self, scope: Scope<'_>, order: &str, reason: &str) -> AppResult<OrderView> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REFUND_REASON {
            return Err(AppError::Invalid(crate::domain::coupons::FieldErrors(
                [("reason".to_owned(), format!("must be 1 to {MAX_REFUND_REASON} characters"))].into(),
            )));
        }
        let o = match self.sql.order(order).await? {
            Some(o) if scope.sees(&o.seller_id) => o,
            _ => return Err(AppError::NotFound("order")),
        };
        match o.status {
            OrderStatus::Paid => self.refund_paid(o, reason).await,
            OrderStatus::Refunded => Ok(order_view(&o)),
            other => Err(AppError::Conflict(format!("an order that is {} cannot be refunded", other.as_str()))),
        }
    }

    // ------------------------------------------------------------ reads

    pub async fn mine(&self, user: &str, event: Option<&str>, limit: u32, after: Option<&str>) -> AppResult<OrderPage> {
        let limit = limit.clamp(1, PAGE_MAX);
        let (items, next) = self.sql.orders_of_user(user, event, limit, after).await?.map_err(bad_cursor)?;
        Ok(OrderPage { items: items.iter().map(order_view).collect(), next })
    }

    pub async fn of_seller(
        &self,
        scope: Scope<'_>,
        event: Option<&str>,
        limit: u32,
        after: Option<&str>,
    ) -> AppResult<OrderPage> {
        let limit = limit.clamp(1, PAGE_MAX);
        let (items, next) =
            self.sql.orders_of_seller(scope.seller(), event, limit, after).await?.map_err(bad_cursor)?;
        Ok(OrderPage { items: items.iter().map(order_view).collect(), next })
    }

    /// An order and its payment as the buyer sees them now (for pushes).
    pub async fn view_of(&self, order: &str) -> StoreResult<Option<(OrderView, PaymentView)>> {
        Ok(self.sql.order(order).await?.map(|o| (order_view(&o), payment_view(&o))))
    }

    // ------------------------------------------------------------ background

    /// Marks sold in the seat store every seat the record has sold that the
    /// store does not show so (a Redis that restarted empty, a crash before
    /// the outbox consumer ran). How many seats it marked.
    pub async fn resync_sold(&self) -> StoreResult<usize> {
        let mut marked = 0;
        for id in self.catalog.ids() {
            let sold = self.sql.sold_seats(&id).await?;
            if sold.is_empty() {
                continue;
            }
            let snapshot = self.seats.snapshot(&id).await?;
            let shown: HashSet<&str> = snapshot
                .taken
                .iter()
                .filter(|(_, st)| *st == crate::domain::seats::SeatStatus::Sold)
                .map(|(seat, _)| seat.as_str())
                .collect();
            let mut by_order: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (seat, order) in sold.into_iter().filter(|(seat, _)| !shown.contains(seat.as_str())) {
                by_order.entry(order).or_default().push(seat);
            }
            for (order, seats) in by_order {
                let user = self.sql.order(&order).await?.map(|o| o.user_id).unwrap_or_default();
                marked += self.seats.sell(&id, &user, &seats).await?.seats.len();
            }
        }
        if marked > 0 {
            info!(seats = marked, "seat store caught up with the sold seats on record");
        }
        Ok(marked)
    }

    /// Expires unpaid orders whose time is up; their seats' holds end by
    /// themselves at the same time. How many it expired.
    pub async fn expire_step(&self) -> StoreResult<usize> {
        let now = self.clock.now_ms();
        let expired = self
            .sql
            .expire_orders(now, SWEEP_BATCH, |o| {
                let mut after = o.clone();
                after.status = OrderStatus::Expired;
                after.reason = Some("not paid in time".into());
                outbox_row(kinds::ORDER_EXPIRED, &after, false, now)
            })
            .await?;
        if !expired.is_empty() {
            self.wake_relay();
            for _ in &expired {
                self.metrics.orders.inc(OrderStatus::Expired);
            }
        }
        Ok(expired.len())
    }

    /// Looks up payments whose outcome is not known and retries refunds
    /// that are due. How many it handled.
    pub async fn reconcile_step(&self) -> StoreResult<usize> {
        let now = self.clock.now_ms();
        let doubtful = self.sql.payments_in_doubt(now, self.timings.in_doubt_after_ms, SWEEP_BATCH).await?;
        let n = doubtful.len();
        // A few at a time: each may wait out the gateway's retries.
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(doubtful),
            RECONCILE_AT_ONCE,
            |o| async move {
                let id = o.id.clone();
                if let Err(e) = self.reconcile(o, now).await {
                    warn!(order = %id, error = %e, "reconciling a payment failed; retrying later");
                }
            },
        )
        .await;
        Ok(n)
    }

    async fn reconcile(&self, listed: OrderRecord, now: i64) -> StoreResult<()> {
        // The list may be old by now (the steps before waited on the
        // gateway, another node may have settled it): act on the order as
        // it is.
        let Some(o) = self.sql.order(&listed.id).await? else { return Ok(()) };
        match o.payment {
            PaymentState::RefundDue => {
                if !self.refund_backoff.due(&o.id, now) {
                    return Ok(());
                }
                let reason = o.reason.clone().unwrap_or_else(|| "refund".into());
                let key = match o.gateway_key.clone() {
                    Some(key) => key,
                    None => match self.gateway.lookup(&o.id).await {
                        Lookup::Found(a) => a.payment_key,
                        _ => return Ok(()),
                    },
                };
                let id = o.id.clone();
                self.refund_money(o, &key, &reason).await?;
                if self.sql.order(&id).await?.is_some_and(|o| o.payment == PaymentState::RefundDue) {
                    self.refund_backoff.failed(&id, now);
                } else {
                    self.refund_backoff.forget(&id);
                }
            }
            PaymentState::InFlight => {
                crate::faults::point(crate::faults::DURING_LOOKUP).await;
                match self.gateway.lookup(&o.id).await {
                    Lookup::Found(a) => {
                        self.approved(o, a).await?;
                    }
                    Lookup::NotFound => {
                        // The confirm may never have arrived: send it again
                        // under the same idempotency key. Only the gateway's
                        // answer settles it; time alone never does.
                        let started = o.payment_started_ms.unwrap_or(o.created_ms);
                        if now - started >= self.timings.give_up_after_ms {
                            tracing::error!(order = %o.id, since_ms = now - started,
                                "a payment is still unknown to the gateway; an operator should look");
                        }
                        if let Some(key) = o.payment_key.clone() {
                            let outcome = self.gateway.confirm(&key, &o.id, o.total).await;
                            self.record_outcome(o, outcome).await?;
                        }
                    }
                    Lookup::Unknown(why) => info!(order = %o.id, why, "gateway lookup failed; retrying later"),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// When to try a refund the gateway refused again: after 1 s, then twice
/// as long each time, at most every 5 minutes.
#[derive(Default)]
pub struct Backoff(parking_lot::Mutex<std::collections::HashMap<String, (i64, i64)>>);

impl Backoff {
    const FIRST_MS: i64 = 1_000;
    const MAX_MS: i64 = 300_000;

    fn due(&self, id: &str, now: i64) -> bool {
        self.0.lock().get(id).is_none_or(|(next, _)| now >= *next)
    }

    fn failed(&self, id: &str, now: i64) {
        let mut map = self.0.lock();
        let wait = map.get(id).map_or(Self::FIRST_MS, |(_, w)| (w * 2).min(Self::MAX_MS));
        map.insert(id.to_owned(), (now + wait, wait));
    }

    fn forget(&self, id: &str) {
        self.0.lock().remove(id);
    }
}

fn bad_cursor(_: crate::store::sql::BadCursor) -> AppError {
    AppError::BadRequest("`after` is not a cursor of this list".into())
}

/// The refund's idempotency key: one refund per order.
fn refund_key(order: &str) -> String {
    format!("refund-{order}")
}

#[cfg(test)]
#[path = "orders_tests.rs"]
mod tests;
