//! `OrderService` on the memory adapters and a scripted gateway: checkout,
//! payment, the reconciler and the expiry sweep, cancels and refunds. No
//! socket, no HTTP; the outbox is applied by hand where a test needs its
//! effects (`OrderKit::deliver`), and expiry is reached by jumping tokio's
//! clock, which the services' clock follows (`OrderKit::jump_past`).

use std::time::Duration;

use super::*;
use crate::domain::demo::{EVENT_ID, SELLER_ID};
use crate::domain::seats::SeatStatus;
use crate::error::ErrorCode;
use crate::services::testkit::{
    CancelWith, Charge, ConfirmWith, DECLINE_MESSAGE, FIXED_OFF, GatewayCall, LookupWith, OrderKit, OrderSetup,
    PERCENT_OFF, order_kit,
};

async fn kit() -> OrderKit {
    order_kit(OrderSetup::default()).await
}

/// Orders that expire about two seconds after checkout.
async fn short_kit() -> OrderKit {
    order_kit(OrderSetup { hold_s: 1, ..OrderSetup::default() }).await
}

fn kinds_of(rows: &[crate::store::sql::OutboxRow], order: &str) -> Vec<String> {
    rows.iter().filter(|r| r.order_id == order).map(|r| r.kind.clone()).collect()
}

fn confirm(payment_key: &str, order: &str, amount: i64) -> GatewayCall {
    GatewayCall::Confirm { payment_key: payment_key.into(), order: order.into(), amount }
}

fn lookup(order: &str) -> GatewayCall {
    GatewayCall::Lookup { order: order.into() }
}

fn cancel(payment_key: &str, reason: &str, order: &str) -> GatewayCall {
    GatewayCall::Cancel { payment_key: payment_key.into(), reason: reason.into(), idempotency_key: refund_key(order) }
}

fn charge(payment_key: &str, order: &str, amount: i64, status: &'static str) -> Charge {
    Charge { payment_key: payment_key.into(), order: order.into(), amount, status }
}

/// The last transition's reason.
async fn last_reason(k: &OrderKit, order: &str) -> String {
    k.sql.transitions(order).await.unwrap().pop().expect("a transition").reason
}

// ------------------------------------------------------------------ checkout

