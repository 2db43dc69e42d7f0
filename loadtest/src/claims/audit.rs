//! The claim storm's books: what one answer means (`classify`), each
//! buyer's tally of answers (`BuyerOutcome::record`), and the audit after
//! the run, which holds what the buyers were told against the seller's
//! `issued`, the database's rows, Redis's counts and each buyer's own
//! `coupons` listing. Pure: no I/O, no clocks.
//!
//! - Over-issue: coupons beyond what may exist, `min(stock, buyers)`, by
//!   any count (seller view, rows, `campaigns.issued`, Redis, buyers told),
//!   plus every second coupon one buyer holds (told, or stored).
//! - Lost claims: buyers whose coupon the books disagree on: told a coupon
//!   the database does not have for them, stored a coupon they were never
//!   told, or listed (socket or REST) without the coupon they were told or
//!   with one they were not.

use std::collections::{BTreeMap, BTreeSet};

use qt_protocol::{ErrorCode, ServerMsg};
use serde::Serialize;

use crate::claims::wire::{BuyerOutcome, Listing};
use crate::common::sockets::code_name;

/// Tally keys of the three answers a claim may rightly get.
pub const COUPON: &str = "coupon";
pub const SOLD_OUT: &str = "sold_out";
pub const ALREADY_CLAIMED: &str = "already_claimed";
/// Examples of anomalies kept for the report.
const EXAMPLES: usize = 12;

/// What one answer to a claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Coupon(String),
    SoldOut,
    AlreadyClaimed,
    /// Anything else (another error code, an unexpected frame, no reply):
    /// a failure, named for the tally.
    Failed(String),
}

impl Outcome {
    /// Its key in the outcome tally.
    pub fn key(&self) -> &str {
        match self {
            Outcome::Coupon(_) => COUPON,
            Outcome::SoldOut => SOLD_OUT,
            Outcome::AlreadyClaimed => ALREADY_CLAIMED,
            Outcome::Failed(why) => why,
        }
    }
}

/// Reads a reply to `claim_coupon` for `campaign`.
pub fn classify(msg: &ServerMsg, campaign: &str) -> Outcome {
    match msg {
        ServerMsg::Coupon(c) if c.campaign == campaign => Outcome::Coupon(c.coupon.clone()),
        ServerMsg::Coupon(_) => Outcome::Failed("coupon of another campaign".into()),
        ServerMsg::Error(e) => match e.code {
            ErrorCode::SoldOut => Outcome::SoldOut,
            ErrorCode::AlreadyClaimed => Outcome::AlreadyClaimed,
            code => Outcome::Failed(code_name(code)),
        },
        other => Outcome::Failed(format!("unexpected reply: {}", other.kind())),
    }
}

