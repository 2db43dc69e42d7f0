//! Property tests of settlement: for any mix of orders, discounts of both
//! funders and partial or whole refunds, every line and every statement
//! balances to the unit, lines sum to their statement, fees stay within
//! their base and are never clawed back beyond themselves, and a statement
//! split into periods sums to the whole.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::*;

/// Fixed seed, no regression files: the same cases on every run.
fn config() -> Config {
    Config { failure_persistence: None, rng_seed: RngSeed::Fixed(0x5e77_1e00), ..Config::default() }
}

fn plan() -> impl Strategy<Value = FeePlan> {
    (0u32..=10_000, 0i64..5_000, 0i64..20_000).prop_map(|(percent_bp, fixed_per_ticket, min_per_order)| FeePlan {
        percent_bp,
        fixed_per_ticket,
        min_per_order,
    })
}

/// An order: its sale, then refunds of parts of its base (in order; the
/// last may refund whatever is left).
#[derive(Debug, Clone)]
struct Case {
    tickets: i64,
    gross: Money,
    discount_seller: Money,
    discount_platform: Money,
    /// Parts of the base refunded, each in basis points of what is left.
    refunds: Vec<u32>,
}

fn case() -> impl Strategy<Value = Case> {
    (1i64..8, 0i64..2_000_000, 0u32..=100, 0u32..=100, prop::collection::vec(1u32..=10_000, 0..4)).prop_map(
        |(tickets, gross, seller_pct, platform_pct, refunds)| {
            // Discounts never above the gross, split between funders.
            let discount = gross * i64::from(seller_pct.max(platform_pct)) / 100;
            let discount_seller = discount * i64::from(seller_pct) / 100;
            let discount_platform = discount - discount_seller;
            Case { tickets, gross, discount_seller, discount_platform, refunds }
        },
    )
}

/// The ledger of `cases`, in time order: each order's sale, then its
/// refunds, orders interleaved by index.
fn history(cases: &[Case]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0;
    for (i, c) in cases.iter().enumerate() {
        at += 10;
        entries.push(Entry {
            id: format!("s{i}"),
            event: "e".into(),
            order: format!("o{i}"),
            kind: EntryKind::Sale,
            at_ms: at,
            tickets: c.tickets,
            gross: c.gross,
            discount_seller: c.discount_seller,
            discount_platform: c.discount_platform,
        });
    }
    for (i, c) in cases.iter().enumerate() {
        let (mut gross_left, mut seller_left) = (c.gross, c.discount_seller);
        let mut tickets_left = c.tickets;
        for (k, part) in c.refunds.iter().enumerate() {
            at += 10;
            let gross = gross_left * i64::from(*part) / 10_000;
            let seller = seller_left * i64::from(*part) / 10_000;
            let tickets = if *part == 10_000 { tickets_left } else { 0 };
            (gross_left, seller_left, tickets_left) =
                (gross_left - gross, seller_left - seller, tickets_left - tickets);
            entries.push(Entry {
                id: format!("r{i}-{k}"),
                event: "e".into(),
                order: format!("o{i}"),
                kind: EntryKind::Refund,
                at_ms: at,
                tickets,
                gross,
                discount_seller: seller,
                discount_platform: 0,
            });
        }
    }
    entries
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fees_stay_within_the_base_and_the_formula(plan in plan(), base in -10i64..5_000_000, tickets in 0i64..10) {
        let fee = plan.fee(base, tickets);
        prop_assert!(fee >= 0);
        prop_assert!(fee <= base.max(0));
        if base > 0 {
            let formula = (base * i64::from(plan.percent_bp) / 10_000 + plan.fixed_per_ticket * tickets)
                .max(plan.min_per_order);
            prop_assert_eq!(fee, formula.min(base));
        }
    }

    #[test]
    fn clawbacks_add_up_to_the_refunded_share_of_the_fee(
        fee in 0i64..100_000, extra in 0i64..1_000_000, parts in prop::collection::vec(0i64..400_000, 0..6),
    ) {
        let base = fee + extra;
        let (mut before, mut back) = (0, 0);
        for part in parts {
            let now = clawback(fee, base, before, part);
            prop_assert!(now >= 0);
            before += part;
            back += now;
        }
        prop_assert!(back <= fee);
        if base > 0 {
            prop_assert_eq!(back, (i128::from(fee) * i128::from(before.min(base)) / i128::from(base)) as i64);
        }
        if before >= base {
            prop_assert_eq!(back, fee, "a whole refund gives the whole fee back");
        }
    }

    #[test]
    fn every_line_and_statement_balances_and_sums(
        plan in plan(), cases in prop::collection::vec(case(), 0..12), cut in 0i64..400,
    ) {
        let history = history(&cases);
        let all = lines(&history, &plan, |_| None, |_| true);
        prop_assert_eq!(all.len(), history.len());
        for l in &all {
            prop_assert_eq!(l.net, l.gross - l.discounts_seller - l.fees + l.fee_clawbacks - l.refunds, "{:?}", l);
        }
        let total = Totals::of(&all);
        prop_assert!(total.balances());
        prop_assert_eq!(total.orders, cases.len() as i64);
        prop_assert!(total.fee_clawbacks <= total.fees);
        // Two periods split at `cut` sum to the whole.
        let early = Totals::of(&lines(&history, &plan, |_| None, |e| e.at_ms < cut));
        let late = Totals::of(&lines(&history, &plan, |_| None, |e| e.at_ms >= cut));
        prop_assert!(early.balances() && late.balances());
        prop_assert_eq!(early.net + late.net, total.net);
        prop_assert_eq!(early.fees + late.fees, total.fees);
        prop_assert_eq!(early.refunds + late.refunds, total.refunds);
        prop_assert_eq!(early.fee_clawbacks + late.fee_clawbacks, total.fee_clawbacks);
        // An order refunded whole nets to zero.
        for (i, c) in cases.iter().enumerate() {
            if c.refunds.last() == Some(&10_000) {
                let order = format!("o{i}");
                let net: Money = all.iter().filter(|l| l.order == order).map(|l| l.net).sum();
                prop_assert_eq!(net, 0, "order {} refunded whole", order);
            }
        }
    }
}