#[tokio::test]
async fn checkout_prices_every_held_seat_from_the_tiers() {
    let k = kit().await;
    // One seat of each tier: R 165,000, S 132,000, A 99,000, VIP 198,000.
    let a = k.holding("a", &["B-1-1", "A-1-1", "A-10-1", "A-20-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    let lines: Vec<(&str, &str, i64)> = o.lines.iter().map(|l| (&*l.seat, &*l.tier, l.price)).collect();
    assert_eq!(
        lines,
        vec![("A-1-1", "r", 165_000), ("A-10-1", "s", 132_000), ("A-20-1", "a", 99_000), ("B-1-1", "vip", 198_000)]
    );
    assert_eq!(o.seats, vec!["A-1-1", "A-10-1", "A-20-1", "B-1-1"]);
    assert_eq!((o.subtotal, o.discount, o.total), (594_000, 0, 594_000));
    assert_eq!((o.status, &*o.currency, &o.coupon, &o.coupon_reason), (OrderStatus::Pending, "KRW", &None, &None));
    let stored = k.order(&o.order).await;
    assert_eq!(order_view(&stored), o, "the answer is the stored order");
    assert_eq!((stored.user_id.as_str(), stored.seller_id.as_str()), ("a", SELLER_ID));
    assert_eq!(stored.payment, PaymentState::None);
    assert_eq!(k.sql.pending_order_of("a", EVENT_ID).await.unwrap().map(|o| o.id), Some(o.order.clone()));
    assert_eq!(kinds_of(&k.unsent().await, &o.order), vec![kinds::ORDER_CREATED]);
    assert!(k.release(&a, &["A-1-1"]).await.is_empty(), "checked-out holds are kept for the order");
    assert!(k.gateway.calls().is_empty());
}

#[tokio::test]
async fn checkout_without_holds_is_a_bad_request_and_makes_no_order() {
    let k = kit().await;
    let a = k.buyer("a").await;
    let err = k.checkout(&a, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest, "{err:?}");
    // Holds released before checkout count as none.
    k.hold(&a, &["A-1-1"]).await;
    assert_eq!(k.release(&a, &["A-1-1"]).await, vec!["A-1-1"]);
    assert_eq!(k.checkout(&a, Some("best")).await.unwrap_err().code(), ErrorCode::BadRequest);
    assert!(k.sql.pending_order_of("a", EVENT_ID).await.unwrap().is_none());
    assert!(k.orders.mine("a", None, 50, None).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn checkout_needs_an_admission() {
    let k = kit().await;
    k.holding("a", &["A-1-1"]).await;
    // Never joined, so never admitted.
    let stranger = UserId::from("stranger");
    assert_eq!(k.checkout(&stranger, None).await.unwrap_err().code(), ErrorCode::NotAdmitted);
    // Left the line: the admission (and the holds) are gone.
    k.base.queue.leave(&UserId::from("a"), EVENT_ID, None).await.unwrap();
    assert_eq!(k.checkout(&UserId::from("a"), None).await.unwrap_err().code(), ErrorCode::NotAdmitted);
    assert!(k.orders.mine("a", None, 50, None).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn best_picks_the_largest_discount_and_says_why() {
    let k = kit().await;
    // 10% of 165,000 (16,500) beats 10,000 off.
    let a = k.holding("a", &["A-1-1"]).await;
    let (fixed_a, percent_a) = (k.claim("a", FIXED_OFF).await, k.claim("a", PERCENT_OFF).await);
    let o = k.checkout(&a, Some("best")).await.unwrap();
    assert_eq!(o.coupon.as_deref(), Some(percent_a.as_str()));
    assert_eq!((o.subtotal, o.discount, o.total), (165_000, 16_500, 148_500));
    assert_eq!(
        o.coupon_reason.as_deref(),
        Some(
            "“10% off, up to 30,000 won” saves 16,500, the largest discount among your 2 coupons that apply to this order."
        )
    );
    let stored = k.order(&o.order).await;
    assert_eq!((stored.discount_seller, stored.discount_platform), (8_250, 8_250), "funded half and half");
    assert_ne!(fixed_a, percent_a);

    // 10% of 99,000 (9,900) loses to 10,000 off.
    let b = k.holding("b", &["A-20-1"]).await;
    let fixed_b = k.claim("b", FIXED_OFF).await;
    k.claim("b", PERCENT_OFF).await;
    let o = k.checkout(&b, Some("best")).await.unwrap();
    assert_eq!(o.coupon.as_deref(), Some(fixed_b.as_str()));
    assert_eq!((o.discount, o.total), (10_000, 89_000));
    assert!(o.coupon_reason.as_deref().unwrap().starts_with("“10,000 won off (first 300 buyers)” saves 10,000"));
    let stored = k.order(&o.order).await;
    assert_eq!((stored.discount_seller, stored.discount_platform), (10_000, 0), "the seller funds it");

    // No coupon at all: no discount, and the reason says so.
    let c = k.holding("c", &["A-2-1"]).await;
    let o = k.checkout(&c, Some("best")).await.unwrap();
    assert_eq!((o.coupon, o.discount), (None, 0));
    assert_eq!(o.coupon_reason.as_deref(), Some("You have no coupons for this event."));
}

#[tokio::test]
async fn a_named_coupon_that_does_not_apply_is_not_active_and_leaves_no_order_nor_checked_out_holds() {
    let k = kit().await;
    let mut big = crate::domain::demo::campaigns(k.now()).remove(0);
    big.id = "big-spender".into();
    big.name = "50,000 off a million".into();
    big.terms.min_spend = 1_000_000;
    big.terms.value = 50_000;
    assert!(k.sql.insert_campaign(&big).await.unwrap());
    let a = k.holding("a", &["A-1-1", "A-1-2"]).await;
    let coupon = k.claim("a", "big-spender").await;
    let err = k.checkout(&a, Some(&coupon)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotActive, "{err:?}");
    assert_eq!(err.to_string(), "this coupon needs a spend of at least 1,000,000; the order has 330,000");
    // Another buyer's coupon, or none at all, does not apply either.
    let theirs = k.claim("b", FIXED_OFF).await;
    for other in [theirs.as_str(), "cp-nope"] {
        let err = k.checkout(&a, Some(other)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotActive, "{other}: {err:?}");
        assert!(err.to_string().contains("not one of your usable coupons"), "{err}");
    }
    assert!(k.sql.pending_order_of("a", EVENT_ID).await.unwrap().is_none(), "no order");
    assert!(k.orders.mine("a", None, 50, None).await.unwrap().items.is_empty());
    assert!(k.unsent().await.is_empty());
    let mut released = k.release(&a, &["A-1-1", "A-1-2"]).await;
    released.sort();
    assert_eq!(released, vec!["A-1-1", "A-1-2"], "the holds were given back as ordinary ones");
}

#[tokio::test]
async fn a_failed_checkout_beside_a_pending_order_gives_back_the_holds_that_order_does_not_keep() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let first = k.checkout(&a, None).await.unwrap();
    k.hold(&a, &["A-1-2"]).await;
    let err = k.checkout(&a, Some("cp-nope")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotActive, "{err:?}");
    // The earlier order is untouched and still keeps its seat.
    let kept = k.order(&first.order).await;
    assert_eq!((kept.status, kept.lines.len()), (OrderStatus::Pending, 1));
    assert!(k.release(&a, &["A-1-1"]).await.is_empty(), "A-1-1 is the pending order's");
    // No order keeps A-1-2: it is an ordinary hold again.
    assert_eq!(k.release(&a, &["A-1-2"]).await, vec!["A-1-2"]);
}

#[tokio::test]
async fn best_falls_back_to_no_coupon_when_every_coupon_is_kept_by_other_orders() {
    let k = kit().await;
    let a = k.buyer("a").await;
    // Four other shows of the seller, each with a pending order of a's that
    // keeps one of a's coupons (valid for all of the seller's shows).
    for n in 1..=4 {
        let mut c = crate::domain::demo::campaigns(k.now()).remove(0);
        c.id = format!("any-show-{n}");
        c.targets.events = None;
        c.terms.min_spend = 0;
        assert!(k.sql.insert_campaign(&c).await.unwrap());
        let coupon = k.claim("a", &c.id).await;
        let show = format!("show-{n}");
        k.add_event(&show).await;
        k.base.queue.join(&a, &show).await.unwrap();
        k.base.seats.hold(&a, &show, &["A-1-1".into()]).await.unwrap();
        let o = k.orders.checkout(&a, &show, Some(&coupon)).await.unwrap();
        assert_eq!(o.coupon.as_deref(), Some(coupon.as_str()));
    }
    assert_eq!(k.coupons.mine("a", Some(EVENT_ID)).await.unwrap().len(), 4);
    k.hold(&a, &["A-1-1"]).await;
    let outcome = k.checkout(&a, Some("best")).await;
    let held_back = k.release(&a, &["A-1-1"]).await;
    let o = outcome.expect("an order without a coupon");
    assert_eq!((o.coupon, o.discount, o.total), (None, 0, 165_000));
    assert!(held_back.is_empty(), "the order keeps the seat");
}

#[tokio::test]
async fn a_named_coupon_kept_by_another_pending_order_is_not_active_and_gives_the_holds_back() {
    let k = kit().await;
    k.add_event("show-2").await;
    let a = k.holding("a", &["A-1-1", "A-1-2"]).await;
    let mut any_show = crate::domain::demo::campaigns(k.now()).remove(0);
    any_show.id = "any-show".into();
    any_show.targets.events = None;
    assert!(k.sql.insert_campaign(&any_show).await.unwrap());
    let coupon = k.claim("a", "any-show").await;
    // a's pending order at the other show keeps the coupon.
    k.base.queue.join(&a, "show-2").await.unwrap();
    k.base.seats.hold(&a, "show-2", &["A-1-1".into()]).await.unwrap();
    let there = k.orders.checkout(&a, "show-2", Some(&coupon)).await.unwrap();
    assert_eq!(there.coupon.as_deref(), Some(coupon.as_str()));
    let err = k.checkout(&a, Some(&coupon)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotActive, "{err:?}");
    assert!(err.to_string().contains("kept for another of your orders"), "{err}");
    assert!(k.sql.pending_order_of("a", EVENT_ID).await.unwrap().is_none(), "no order here");
    let mut released = k.release(&a, &["A-1-1", "A-1-2"]).await;
    released.sort();
    assert_eq!(released, vec!["A-1-1", "A-1-2"], "the holds were given back as ordinary ones");
    assert_eq!(k.order(&there.order).await.status, OrderStatus::Pending, "the other order is untouched");
}

#[tokio::test]
async fn a_second_checkout_replaces_the_first() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let coupon = k.claim("a", FIXED_OFF).await;
    let first = k.checkout(&a, Some("best")).await.unwrap();
    assert_eq!(first.coupon.as_deref(), Some(coupon.as_str()));
    // More seats, the same coupon: the new order has them all.
    k.hold(&a, &["A-1-2"]).await;
    let second = k.checkout(&a, Some(&coupon)).await.unwrap();
    assert_ne!(second.order, first.order);
    assert_eq!(second.seats, vec!["A-1-1", "A-1-2"]);
    assert_eq!((second.coupon.as_deref(), second.total), (Some(coupon.as_str()), 320_000));
    let replaced = k.order(&first.order).await;
    assert_eq!(replaced.status, OrderStatus::Cancelled);
    assert_eq!(last_reason(&k, &first.order).await, "replaced by a new checkout");
    assert_eq!(k.sql.pending_order_of("a", EVENT_ID).await.unwrap().map(|o| o.id), Some(second.order.clone()));
    assert!(k.release(&a, &["A-1-1", "A-1-2"]).await.is_empty(), "the new order keeps the holds");
    // The replaced order cannot be paid.
    let err = k.orders.pay(&a, &first.order, "ok-1").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest, "{err:?}");
    assert!(k.gateway.calls().is_empty());
}

#[tokio::test]
async fn checkout_extends_the_hold_once() {
    let k = kit().await;
    let hold_ms = i64::from(OrderSetup::default().hold_s) * 1000;
    let a = k.holding("a", &["A-1-1"]).await;
    let (_, held_until) = k.base.store.holds_of(EVENT_ID, "a").await.unwrap();
    let held_until = held_until.unwrap();
    let first = k.checkout(&a, None).await.unwrap();
    let expires = k.order(&first.order).await.expires_ms;
    assert_eq!(expires, held_until + hold_ms, "extended by the hold time from when the hold would have ended");
    assert_eq!(first.expires_at, crate::clock::rfc3339(expires));
    assert_eq!(k.base.store.holds_of(EVENT_ID, "a").await.unwrap().1, Some(expires), "the hold with it");
    // Checking out again, or after a cancel, extends nothing.
    let second = k.checkout(&a, None).await.unwrap();
    assert_eq!(k.order(&second.order).await.expires_ms, expires);
    k.orders.cancel(&a, &second.order).await.unwrap();
    let third = k.checkout(&a, None).await.unwrap();
    assert_eq!(k.order(&third.order).await.expires_ms, expires);
    assert_eq!(k.base.store.holds_of(EVENT_ID, "a").await.unwrap().1, Some(expires));
}

#[tokio::test]
async fn checkout_extends_no_hold_past_the_shopping_window() {
    // A window no longer than a hold: the hold already ends with it.
    let k = order_kit(OrderSetup { window_s: 600, ..OrderSetup::default() }).await;
    let a = k.holding("a", &["A-1-1"]).await;
    let (_, window_end) = k.base.queue.require_admission(&a, EVENT_ID).await.unwrap();
    let held_until = k.base.store.holds_of(EVENT_ID, "a").await.unwrap().1.unwrap();
    assert!(held_until <= window_end);
    let o = k.checkout(&a, None).await.unwrap();
    let expires = k.order(&o.order).await.expires_ms;
    assert_eq!(expires, window_end.max(held_until), "the order ends with the window");
    assert_eq!(k.base.store.holds_of(EVENT_ID, "a").await.unwrap().1, Some(expires));
}

// ------------------------------------------------------------------ paying

#[tokio::test]
async fn an_approved_payment_sells_the_seats_once_and_spends_the_coupon() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1", "A-1-2"]).await;
    let coupon = k.claim("a", FIXED_OFF).await;
    let o = k.checkout(&a, Some(&coupon)).await.unwrap();
    assert_eq!(o.total, 320_000);
    let paid = k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    assert_eq!((paid.status, paid.reason), (PaymentStatus::Paid, None));
    assert_eq!(k.gateway.calls(), vec![confirm("ok-1", &o.order, 320_000)], "the stored total, once");
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Paid, PaymentState::Approved));
    assert_eq!(stored.gateway_key.as_deref(), Some("ok-1"));
    assert!(stored.paid_ms.is_some());
    let sold = k.sql.sold_seats(EVENT_ID).await.unwrap();
    assert_eq!(sold, vec![("A-1-1".into(), o.order.clone()), ("A-1-2".into(), o.order.clone())]);
    // The coupon is spent: counted, and no longer the buyer's to use.
    let mine = k.sql.coupons_of("a").await.unwrap();
    assert!(mine.iter().find(|c| c.id == coupon).unwrap().used_ms.is_some());
    assert_eq!(k.sql.campaign(FIXED_OFF).await.unwrap().unwrap().used, 1);
    assert!(k.coupons.mine("a", Some(EVENT_ID)).await.unwrap().iter().all(|(c, _)| c.id != coupon));

    // Sold in the seat store at once, and by the outbox consumer too: it
    // sells what the store does not show sold (here: lost again).
    assert_eq!((k.seat("A-1-1").await, k.seat("A-1-2").await), (SeatStatus::Sold, SeatStatus::Sold));
    let rows = k.unsent().await;
    assert_eq!(kinds_of(&rows, &o.order), vec![kinds::ORDER_CREATED, kinds::PAYMENT_COMPLETED]);
    k.base.store.unsell(EVENT_ID, &["A-1-1".into(), "A-1-2".into()]).await.unwrap();
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Free);
    let sale = rows.iter().find(|r| r.kind == kinds::PAYMENT_COMPLETED).unwrap();
    let event = crate::bus::orders::OrderEvent::from(sale);
    k.effects.apply(&event).await.unwrap();
    assert_eq!((k.seat("A-1-1").await, k.seat("A-1-2").await), (SeatStatus::Sold, SeatStatus::Sold));
    let version = k.base.store.version(EVENT_ID).await.unwrap();
    k.effects.apply(&event).await.unwrap();
    assert_eq!(k.base.store.version(EVENT_ID).await.unwrap(), version, "a replay changes no seat");
    let ledger = k.sql.ledger(SELLER_ID, Some(EVENT_ID)).await.unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    let sale = &ledger[0];
    assert_eq!((&*sale.kind, sale.tickets, sale.gross, sale.amount), ("sale", 2, 330_000, 320_000));
    assert_eq!((sale.discount_seller, sale.discount_platform), (10_000, 0));
    assert!(k.holds_of("a").await.is_empty(), "sold seats are nobody's holds");
}

