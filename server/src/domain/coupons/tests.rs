//! Property tests of the coupon domain: discounts stay within the order,
//! the applicable part and the cap; splits add up exactly; the best coupon
//! is the brute-force best with the stated tie rule; validation never lets
//! a campaign through that breaks its own rules.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use qt_protocol::coupons::{CampaignPatch, FundedBy as WireFunded, NewCampaign};
use qt_protocol::frames::Tier;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::best::thousands;
use super::kinds::MAX_AMOUNT;
use super::*;
use crate::domain::event::Event;
use crate::domain::queue::QueueSettings;

/// Fixed seed, no regression files: the same cases on every run.
fn config() -> Config {
    Config { failure_persistence: None, rng_seed: RngSeed::Fixed(0x5eed_c0c0_0905), ..Config::default() }
}

/// Mostly the same seller on both sides, so most campaigns get to apply.
fn seller() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just("s1"), 1 => Just("s2")]
}

const EVENTS: &[&str] = &["e1", "e2", "e3"];
/// Orders may have tier `d`, which no campaign targets by name.
const TIERS: &[&str] = &["a", "b", "c", "d"];
const NOW: i64 = 1_000_000;

fn strings(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(String::from).collect()
}

/// `None` (everything) or a non-empty subset of `pool`.
fn targets(pool: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<String>>> {
    prop::option::of(prop::sample::subsequence(pool.to_vec(), 1..=pool.len()).prop_map(strings))
}

/// Small amounts make caps and minimums bite; large ones test the bounds.
fn amount(lo: i64) -> impl Strategy<Value = i64> {
    prop_oneof![lo..=10_000i64, lo..=10_000_000_000i64, lo..=MAX_AMOUNT]
}

fn campaign_with(kind: &'static str, value: BoxedStrategy<i64>) -> impl Strategy<Value = Campaign> {
    (
        value,
        prop::option::of(amount(1)),
        prop_oneof![Just(0i64), amount(0)],
        seller(),
        targets(EVENTS),
        targets(&TIERS[..3]),
        0u8..=100,
        any::<bool>(),
    )
        .prop_map(move |(value, max_discount, min_spend, seller, events, tiers, seller_pct, paused)| Campaign {
            id: "c".into(),
            seller_id: seller.into(),
            name: "Campaign".into(),
            kind: kind_named(kind).unwrap(),
            terms: Terms { value, max_discount, min_spend },
            stock: None,
            starts_at_ms: 0,
            ends_at_ms: NOW + 1,
            paused,
            targets: Targets { events, tiers },
            funded_by: FundedBy { seller_pct, platform_pct: 100 - seller_pct },
            created_ms: 0,
        })
}

fn fixed_campaign() -> impl Strategy<Value = Campaign> {
    campaign_with("fixed", amount(1).boxed())
}

fn percent_campaign() -> impl Strategy<Value = Campaign> {
    campaign_with("percent", (1i64..=100).boxed())
}

fn any_campaign() -> impl Strategy<Value = Campaign> {
    prop_oneof![fixed_campaign(), percent_campaign()]
}

fn order_with(price: BoxedStrategy<i64>, max_lines: usize) -> impl Strategy<Value = PricedOrder> {
    (prop::sample::select(EVENTS), seller(), prop::collection::vec((prop::sample::select(TIERS), price), 0..=max_lines))
        .prop_map(|(event, seller, lines)| PricedOrder {
            event: event.into(),
            seller_id: seller.into(),
            lines: lines
                .into_iter()
                .enumerate()
                .map(|(i, (tier, price))| PricedLine { seat: format!("A-{i}"), tier: tier.into(), price })
                .collect(),
        })
}

fn any_order() -> impl Strategy<Value = PricedOrder> {
    order_with(prop_oneof![0i64..1_000_000_000, (0i64..100).prop_map(|p| p * 1_000)].boxed(), 12)
}

/// The applicable subtotal, worked out apart from `Campaign`'s own code.
fn base_of(c: &Campaign, o: &PricedOrder) -> Money {
    let event_ok = c.seller_id == o.seller_id && c.targets.events.as_ref().is_none_or(|e| e.contains(&o.event));
    if !event_ok {
        return 0;
    }
    o.lines.iter().filter(|l| c.targets.tiers.as_ref().is_none_or(|t| t.contains(&l.tier))).map(|l| l.price).sum()
}

fn cap_of(c: &Campaign) -> Money {
    c.terms.max_discount.unwrap_or(Money::MAX)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_discount_stays_within_the_order_the_applicable_part_and_the_cap(c in any_campaign(), o in any_order()) {
        let base = base_of(&c, &o);
        prop_assert_eq!(c.applicable_subtotal(&o), base);
        match c.discount(&o) {
            Ok(d) => {
                prop_assert!(d >= 0);
                prop_assert!(d <= o.subtotal());
                prop_assert!(d <= base);
                prop_assert!(d <= cap_of(&c));
                prop_assert!(base > 0 && base >= c.terms.min_spend);
            }
            Err(NotApplicable::OtherEvent) => prop_assert!(!c.covers_event(&o.seller_id, &o.event)),
            Err(NotApplicable::NoTier) => prop_assert_eq!(base, 0),
            Err(NotApplicable::BelowMinSpend { min_spend, base: b }) => {
                prop_assert_eq!(b, base);
                prop_assert_eq!(min_spend, c.terms.min_spend);
                prop_assert!(base > 0 && base < min_spend);
            }
            Err(e) => prop_assert!(false, "a campaign never says {:?}", e),
        }
    }

    #[test]
    fn a_percent_discount_is_the_rounded_down_share_capped(c in percent_campaign(), o in any_order()) {
        if let Ok(d) = c.discount(&o) {
            let base = base_of(&c, &o);
            let share = i64::try_from(i128::from(base) * i128::from(c.terms.value) / 100).unwrap();
            prop_assert_eq!(d, share.min(cap_of(&c)));
        }
    }

    #[test]
    fn a_fixed_discount_is_its_value_capped_by_base_and_cap(c in fixed_campaign(), o in any_order()) {
        if let Ok(d) = c.discount(&o) {
            prop_assert_eq!(d, c.terms.value.min(base_of(&c, &o)).min(cap_of(&c)));
        }
    }

    #[test]
    fn a_split_adds_up_exactly(
        pct in 0u8..=100,
        discount in prop_oneof![0i64..=100_000, 0..=MAX_AMOUNT, 0..=i64::MAX],
    ) {
        let s = FundedBy { seller_pct: pct, platform_pct: 100 - pct }.split(discount);
        prop_assert_eq!(s.seller + s.platform, discount);
        prop_assert!(s.seller >= 0 && s.platform >= 0);
        let floor = i128::from(discount) * i128::from(pct) / 100;
        prop_assert_eq!(i128::from(s.seller), floor);
    }

    #[test]
    fn a_split_of_a_real_discount_adds_up(c in any_campaign(), o in any_order()) {
        if let Ok(d) = c.discount(&o) {
            let s = c.funded_by.split(d);
            prop_assert_eq!(s.seller + s.platform, d);
            prop_assert!(s.seller >= 0 && s.platform >= 0);
            prop_assert_eq!(i128::from(s.seller), i128::from(d) * i128::from(c.funded_by.seller_pct) / 100);
        }
    }

    #[test]
    fn coupon_discount_follows_use_expiry_and_the_campaign(
        c in any_campaign(),
        o in any_order(),
        used in prop::option::of(0i64..NOW),
        now in NOW - 2..NOW + 3,
    ) {
        let coupon = Coupon { id: "cp".into(), campaign_id: c.id.clone(), user: "u".into(), claimed_ms: 0, used_ms: used };
        let got = coupon_discount(&coupon, &c, &o, now);
        let want = if used.is_some() {
            Err(NotApplicable::Used)
        } else if now >= c.ends_at_ms {
            Err(NotApplicable::Expired)
        } else {
            match c.discount(&o) {
                Ok(0) => Err(NotApplicable::NoTier),
                other => other,
            }
        };
        prop_assert_eq!(got, want);
        if let Ok(d) = got {
            prop_assert!(d >= 1);
        }
    }
}

// ------------------------------------------------------------ best coupon

/// Few distinct values, so equal discounts (and so the tie rule) are common.
fn tie_prone_campaign() -> impl Strategy<Value = Campaign> {
    let fixed = campaign_with("fixed", prop::sample::select(vec![100i64, 200, 500]).boxed());
    let percent = campaign_with("percent", prop::sample::select(vec![5i64, 10, 20]).boxed());
    (
        prop_oneof![fixed, percent],
        NOW - 1..=NOW + 3,
        prop::option::of(prop::sample::select(vec![100i64, 300])),
        0..3usize,
        prop::bool::weighted(0.8),
    )
        .prop_map(|(mut c, ends, cap, n, everywhere)| {
            // Mostly the order's seller and event, so most coupons compete.
            c.seller_id = "s1".into();
            if everywhere {
                c.targets.events = None;
            }
            c.ends_at_ms = ends;
            c.terms.max_discount = cap;
            // Minimum spends that sometimes bite at these prices.
            c.terms.min_spend = [0, 0, 2_000][n];
            c.name = format!("Campaign {n}");
            c
        })
}

fn candidates() -> impl Strategy<Value = Vec<(Coupon, Campaign)>> {
    prop::collection::vec(
        (
            tie_prone_campaign(),
            0..3i64,
            prop::sample::select(vec!["cp-a", "cp-b", "cp-c"]),
            prop::option::weighted(0.2, 0..NOW),
        ),
        0..7,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (mut campaign, claimed_ms, id, used_ms))| {
                campaign.id = format!("k{i}");
                let coupon =
                    Coupon { id: id.into(), campaign_id: campaign.id.clone(), user: "u".into(), claimed_ms, used_ms };
                (coupon, campaign)
            })
            .collect()
    })
}

