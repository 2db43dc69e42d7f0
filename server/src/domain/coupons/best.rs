//! Which of a buyer's coupons to use on an order: what each one takes off
//! right now, the largest of those, and a sentence telling the buyer why.

use std::cmp::Reverse;

use super::{Campaign, Coupon, Money, NotApplicable, PricedOrder};

/// The coupon chosen for an order, with what it saves and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestCoupon<'a> {
    pub coupon: &'a Coupon,
    pub campaign: &'a Campaign,
    pub discount: Money,
    /// One sentence for the buyer.
    pub reason: String,
}

/// What one coupon takes off an order right now, or why it does not apply.
///
/// A claimed coupon stays usable while its campaign is paused (pausing only
/// stops claims) and until the campaign ends, exclusive. A discount of 0 is
/// no discount, so it counts as not applicable.
pub fn coupon_discount(
    coupon: &Coupon,
    campaign: &Campaign,
    order: &PricedOrder,
    now_ms: i64,
) -> Result<Money, NotApplicable> {
    if coupon.used_ms.is_some() {
        return Err(NotApplicable::Used);
    }
    if now_ms >= campaign.ends_at_ms {
        return Err(NotApplicable::Expired);
    }
    match campaign.discount(order)? {
        0 => Err(NotApplicable::NoTier),
        d => Ok(d),
    }
}

/// Among the buyer's coupons, the one with the largest discount on `order`.
/// Ties go to the one whose campaign ends first (use it before it is lost),
/// then to the oldest claim, then to the smaller coupon id, so the choice
/// never depends on the order of `candidates`. `None` when none applies.
pub fn best_coupon<'a>(
    candidates: &[(&'a Coupon, &'a Campaign)],
    order: &PricedOrder,
    now_ms: i64,
) -> Option<BestCoupon<'a>> {
    let mut applicable: Vec<(&'a Coupon, &'a Campaign, Money)> = candidates
        .iter()
        .filter_map(|&(coupon, campaign)| {
            coupon_discount(coupon, campaign, order, now_ms).ok().map(|d| (coupon, campaign, d))
        })
        .collect();
    applicable.sort_by(|a, b| rank(a).cmp(&rank(b)));
    let &(coupon, campaign, discount) = applicable.first()?;
    // The runner-up tells which tie rule decided, if any did.
    let tie = applicable.get(1).filter(|r| r.2 == discount).map(|&(c, k, _)| {
        if k.ends_at_ms > campaign.ends_at_ms {
            ", and it expires first"
        } else if c.claimed_ms > coupon.claimed_ms {
            ", and you claimed it first"
        } else {
            ", tied with another of your coupons"
        }
    });
    let reason = if applicable.len() == 1 {
        format!(
            "“{}” saves {}, the only one of your coupons that applies to this order.",
            campaign.name,
            thousands(discount)
        )
    } else {
        format!(
            "“{}” saves {}, the largest discount among your {} coupons that apply to this order{}.",
            campaign.name,
            thousands(discount),
            thousands(applicable.len() as i64),
            tie.unwrap_or("")
        )
    };
    Some(BestCoupon { coupon, campaign, discount, reason })
}

/// The order of preference: smallest first.
fn rank<'a>(&(coupon, campaign, discount): &(&'a Coupon, &'a Campaign, Money)) -> (Reverse<Money>, i64, i64, &'a str) {
    (Reverse(discount), campaign.ends_at_ms, coupon.claimed_ms, coupon.id.as_str())
}