#[tokio::test]
async fn a_decline_fails_the_order_and_gives_back_holds_and_coupon() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1", "A-1-2"]).await;
    let coupon = k.claim("a", FIXED_OFF).await;
    let o = k.checkout(&a, Some(&coupon)).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Decline("REJECT_CARD_PAYMENT"));
    let failed = k.orders.pay(&a, &o.order, "decline-1").await.unwrap();
    assert_eq!(failed.status, PaymentStatus::Failed);
    let reason = failed.reason.unwrap();
    assert!(reason.contains("REJECT_CARD_PAYMENT") && reason.contains(DECLINE_MESSAGE), "{reason}");
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Failed, PaymentState::Declined));
    assert_eq!(stored.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(kinds_of(&k.unsent().await, &o.order), vec![kinds::ORDER_CREATED, kinds::ORDER_FAILED]);
    assert!(k.sql.sold_seats(EVENT_ID).await.unwrap().is_empty());
    // Paying the failed order again answers the same and charges nothing.
    let again = k.orders.pay(&a, &o.order, "decline-1").await.unwrap();
    assert_eq!((again.status, again.reason.as_deref()), (PaymentStatus::Failed, Some(reason.as_str())));
    assert_eq!(k.gateway.confirms().len(), 1);
    assert!(k.gateway.charges().is_empty());
    // The coupon is unspent and free for a new order; the holds are ordinary.
    assert!(k.sql.coupons_of("a").await.unwrap().iter().all(|c| c.used_ms.is_none()));
    assert_eq!(k.sql.campaign(FIXED_OFF).await.unwrap().unwrap().used, 0);
    assert_eq!(k.release(&a, &["A-1-2"]).await, vec!["A-1-2"]);
    let retry = k.checkout(&a, Some(&coupon)).await.unwrap();
    assert_eq!((retry.seats, retry.coupon.as_deref()), (vec!["A-1-1".to_owned()], Some(coupon.as_str())));
}