#[test]
fn a_statement_worked_by_hand() {
    // 3 % + 500 per ticket, at least 1,000 per order.
    let plan = FeePlan { percent_bp: 300, fixed_per_ticket: 500, min_per_order: 1_000 };
    let sale = |id: &str, order: &str, tickets, gross, seller, platform| Entry {
        id: id.into(),
        event: "e".into(),
        order: order.into(),
        kind: EntryKind::Sale,
        at_ms: 1,
        tickets,
        gross,
        discount_seller: seller,
        discount_platform: platform,
    };
    let history = vec![
        // 2 × 55,000, 10,000 off funded by the seller: base 100,000, fee 3,000 + 1,000.
        sale("a", "o1", 2, 110_000, 10_000, 0),
        // 1 × 15,000, 1,500 off funded by the platform: base 15,000, fee 450 + 500 → the minimum 1,000.
        sale("b", "o2", 1, 15_000, 0, 1_500),
        // o1 refunded whole: 100,000 back, its fee 4,000 clawed back.
        Entry { id: "c".into(), kind: EntryKind::Refund, at_ms: 2, ..sale("c", "o1", 2, 110_000, 10_000, 0) },
    ];
    let got = lines(&history, &plan, |_| None, |_| true);
    assert_eq!((got[0].fees, got[0].net), (4_000, 96_000));
    assert_eq!((got[1].fees, got[1].net), (1_000, 14_000));
    assert_eq!((got[2].refunds, got[2].fee_clawbacks, got[2].net, got[2].tickets), (100_000, 4_000, -96_000, -2));
    let t = Totals::of(&got);
    assert_eq!(
        (t.orders, t.tickets, t.gross, t.discounts_seller, t.discounts_platform),
        (2, 1, 125_000, 10_000, 1_500)
    );
    assert_eq!((t.fees, t.fee_clawbacks, t.refunds, t.net), (5_000, 4_000, 100_000, 14_000));
    assert!(t.balances());
    assert_eq!(FeePlan { percent_bp: 10_001, ..plan }.check(), Err(BadPlan::Percent));
    assert_eq!(FeePlan { min_per_order: -1, ..plan }.check(), Err(BadPlan::Minimum));
    assert_eq!(plan.check(), Ok(()));
}

#[test]
fn a_refund_claws_back_the_fee_charged_even_after_the_plan_changed() {
    let sale = Entry {
        id: "s".into(),
        event: "e".into(),
        order: "o".into(),
        kind: EntryKind::Sale,
        at_ms: 1,
        tickets: 1,
        gross: 100_000,
        discount_seller: 0,
        discount_platform: 0,
    };
    let refund = Entry { id: "r".into(), kind: EntryKind::Refund, at_ms: 2, ..sale.clone() };
    let history = vec![sale, refund];
    // Settled at 3 % (3,000); the plan is 5 % now.
    let now = FeePlan { percent_bp: 500, ..FeePlan::default() };
    let got = lines(&history, &now, |e| (e.id == "s").then_some(3_000), |e| e.id == "r");
    assert_eq!((got[0].fee_clawbacks, got[0].refunds, got[0].net), (3_000, 100_000, -97_000));
}
