//! What the checkout coordinator and its workers say to each other (over
//! the pipe of `common::wire`): set-up (join, coupon, hold), the buy at a
//! shared moment (checkout, pay, the final `payment`), the listing of each
//! buyer's orders, and what each buyer did and was told, with its times.

use serde::{Deserialize, Serialize};

use crate::checkout::plan::{BuyerPlan, Kind};
use crate::common::stats::Histogram;
use crate::common::wire::{Buyers, Causes, protocol};

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open every buyer's socket, join (until `admitted`), claim a coupon
    /// (buyers asking for `best`) and `hold_best` the planned seats;
    /// report progress, then `Ready`.
    Open(Box<CheckoutSpec>),
    /// From `at_unix_us` every buyer with seats checks out and pays, then
    /// waits for its final `payment` (at most `final_timeout_ms` after
    /// `pay`); buyers without seats keep trying `hold_best` until
    /// `late_ms` after that moment. With `rate_per_s` > 0 the checkouts
    /// start that many a second over all workers (buyer `slot` of worker
    /// `w` at place `slot × workers + w`), else all at that moment. Answer
    /// `Bought` once all are through.
    Go { at_unix_us: u64, rate_per_s: f64, late_ms: u64, final_timeout_ms: u64 },
    /// Each buyer with a socket asks for its `orders` of the event;
    /// answer `Listed`.
    List { timeout_ms: u64 },
    /// Close every socket; answer `Closed`.
    CloseSockets,
}

protocol! {
    bench: "checkout",
    commands: Command,
    close: CloseSockets,
    /// Worker → coordinator, besides progress, closing and errors.
    answers: Answer {
        Ready(Box<ReadyReport>),
        Bought(Box<BuyReport>),
        Listed(ListReport),
    }
}

/// One worker's buyers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutSpec {
    /// This worker's buyers (`first..first + count` of the run's).
    pub buyers: Buyers,
    /// Their plans, `plans[k]` for buyer `first + k`.
    pub plans: Vec<BuyerPlan>,
    /// The campaign `best` buyers claim a coupon of (none: they check out
    /// with `best` and no coupon).
    pub campaign: Option<String>,
    pub ramp_deadline_ms: u64,
    /// Seeds the payment keys' random part.
    pub seed: u64,
    /// This worker's number and how many there are (for the pacing).
    pub worker: usize,
    pub workers: usize,
}

/// How set-up went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadyReport {
    pub buyers: u64,
    /// Sockets that reached `hello`.
    pub open: u64,
    pub admitted: u64,
    /// Buyers holding their seats, and those the seats ran out for
    /// (`sold_out`, or every attempt raced: they try again after the start).
    pub held: u64,
    pub no_seats: u64,
    /// Seats held in all.
    pub seats_held: u64,
    /// Coupons claimed for `best` checkouts.
    pub coupons: u64,
    /// Buyers whose set-up failed, by cause.
    pub failed: u64,
    pub errors: Causes,
    /// TCP connect + upgrade + hello.
    pub connect_us: Histogram,
    /// `join` sent → seats held.
    pub admit_hold_us: Histogram,
}

/// What one buyer's order was, as the `order` reply gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub id: String,
    pub seats: Vec<String>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub coupon: Option<String>,
}

/// A payment's answer as the buyer heard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Told {
    Paid,
    Failed,
    Pending,
}

/// Everything one buyer did from the start on, and when (Unix µs, this
/// machine's clock).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuyerRecord {
    /// Its number in the run (user `{prefix}{index}`).
    pub index: u64,
    pub kind: Option<Kind>,
    pub best: bool,
    /// What came of it: `paid`, `failed`, `no seats`, or what went wrong
    /// (`set-up: …`, `checkout: <code>`, `pay: <code>`, `no final payment`,
    /// `socket lost`, …).
    pub outcome: String,
    /// The coupon it claimed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_claimed: Option<String>,
    /// It got its seats only after the start (a later wave).
    #[serde(default)]
    pub late: bool,
    /// The seats it held when it checked out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_key: Option<String>,
    /// The `pay` reply's status, and the final one (reply or push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_reply: Option<Told>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_status: Option<Told>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Final `payment` frames pushed for the order, and whether any
    /// disagreed with the first final answer.
    #[serde(default)]
    pub final_pushes: u32,
    #[serde(default)]
    pub final_flipped: bool,
    /// Seats released after a failed payment.
    #[serde(default)]
    pub released: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_reply_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_us: Option<u64>,
}

/// What one worker's buyers did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BuyReport {
    pub records: Vec<BuyerRecord>,
    /// Buyers still busy when the deadline passed.
    pub stuck: u64,
}

/// One buyer's orders of the event, as its `orders` listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub index: u64,
    /// (order id, status) for every order listed.
    pub orders: Vec<(String, String)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ListReport {
    /// Buyers with an open socket to ask on.
    pub asked: u64,
    pub listings: Vec<Listing>,
    pub errors: Causes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::wire::Report;

    #[test]
    fn commands_and_answers_are_one_line_of_json() {
        let go = Command::Go { at_unix_us: 5, rate_per_s: 0.0, late_ms: 6, final_timeout_ms: 7 };
        let line = serde_json::to_string(&go).unwrap();
        assert_eq!(line, r#"{"cmd":"go","at_unix_us":5,"rate_per_s":0.0,"late_ms":6,"final_timeout_ms":7}"#);
        let r = BuyerRecord {
            index: 3,
            kind: Some(Kind::Slow),
            outcome: "paid".into(),
            pay_reply: Some(Told::Pending),
            final_status: Some(Told::Paid),
            ..BuyerRecord::default()
        };
        let bought = Box::new(BuyReport { records: vec![r], stuck: 0 });
        let line = serde_json::to_string(&Report::Answer(Answer::Bought(bought))).unwrap();
        assert!(!line.contains('\n') && line.contains(r#""kind":"slow""#) && line.contains(r#""pay_reply":"pending""#));
        let Report::Answer(Answer::Bought(back)) = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
        assert_eq!((back.records[0].index, back.records[0].final_status), (3, Some(Told::Paid)));
    }
}