#[tokio::test]
async fn an_unknown_outcome_answers_pending_and_the_reconciler_finds_the_charge() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Lost);
    let pending = k.orders.pay(&a, &o.order, "lost-1").await.unwrap();
    assert_eq!(pending.status, PaymentStatus::Pending);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Pending, PaymentState::InFlight));
    assert_eq!(kinds_of(&k.unsent().await, &o.order), vec![kinds::ORDER_CREATED], "nothing more announced yet");
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Paid, PaymentState::Approved));
    assert_eq!(payment_view(&stored).status, PaymentStatus::Paid);
    assert_eq!(k.gateway.calls(), vec![confirm("lost-1", &o.order, 165_000), lookup(&o.order)]);
    assert_eq!(k.gateway.charges(), vec![charge("lost-1", &o.order, 165_000, "DONE")]);
    assert_eq!(kinds_of(&k.unsent().await, &o.order), vec![kinds::ORDER_CREATED, kinds::PAYMENT_COMPLETED]);
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 0, "nothing left in doubt");
}

#[tokio::test]
async fn a_lookup_that_fails_leaves_the_payment_for_the_next_round() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Lost).on_lookup(LookupWith::Unknown);
    assert_eq!(k.orders.pay(&a, &o.order, "lost-1").await.unwrap().status, PaymentStatus::Pending);
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    assert_eq!(k.order(&o.order).await.payment, PaymentState::InFlight, "not guessed");
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Paid);
    assert_eq!(k.gateway.confirms().len(), 1);
}