/// `4500` as `4,500`: the buyer reads it, the caller knows the currency.
pub(super) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::coupons::{FundedBy, PricedLine, Targets, Terms, kind_named};

    const NOW: i64 = 1_000_000;

    fn campaign(id: &str, kind: &str, value: i64, ends_at_ms: i64) -> Campaign {
        Campaign {
            id: id.into(),
            seller_id: "s1".into(),
            name: format!("Campaign {id}"),
            kind: kind_named(kind).unwrap(),
            terms: Terms { value, max_discount: None, min_spend: 0 },
            stock: None,
            starts_at_ms: 0,
            ends_at_ms,
            paused: false,
            targets: Targets::default(),
            funded_by: FundedBy { seller_pct: 100, platform_pct: 0 },
            created_ms: 0,
        }
    }

    fn coupon(id: &str, campaign_id: &str, claimed_ms: i64) -> Coupon {
        Coupon { id: id.into(), campaign_id: campaign_id.into(), user: "u1".into(), claimed_ms, used_ms: None }
    }

    fn order(prices: &[i64]) -> PricedOrder {
        PricedOrder {
            event: "e1".into(),
            seller_id: "s1".into(),
            lines: prices
                .iter()
                .enumerate()
                .map(|(i, &price)| PricedLine { seat: format!("A-{i}"), tier: "std".into(), price })
                .collect(),
        }
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(4_500), "4,500");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1_234), "-1,234");
        assert_eq!(thousands(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn a_used_coupon_does_not_apply() {
        let k = campaign("c1", "fixed", 500, NOW + 1);
        let mut c = coupon("cp1", "c1", 0);
        c.used_ms = Some(10);
        assert_eq!(coupon_discount(&c, &k, &order(&[10_000]), NOW), Err(NotApplicable::Used));
    }

    #[test]
    fn a_coupon_expires_when_its_campaign_ends() {
        let k = campaign("c1", "fixed", 500, NOW);
        let c = coupon("cp1", "c1", 0);
        assert_eq!(coupon_discount(&c, &k, &order(&[10_000]), NOW), Err(NotApplicable::Expired));
        assert_eq!(coupon_discount(&c, &k, &order(&[10_000]), NOW - 1), Ok(500), "the end is exclusive");
    }

    #[test]
    fn a_paused_campaigns_claimed_coupons_stay_usable() {
        let mut k = campaign("c1", "fixed", 500, NOW + 1);
        k.paused = true;
        assert_eq!(coupon_discount(&coupon("cp1", "c1", 0), &k, &order(&[10_000]), NOW), Ok(500));
    }

    #[test]
    fn a_zero_discount_does_not_apply() {
        // 1 % of 50 rounds down to nothing.
        let k = campaign("c1", "percent", 1, NOW + 1);
        assert_eq!(coupon_discount(&coupon("cp1", "c1", 0), &k, &order(&[50]), NOW), Err(NotApplicable::NoTier));
    }

    #[test]
    fn the_campaigns_reason_is_passed_on() {
        let mut k = campaign("c1", "fixed", 500, NOW + 1);
        k.terms.min_spend = 20_000;
        let c = coupon("cp1", "c1", 0);
        assert_eq!(
            coupon_discount(&c, &k, &order(&[10_000]), NOW),
            Err(NotApplicable::BelowMinSpend { min_spend: 20_000, base: 10_000 })
        );
        k.targets.events = Some(vec!["e2".into()]);
        assert_eq!(coupon_discount(&c, &k, &order(&[10_000]), NOW), Err(NotApplicable::OtherEvent));
    }

    #[test]
    fn no_candidate_no_best() {
        assert_eq!(best_coupon(&[], &order(&[10_000]), NOW), None);
        let k = campaign("c1", "fixed", 500, NOW);
        let c = coupon("cp1", "c1", 0);
        assert_eq!(best_coupon(&[(&c, &k)], &order(&[10_000]), NOW), None, "expired");
    }

    #[test]
    fn the_largest_discount_wins_and_says_so() {
        let mut k1 = campaign("c1", "percent", 10, NOW + 1);
        k1.name = "Opening night 10%".into();
        let k2 = campaign("c2", "fixed", 1_000, NOW + 1);
        let k3 = campaign("c3", "fixed", 2_000, NOW + 1);
        let (c1, c2, c3) = (coupon("cp1", "c1", 0), coupon("cp2", "c2", 0), coupon("cp3", "c3", 0));
        let mut used = coupon("cp4", "c3", 0);
        used.used_ms = Some(5);
        let o = order(&[20_000, 25_000]);
        let best = best_coupon(&[(&c2, &k2), (&used, &k3), (&c1, &k1), (&c3, &k3)], &o, NOW).unwrap();
        assert_eq!(best.coupon.id, "cp1");
        assert_eq!(best.discount, 4_500);
        assert_eq!(
            best.reason,
            "“Opening night 10%” saves 4,500, the largest discount among your 3 coupons that apply to this order."
        );
    }

    #[test]
    fn a_single_applicable_coupon_is_the_only_one() {
        let k = campaign("c1", "fixed", 1_500, NOW + 1);
        let c = coupon("cp1", "c1", 0);
        let best = best_coupon(&[(&c, &k)], &order(&[10_000]), NOW).unwrap();
        assert_eq!(best.reason, "“Campaign c1” saves 1,500, the only one of your coupons that applies to this order.");
    }

    #[test]
    fn a_tie_goes_to_the_campaign_that_ends_first() {
        let late = campaign("late", "fixed", 500, NOW + 100);
        let soon = campaign("soon", "fixed", 500, NOW + 10);
        let (a, b) = (coupon("a", "late", 0), coupon("b", "soon", 5));
        let best = best_coupon(&[(&a, &late), (&b, &soon)], &order(&[10_000]), NOW).unwrap();
        assert_eq!(best.coupon.id, "b");
        assert!(best.reason.ends_with(", and it expires first."), "{}", best.reason);
    }

    #[test]
    fn then_to_the_oldest_claim() {
        let k = campaign("c1", "fixed", 500, NOW + 10);
        let k2 = campaign("c2", "fixed", 500, NOW + 10);
        let (a, b) = (coupon("a", "c1", 20), coupon("b", "c2", 10));
        let best = best_coupon(&[(&a, &k), (&b, &k2)], &order(&[10_000]), NOW).unwrap();
        assert_eq!(best.coupon.id, "b");
        assert!(best.reason.ends_with(", and you claimed it first."), "{}", best.reason);
    }

    #[test]
    fn then_to_the_smaller_id() {
        let k = campaign("c1", "fixed", 500, NOW + 10);
        let k2 = campaign("c2", "fixed", 500, NOW + 10);
        let (a, b) = (coupon("cp-b", "c1", 10), coupon("cp-a", "c2", 10));
        for pair in [[(&a, &k), (&b, &k2)], [(&b, &k2), (&a, &k)]] {
            let best = best_coupon(&pair, &order(&[10_000]), NOW).unwrap();
            assert_eq!(best.coupon.id, "cp-a");
            assert!(best.reason.ends_with(", tied with another of your coupons."), "{}", best.reason);
        }
    }
}