fn tie_prone_order() -> impl Strategy<Value = PricedOrder> {
    order_with(prop::sample::select(vec![0i64, 500, 1_000, 5_000]).boxed(), 5).prop_map(|mut o| {
        o.seller_id = "s1".into();
        o
    })
}

/// Any values, so the choice holds beyond the tie-prone ones.
fn wide_candidates() -> impl Strategy<Value = Vec<(Coupon, Campaign)>> {
    prop::collection::vec((any_campaign(), 0..3i64), 0..5).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (mut campaign, claimed_ms))| {
                campaign.id = format!("k{i}");
                let id = format!("cp{i}");
                let coupon =
                    Coupon { id, campaign_id: campaign.id.clone(), user: "u".into(), claimed_ms, used_ms: None };
                (coupon, campaign)
            })
            .collect()
    })
}

/// The tie order: earliest end, oldest claim, smallest id.
fn tie_key<'a>(coupon: &'a Coupon, campaign: &Campaign) -> (i64, i64, &'a str) {
    (campaign.ends_at_ms, coupon.claimed_ms, coupon.id.as_str())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_best_coupon_is_the_brute_force_best(
        (owned, o) in prop_oneof![
            3 => (candidates(), tie_prone_order()),
            1 => (wide_candidates(), any_order()),
        ],
        now in prop_oneof![3 => Just(NOW - 1), 1 => NOW..=NOW + 2],
    ) {
        let pairs: Vec<(&Coupon, &Campaign)> = owned.iter().map(|(c, k)| (c, k)).collect();
        let each: Vec<Option<Money>> = pairs.iter().map(|(c, k)| coupon_discount(c, k, &o, now).ok()).collect();
        let max = each.iter().flatten().copied().max();
        let best = best_coupon(&pairs, &o, now);
        prop_assert_eq!(best.is_some(), max.is_some());
        let (Some(best), Some(max)) = (best, max) else { return Ok(()) };

        prop_assert_eq!(best.discount, max);
        prop_assert!(each.iter().flatten().all(|&d| d <= best.discount));
        // It picked one of the candidates, as a pair, and one that applies.
        prop_assert!(pairs.iter().any(|(c, k)| std::ptr::eq(*c, best.coupon) && std::ptr::eq(*k, best.campaign)));
        prop_assert_eq!(coupon_discount(best.coupon, best.campaign, &o, now), Ok(best.discount));
        // Among the equally good, the tie rule's first.
        let picked = tie_key(best.coupon, best.campaign);
        for ((c, k), d) in pairs.iter().zip(&each) {
            if *d == Some(max) {
                prop_assert!(picked <= tie_key(c, k), "{:?} beats {:?}", tie_key(c, k), picked);
            }
        }
        // The order of the candidates does not matter.
        let reversed: Vec<_> = pairs.iter().rev().copied().collect();
        let again = best_coupon(&reversed, &o, now).unwrap();
        prop_assert_eq!((again.discount, tie_key(again.coupon, again.campaign)), (best.discount, picked));
        prop_assert_eq!(&again.reason, &best.reason);
        // One sentence naming the coupon and what it saves.
        let opening = format!("“{}” saves {}, ", best.campaign.name, thousands(best.discount));
        prop_assert!(best.reason.starts_with(&opening), "{}", best.reason);
        prop_assert!(best.reason.ends_with('.') && best.reason.matches('.').count() == 1, "{}", best.reason);
    }
}