#[tokio::test]
async fn a_payment_the_gateway_never_saw_is_confirmed_again() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Unknown);
    assert_eq!(k.orders.pay(&a, &o.order, "flaky-1").await.unwrap().status, PaymentStatus::Pending);
    assert_eq!(k.order(&o.order).await.payment, PaymentState::InFlight);
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    assert_eq!(
        k.gateway.calls(),
        vec![confirm("flaky-1", &o.order, 165_000), lookup(&o.order), confirm("flaky-1", &o.order, 165_000)],
        "the same key and amount again"
    );
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Paid);
    assert_eq!(k.gateway.charges().len(), 1);
}

#[tokio::test]
async fn a_payment_unknown_past_the_give_up_time_is_still_settled_only_by_the_gateway() {
    let k = order_kit(OrderSetup { give_up_after_ms: 0, ..OrderSetup::default() }).await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Unknown).on_confirm(ConfirmWith::Unknown);
    assert_eq!(k.orders.pay(&a, &o.order, "flaky-1").await.unwrap().status, PaymentStatus::Pending);
    // Past the give-up time and unknown to the gateway: asked again, not failed.
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Pending, PaymentState::InFlight));
    let asked = vec![confirm("flaky-1", &o.order, 165_000), lookup(&o.order), confirm("flaky-1", &o.order, 165_000)];
    assert_eq!(k.gateway.calls(), asked);
    // The gateway's final word decides.
    k.gateway.on_confirm(ConfirmWith::Decline("REJECT_CARD_PAYMENT"));
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Failed, PaymentState::Declined));
    assert!(stored.reason.as_deref().unwrap().contains("REJECT_CARD_PAYMENT"));
    assert_eq!(k.gateway.confirms().len(), 3);
    assert!(k.gateway.charges().is_empty());
    assert_eq!(k.release(&a, &["A-1-1"]).await, vec!["A-1-1"], "the hold is ordinary again");
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 0);
}

#[tokio::test]
async fn paying_twice_charges_once() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    let first = k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    let again = k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    let other_key = k.orders.pay(&a, &o.order, "ok-2").await.unwrap();
    assert_eq!(first.status, PaymentStatus::Paid);
    assert_eq!((&again, &other_key), (&first, &first), "the same answer");
    assert_eq!(k.gateway.confirms(), vec![confirm("ok-1", &o.order, 165_000)]);
    assert_eq!(
        kinds_of(&k.unsent().await, &o.order),
        vec![kinds::ORDER_CREATED, kinds::PAYMENT_COMPLETED],
        "one sale announced"
    );

    // Twice while the first is still in flight: the same pending answer.
    let b = k.holding("b", &["A-2-1"]).await;
    let ob = k.checkout(&b, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Unknown);
    let first = k.orders.pay(&b, &ob.order, "slow-1").await.unwrap();
    assert_eq!(first.status, PaymentStatus::Pending);
    assert_eq!(k.orders.pay(&b, &ob.order, "slow-1").await.unwrap().status, PaymentStatus::Pending);
    let err = k.orders.pay(&b, &ob.order, "slow-2").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err:?}");
    assert_eq!(k.gateway.confirms().len(), 2, "one confirm per order");
}

#[tokio::test]
async fn paying_needs_the_admission() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.base.queue.leave(&a, EVENT_ID, None).await.unwrap();
    let err = k.orders.pay(&a, &o.order, "ok-1").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotAdmitted, "{err:?}");
    assert_eq!(k.order(&o.order).await.payment, PaymentState::None);
    assert!(k.gateway.calls().is_empty());
}

#[tokio::test]
async fn paying_someone_elses_order_is_not_found() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    let b = k.buyer("b").await;
    let err = k.orders.pay(&b, &o.order, "ok-1").await.unwrap_err();
    assert!(matches!(err, AppError::NotFound("order")), "{err:?}");
    let err = k.orders.pay(&b, "ord-missing", "ok-1").await.unwrap_err();
    assert!(matches!(err, AppError::NotFound("order")), "{err:?}");
    assert!(matches!(k.orders.cancel(&b, &o.order).await, Err(AppError::NotFound("order"))));
    assert!(k.gateway.calls().is_empty());
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Pending, PaymentState::None));
    // A bad key is refused before anything is looked at.
    for key in ["", "has space", &"k".repeat(201)] {
        assert_eq!(k.orders.pay(&a, &o.order, key).await.unwrap_err().code(), ErrorCode::BadRequest, "{key:?}");
    }
    assert!(k.gateway.calls().is_empty());
}

