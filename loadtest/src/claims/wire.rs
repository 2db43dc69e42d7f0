//! What the claims coordinator and its workers say to each other (over the
//! pipe of `common::wire`): set-up, the storm at a shared moment, the
//! listing check, and what each worker's buyers were told.

use serde::{Deserialize, Serialize};

use crate::claims::plan::Shape;
use crate::common::stats::Histogram;
use crate::common::wire::{Buyers, Causes, protocol};

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open every socket of this worker's buyers (up to `hello`); report
    /// progress, then `Ready`.
    Open(Box<ClaimsSpec>),
    /// Every socket fires its claims at `at_unix_us` (the start barrier, on
    /// this machine's clock), each as soon as the previous one is
    /// answered; replies not in by `at + timeout_ms` are lost. Answer
    /// `Stormed` once every socket is through.
    Fire { at_unix_us: u64, timeout_ms: u64 },
    /// Each buyer asks for its `coupons` on one socket; answer `Listed`.
    List { timeout_ms: u64, concurrency: usize },
    /// Close every socket; answer `Closed`.
    CloseSockets,
}

protocol! {
    bench: "claims",
    commands: Command,
    close: CloseSockets,
    /// Worker → coordinator, besides progress, closing and errors.
    answers: Answer {
        Ready(ReadyReport),
        Stormed(Box<StormReport>),
        Listed(ListReport),
    }
}

/// One worker's part of the storm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimsSpec {
    /// This worker's buyers (`first..first + count` of the run's).
    pub buyers: Buyers,
    /// The whole storm, from which each buyer's claims follow.
    pub shape: Shape,
    pub campaign: String,
    pub ramp_deadline_ms: u64,
}

/// How set-up went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadyReport {
    pub buyers: u64,
    pub sockets: u64,
    /// Sockets that reached `hello`.
    pub open: u64,
    pub failed: u64,
    pub errors: Causes,
    /// TCP connect + upgrade + hello.
    pub connect_us: Histogram,
}

/// Everything one buyer was told in the storm, over all its sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerOutcome {
    /// Its number in the run (user `{prefix}{index}`).
    pub index: u64,
    /// The distinct coupon ids it was told, in order of arrival.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub told: Vec<String>,
    /// Answers by kind; `failed` is every claim not answered `coupon`,
    /// `sold_out` or `already_claimed` (another error, no reply, a lost
    /// socket, a claim never sent).
    #[serde(default)]
    pub coupon: u32,
    #[serde(default)]
    pub sold_out: u32,
    #[serde(default)]
    pub already_claimed: u32,
    #[serde(default)]
    pub failed: u32,
}

/// What one worker's sockets did in the storm.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StormReport {
    /// Claims this worker's plan has (sent or not).
    pub planned: u64,
    pub sent: u64,
    /// Claims that got a reply (any reply).
    pub answered: u64,
    /// Every planned claim by what came of it: `coupon`, `sold_out`,
    /// `already_claimed`, another error code, or why there was no reply.
    pub outcomes: Causes,
    /// Claim sent → its reply, every answered claim.
    pub latency_us: Histogram,
    /// The same, for `coupon` answers only.
    pub coupon_latency_us: Histogram,
    /// Barrier → each socket's first send (how together the storm began).
    pub start_lag_us: Histogram,
    pub first_sent_unix_us: Option<u64>,
    pub last_answer_unix_us: Option<u64>,
    pub last_coupon_unix_us: Option<u64>,
    /// Sockets the server (or the network) closed during the storm.
    pub sockets_lost: u64,
    /// Sockets still in the storm when the deadline passed.
    pub stuck: u64,
    pub buyers: Vec<BuyerOutcome>,
}

/// The coupons of the campaign one buyer's `coupons` listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub index: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

/// What the buyers' `coupons` listed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ListReport {
    /// Buyers with an open socket to ask on.
    pub asked: u64,
    pub listings: Vec<Listing>,
    /// Requests that got no `coupons` reply, by cause.
    pub errors: Causes,
    pub latency_us: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::wire::Report;

    #[test]
    fn commands_and_answers_are_one_line_of_json() {
        let line = serde_json::to_string(&Command::Fire { at_unix_us: 5, timeout_ms: 6 }).unwrap();
        assert_eq!(line, r#"{"cmd":"fire","at_unix_us":5,"timeout_ms":6}"#);
        let loser = BuyerOutcome { index: 3, sold_out: 2, ..BuyerOutcome::default() };
        assert_eq!(
            serde_json::to_string(&loser).unwrap(),
            r#"{"index":3,"coupon":0,"sold_out":2,"already_claimed":0,"failed":0}"#
        );
        let storm = Box::new(StormReport { answered: 2, buyers: vec![loser.clone()], ..StormReport::default() });
        let line = serde_json::to_string(&Report::Answer(Answer::Stormed(storm))).unwrap();
        assert!(!line.contains('\n'));
        let Report::Answer(Answer::Stormed(back)) = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
        assert_eq!((back.answered, back.buyers), (2, vec![loser]));
    }
}
