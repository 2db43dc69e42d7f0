//! Property tests of orders: pricing comes from the tiers alone and adds up;
//! totals never go below zero nor above the subtotal; the state machine
//! never leads back to `pending`, keeps `refunded` final (`failed` only
//! goes on to a refund of money that arrived late), and
//! every path it allows is one of the documented ones.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::*;
use crate::domain::coupons::FundedBy;
use crate::domain::demo;

fn config() -> Config {
    Config { failure_persistence: None, rng_seed: RngSeed::Fixed(0x0de7_5eed), ..Config::default() }
}

fn status() -> impl Strategy<Value = OrderStatus> {
    prop::sample::select(OrderStatus::ALL.to_vec())
}

fn step() -> impl Strategy<Value = Step> {
    prop::sample::select(Step::ALL.to_vec())
}

/// Every allowed (from, step) and where it leads: the documented machine.
const ALLOWED: &[(OrderStatus, Step, OrderStatus)] = &[
    (OrderStatus::Pending, Step::Paid, OrderStatus::Paid),
    (OrderStatus::Pending, Step::Declined, OrderStatus::Failed),
    (OrderStatus::Pending, Step::Expire, OrderStatus::Expired),
    (OrderStatus::Pending, Step::Cancel, OrderStatus::Cancelled),
    (OrderStatus::Pending, Step::Refund, OrderStatus::Refunded),
    (OrderStatus::Paid, Step::Refund, OrderStatus::Refunded),
    (OrderStatus::Expired, Step::Paid, OrderStatus::Paid),
    (OrderStatus::Expired, Step::Refund, OrderStatus::Refunded),
    (OrderStatus::Cancelled, Step::Paid, OrderStatus::Paid),
    (OrderStatus::Cancelled, Step::Refund, OrderStatus::Refunded),
    (OrderStatus::Failed, Step::Refund, OrderStatus::Refunded),
];

#[test]
fn the_machine_is_exactly_the_documented_one() {
    for from in OrderStatus::ALL {
        for step in Step::ALL {
            let want = ALLOWED.iter().find(|(f, s, _)| *f == from && *s == step).map(|(_, _, to)| *to);
            assert_eq!(next_status(from, step).ok(), want, "{from:?} --{step:?}-->");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whatever happens to an order, in any order: it never goes back to
    /// `pending`, never leaves `failed` or `refunded`, never leaves `paid`
    /// except by a refund, and every change is recorded (the path the
    /// machine allowed is the path walked).
    #[test]
    fn no_path_leads_back_and_no_transition_is_lost(steps in prop::collection::vec(step(), 0..20)) {
        let mut now = OrderStatus::Pending;
        let mut path = vec![now];
        for s in steps {
            match next_status(now, s) {
                Ok(to) => {
                    prop_assert_ne!(to, OrderStatus::Pending);
                    prop_assert_ne!(now, OrderStatus::Refunded);
                    if now == OrderStatus::Failed {
                        prop_assert_eq!(to, OrderStatus::Refunded);
                    }
                    if now == OrderStatus::Paid {
                        prop_assert_eq!(s, Step::Refund);
                    }
                    now = to;
                    path.push(to);
                }
                Err(e) => {
                    prop_assert_eq!(e.step, s);
                    prop_assert_eq!(e.from, now.as_str());
                }
            }
        }
        // Each recorded change is an allowed one, in sequence.
        for pair in path.windows(2) {
            prop_assert!(ALLOWED.iter().any(|(f, _, t)| *f == pair[0] && *t == pair[1]), "{pair:?}");
        }
        // Paid at most once.
        prop_assert!(path.iter().filter(|s| **s == OrderStatus::Paid).count() <= 1);
    }

    #[test]
    fn a_refused_step_names_where_it_stood(from in status(), s in step()) {
        if let Err(e) = next_status(from, s) {
            prop_assert!(e.to_string().contains(from.as_str()));
        }
    }

    /// Prices come from the event's tiers, each seat once, in the order
    /// given; the subtotal is their sum.
    #[test]
    fn pricing_is_the_tier_prices_of_the_seats(pick in prop::collection::vec(0usize..2_400, 1..12)) {
        let event = demo::event(0);
        let layout = crate::domain::seats::SeatLayout::new(demo::seats());
        let ids: Vec<String> = pick.iter().map(|&i| layout.seats[i % layout.seats.len()].id.clone()).collect();
        let priced = price_seats(&event, &layout, &ids).unwrap();
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
        prop_assert_eq!(priced.lines.len(), unique.len());
        let mut sum = 0;
        for (line, id) in priced.lines.iter().zip(unique) {
            prop_assert_eq!(&line.seat, id);
            let seat = &layout.seats[layout.index_of(id).unwrap()];
            prop_assert_eq!(&line.tier, &seat.tier);
            let price = event.tiers.iter().find(|t| t.id == seat.tier).unwrap().price;
            prop_assert_eq!(line.price, price);
            sum += price;
        }
        prop_assert_eq!(priced.subtotal(), sum);
    }

    /// The total is the subtotal less the discount; the discount is within
    /// 0..=subtotal; its funders' parts add up to it exactly.
    #[test]
    fn totals_add_up(subtotal in 0i64..=1_000_000_000_000, discount in -1_000i64..=2_000_000_000_000, pct in 0u8..=100) {
        let funders = FundedBy { seller_pct: pct, platform_pct: 100 - pct };
        let t = Totals::new(subtotal, discount, |d| funders.split(d));
        prop_assert!((0..=subtotal).contains(&t.discount));
        prop_assert_eq!(t.total, subtotal - t.discount);
        prop_assert!(t.total >= 0);
        prop_assert_eq!(t.split.seller + t.split.platform, t.discount);
        prop_assert!(t.split.seller >= 0 && t.split.platform >= 0);
    }

    /// Checkout extends a hold once, by at most the hold time, and never
    /// shortens it.
    #[test]
    fn an_order_keeps_its_seats_at_least_as_long_as_the_hold(end in 0i64..1_000_000, now in 0i64..1_000_000, hold_s in 0u32..3_600) {
        let until = order_expiry(end, now, hold_s);
        prop_assert!(until >= end);
        prop_assert!(until - end.max(now) <= i64::from(hold_s) * 1000);
    }
}

#[test]
fn seats_outside_the_venue_or_without_a_price_are_refused() {
    let mut event = demo::event(0);
    let layout = crate::domain::seats::SeatLayout::new(demo::seats());
    assert_eq!(price_seats(&event, &layout, &[]), Err(PricingError::NoSeats));
    assert_eq!(price_seats(&event, &layout, &["nope".into()]), Err(PricingError::UnknownSeat("nope".into())));
    let seat = layout.seats[0].clone();
    event.tiers.retain(|t| t.id != seat.tier);
    assert_eq!(
        price_seats(&event, &layout, std::slice::from_ref(&seat.id)),
        Err(PricingError::NoPrice { seat: seat.id.clone(), tier: seat.tier.clone() })
    );
}

#[test]
fn refunds_follow_the_policy_window() {
    assert!(!buyer_may_refund(None, 0));
    assert!(buyer_may_refund(Some(10), 9));
    assert!(!buyer_may_refund(Some(10), 10));
}

#[test]
fn order_ids_are_valid_toss_order_ids() {
    let id = new_order_id(u128::MAX);
    assert!((6..=64).contains(&id.len()));
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}
