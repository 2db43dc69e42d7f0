//! The one contract every coupon-claim adapter must pass, each scenario its
//! own test per adapter (`coupon_claims_contract!`): exact stock and one
//! coupon per buyer under racing claims, durable in the SQL store, and the
//! same after a restart that loses the live counts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::join_all;

use super::{BelowIssued, Claim, CouponClaims};
use crate::domain::coupons::{Campaign, FundedBy, Targets, Terms, kind_named};
use crate::store::sql::SqlStore;

pub const SELLER: &str = "s-coupons";
pub const T0: i64 = 1_700_000_000_000;

/// An adapter under test with the SQL store it records to.
#[async_trait]
pub trait Harness: Send + Sync {
    fn claims(&self) -> Arc<dyn CouponClaims>;
    fn sql(&self) -> &SqlStore;
    /// Returns once every claim answered so far is in the SQL store.
    async fn settle(&self);
    /// A fresh adapter on the same SQL store in place of the old one, as
    /// after a crash that lost every live count (a process, or Redis too).
    async fn restart(&mut self);
    async fn finish(self: Box<Self>);
}

/// One `#[tokio::test]` per scenario, each on a fresh harness from `$make`
/// (an expression whose value is a future of a `Box<dyn Harness>`).
macro_rules! coupon_claims_contract {
    ($make:expr) => {
        $crate::store::coupons::contract::coupon_claims_contract!(@each $make;
            racing_claims_issue_exactly_the_stock_once_per_buyer,
            a_second_claim_by_a_buyer_changes_nothing,
            unlimited_stock_issues_to_everyone,
            whole_user_ids_are_distinct_buyers,
            a_restart_keeps_every_coupon_and_the_count,
            stock_changes_never_go_below_issued,
            campaigns_are_counted_apart,
        );
    };
    (@each $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let harness: Box<dyn $crate::store::coupons::contract::Harness> = $make.await;
                $crate::store::coupons::contract::$scenario(harness).await;
            }
        )*
    };
}
pub(crate) use coupon_claims_contract;

mod memory {
    super::coupon_claims_contract!(crate::store::coupons::memory::tests::harness());
}

mod redis {
    super::coupon_claims_contract!(crate::store::coupons::redis::tests::harness());
}

/// A campaign open from `T0` for a day, stored in `sql` and opened in the
/// live counts, as the service creates one.
pub async fn opened(h: &dyn Harness, id: &str, stock: Option<u64>) -> Campaign {
    let c = campaign(h.sql(), id, stock).await;
    h.claims().open(&c).await.expect("open the campaign");
    c
}

/// A campaign open from `T0` for a day, stored in `sql` only (the live
/// counts load it on first use).
pub async fn campaign(sql: &SqlStore, id: &str, stock: Option<u64>) -> Campaign {
    let _ = sql.insert_seller(SELLER, "Coupons", T0).await;
    let c = Campaign {
        id: id.into(),
        seller_id: SELLER.into(),
        name: format!("campaign {id}"),
        kind: kind_named("fixed").expect("the fixed kind"),
        terms: Terms { value: 1_000, max_discount: None, min_spend: 0 },
        stock,
        starts_at_ms: T0,
        ends_at_ms: T0 + 86_400_000,
        paused: false,
        targets: Targets::default(),
        funded_by: FundedBy { seller_pct: 100, platform_pct: 0 },
        created_ms: T0,
    };
    assert!(sql.insert_campaign(&c).await.expect("store the campaign"), "a new campaign id");
    c
}

/// What the SQL store holds: user → coupon id.
async fn stored(h: &dyn Harness, campaign: &str) -> HashMap<String, String> {
    h.settle().await;
    h.sql().claims_of(campaign).await.expect("read the claims").into_iter().collect()
}