#[tokio::test]
async fn paying_after_expiry_is_order_expired_and_asks_no_gateway() {
    let k = short_kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    let expires = k.order(&o.order).await.expires_ms;
    assert!(expires > k.now(), "payable at first");
    k.jump_past(expires).await;
    // Due but not swept yet: the time alone decides.
    let err = k.orders.pay(&a, &o.order, "ok-1").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::OrderExpired, "{err:?}");
    assert_eq!(k.order(&o.order).await.payment, PaymentState::None);
    assert_eq!(k.orders.expire_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.reason.as_deref()), (OrderStatus::Expired, Some("not paid in time")));
    assert_eq!(kinds_of(&k.unsent().await, &o.order), vec![kinds::ORDER_CREATED, kinds::ORDER_EXPIRED]);
    assert_eq!(k.orders.pay(&a, &o.order, "ok-1").await.unwrap_err().code(), ErrorCode::OrderExpired);
    assert_eq!(k.orders.expire_step().await.unwrap(), 0, "expired once");
    assert!(k.gateway.calls().is_empty());
}

#[tokio::test]
async fn a_mismatched_amount_is_looked_up_and_the_right_charge_pays() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Misreport(1_000));
    let paid = k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    assert_eq!(paid.status, PaymentStatus::Paid);
    assert_eq!(k.gateway.calls(), vec![confirm("ok-1", &o.order, 165_000), lookup(&o.order)]);
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Paid);
    assert_eq!(k.sql.sold_seats(EVENT_ID).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_mismatched_reply_with_no_record_stays_in_doubt() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Misreport(1_000)).on_lookup(LookupWith::NotFound);
    assert_eq!(k.orders.pay(&a, &o.order, "ok-1").await.unwrap().status, PaymentStatus::Pending, "not guessed");
    assert_eq!(k.order(&o.order).await.payment, PaymentState::InFlight);
    // The reconciler finds the right charge on record.
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Paid);
    assert_eq!(k.gateway.calls(), vec![confirm("ok-1", &o.order, 165_000), lookup(&o.order), lookup(&o.order)]);
}

#[tokio::test]
async fn a_wrong_charge_on_record_is_cancelled_and_sells_nothing() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Charge(1_000));
    let answer = k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    let why = "the gateway charged a different amount; the charge was cancelled";
    assert_eq!((answer.status, answer.reason.as_deref()), (PaymentStatus::Failed, Some(why)));
    assert_eq!(
        k.gateway.calls(),
        vec![confirm("ok-1", &o.order, 165_000), lookup(&o.order), cancel("ok-1", why, &o.order)]
    );
    assert_eq!(k.gateway.charges(), vec![charge("ok-1", &o.order, 1_000, "CANCELED")]);
    let stored = k.order(&o.order).await;
    assert!(matches!(stored.status, OrderStatus::Failed | OrderStatus::Refunded), "{:?}", stored.status);
    assert_eq!(stored.payment, PaymentState::Refunded);
    assert!(k.sql.sold_seats(EVENT_ID).await.unwrap().is_empty());
    k.deliver().await;
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Held, "not sold");
    assert_eq!(k.release(&a, &["A-1-1"]).await, vec!["A-1-1"], "an ordinary hold of the buyer's again");
}

#[tokio::test]
async fn a_slow_gateway_answers_pending_and_the_payment_finishes_behind() {
    let k = order_kit(OrderSetup { answer_wait: Duration::from_millis(50), ..OrderSetup::default() }).await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Slow(Duration::from_millis(400)));
    let pending = k.orders.pay(&a, &o.order, "slow-1").await.unwrap();
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(k.order(&o.order).await.payment, PaymentState::InFlight);
    k.orders.payments.close();
    k.orders.payments.wait().await;
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Paid);
    assert_eq!(k.gateway.confirms().len(), 1);
}

// ------------------------------------------------------------------ late payments

/// `a`'s order for A-1-1, paid with an answer that was lost, expired by
/// the sweep, and its hold ended: the seat is free.
async fn expired_in_flight(k: &OrderKit) -> (UserId, OrderView) {
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.gateway.on_confirm(ConfirmWith::Lost);
    assert_eq!(k.orders.pay(&a, &o.order, "lost-1").await.unwrap().status, PaymentStatus::Pending);
    k.jump_past(k.order(&o.order).await.expires_ms).await;
    assert_eq!(k.orders.expire_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Expired, PaymentState::InFlight));
    k.base.store.expire(EVENT_ID, k.now(), 100).await.unwrap();
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Free);
    (a, o)
}

#[tokio::test]
async fn a_late_approval_with_the_seats_still_free_pays_and_takes_them_again() {
    let k = short_kit().await;
    let (_, o) = expired_in_flight(&k).await;
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Paid, PaymentState::Approved));
    assert_eq!(last_reason(&k, &o.order).await, "payment approved after the order had expired; seats taken again");
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Sold, "the seat is the buyer's again, sold");
    assert_eq!(k.sql.sold_seats(EVENT_ID).await.unwrap(), vec![("A-1-1".into(), o.order.clone())]);
    assert!(k.gateway.cancels().is_empty());
    assert_eq!(k.deliver().await, vec![kinds::ORDER_CREATED, kinds::ORDER_EXPIRED, kinds::PAYMENT_COMPLETED]);
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Sold);
}

