//! The checkout run's books held against each other: what every buyer was
//! told (its order and its final `payment`), the refunds the seller asked
//! for, the payment sandbox's ledger, the store's final seat map and each
//! buyer's own `orders` listing. Pure: no I/O, no clocks.
//!
//! - Outcomes: every payment ends `paid`, except a `decline` key's, which
//!   ends `failed` (the protocol's promise for the sandbox's prefixes).
//! - Charges: each paid order has exactly one `DONE` charge, of its total,
//!   under its key; a failed order has no `DONE` charge; a refunded order
//!   exactly one `CANCELED` one; so the run's `DONE` charges are its paid
//!   orders.
//! - Seats: the seats sold in the final map are exactly those of the paid
//!   (not refunded) orders; no seat is in two paid orders; a refunded
//!   order's seats are free again.
//! - Refunds: each one asked for answered `refunded`, has its `CANCELED`
//!   charge and its seats back; no other order of the run was refunded.
//! - Records: each buyer's listing shows its order as it was told.

use std::collections::{BTreeMap, BTreeSet};

use qt_protocol::frames::SeatStatus;
use serde::Serialize;

use crate::checkout::books::{Charge, Ledger};
use crate::checkout::wire::{BuyerRecord, Listing, Told};

/// Examples of anomalies kept for the report, per check.
const EXAMPLES: usize = 8;

/// One refund the seller asked for, and its answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub order: String,
    /// The order's status in the answer (`refunded`), or the error.
    pub answer: String,
}

/// Everything the audit holds against each other.
pub struct Inputs<'a> {
    pub records: &'a [BuyerRecord],
    pub refunds: &'a [Refund],
    pub ledger: &'a Ledger,
    /// Order ids the ledger had before the run (not the run's).
    pub ledger_before: &'a BTreeSet<String>,
    /// The store's final map, and the seats sold at the start.
    pub map: &'a BTreeMap<String, SeatStatus>,
    pub sold_at_start: &'a BTreeSet<String>,
    pub listings: &'a [Listing],
    pub list_errors: u64,
}

/// Counts and examples of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Check {
    pub bad: u64,
    pub examples: Vec<String>,
}

impl Check {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.bad += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }

    pub fn ok(&self) -> bool {
        self.bad == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// Orders made (a checkout answered `order`).
    pub orders: u64,
    /// Final answers: paid, failed; orders with none.
    pub paid: u64,
    pub failed: u64,
    pub no_final: u64,
    /// Paid orders the seller refunded afterwards.
    pub refunded: u64,
    /// Buyers the seats ran out for (not failures).
    pub no_seats: u64,
    /// Buyers that never got to an outcome: set-up, checkout or pay errors,
    /// lost sockets, no final payment.
    pub broken: Check,
    /// Final outcomes that are not what the key's prefix asks for.
    pub wrong_outcome: Check,
    /// A `payment` push that contradicted the first final answer.
    pub flipped: Check,
    /// The ledger: charges read, of the run's orders, `DONE` ones of them,
    /// and charges of orders that are not the run's (before or unknown).
    pub charges_read: u64,
    pub ledger_by_order: bool,
    pub run_charges: u64,
    pub done_charges: u64,
    pub canceled_charges: u64,
    pub foreign_charges: u64,
    /// Of those, charges of orders the ledger did not have before the run
    /// (an order of the run that no buyer heard of, or another client).
    pub foreign_new: u64,
    /// Paid orders without exactly one `DONE` charge of their total and key.
    pub paid_not_charged: Check,
    /// Failed orders with a `DONE` charge (and any charge at all).
    pub failed_but_charged: Check,
    pub failed_with_canceled: u64,
    /// Refunded orders without exactly one `CANCELED` charge; `CANCELED`
    /// charges of orders the seller did not refund.
    pub refund_unmatched: Check,
    /// Seats: sold in the map, sold at the start, of paid orders.
    pub seats_sold: u64,
    pub seats_sold_at_start: u64,
    pub seats_paid: u64,
    pub seats_held_at_end: u64,
    /// Sold in the map but in no paid order (nor sold at the start); in a
    /// paid order but not sold; in two paid orders; refunded but not free.
    pub sold_not_paid: Check,
    pub paid_not_sold: Check,
    pub sold_twice: Check,
    pub refunded_not_free: Check,
    /// Refunds asked for that did not answer `refunded`.
    pub refunds_asked: u64,
    pub refund_refused: Check,
    /// `best` checkouts whose buyer claimed a coupon but got no discount.
    pub best_orders: u64,
    pub best_discounted: u64,
    pub best_without_coupon: Check,
    /// Listings: buyers asked and answering, orders whose listed status is
    /// not the one the buyer was told (refunded for a refund), orders
    /// listed that the buyer never heard of, orders not listed.
    pub listed: u64,
    pub list_errors: u64,
    pub listed_wrong: Check,
    pub listed_unknown: Check,
    pub listed_missing: Check,
}

