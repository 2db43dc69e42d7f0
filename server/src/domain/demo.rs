//! The demo catalogue seeded on first start in embedded mode: one seller, one
//! hall of 2,400 seats in five sections, and one event on sale now.

use super::event::{Event, Seat, Tier, Venue};
use super::queue::QueueSettings;

pub const SELLER_ID: &str = "demo";
pub const SELLER_NAME: &str = "Demo Promotions";
pub const VENUE_ID: &str = "demo-hall";
pub const EVENT_ID: &str = "demo-live";

const SECTIONS: [&str; 5] = ["A", "B", "C", "D", "E"];
const ROWS: usize = 20;
const SEATS_PER_ROW: i64 = 24;

pub fn venue() -> Venue {
    Venue { id: VENUE_ID.into(), seller_id: SELLER_ID.into(), name: "Demo Hall".into() }
}

/// Sections fan out around the stage at the top of the map; rows count away
/// from it. Tiers follow distance to the stage.
pub fn seats() -> Vec<Seat> {
    let mut seats = Vec::with_capacity(SECTIONS.len() * ROWS * SEATS_PER_ROW as usize);
    for (s, section) in SECTIONS.iter().enumerate() {
        let section_x = s as i64 * (SEATS_PER_ROW * 12 + 40);
        for r in 0..ROWS {
            let row = format!("{}", r + 1);
            let tier = match (r, s) {
                (0..=3, 1..=3) => "vip",
                (0..=7, _) => "r",
                (8..=13, _) => "s",
                _ => "a",
            };
            for n in 1..=SEATS_PER_ROW {
                seats.push(Seat {
                    id: format!("{section}-{row}-{n}"),
                    section: (*section).into(),
                    row: row.clone(),
                    number: n,
                    x: section_x + (n - 1) * 12,
                    y: 60 + r as i64 * 14,
                    tier: tier.into(),
                });
            }
        }
    }
    seats
}

/// Buyers may have their tickets refunded until a day before the show.
pub fn event(now_ms: i64) -> Event {
    const DAY_MS: i64 = 86_400_000;
    let starts_at_ms = now_ms + 30 * DAY_MS;
    Event {
        id: EVENT_ID.into(),
        seller_id: SELLER_ID.into(),
        venue_id: VENUE_ID.into(),
        name: "QueueTicket Live: Demo Night".into(),
        starts_at_ms,
        currency: "KRW".into(),
        queue: QueueSettings {
            rate_per_min: 120,
            max_active: 200,
            window_s: 600,
            grace_s: 60,
            paused: false,
            hold_s: 600,
            max_seats_per_buyer: 6,
            on_sale_at_ms: now_ms,
        },
        tiers: vec![
            Tier { id: "vip".into(), name: "VIP".into(), price: 198_000 },
            Tier { id: "r".into(), name: "R".into(), price: 165_000 },
            Tier { id: "s".into(), name: "S".into(), price: 132_000 },
            Tier { id: "a".into(), name: "A".into(), price: 99_000 },
        ],
        refund_until_ms: Some(starts_at_ms - DAY_MS),
    }
}

/// The demo's coupon campaigns: an amount off and a percentage off, open
/// from a minute before `now_ms` for 30 days.
pub fn campaigns(now_ms: i64) -> Vec<super::coupons::Campaign> {
    use super::coupons::{Campaign, FundedBy, Targets, Terms, kind_named};
    const DAY_MS: i64 = 86_400_000;
    let open = |id: &str, name: &str, kind: &str, terms: Terms, stock: Option<u64>, funded_by: FundedBy| {
        kind_named(kind).map(|kind| Campaign {
            id: id.into(),
            seller_id: SELLER_ID.into(),
            name: name.into(),
            kind,
            terms,
            stock,
            starts_at_ms: now_ms - 60_000,
            ends_at_ms: now_ms + 30 * DAY_MS,
            paused: false,
            targets: Targets { events: Some(vec![EVENT_ID.into()]), tiers: None },
            funded_by,
            created_ms: now_ms,
        })
    };
    [
        open(
            "demo-10000-off",
            "10,000 won off (first 300 buyers)",
            "fixed",
            Terms { value: 10_000, max_discount: None, min_spend: 50_000 },
            Some(300),
            FundedBy { seller_pct: 100, platform_pct: 0 },
        ),
        open(
            "demo-10-percent",
            "10% off, up to 30,000 won",
            "percent",
            Terms { value: 10, max_discount: Some(30_000), min_spend: 0 },
            Some(1_000),
            FundedBy { seller_pct: 50, platform_pct: 50 },
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn demo_hall_has_enough_distinct_seats_in_known_tiers() {
        let seats = seats();
        assert!(seats.len() >= 2_000);
        let ids: HashSet<_> = seats.iter().map(|s| &s.id).collect();
        assert_eq!(ids.len(), seats.len());
        let tiers: HashSet<_> = event(0).tiers.into_iter().map(|t| t.id).collect();
        assert!(seats.iter().all(|s| tiers.contains(&s.tier)));
        let coords: HashSet<_> = seats.iter().map(|s| (s.x, s.y)).collect();
        assert_eq!(coords.len(), seats.len(), "no two seats overlap on the map");
    }
}