impl BuyerOutcome {
    pub fn record(&mut self, o: &Outcome) {
        match o {
            Outcome::Coupon(id) => {
                self.coupon += 1;
                if !self.told.contains(id) {
                    self.told.push(id.clone());
                }
            }
            Outcome::SoldOut => self.sold_out += 1,
            Outcome::AlreadyClaimed => self.already_claimed += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

/// The campaign's coupons as the database has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DbView {
    /// `sqlite` or `postgres`.
    pub kind: String,
    /// `(user_id, id)` of every row of `coupons` of the campaign.
    pub rows: Vec<(String, String)>,
    /// `campaigns.issued` and `.stock`; `None` when the row is missing.
    pub campaign_issued: Option<i64>,
    pub campaign_stock: Option<i64>,
}

/// The campaign's live counts in Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedisView {
    /// The `…:issued` key read.
    pub issued_key: String,
    pub issued: Option<i64>,
    /// The `…:claims` hash: user id → state (`C|id`, `P|…|id`, `F|…|id`).
    pub claims: Vec<(String, String)>,
}

impl RedisView {
    fn found(&self) -> bool {
        self.issued.is_some() || !self.claims.is_empty()
    }
}

/// The coupon id at the end of a claims-hash state.
fn state_id(state: &str) -> &str {
    state.rsplit('|').next().unwrap_or(state)
}

/// Everything the audit holds against each other.
pub struct Inputs<'a> {
    /// `None`: unlimited.
    pub stock: Option<u64>,
    /// Buyers in the run (each claimed at least once).
    pub buyers: u64,
    /// Buyer `i` is user `{user_prefix}{i}`.
    pub user_prefix: &'a str,
    pub outcomes: &'a [BuyerOutcome],
    /// `issued` of the seller's campaign view after the storm.
    pub seller_issued: Option<i64>,
    pub db: Option<&'a DbView>,
    pub redis: Option<&'a RedisView>,
    /// Each asked buyer's own `coupons` over its socket, and over REST.
    pub socket_listings: &'a [Listing],
    pub socket_list_errors: u64,
    pub rest_listings: &'a [Listing],
    pub rest_list_errors: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DbAudit {
    pub kind: String,
    pub rows: u64,
    pub campaign_issued: Option<i64>,
    /// Buyers told a coupon with no row of it for them.
    pub told_not_stored: u64,
    /// Rows of a coupon their buyer was never told.
    pub stored_not_told: u64,
    /// Rows of users who are not this run's buyers.
    pub foreign_rows: u64,
    /// Rows beyond the first of one user.
    pub extra_rows_per_buyer: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedisAudit {
    /// Whether the campaign's keys exist (the server counts there).
    pub found: bool,
    pub issued_key: String,
    pub issued: Option<i64>,
    pub claims: u64,
    /// Claims by state: in the log (`C|`), reserved (`P|`), refused (`F|`).
    pub confirmed: u64,
    pub pending: u64,
    pub failed: u64,
    /// Buyers whose coupon in the hash is not the one in the database
    /// (or is in only one of them).
    pub differs_from_db: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListAudit {
    pub asked: u64,
    pub errors: u64,
    /// Listings that agree: a winner's has its coupon, a loser's none.
    pub ok: u64,
    /// Winners whose listing lacks the coupon they were told.
    pub missing: u64,
    /// Listings with a coupon of the campaign the buyer was not told.
    pub unexpected: u64,
}

/// The audit's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    pub buyers: u64,
    pub stock: Option<u64>,
    /// `min(stock, buyers)`: what a storm in which every buyer claimed
    /// must issue.
    pub expected_issued: u64,
    pub seller_issued: Option<i64>,
    /// Distinct buyers told `coupon`, and the rest.
    pub winners: u64,
    pub losers: u64,
    /// Buyers told two or more different coupon ids.
    pub two_coupons: u64,
    /// Losers with an answer other than `sold_out` or `already_claimed`.
    pub losers_failed: u64,
    /// Losers who heard `already_claimed` (and no coupon): the server
    /// thinks they claimed; a lost claim when the database agrees.
    pub losers_already_claimed: u64,
    /// Winners who also heard `sold_out` on another claim (truthful once
    /// the stock is gone; counted, not a failure).
    pub winners_sold_out: u64,
    pub db: Option<DbAudit>,
    pub redis: Option<RedisAudit>,
    pub socket_list: ListAudit,
    pub rest_list: ListAudit,
    /// Coupons beyond `expected_issued` by the highest count, plus second
    /// coupons of one buyer (told or stored).
    pub over_issue: u64,
    /// Buyers whose coupon the books disagree on (see the module).
    pub lost: u64,
    /// Every count of issued coupons agrees: the seller's, the buyers',
    /// the rows, `campaigns.issued` and Redis's (those that were read).
    pub counts_agree: bool,
    pub examples: Vec<String>,
}

fn index_of(user: &str, prefix: &str) -> Option<u64> {
    user.strip_prefix(prefix)?.parse().ok()
}

/// Compares what each buyer listed with what it was told.
fn check_listings(listings: &[Listing], errors: u64, told: &BTreeMap<u64, &[String]>, lost: &mut Lost) -> ListAudit {
    let mut a = ListAudit { asked: listings.len() as u64 + errors, errors, ..ListAudit::default() };
    for l in listings {
        let mine = told.get(&l.index).copied().unwrap_or_default();
        let missing = mine.iter().any(|id| !l.ids.contains(id));
        let unexpected = l.ids.iter().any(|id| !mine.contains(id));
        a.missing += u64::from(missing);
        a.unexpected += u64::from(unexpected);
        if missing || unexpected {
            lost.add(l.index, || format!("buyer {} was told {mine:?} but lists {:?}", l.index, l.ids));
        } else {
            a.ok += 1;
        }
    }
    a
}

/// Buyers with a lost claim, and a few examples.
#[derive(Default)]
struct Lost {
    buyers: BTreeSet<u64>,
    examples: Vec<String>,
}

impl Lost {
    fn add(&mut self, index: u64, example: impl FnOnce() -> String) {
        if self.buyers.insert(index) && self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

pub fn audit(i: &Inputs<'_>) -> Audit {
    let mut lost = Lost::default();
    let mut examples = Vec::new();
    let told: BTreeMap<u64, &[String]> =
        i.outcomes.iter().filter(|o| !o.told.is_empty()).map(|o| (o.index, o.told.as_slice())).collect();
    let winners = told.len() as u64;
    let mut a = Audit {
        buyers: i.buyers,
        stock: i.stock,
        expected_issued: i.stock.map_or(i.buyers, |s| s.min(i.buyers)),
        seller_issued: i.seller_issued,
        winners,
        losers: i.buyers.saturating_sub(winners),
        ..Audit::default()
    };
    let mut extra_coupons = 0;
    for o in i.outcomes {
        if o.told.len() > 1 {
            a.two_coupons += 1;
            extra_coupons += o.told.len() as u64 - 1;
            if examples.len() < EXAMPLES {
                examples.push(format!("buyer {} was told {} coupons: {:?}", o.index, o.told.len(), o.told));
            }
        }
        if o.told.is_empty() {
            a.losers_failed += u64::from(o.failed > 0);
            a.losers_already_claimed += u64::from(o.already_claimed > 0);
        } else {
            a.winners_sold_out += u64::from(o.sold_out > 0);
        }
    }
    let mut counts: Vec<i64> = vec![winners as i64];
    counts.extend(i.seller_issued);

    // The database against the buyers.
    let mut db_by_buyer: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    if let Some(db) = i.db {
        let mut d = DbAudit {
            kind: db.kind.clone(),
            rows: db.rows.len() as u64,
            campaign_issued: db.campaign_issued,
            ..DbAudit::default()
        };
        for (user, id) in &db.rows {
            match index_of(user, i.user_prefix) {
                Some(index) => db_by_buyer.entry(index).or_default().push(id),
                None => d.foreign_rows += 1,
            }
        }
        for (&index, ids) in &db_by_buyer {
            d.extra_rows_per_buyer += ids.len() as u64 - 1;
            let mine = told.get(&index).copied().unwrap_or_default();
            for id in ids {
                if !mine.iter().any(|m| m == id) {
                    d.stored_not_told += 1;
                    lost.add(index, || format!("buyer {index} has coupon {id} stored but was told {mine:?}"));
                }
            }
        }
        for (&index, mine) in &told {
            let stored = db_by_buyer.get(&index).map(Vec::as_slice).unwrap_or_default();
            for id in *mine {
                if !stored.contains(&id.as_str()) {
                    d.told_not_stored += 1;
                    lost.add(index, || format!("buyer {index} was told coupon {id}; the database has {stored:?}"));
                }
            }
        }
        extra_coupons += d.extra_rows_per_buyer;
        counts.push(d.rows as i64);
        counts.extend(d.campaign_issued);
        a.db = Some(d);
    }

    // Redis against the database (or the buyers, without one).
    if let Some(r) = i.redis {
        let mut ra = RedisAudit {
            found: r.found(),
            issued_key: r.issued_key.clone(),
            issued: r.issued,
            claims: r.claims.len() as u64,
            ..RedisAudit::default()
        };
        let mut by_buyer: BTreeMap<u64, &str> = BTreeMap::new();
        for (user, state) in &r.claims {
            match state.get(..2) {
                Some("C|") => ra.confirmed += 1,
                Some("P|") => ra.pending += 1,
                _ => ra.failed += 1,
            }
            if let Some(index) = index_of(user, i.user_prefix) {
                by_buyer.insert(index, state_id(state));
            }
        }
        if ra.found {
            let reference: BTreeMap<u64, &str> = match i.db {
                Some(_) => db_by_buyer.iter().filter_map(|(k, v)| Some((*k, *v.first()?))).collect(),
                None => told.iter().filter_map(|(k, v)| Some((*k, v.first()?.as_str()))).collect(),
            };
            let keys: BTreeSet<u64> = reference.keys().chain(by_buyer.keys()).copied().collect();
            ra.differs_from_db = keys.iter().filter(|k| reference.get(k) != by_buyer.get(k)).count() as u64;
            counts.extend(ra.issued);
            counts.push(ra.claims as i64);
        }
        a.redis = Some(ra);
    }

    a.socket_list = check_listings(i.socket_listings, i.socket_list_errors, &told, &mut lost);
    a.rest_list = check_listings(i.rest_listings, i.rest_list_errors, &told, &mut lost);

    let highest = counts.iter().copied().max().unwrap_or(0).max(0) as u64;
    a.over_issue = highest.saturating_sub(a.expected_issued) + extra_coupons;
    a.counts_agree = counts.windows(2).all(|w| w[0] == w[1]);
    a.lost = lost.buyers.len() as u64;
    examples.extend(lost.examples);
    examples.truncate(EXAMPLES);
    a.examples = examples;
    a
}

#[cfg(test)]
mod tests {
    use qt_protocol::coupons::CouponView;
    use qt_protocol::error::ErrorBody;

    use super::*;

    fn coupon(id: &str, campaign: &str) -> ServerMsg {
        ServerMsg::Coupon(CouponView {
            coupon: id.into(),
            campaign: campaign.into(),
            name: "Storm".into(),
            kind: "fixed".into(),
            value: 1_000,
            max_discount: None,
            min_spend: 0,
            expires_at: "2030-01-01T00:00:00Z".into(),
            claimed_at: "2029-01-01T00:00:00Z".into(),
            events: None,
            tiers: None,
        })
    }

    fn error(code: ErrorCode) -> ServerMsg {
        ServerMsg::Error(ErrorBody::new(code, "no"))
    }

    #[test]
    fn answers_are_classified_and_tallied_per_buyer() {
        assert_eq!(classify(&coupon("cp-1", "s"), "s"), Outcome::Coupon("cp-1".into()));
        assert_eq!(classify(&coupon("cp-1", "other"), "s").key(), "coupon of another campaign");
        assert_eq!(classify(&error(ErrorCode::SoldOut), "s"), Outcome::SoldOut);
        assert_eq!(classify(&error(ErrorCode::AlreadyClaimed), "s").key(), "already_claimed");
        assert_eq!(classify(&error(ErrorCode::RateLimited), "s").key(), "rate_limited");
        assert_eq!(classify(&error(ErrorCode::Unavailable), "s"), Outcome::Failed("unavailable".into()));
        assert_eq!(classify(&ServerMsg::Pong, "s").key(), "unexpected reply: pong");
        // A frame as the server writes it reads the same way.
        let text = r#"{"type":"error","code":"sold_out","message":"all issued","req":7}"#;
        assert_eq!(classify(&crate::common::sockets::read(text).unwrap().msg, "s"), Outcome::SoldOut);

        let mut b = BuyerOutcome { index: 4, ..BuyerOutcome::default() };
        for o in [
            Outcome::Coupon("cp-1".into()),
            Outcome::AlreadyClaimed,
            Outcome::Coupon("cp-1".into()),
            Outcome::SoldOut,
            Outcome::Failed("rate_limited".into()),
        ] {
            b.record(&o);
        }
        assert_eq!(
            b,
            BuyerOutcome { index: 4, told: vec!["cp-1".into()], coupon: 2, sold_out: 1, already_claimed: 1, failed: 1 },
            "the same coupon twice is one coupon"
        );
        b.record(&Outcome::Coupon("cp-2".into()));
        assert_eq!(b.told.len(), 2);
    }

    const P: &str = "u-";

    fn winner(index: u64, id: &str) -> BuyerOutcome {
        BuyerOutcome { index, told: vec![id.into()], coupon: 1, ..BuyerOutcome::default() }
    }

    fn loser(index: u64) -> BuyerOutcome {
        BuyerOutcome { index, sold_out: 1, ..BuyerOutcome::default() }
    }

    fn rows(pairs: &[(u64, &str)]) -> DbView {
        DbView {
            kind: "sqlite".into(),
            rows: pairs.iter().map(|(i, id)| (format!("{P}{i}"), (*id).to_owned())).collect(),
            campaign_issued: Some(pairs.len() as i64),
            campaign_stock: Some(2),
        }
    }

    fn listing(index: u64, ids: &[&str]) -> Listing {
        Listing { index, ids: ids.iter().map(|s| (*s).to_owned()).collect() }
    }

    fn inputs<'a>(
        outcomes: &'a [BuyerOutcome],
        seller: i64,
        db: Option<&'a DbView>,
        listings: &'a [Listing],
    ) -> Inputs<'a> {
        Inputs {
            stock: Some(2),
            buyers: 4,
            user_prefix: P,
            outcomes,
            seller_issued: Some(seller),
            db,
            redis: None,
            socket_listings: listings,
            socket_list_errors: 0,
            rest_listings: &[],
            rest_list_errors: 0,
        }
    }

    #[test]
    fn a_clean_storm_balances() {
        let outcomes = [winner(0, "a"), loser(1), winner(2, "b"), loser(3)];
        let db = rows(&[(0, "a"), (2, "b")]);
        let lists = [listing(0, &["a"]), listing(1, &[]), listing(2, &["b"]), listing(3, &[])];
        let a = audit(&inputs(&outcomes, 2, Some(&db), &lists));
        assert_eq!((a.expected_issued, a.winners, a.losers, a.over_issue, a.lost), (2, 2, 2, 0, 0));
        assert!(a.counts_agree);
        assert_eq!((a.socket_list.ok, a.socket_list.asked), (4, 4));
        assert_eq!(a.db.as_ref().map(|d| (d.rows, d.told_not_stored, d.stored_not_told)), Some((2, 0, 0)));
        assert!(a.examples.is_empty());
    }

    #[test]
    fn over_issue_counts_coupons_beyond_the_stock_and_second_coupons() {
        // Three winners of a stock of two, one of them told two coupons.
        let mut twice = winner(2, "b");
        twice.record(&Outcome::Coupon("c".into()));
        let outcomes = [winner(0, "a"), loser(1), twice, winner(3, "d")];
        let db = rows(&[(0, "a"), (2, "b"), (3, "d")]);
        let a = audit(&inputs(&outcomes, 3, Some(&db), &[]));
        assert_eq!((a.winners, a.two_coupons), (3, 1));
        assert_eq!(a.over_issue, 1 + 1, "one beyond the stock, one second coupon");
        assert_eq!(a.db.as_ref().unwrap().told_not_stored, 1, "coupon c is nowhere");
        assert_eq!(a.lost, 1);
        // Unlimited: the bound is the buyers.
        let mut i = inputs(&outcomes, 3, Some(&db), &[]);
        i.stock = None;
        assert_eq!((audit(&i).expected_issued, audit(&i).over_issue), (4, 1));
    }

    #[test]
    fn lost_claims_are_buyers_the_books_disagree_on() {
        // Buyer 1 heard `unavailable` but has a row; buyer 3 was told `d`
        // and lists nothing; buyer 0 is fine.
        let mut b1 = loser(1);
        b1.record(&Outcome::Failed("unavailable".into()));
        let outcomes = [winner(0, "a"), b1, loser(2), winner(3, "d")];
        let db = rows(&[(0, "a"), (1, "x"), (3, "d")]);
        let lists = [listing(0, &["a"]), listing(1, &["x"]), listing(3, &[])];
        let a = audit(&inputs(&outcomes, 3, Some(&db), &lists));
        let d = a.db.as_ref().unwrap();
        assert_eq!((d.stored_not_told, d.told_not_stored), (1, 0));
        assert_eq!((a.socket_list.ok, a.socket_list.missing, a.socket_list.unexpected), (1, 1, 1));
        assert_eq!(a.lost, 2, "buyers 1 and 3, each once");
        assert_eq!(a.losers_failed, 1);
        assert!(!a.counts_agree, "2 buyers told, 3 rows");
        assert_eq!(a.over_issue, 1, "three rows of a stock of two");
        assert!(a.examples.iter().any(|e| e.contains("buyer 1 has coupon x stored")), "{:?}", a.examples);
    }

    #[test]
    fn redis_counts_join_the_books() {
        let outcomes = [winner(0, "a"), loser(1), winner(2, "b"), loser(3)];
        let db = rows(&[(0, "a"), (2, "b")]);
        let redis = RedisView {
            issued_key: "qt:coupon:{s}:issued".into(),
            issued: Some(3),
            claims: vec![
                (format!("{P}0"), "C|a".into()),
                (format!("{P}2"), "P|1|1|b".into()),
                (format!("{P}3"), "F|1|z".into()),
            ],
        };
        let mut i = inputs(&outcomes, 2, Some(&db), &[]);
        i.redis = Some(&redis);
        let a = audit(&i);
        let r = a.redis.as_ref().unwrap();
        assert_eq!((r.found, r.claims, r.confirmed, r.pending, r.failed), (true, 3, 1, 1, 1));
        assert_eq!(r.differs_from_db, 1, "buyer 3 only in Redis");
        assert!(!a.counts_agree);
        assert_eq!(a.over_issue, 1, "Redis counts three of a stock of two");
        // Keys absent: the server counted elsewhere; nothing to compare.
        let none = RedisView { issued_key: "k".into(), ..RedisView::default() };
        i.redis = Some(&none);
        let a = audit(&i);
        assert!(!a.redis.as_ref().unwrap().found);
        assert!(a.counts_agree && a.over_issue == 0);
    }

    #[test]
    fn losers_who_heard_already_claimed_are_counted() {
        let odd = BuyerOutcome { index: 1, already_claimed: 2, ..BuyerOutcome::default() };
        let outcomes = [winner(0, "a"), odd];
        let mut i = inputs(&outcomes, 1, None, &[]);
        i.buyers = 2;
        let a = audit(&i);
        assert_eq!((a.losers_already_claimed, a.losers_failed, a.lost, a.expected_issued), (1, 0, 0, 2));
        assert!(a.db.is_none() && a.counts_agree);
    }
}