#[tokio::test]
async fn a_late_approval_for_seats_another_buyer_holds_is_refunded() {
    let k = short_kit().await;
    let (_, o) = expired_in_flight(&k).await;
    let b = k.holding("b", &["A-1-1"]).await;
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Refunded, PaymentState::Refunded));
    let why = "the seats were taken by someone else before the payment arrived; the payment was refunded";
    assert_eq!(stored.reason.as_deref(), Some(why));
    assert_eq!(last_reason(&k, &o.order).await, why);
    assert_eq!(
        k.gateway.calls(),
        vec![confirm("lost-1", &o.order, 165_000), lookup(&o.order), cancel("lost-1", why, &o.order)]
    );
    assert_eq!(k.gateway.charges(), vec![charge("lost-1", &o.order, 165_000, "CANCELED")]);
    let answer = payment_view(&stored);
    assert_eq!((answer.status, answer.reason.as_deref()), (PaymentStatus::Failed, Some(why)));
    // The other buyer's hold is as it was, and stays so once the outbox ran.
    assert_eq!(k.deliver().await, vec![kinds::ORDER_CREATED, kinds::ORDER_EXPIRED, kinds::ORDER_REFUNDED]);
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Held);
    assert!(k.holds_of("a").await.is_empty());
    assert_eq!(k.holds_of("b").await, vec!["A-1-1"]);
    assert!(k.sql.sold_seats(EVENT_ID).await.unwrap().is_empty());
    assert_eq!(k.release(&b, &["A-1-1"]).await, vec!["A-1-1"], "still an ordinary hold of b's");
}

// ------------------------------------------------------------------ cancel, refund

#[tokio::test]
async fn cancelling_an_unpaid_order_keeps_the_holds_the_buyers() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1", "A-1-2"]).await;
    let coupon = k.claim("a", FIXED_OFF).await;
    let o = k.checkout(&a, Some(&coupon)).await.unwrap();
    let cancelled = k.orders.cancel(&a, &o.order).await.unwrap();
    assert_eq!(
        (cancelled.status, cancelled.reason.as_deref()),
        (OrderStatus::Cancelled, Some("cancelled by the buyer"))
    );
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Cancelled);
    assert_eq!(kinds_of(&k.unsent().await, &o.order), vec![kinds::ORDER_CREATED, kinds::ORDER_CANCELLED]);
    assert_eq!(k.orders.cancel(&a, &o.order).await.unwrap().status, OrderStatus::Cancelled, "again: the same");
    assert_eq!(k.holds_of("a").await, vec!["A-1-1", "A-1-2"]);
    assert_eq!(k.release(&a, &["A-1-2"]).await, vec!["A-1-2"], "ordinary holds again");
    // The coupon is free for the next order.
    assert_eq!(k.checkout(&a, Some(&coupon)).await.unwrap().coupon.as_deref(), Some(coupon.as_str()));
    assert!(k.gateway.calls().is_empty());
}

#[tokio::test]
async fn a_paid_order_cancelled_under_the_policy_is_refunded_and_frees_the_seats() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1", "A-1-2"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    assert_eq!(k.orders.pay(&a, &o.order, "ok-1").await.unwrap().status, PaymentStatus::Paid);
    assert_eq!(k.deliver().await, vec![kinds::ORDER_CREATED, kinds::PAYMENT_COMPLETED]);
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Sold);
    let refunded = k.orders.cancel(&a, &o.order).await.unwrap();
    assert_eq!(refunded.status, OrderStatus::Refunded);
    let why = "cancelled by the buyer under the event's refund policy";
    assert_eq!(k.gateway.cancels(), vec![cancel("ok-1", why, &o.order)]);
    assert_eq!(k.gateway.charges(), vec![charge("ok-1", &o.order, 330_000, "CANCELED")]);
    assert_eq!(k.order(&o.order).await.payment, PaymentState::Refunded);
    assert!(k.sql.sold_seats(EVENT_ID).await.unwrap().is_empty(), "the record frees them at once");
    assert_eq!(k.deliver().await, vec![kinds::ORDER_REFUNDED]);
    assert_eq!((k.seat("A-1-1").await, k.seat("A-1-2").await), (SeatStatus::Free, SeatStatus::Free));
    let ledger = k.sql.ledger(SELLER_ID, Some(EVENT_ID)).await.unwrap();
    let kinds: Vec<(&str, i64)> = ledger.iter().map(|l| (l.kind.as_str(), l.amount)).collect();
    assert_eq!(kinds, vec![("sale", 330_000), ("refund", -330_000)]);
    // Paying or cancelling again takes and gives nothing.
    assert_eq!(k.orders.pay(&a, &o.order, "ok-1").await.unwrap().status, PaymentStatus::Failed);
    assert_eq!(k.orders.cancel(&a, &o.order).await.unwrap().status, OrderStatus::Refunded, "the same answer");
    assert_eq!((k.gateway.confirms().len(), k.gateway.cancels().len()), (1, 1));
    assert!(k.deliver().await.is_empty(), "nothing more announced");
}

#[tokio::test]
async fn a_refund_before_the_sale_reached_the_seat_store_still_frees_the_seats() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    assert_eq!(k.orders.pay(&a, &o.order, "ok-1").await.unwrap().status, PaymentStatus::Paid);
    // Refunded before the outbox consumer took the sale.
    assert_eq!(k.orders.cancel(&a, &o.order).await.unwrap().status, OrderStatus::Refunded);
    assert_eq!(k.deliver().await, vec![kinds::ORDER_CREATED, kinds::PAYMENT_COMPLETED, kinds::ORDER_REFUNDED]);
    assert!(k.sql.sold_seats(EVENT_ID).await.unwrap().is_empty());
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Free, "refunded seats are back on sale");
}