// ------------------------------------------------------------ validation

fn time_text(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap().format(&Rfc3339).unwrap()
}

const Y2030: i64 = 1_893_456_000_000;
const YEAR: i64 = 365 * 86_400_000;

fn own_events() -> Vec<Event> {
    let event = |id: &str, seller: &str, tiers: &[&str]| Event {
        id: id.into(),
        seller_id: seller.into(),
        venue_id: "v".into(),
        name: id.into(),
        starts_at_ms: Y2030,
        currency: "KRW".into(),
        queue: QueueSettings::default(),
        tiers: tiers.iter().map(|t| Tier { id: (*t).into(), name: (*t).into(), price: 1_000 }).collect(),
        refund_until_ms: None,
    };
    vec![event("e1", "s1", &["a", "b"]), event("e2", "s1", &["b", "c"]), event("e3", "s2", &["d"])]
}

/// A time near 2030, or now and then text that is no time at all.
fn time_or_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (Y2030 - YEAR..Y2030 + 7 * YEAR).prop_map(time_text),
        1 => prop::sample::select(vec!["", "2030-01-01", "later", "2030-02-30T00:00:00Z"]).prop_map(String::from),
    ]
}

/// Mostly `good`, sometimes `bad`: most bodies get past most rules, so both
/// the accepted and the refused are well exercised.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    good: impl Strategy<Value = T> + 'static,
    bad: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![12 => good, 1 => bad].boxed()
}