/// Claimed coupons by user, and how many of each refusal.
fn tally(results: &[(String, Claim)]) -> (HashMap<String, String>, usize, usize) {
    let mut won = HashMap::new();
    let (mut sold_out, mut already) = (0, 0);
    for (user, r) in results {
        match r {
            Claim::Claimed(c) => {
                assert_eq!(&c.user, user, "a coupon is its claimant's");
                assert!(won.insert(user.clone(), c.id.clone()).is_none(), "{user} won twice");
            }
            Claim::SoldOut => sold_out += 1,
            Claim::AlreadyClaimed => already += 1,
        }
    }
    (won, sold_out, already)
}

async fn claim_all(claims: &Arc<dyn CouponClaims>, c: &Campaign, users: &[String]) -> Vec<(String, Claim)> {
    let tasks = users.iter().enumerate().map(|(i, u)| {
        let (claims, c, u) = (claims.clone(), c.clone(), u.clone());
        tokio::spawn(async move {
            let r = claims.claim(&c, &u, T0 + 1_000 + i as i64).await.expect("a claim is answered");
            (u, r)
        })
    });
    join_all(tasks).await.into_iter().map(|r| r.expect("the claim task")).collect()
}

/// 400 claims by 150 buyers (many claiming several times at once) on a
/// stock of 40: exactly 40 coupons, to 40 different buyers, all stored.
pub async fn racing_claims_issue_exactly_the_stock_once_per_buyer(h: Box<dyn Harness>) {
    let c = opened(&*h, "race", Some(40)).await;
    let users: Vec<String> = (0..400).map(|i| format!("u-{}", i % 150)).collect();
    let results = claim_all(&h.claims(), &c, &users).await;
    let (won, sold_out, already) = tally(&results);
    assert_eq!(won.len(), 40, "exactly the stock");
    assert_eq!(won.len() + sold_out + already, users.len(), "every claim answered once");
    assert_eq!(stored(&*h, "race").await, won, "the database holds exactly what buyers were told");
    assert_eq!(h.claims().issued("race").await.unwrap(), Some(40));
    let record = h.sql().campaign("race").await.unwrap().expect("the campaign");
    assert_eq!(record.issued, 40);
    h.finish().await;
}

pub async fn a_second_claim_by_a_buyer_changes_nothing(h: Box<dyn Harness>) {
    let c = opened(&*h, "twice", Some(3)).await;
    let Claim::Claimed(first) = h.claims().claim(&c, "buyer", T0 + 1).await.unwrap() else {
        panic!("the first claim wins")
    };
    assert_eq!(first.campaign_id, "twice");
    assert_eq!(first.claimed_ms, T0 + 1);
    assert_eq!(h.claims().claim(&c, "buyer", T0 + 2).await.unwrap(), Claim::AlreadyClaimed);
    assert_eq!(h.claims().issued("twice").await.unwrap(), Some(1), "the refusal took no stock");
    assert_eq!(stored(&*h, "twice").await, HashMap::from([("buyer".to_string(), first.id.clone())]));
    h.finish().await;
}

pub async fn unlimited_stock_issues_to_everyone(h: Box<dyn Harness>) {
    let c = opened(&*h, "open", None).await;
    let users: Vec<String> = (0..120).map(|i| format!("u-{i}")).collect();
    let (won, sold_out, already) = tally(&claim_all(&h.claims(), &c, &users).await);
    assert_eq!((won.len(), sold_out, already), (120, 0, 0));
    assert_eq!(stored(&*h, "open").await.len(), 120);
    h.finish().await;
}