#[tokio::test]
async fn a_paid_order_outside_the_policy_cannot_be_cancelled() {
    let k = order_kit(OrderSetup { refunds: false, ..OrderSetup::default() }).await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    assert_eq!(k.orders.pay(&a, &o.order, "ok-1").await.unwrap().status, PaymentStatus::Paid);
    let err = k.orders.cancel(&a, &o.order).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden, "{err:?}");
    assert!(k.gateway.cancels().is_empty());
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Paid, PaymentState::Approved));
}

#[tokio::test]
async fn a_seller_refunds_only_its_own_orders_and_needs_a_reason() {
    let k = order_kit(OrderSetup { refunds: false, ..OrderSetup::default() }).await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    let own = Scope::Seller(SELLER_ID);
    let err = k.orders.seller_refund(own, &o.order, "moved").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "an unpaid order is not refunded: {err:?}");
    k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    let err = k.orders.seller_refund(Scope::Seller("someone-else"), &o.order, "moved").await.unwrap_err();
    assert!(matches!(err, AppError::NotFound("order")), "{err:?}");
    assert!(matches!(k.orders.seller_refund(own, "ord-missing", "moved").await, Err(AppError::NotFound("order"))));
    for reason in ["", "   ", &"x".repeat(201)] {
        let err = k.orders.seller_refund(own, &o.order, reason).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest, "{reason:?}");
        let AppError::Invalid(fields) = &err else { panic!("{err:?}") };
        assert!(fields.0.contains_key("reason"), "{fields:?}");
    }
    assert!(k.gateway.cancels().is_empty());
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Paid);
    // The seller's own order, whatever the buyers' policy says.
    let refunded = k.orders.seller_refund(own, &o.order, "  the show was moved  ").await.unwrap();
    assert_eq!(refunded.status, OrderStatus::Refunded);
    assert_eq!(k.gateway.cancels(), vec![cancel("ok-1", "the show was moved", &o.order)]);
    assert_eq!(last_reason(&k, &o.order).await, "the show was moved");
    let again = k.orders.seller_refund(Scope::Admin, &o.order, "again").await.unwrap();
    assert_eq!(again.status, OrderStatus::Refunded);
    assert_eq!(k.gateway.cancels().len(), 1, "refunded once");
}

#[tokio::test]
async fn a_refund_the_gateway_has_not_confirmed_is_retried_by_the_reconciler() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    k.gateway.on_cancel(CancelWith::Unknown);
    let view = k.orders.seller_refund(Scope::Seller(SELLER_ID), &o.order, "the show was moved").await.unwrap();
    assert_eq!(view.status, OrderStatus::Paid, "not refunded until the gateway says so");
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Paid, PaymentState::RefundDue));
    assert_eq!(k.gateway.charges()[0].status, "DONE");
    assert_eq!(k.sql.sold_seats(EVENT_ID).await.unwrap().len(), 1, "still sold");
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    let stored = k.order(&o.order).await;
    assert_eq!((stored.status, stored.payment), (OrderStatus::Refunded, PaymentState::Refunded));
    let retry = cancel("ok-1", "the show was moved", &o.order);
    assert_eq!(k.gateway.cancels(), vec![retry.clone(), retry], "the same refund, under the same key");
    assert_eq!(k.gateway.charges()[0].status, "CANCELED");
    assert_eq!(last_reason(&k, &o.order).await, "the show was moved");
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 0);
}

#[tokio::test]
async fn a_refund_the_gateway_refuses_stays_due() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    k.gateway.on_cancel(CancelWith::Decline("PROVIDER_ERROR"));
    let view = k.orders.cancel(&a, &o.order).await.unwrap();
    assert_eq!(view.status, OrderStatus::Paid);
    assert_eq!(k.order(&o.order).await.payment, PaymentState::RefundDue);
    // The reconciler asks again, and this time the gateway refunds.
    assert_eq!(k.orders.reconcile_step().await.unwrap(), 1);
    assert_eq!(k.order(&o.order).await.status, OrderStatus::Refunded);
}

#[tokio::test]
async fn resync_marks_sold_what_the_record_sold() {
    let k = kit().await;
    let a = k.holding("a", &["A-1-1", "A-1-2"]).await;
    let o = k.checkout(&a, None).await.unwrap();
    k.orders.pay(&a, &o.order, "ok-1").await.unwrap();
    assert_eq!(k.orders.resync_sold().await.unwrap(), 0, "the store shows the sale");
    // A store that lost it (a Redis restarted empty).
    k.base.store.unsell(EVENT_ID, &["A-1-1".into(), "A-1-2".into()]).await.unwrap();
    assert_eq!(k.seat("A-1-1").await, SeatStatus::Free);
    assert_eq!(k.orders.resync_sold().await.unwrap(), 2);
    assert_eq!((k.seat("A-1-1").await, k.seat("A-1-2").await), (SeatStatus::Sold, SeatStatus::Sold));
    assert_eq!(k.orders.resync_sold().await.unwrap(), 0, "nothing left to mark");
    // The consumer coming later changes nothing more.
    let version = k.base.store.version(EVENT_ID).await.unwrap();
    k.deliver().await;
    assert_eq!(k.base.store.version(EVENT_ID).await.unwrap(), version);
}