fn any_int() -> impl Strategy<Value = i64> {
    prop_oneof![-2i64..=102, any::<i64>(), Just(MAX_AMOUNT), Just(MAX_AMOUNT + 1), Just(100_000_001)]
}

fn list_of(pool: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<String>>> {
    prop::option::of(prop::collection::vec(prop::sample::select(pool), 0..4).prop_map(strings))
}

/// Start and end, as offsets from 2030 and a length.
fn window() -> impl Strategy<Value = (String, String)> {
    let good =
        (-YEAR..YEAR, 1..2 * YEAR).prop_map(|(start, len)| (time_text(Y2030 + start), time_text(Y2030 + start + len)));
    mostly(good, (time_or_junk(), time_or_junk()))
}

fn new_body() -> impl Strategy<Value = NewCampaign> {
    (
        mostly(prop::option::of("[a-z0-9-]{1,64}"), prop::option::of("[a-zA-Z0-9_ -]{0,70}")),
        mostly("[ ]{0,2}[A-Za-z][A-Za-z %]{0,30}", ".{0,210}"),
        mostly(prop::sample::select(vec!["fixed", "percent"]), Just("bogo")),
        mostly(1i64..=100, any_int()),
        (
            mostly(prop::option::of(1i64..=1_000_000), prop::option::of(any_int())),
            mostly(prop::option::of(0i64..=1_000_000), prop::option::of(any_int())),
            mostly(prop::option::of(1i64..=1_000), prop::option::of(any_int())),
        ),
        window(),
        (
            mostly(targets(&["e1", "e2"]), list_of(&["e1", "e2", "e3", "e4"])),
            mostly(targets(&["b"]), list_of(&["a", "b", "c", "d", "x"])),
        ),
        mostly((0i64..=100).prop_map(|s| (s, 100 - s)), (-1i64..=101, -1i64..=101)),
    )
        .prop_map(
            |(
                id,
                name,
                kind,
                value,
                (max_discount, min_spend, stock),
                (starts_at, ends_at),
                (events, tiers),
                (s, p),
            )| {
                NewCampaign {
                    id,
                    name,
                    kind: kind.into(),
                    value,
                    max_discount,
                    min_spend,
                    stock: Some(stock),
                    starts_at,
                    ends_at,
                    events,
                    tiers,
                    funded_by: WireFunded { seller: s, platform: p },
                }
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_validated_campaign_keeps_every_rule(body in new_body()) {
        let now = Y2030;
        let events = own_events();
        match validate_new(&body, "s1", &events, "gen".into(), now) {
            Err(FieldErrors(fields)) => {
                prop_assert!(!fields.is_empty());
                prop_assert!(!(fields.contains_key("kind") && fields.contains_key("value")));
            }
            Ok(c) => {
                prop_assert!(c.id == "gen" || body.id.as_deref() == Some(c.id.as_str()));
                prop_assert!(!c.id.is_empty() && c.id.len() <= 64);
                prop_assert!(c.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert_eq!(c.name.as_str(), body.name.trim());
                prop_assert!(!c.name.is_empty() && c.name.chars().count() <= 200);
                prop_assert!(c.kind.check_value(c.terms.value).is_ok());
                prop_assert!(c.terms.max_discount.is_none_or(|m| (1..=MAX_AMOUNT).contains(&m)));
                prop_assert!((0..=MAX_AMOUNT).contains(&c.terms.min_spend));
                prop_assert!(c.stock.is_none_or(|s| (1..=100_000_000).contains(&s)));
                prop_assert!(c.starts_at_ms < c.ends_at_ms && now < c.ends_at_ms);
                prop_assert!(c.ends_at_ms - c.starts_at_ms <= 5 * YEAR + 2 * 86_400_000);
                prop_assert_eq!(u16::from(c.funded_by.seller_pct) + u16::from(c.funded_by.platform_pct), 100);
                let own: Vec<&Event> = events.iter().filter(|e| e.seller_id == "s1").collect();
                for e in c.targets.events.iter().flatten() {
                    prop_assert!(own.iter().any(|o| &o.id == e), "only s1's events: {}", e);
                }
                let targeted: Vec<&&Event> =
                    own.iter().filter(|o| c.targets.events.as_ref().is_none_or(|ids| ids.contains(&o.id))).collect();
                for t in c.targets.tiers.iter().flatten() {
                    prop_assert!(targeted.iter().any(|e| e.tiers.iter().any(|et| &et.id == t)), "tier {}", t);
                }
                prop_assert_eq!((c.seller_id.as_str(), c.paused, c.created_ms), ("s1", false, now));
            }
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_names(
        paused in prop::option::of(any::<bool>()),
        ends_at in prop::option::of(time_or_junk()),
        stock in prop::option::of(prop::option::of(prop_oneof![-1i64..30, Just(100_000_001)])),
        issued in 0u64..20,
    ) {
        let current = Campaign {
            id: "c".into(),
            seller_id: "s1".into(),
            name: "C".into(),
            kind: kind_named("fixed").unwrap(),
            terms: Terms { value: 100, max_discount: None, min_spend: 0 },
            stock: Some(20),
            starts_at_ms: Y2030,
            ends_at_ms: Y2030 + YEAR,
            paused: false,
            targets: Targets::default(),
            funded_by: FundedBy { seller_pct: 100, platform_pct: 0 },
            created_ms: 0,
        };
        let patch = CampaignPatch { paused, ends_at, stock };
        if let Ok(next) = validate_patch(&current, issued, &patch) {
            prop_assert_eq!(next.paused, paused.unwrap_or(current.paused));
            prop_assert!(next.ends_at_ms > next.starts_at_ms);
            prop_assert!(next.ends_at_ms - next.starts_at_ms <= 5 * YEAR + 2 * 86_400_000);
            if patch.ends_at.is_none() {
                prop_assert_eq!(next.ends_at_ms, current.ends_at_ms);
            }
            match stock {
                None => prop_assert_eq!(next.stock, current.stock),
                Some(None) => prop_assert_eq!(next.stock, None),
                Some(Some(_)) => prop_assert!(next.stock.is_some_and(|s| s >= issued && s >= 1)),
            }
            let same = Campaign { paused: current.paused, ends_at_ms: current.ends_at_ms, stock: current.stock, ..next };
            prop_assert_eq!(same, current);
        }
    }
}