/// What an order should be now, from what its buyer was told and what the
/// seller did.
fn expected(r: &BuyerRecord, refunded: &BTreeSet<&str>) -> Option<&'static str> {
    let id = r.order.as_ref()?.id.as_str();
    match r.final_status? {
        Told::Paid if refunded.contains(id) => Some("refunded"),
        Told::Paid => Some("paid"),
        Told::Failed => Some("failed"),
        Told::Pending => None,
    }
}

pub fn audit(i: &Inputs<'_>) -> Audit {
    let mut a = Audit { refunds_asked: i.refunds.len() as u64, ..Audit::default() };
    let refunded: BTreeSet<&str> =
        i.refunds.iter().filter(|r| r.answer == "refunded").map(|r| r.order.as_str()).collect();
    for r in i.refunds.iter().filter(|r| r.answer != "refunded") {
        a.refund_refused.add(|| format!("refund of {} answered {}", r.order, r.answer));
    }
    a.refunded = refunded.len() as u64;

    // What the buyers were told.
    let with_order: Vec<&BuyerRecord> = i.records.iter().filter(|r| r.order.is_some()).collect();
    a.orders = with_order.len() as u64;
    for r in i.records {
        match (r.outcome.as_str(), r.final_status) {
            ("paid", Some(Told::Paid)) => a.paid += 1,
            ("failed", Some(Told::Failed)) => a.failed += 1,
            ("no seats", _) => a.no_seats += 1,
            (why, _) => {
                a.broken.add(|| format!("buyer {} ({:?}): {why}", r.index, r.kind));
                if r.order.is_some() {
                    a.no_final += 1;
                }
            }
        }
        if let (Some(kind), Some(told)) = (r.kind, r.final_status) {
            let want = if kind.ends_paid() { Told::Paid } else { Told::Failed };
            if told != want {
                a.wrong_outcome.add(|| {
                    format!(
                        "buyer {} paid with a {} key and was told {told:?} ({:?})",
                        r.index,
                        kind.prefix(),
                        r.reason
                    )
                });
            }
        }
        if r.final_flipped {
            a.flipped.add(|| format!("buyer {}: a pushed payment contradicted {:?}", r.index, r.final_status));
        }
        if let Some(o) = r.order.as_ref()
            && r.best
            && r.coupon_claimed.is_some()
        {
            a.best_orders += 1;
            if o.discount > 0 && o.coupon.is_some() {
                a.best_discounted += 1;
            } else {
                a.best_without_coupon.add(|| {
                    format!(
                        "buyer {} claimed {:?}; order {} has coupon {:?}",
                        r.index, r.coupon_claimed, o.id, o.coupon
                    )
                });
            }
        }
    }

    // The ledger against the orders.
    let ours: BTreeMap<&str, &BuyerRecord> =
        with_order.iter().map(|r| (r.order.as_ref().expect("filtered").id.as_str(), *r)).collect();
    let mut by_order: BTreeMap<&str, Vec<&Charge>> = BTreeMap::new();
    a.charges_read = i.ledger.charges.len() as u64;
    a.ledger_by_order = i.ledger.by_order;
    for c in &i.ledger.charges {
        if ours.contains_key(c.order_id.as_str()) {
            by_order.entry(c.order_id.as_str()).or_default().push(c);
            a.run_charges += 1;
            match c.status.as_str() {
                "DONE" => a.done_charges += 1,
                "CANCELED" => a.canceled_charges += 1,
                _ => {}
            }
        } else {
            a.foreign_charges += 1;
            if !i.ledger_before.contains(&c.order_id) {
                a.foreign_new += 1;
            }
        }
    }
    for (&id, r) in &ours {
        let charges = by_order.get(id).map(Vec::as_slice).unwrap_or_default();
        let total = r.order.as_ref().map_or(0, |o| o.total);
        let key = r.payment_key.as_deref().unwrap_or_default();
        let show = || {
            charges
                .iter()
                .map(|c| format!("{} {} {}", c.payment_key, c.status, c.amount))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let paid_once = matches!(charges, [c] if c.status == "DONE" && c.amount == total && c.payment_key == key);
        let refunded_once = matches!(charges, [c] if c.status == "CANCELED" && c.amount == total);
        match expected(r, &refunded) {
            Some("paid") if !paid_once => {
                a.paid_not_charged
                    .add(|| format!("paid order {id} (total {total}, key {key}) has charges [{}]", show()));
            }
            Some("refunded") if !refunded_once => {
                a.refund_unmatched.add(|| format!("refunded order {id} (total {total}) has charges [{}]", show()));
            }
            Some("paid" | "refunded") => {}
            Some(_) => {
                if charges.iter().any(|c| c.status == "DONE") {
                    a.failed_but_charged.add(|| format!("failed order {id} has charges [{}]", show()));
                } else if !charges.is_empty() {
                    a.failed_with_canceled += 1;
                }
            }
            None => {}
        }
        if !refunded.contains(id)
            && charges.iter().any(|c| c.status == "CANCELED")
            && expected(r, &refunded).is_some_and(|e| e != "failed")
        {
            a.refund_unmatched
                .add(|| format!("order {id} was not refunded by the seller but has charges [{}]", show()));
        }
    }

    // Seats.
    let mut paid_seats: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut refunded_seats: BTreeSet<&str> = BTreeSet::new();
    for (&id, r) in &ours {
        let seats = &r.order.as_ref().expect("ours").seats;
        match expected(r, &refunded) {
            Some("paid") => seats.iter().for_each(|s| paid_seats.entry(s.as_str()).or_default().push(id)),
            Some("refunded") => {
                seats.iter().for_each(|s| paid_seats.entry(s.as_str()).or_default().push(id));
                refunded_seats.extend(seats.iter().map(String::as_str));
            }
            _ => {}
        }
    }
    for (seat, orders) in paid_seats.iter().filter(|(_, o)| o.len() > 1) {
        a.sold_twice.add(|| format!("seat {seat} is in the paid orders {orders:?}"));
    }
    let expected_sold: BTreeSet<&str> = paid_seats.keys().copied().filter(|s| !refunded_seats.contains(s)).collect();
    a.seats_paid = expected_sold.len() as u64;
    a.seats_sold_at_start = i.sold_at_start.len() as u64;
    for (seat, status) in i.map {
        match status {
            SeatStatus::Sold => {
                a.seats_sold += 1;
                if !expected_sold.contains(seat.as_str()) && !i.sold_at_start.contains(seat) {
                    a.sold_not_paid.add(|| format!("seat {seat} is sold but in no paid order of the run"));
                }
            }
            SeatStatus::Held => a.seats_held_at_end += 1,
            SeatStatus::Free => {}
        }
        if refunded_seats.contains(seat.as_str()) && *status != SeatStatus::Free {
            a.refunded_not_free.add(|| format!("seat {seat} of a refunded order is {status:?}"));
        }
    }
    for seat in &expected_sold {
        if i.map.get(*seat) != Some(&SeatStatus::Sold) {
            a.paid_not_sold.add(|| format!("seat {seat} of a paid order is {:?} in the map", i.map.get(*seat)));
        }
    }

    // Each buyer's own record of its order.
    let mut listed_ids: BTreeSet<&str> = BTreeSet::new();
    let by_index: BTreeMap<u64, &BuyerRecord> = i.records.iter().map(|r| (r.index, r)).collect();
    a.listed = i.listings.len() as u64;
    a.list_errors = i.list_errors;
    for l in i.listings {
        let r = by_index.get(&l.index);
        for (id, status) in &l.orders {
            listed_ids.insert(id.as_str());
            let mine = r.and_then(|r| r.order.as_ref()).is_some_and(|o| &o.id == id);
            if !mine {
                a.listed_unknown.add(|| format!("buyer {} lists order {id} ({status}) it never heard of", l.index));
                continue;
            }
            let r = r.expect("mine");
            if let Some(want) = expected(r, &refunded)
                && status != want
            {
                a.listed_wrong.add(|| format!("buyer {}'s order {id} is {status}; it was told {want}", l.index));
            }
        }
        if let Some(o) = r.and_then(|r| r.order.as_ref())
            && !l.orders.iter().any(|(id, _)| id == &o.id)
        {
            a.listed_missing.add(|| format!("buyer {}'s order {} is not in its listing", l.index, o.id));
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::plan::Kind;
    use crate::checkout::wire::OrderFacts;

    fn rec(index: u64, kind: Kind, order: &str, seats: &[&str], told: Told) -> BuyerRecord {
        BuyerRecord {
            index,
            kind: Some(kind),
            outcome: if told == Told::Paid { "paid" } else { "failed" }.into(),
            order: Some(OrderFacts {
                id: order.into(),
                seats: seats.iter().map(|s| (*s).to_owned()).collect(),
                total: 100,
                ..OrderFacts::default()
            }),
            payment_key: Some(format!("{}-{index}", kind.prefix())),
            final_status: Some(told),
            ..BuyerRecord::default()
        }
    }

    fn charge(order: &str, key: &str, status: &str) -> Charge {
        Charge {
            payment_key: key.into(),
            order_id: order.into(),
            amount: 100,
            status: status.into(),
            approved_at: String::new(),
        }
    }

    fn map(sold: &[&str], free: &[&str]) -> BTreeMap<String, SeatStatus> {
        sold.iter()
            .map(|s| ((*s).to_owned(), SeatStatus::Sold))
            .chain(free.iter().map(|s| ((*s).to_owned(), SeatStatus::Free)))
            .collect()
    }

    fn listing(index: u64, order: &str, status: &str) -> Listing {
        Listing { index, orders: vec![(order.into(), status.into())] }
    }

    #[test]
    fn clean_books_pass_every_check() {
        let records = [
            rec(0, Kind::Ok, "o-0", &["A-1-1", "A-1-2"], Told::Paid),
            rec(1, Kind::Decline, "o-1", &["A-1-3"], Told::Failed),
            rec(2, Kind::Slow, "o-2", &["A-1-4"], Told::Paid),
            BuyerRecord { index: 3, outcome: "no seats".into(), ..BuyerRecord::default() },
        ];
        let refunds = [Refund { order: "o-2".into(), answer: "refunded".into() }];
        let ledger = Ledger {
            charges: vec![
                charge("o-0", "ok-0", "DONE"),
                charge("o-2", "slow-2", "CANCELED"),
                charge("x-9", "ok-x", "DONE"),
            ],
            by_order: false,
        };
        let m = map(&["A-1-1", "A-1-2"], &["A-1-3", "A-1-4"]);
        let listings = [listing(0, "o-0", "paid"), listing(1, "o-1", "failed"), listing(2, "o-2", "refunded")];
        let a = audit(&Inputs {
            records: &records,
            refunds: &refunds,
            ledger: &ledger,
            ledger_before: &BTreeSet::new(),
            map: &m,
            sold_at_start: &BTreeSet::new(),
            listings: &listings,
            list_errors: 0,
        });
        assert_eq!((a.orders, a.paid, a.failed, a.no_seats, a.refunded), (3, 2, 1, 1, 1));
        assert_eq!((a.run_charges, a.done_charges, a.canceled_charges, a.foreign_charges), (2, 1, 1, 1));
        assert_eq!((a.seats_sold, a.seats_paid), (2, 2));
        for (name, c) in [
            ("broken", &a.broken),
            ("wrong", &a.wrong_outcome),
            ("charged", &a.paid_not_charged),
            ("failed", &a.failed_but_charged),
            ("refund", &a.refund_unmatched),
            ("sold", &a.sold_not_paid),
            ("unsold", &a.paid_not_sold),
            ("twice", &a.sold_twice),
            ("free", &a.refunded_not_free),
            ("listed", &a.listed_wrong),
            ("unknown", &a.listed_unknown),
            ("missing", &a.listed_missing),
        ] {
            assert!(c.ok(), "{name}: {c:?}");
        }
    }

    #[test]
    fn every_kind_of_disagreement_is_found() {
        let records = [
            rec(0, Kind::Ok, "o-0", &["A-1-1"], Told::Paid),
            rec(1, Kind::Decline, "o-1", &["A-1-2"], Told::Failed),
            rec(2, Kind::Ok, "o-2", &["A-1-1"], Told::Paid),
            rec(3, Kind::Flaky, "o-3", &["A-1-3"], Told::Failed),
            rec(4, Kind::Ok, "o-4", &["A-1-4"], Told::Paid),
        ];
        let refunds = [Refund { order: "o-4".into(), answer: "refunded".into() }];
        let ledger = Ledger {
            charges: vec![
                charge("o-0", "ok-0", "DONE"),
                charge("o-0", "ok-0b", "DONE"),
                charge("o-1", "decline-1", "DONE"),
                charge("o-2", "ok-2", "DONE"),
                charge("o-4", "ok-4", "DONE"),
            ],
            by_order: false,
        };
        let m = map(&["A-1-1", "A-1-4", "A-1-9"], &["A-1-2", "A-1-3"]);
        let listings = [listing(0, "o-0", "pending"), listing(1, "o-x", "paid")];
        let a = audit(&Inputs {
            records: &records,
            refunds: &refunds,
            ledger: &ledger,
            ledger_before: &BTreeSet::new(),
            map: &m,
            sold_at_start: &BTreeSet::new(),
            listings: &listings,
            list_errors: 0,
        });
        assert_eq!(a.wrong_outcome.bad, 1, "a flaky key told failed");
        assert_eq!(a.paid_not_charged.bad, 1, "o-0 charged twice");
        assert_eq!(a.failed_but_charged.bad, 1, "o-1");
        assert_eq!(a.refund_unmatched.bad, 1, "o-4 is still DONE");
        assert_eq!(a.sold_twice.bad, 1, "A-1-1 in o-0 and o-2");
        assert_eq!(a.sold_not_paid.bad, 2, "A-1-9, and A-1-4 of the refunded order");
        assert_eq!(a.refunded_not_free.bad, 1, "A-1-4");
        assert_eq!((a.listed_wrong.bad, a.listed_unknown.bad, a.listed_missing.bad), (1, 1, 1));
    }
}