/// Ids that prefix, contain or escape one another are different buyers.
pub async fn whole_user_ids_are_distinct_buyers(h: Box<dyn Harness>) {
    let c = opened(&*h, "odd", Some(100)).await;
    let users: Vec<String> =
        ["auth0", "auth0|12345", "auth0|", "a,b", "a:b {c}", "q\"u\\o", "ünï|códe 🎟", "P|1|x", "C|cp-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let (won, _, already) = tally(&claim_all(&h.claims(), &c, &users).await);
    assert_eq!((won.len(), already), (users.len(), 0));
    for u in &users {
        assert_eq!(h.claims().claim(&c, u, T0 + 5_000).await.unwrap(), Claim::AlreadyClaimed, "{u}");
    }
    assert_eq!(stored(&*h, "odd").await, won);
    h.finish().await;
}

/// After a restart that lost the live counts, the stock and every buyer's
/// claim are as before: nobody claims twice, nobody past the stock.
pub async fn a_restart_keeps_every_coupon_and_the_count(mut h: Box<dyn Harness>) {
    let c = opened(&*h, "again", Some(5)).await;
    let before: Vec<String> = (0..3).map(|i| format!("u-{i}")).collect();
    let (won, ..) = tally(&claim_all(&h.claims(), &c, &before).await);
    assert_eq!(won.len(), 3);
    h.settle().await;
    h.restart().await;
    for u in &before {
        assert_eq!(h.claims().claim(&c, u, T0 + 9_000).await.unwrap(), Claim::AlreadyClaimed, "{u} after restart");
    }
    let after: Vec<String> = (3..10).map(|i| format!("u-{i}")).collect();
    let (more, sold_out, _) = tally(&claim_all(&h.claims(), &c, &after).await);
    assert_eq!((more.len(), sold_out), (2, 5), "only the stock left");
    let all: HashMap<String, String> = won.into_iter().chain(more).collect();
    assert_eq!(stored(&*h, "again").await, all);
    h.finish().await;
}

pub async fn stock_changes_never_go_below_issued(h: Box<dyn Harness>) {
    let mut c = opened(&*h, "restock", Some(2)).await;
    for u in ["a", "b"] {
        assert!(matches!(h.claims().claim(&c, u, T0 + 1).await.unwrap(), Claim::Claimed(_)));
    }
    assert_eq!(h.claims().claim(&c, "c", T0 + 2).await.unwrap(), Claim::SoldOut);
    let was = c.clone();
    c.stock = Some(1);
    assert_eq!(h.claims().set_stock(&c).await.unwrap(), Err(BelowIssued { issued: 2 }));
    // A raise reaches the record first, then the live counts.
    c.stock = Some(3);
    assert!(h.sql().update_campaign(&was, &c).await.unwrap().is_ok());
    assert_eq!(h.claims().set_stock(&c).await.unwrap(), Ok(()));
    assert!(matches!(h.claims().claim(&c, "c", T0 + 3).await.unwrap(), Claim::Claimed(_)));
    assert_eq!(h.claims().claim(&c, "d", T0 + 4).await.unwrap(), Claim::SoldOut);
    let was = c.clone();
    c.stock = None;
    assert!(h.sql().update_campaign(&was, &c).await.unwrap().is_ok());
    assert_eq!(h.claims().set_stock(&c).await.unwrap(), Ok(()));
    assert!(matches!(h.claims().claim(&c, "d", T0 + 5).await.unwrap(), Claim::Claimed(_)));
    assert_eq!(stored(&*h, "restock").await.len(), 4);
    h.finish().await;
}

pub async fn campaigns_are_counted_apart(h: Box<dyn Harness>) {
    let one = opened(&*h, "one", Some(1)).await;
    let two = opened(&*h, "two", Some(1)).await;
    assert!(matches!(h.claims().claim(&one, "u", T0 + 1).await.unwrap(), Claim::Claimed(_)));
    assert!(matches!(h.claims().claim(&two, "u", T0 + 1).await.unwrap(), Claim::Claimed(_)));
    assert_eq!(h.claims().claim(&one, "v", T0 + 2).await.unwrap(), Claim::SoldOut);
    let users: HashSet<String> = stored(&*h, "two").await.into_keys().collect();
    assert_eq!(users, HashSet::from(["u".to_string()]));
    h.finish().await;
}
