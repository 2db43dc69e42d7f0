//! A seller's campaign bodies checked into campaigns: every wrong field is
//! named with what is wrong with it, so one 400 answers them all.

use std::collections::HashSet;

use qt_protocol::coupons::{CampaignPatch, NewCampaign};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::best::thousands;
use super::kinds::MAX_AMOUNT;
use super::{Campaign, Fields, FundedBy, KINDS, Targets, Terms, kind_named};
use crate::domain::event::Event;

/// Field name → what is wrong, for a 400 that names each field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fields: {}", list(.0))]
pub struct FieldErrors(pub Fields);

fn list(fields: &Fields) -> String {
    fields.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; ")
}

/// Most coupons one campaign may issue.
const MAX_STOCK: i64 = 100_000_000;
/// Most events or tiers a campaign may name.
const MAX_TARGETS: usize = 1000;
/// Longest campaign: 5 calendar years at most have 1827 days.
const MAX_LENGTH_MS: i64 = 1827 * 86_400_000;
const MAX_NAME_CHARS: usize = 200;

/// Errors gathered field by field; a second problem with the same field is
/// added to its message rather than lost.
#[derive(Default)]
struct Errors(Fields);

impl Errors {
    fn add(&mut self, field: &str, msg: impl Into<String>) {
        let msg = msg.into();
        self.0.entry(field.to_owned()).and_modify(|m| *m = format!("{m} and {msg}")).or_insert(msg);
    }

    fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    fn finish<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.0.is_empty() { Ok(value) } else { Err(FieldErrors(self.0)) }
    }
}

/// Checks a new campaign of `seller_id`, whose events are `seller_events`,
/// and builds it; `generated_id` is its id when the body names none.
pub fn validate_new(
    body: &NewCampaign,
    seller_id: &str,
    seller_events: &[Event],
    generated_id: String,
    now_ms: i64,
) -> Result<Campaign, FieldErrors> {
    let mut errs = Errors::default();
    // Only the seller's own events count, whatever the caller passed: no
    // answer may depend on another seller's data.
    let own: Vec<&Event> = seller_events.iter().filter(|e| e.seller_id == seller_id).collect();

    let id = match &body.id {
        Some(id) if valid_id(id) => id.clone(),
        Some(_) => {
            errs.add("id", "must be 1 to 64 of a-z, 0-9 and -");
            String::new()
        }
        None => generated_id,
    };

    let name = body.name.trim();
    let name_chars = name.chars().count();
    if name_chars == 0 {
        errs.add("name", "must not be blank");
    } else if name_chars > MAX_NAME_CHARS {
        errs.add("name", format!("must be at most {MAX_NAME_CHARS} characters"));
    }

    let kind = kind_named(&body.kind);
    match kind {
        // An unknown kind says nothing about what its value should be.
        None => {
            let known: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
            errs.add("kind", format!("must be one of {}", known.join(", ")));
        }
        Some(k) => {
            if let Err(msg) = k.check_value(body.value) {
                errs.add("value", msg);
            }
        }
    }

    if let Some(cap) = body.max_discount
        && !(1..=MAX_AMOUNT).contains(&cap)
    {
        errs.add("max_discount", format!("must be an amount from 1 to {} minor units", thousands(MAX_AMOUNT)));
    }
    let min_spend = body.min_spend.unwrap_or(0);
    if !(0..=MAX_AMOUNT).contains(&min_spend) {
        errs.add("min_spend", format!("must be an amount from 0 to {} minor units", thousands(MAX_AMOUNT)));
    }

    let stock = body.stock.flatten().and_then(|n| stock_in_range(n, &mut errs));

    let starts = parse_time(&body.starts_at, "starts_at", &mut errs);
    let ends = parse_time(&body.ends_at, "ends_at", &mut errs);
    if let Some(ends) = ends {
        if let Some(starts) = starts {
            check_length(starts, ends, &mut errs);
        }
        if ends <= now_ms {
            errs.add("ends_at", "is already past");
        }
    }

    let events = body.events.as_ref().map(|list| {
        if check_list(list, "events", "event", &mut errs) {
            let unknown = not_in(list, |id| own.iter().any(|e| e.id == id));
            if let Some(first) = unknown.first() {
                errs.add("events", format!("no event of yours named {first}{}", more(unknown.len())));
            }
        }
        list.clone()
    });

    let tiers = body.tiers.as_ref().map(|list| {
        let short = check_list(list, "tiers", "tier", &mut errs);
        let targeted: Vec<&Event> = match &events {
            Some(ids) => own.iter().copied().filter(|e| ids.contains(&e.id)).collect(),
            None => own.clone(),
        };
        // When the events are wrong too, their error is the one to fix
        // first: tiers are judged against events that may yet change.
        if short && !errs.has("events") {
            let unknown = not_in(list, |t| targeted.iter().any(|e| e.tiers.iter().any(|et| et.id == t)));
            if let Some(first) = unknown.first() {
                errs.add("tiers", format!("no tier named {first} in the targeted events{}", more(unknown.len())));
            }
        }
        list.clone()
    });

    let funded_by = funded_by(body.funded_by, &mut errs);

    let Some(kind) = kind else { return Err(FieldErrors(errs.0)) };
    errs.finish(Campaign {
        id,
        seller_id: seller_id.to_owned(),
        name: name.to_owned(),
        kind,
        terms: Terms { value: body.value, max_discount: body.max_discount, min_spend },
        stock,
        starts_at_ms: starts.unwrap_or_default(),
        ends_at_ms: ends.unwrap_or_default(),
        paused: false,
        targets: Targets { events, tiers },
        funded_by,
        created_ms: now_ms,
    })
}

/// Applies a seller's change to `current`, of which `issued` coupons were
/// claimed; on any error nothing changes.
pub fn validate_patch(current: &Campaign, issued: u64, patch: &CampaignPatch) -> Result<Campaign, FieldErrors> {
    let mut errs = Errors::default();
    let mut next = current.clone();
    if let Some(paused) = patch.paused {
        next.paused = paused;
    }
    if let Some(ends_at) = &patch.ends_at
        && let Some(ends) = parse_time(ends_at, "ends_at", &mut errs)
    {
        // No "already past" check: ending a campaign now is what a seller
        // who wants it over does.
        check_length(current.starts_at_ms, ends, &mut errs);
        next.ends_at_ms = ends;
    }
    match patch.stock {
        None => {}
        Some(None) => next.stock = None,
        Some(Some(n)) => {
            let in_range = stock_in_range(n, &mut errs);
            if u64::try_from(n).map_or(issued > 0, |n| n < issued) {
                errs.add("stock", format!("cannot be below the {} coupons already issued", thousands_u64(issued)));
            }
            next.stock = in_range;
        }
    }
    errs.finish(next)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn stock_in_range(n: i64, errs: &mut Errors) -> Option<u64> {
    if (1..=MAX_STOCK).contains(&n) {
        u64::try_from(n).ok()
    } else {
        errs.add("stock", format!("must be from 1 to {} coupons, or null for unlimited", thousands(MAX_STOCK)));
        None
    }
}

/// An RFC 3339 time as unix milliseconds.
fn parse_time(s: &str, field: &str, errs: &mut Errors) -> Option<i64> {
    let ms = OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok());
    if ms.is_none() {
        errs.add(field, "must be an RFC 3339 time, such as 2030-01-31T20:00:00Z");
    }
    ms
}

fn check_length(starts: i64, ends: i64, errs: &mut Errors) {
    if ends <= starts {
        errs.add("ends_at", "must be after starts_at");
    } else if ends - starts > MAX_LENGTH_MS {
        errs.add("ends_at", "must be at most 5 years after starts_at");
    }
}

/// Shape rules shared by the event and tier lists; false when the list is
/// too long to be worth looking each id up.
fn check_list(list: &[String], field: &str, what: &str, errs: &mut Errors) -> bool {
    if list.is_empty() {
        errs.add(field, format!("must name at least one {what}, or be left out for all"));
    } else if list.len() > MAX_TARGETS {
        errs.add(field, format!("must name at most {} {field}", thousands(MAX_TARGETS as i64)));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = list.iter().find(|id| !seen.insert(id.as_str())) {
        errs.add(field, format!("names {dup} twice"));
    }
    list.len() <= MAX_TARGETS
}

/// The ids of `list` that are not `known`, each once, in order.
fn not_in(list: &[String], known: impl Fn(&str) -> bool) -> Vec<&str> {
    let mut seen = HashSet::new();
    list.iter().map(String::as_str).filter(|id| !known(id) && seen.insert(*id)).collect()
}

fn more(unknown: usize) -> String {
    if unknown > 1 { format!(" (and {} more)", unknown - 1) } else { String::new() }
}

fn funded_by(f: qt_protocol::coupons::FundedBy, errs: &mut Errors) -> FundedBy {
    let pct = |v: i64| u8::try_from(v).ok().filter(|p| *p <= 100);
    match (pct(f.seller), pct(f.platform)) {
        (Some(seller_pct), Some(platform_pct)) if seller_pct + platform_pct == 100 => {
            FundedBy { seller_pct, platform_pct }
        }
        (Some(_), Some(_)) => {
            errs.add("funded_by", "seller and platform must add up to 100");
            FundedBy { seller_pct: 100, platform_pct: 0 }
        }
        _ => {
            errs.add("funded_by", "seller and platform must each be a percentage from 0 to 100, adding up to 100");
            FundedBy { seller_pct: 100, platform_pct: 0 }
        }
    }
}

fn thousands_u64(n: u64) -> String {
    i64::try_from(n).map_or_else(|_| n.to_string(), thousands)
}

#[cfg(test)]
mod tests {
    use qt_protocol::coupons::FundedBy as WireFunded;
    use qt_protocol::frames::Tier;

    use super::*;
    use crate::domain::queue::QueueSettings;

    /// 2030-01-01T00:00:00Z.
    const T2030: i64 = 1_893_456_000_000;
    const DAY: i64 = 86_400_000;
    const NOW: i64 = T2030 - 10 * DAY;

    fn event(id: &str, seller: &str, tiers: &[&str]) -> Event {
        Event {
            id: id.into(),
            seller_id: seller.into(),
            venue_id: "v1".into(),
            name: id.into(),
            starts_at_ms: T2030,
            currency: "KRW".into(),
            queue: QueueSettings::default(),
            tiers: tiers.iter().map(|t| Tier { id: (*t).into(), name: (*t).into(), price: 10_000 }).collect(),
            refund_until_ms: None,
        }
    }

    /// s1's events e1 (vip, std) and e2 (std, balcony); s2's e9 (floor).
    fn events() -> Vec<Event> {
        vec![event("e1", "s1", &["vip", "std"]), event("e2", "s1", &["std", "balcony"]), event("e9", "s2", &["floor"])]
    }

    fn body() -> NewCampaign {
        NewCampaign {
            id: None,
            name: "  Opening night 10%  ".into(),
            kind: "percent".into(),
            value: 10,
            max_discount: Some(5_000),
            min_spend: None,
            stock: Some(Some(100)),
            starts_at: "2030-01-01T00:00:00Z".into(),
            ends_at: "2030-02-01T00:00:00+09:00".into(),
            events: None,
            tiers: None,
            funded_by: WireFunded { seller: 70, platform: 30 },
        }
    }

    fn new(b: &NewCampaign) -> Result<Campaign, FieldErrors> {
        validate_new(b, "s1", &events(), "gen-1".into(), NOW)
    }

    /// The message of `field`, asserting it is the only field at fault.
    fn only(b: &NewCampaign, field: &str) -> String {
        let errs = new(b).unwrap_err().0;
        assert_eq!(errs.keys().collect::<Vec<_>>(), vec![field], "{errs:?}");
        errs[field].clone()
    }

    fn campaign() -> Campaign {
        new(&body()).unwrap()
    }

    #[test]
    fn a_valid_body_becomes_a_campaign() {
        let c = campaign();
        assert_eq!(
            c,
            Campaign {
                id: "gen-1".into(),
                seller_id: "s1".into(),
                name: "Opening night 10%".into(),
                kind: kind_named("percent").unwrap(),
                terms: Terms { value: 10, max_discount: Some(5_000), min_spend: 0 },
                stock: Some(100),
                starts_at_ms: T2030,
                ends_at_ms: T2030 + 31 * DAY - 9 * 3_600_000,
                paused: false,
                targets: Targets { events: None, tiers: None },
                funded_by: FundedBy { seller_pct: 70, platform_pct: 30 },
                created_ms: NOW,
            }
        );
    }

    #[test]
    fn full_targets_and_a_chosen_id_are_kept() {
        let b = NewCampaign {
            id: Some("spring-2030".into()),
            kind: "fixed".into(),
            value: 2_000,
            max_discount: None,
            min_spend: Some(30_000),
            stock: Some(None),
            events: Some(vec!["e2".into()]),
            tiers: Some(vec!["balcony".into(), "std".into()]),
            ..body()
        };
        let c = new(&b).unwrap();
        assert_eq!(c.id, "spring-2030");
        assert_eq!(c.kind.name(), "fixed");
        assert_eq!(c.terms, Terms { value: 2_000, max_discount: None, min_spend: 30_000 });
        assert_eq!(c.stock, None);
        assert_eq!(c.targets.events, Some(vec!["e2".to_owned()]));
        assert_eq!(c.targets.tiers, Some(vec!["balcony".to_owned(), "std".to_owned()]));
    }

    #[test]
    fn id_must_be_lowercase_digits_and_dashes() {
        for bad in ["", "Spring", "a_b", "a b", "é", &"a".repeat(65)] {
            let b = NewCampaign { id: Some(bad.into()), ..body() };
            assert_eq!(only(&b, "id"), "must be 1 to 64 of a-z, 0-9 and -", "{bad:?}");
        }
        let b = NewCampaign { id: Some("a".repeat(64)), ..body() };
        assert!(new(&b).is_ok());
    }

    #[test]
    fn name_is_trimmed_and_bounded() {
        assert_eq!(only(&NewCampaign { name: " \t ".into(), ..body() }, "name"), "must not be blank");
        assert_eq!(only(&NewCampaign { name: "é".repeat(201), ..body() }, "name"), "must be at most 200 characters");
        let c = new(&NewCampaign { name: format!(" {} ", "é".repeat(200)), ..body() }).unwrap();
        assert_eq!(c.name, "é".repeat(200));
    }

    #[test]
    fn an_unknown_kind_lists_the_known_ones_and_hides_the_value_error() {
        let b = NewCampaign { kind: "bogo".into(), value: -5, ..body() };
        assert_eq!(only(&b, "kind"), "must be one of fixed, percent");
    }

    #[test]
    fn value_is_checked_by_the_kind() {
        assert_eq!(only(&NewCampaign { value: 101, ..body() }, "value"), "must be a percentage from 1 to 100");
        assert_eq!(only(&NewCampaign { value: 0, ..body() }, "value"), "must be a percentage from 1 to 100");
        let fixed = |value| NewCampaign { kind: "fixed".into(), value, ..body() };
        assert!(only(&fixed(0), "value").starts_with("must be an amount from 1"));
        assert!(only(&fixed(MAX_AMOUNT + 1), "value").starts_with("must be an amount from 1"));
        assert!(new(&fixed(MAX_AMOUNT)).is_ok());
    }

    #[test]
    fn max_discount_is_a_positive_amount() {
        for bad in [0, -1, MAX_AMOUNT + 1] {
            let b = NewCampaign { max_discount: Some(bad), ..body() };
            assert_eq!(only(&b, "max_discount"), "must be an amount from 1 to 10,000,000,000,000 minor units");
        }
        assert!(new(&NewCampaign { max_discount: Some(MAX_AMOUNT), ..body() }).is_ok());
        assert_eq!(new(&NewCampaign { max_discount: None, ..body() }).unwrap().terms.max_discount, None);
    }

    #[test]
    fn min_spend_defaults_to_zero_and_is_bounded() {
        for bad in [-1, MAX_AMOUNT + 1] {
            let b = NewCampaign { min_spend: Some(bad), ..body() };
            assert_eq!(only(&b, "min_spend"), "must be an amount from 0 to 10,000,000,000,000 minor units");
        }
        assert_eq!(new(&NewCampaign { min_spend: Some(0), ..body() }).unwrap().terms.min_spend, 0);
        assert_eq!(new(&NewCampaign { min_spend: None, ..body() }).unwrap().terms.min_spend, 0);
    }

    #[test]
    fn stock_is_unlimited_or_bounded() {
        for bad in [0, -3, MAX_STOCK + 1] {
            let b = NewCampaign { stock: Some(Some(bad)), ..body() };
            assert_eq!(only(&b, "stock"), "must be from 1 to 100,000,000 coupons, or null for unlimited");
        }
        assert_eq!(new(&NewCampaign { stock: Some(Some(MAX_STOCK)), ..body() }).unwrap().stock, Some(100_000_000));
        assert_eq!(new(&NewCampaign { stock: Some(None), ..body() }).unwrap().stock, None);
    }

    #[test]
    fn times_must_be_rfc3339() {
        let msg = "must be an RFC 3339 time, such as 2030-01-31T20:00:00Z";
        for bad in ["", "2030-01-01", "2030-01-01 00:00:00", "1893456000000", "2030-13-01T00:00:00Z"] {
            assert_eq!(only(&NewCampaign { starts_at: bad.into(), ..body() }, "starts_at"), msg, "{bad:?}");
            assert_eq!(only(&NewCampaign { ends_at: bad.into(), ..body() }, "ends_at"), msg, "{bad:?}");
        }
        let c = new(&NewCampaign { starts_at: "2030-01-01T09:00:00.250+09:00".into(), ..body() }).unwrap();
        assert_eq!(c.starts_at_ms, T2030 + 250);
    }

    #[test]
    fn ends_at_must_follow_starts_at() {
        let b = NewCampaign { ends_at: "2030-01-01T00:00:00Z".into(), ..body() };
        assert_eq!(only(&b, "ends_at"), "must be after starts_at");
        let b = NewCampaign { ends_at: "2029-12-31T23:59:59Z".into(), ..body() };
        assert_eq!(only(&b, "ends_at"), "must be after starts_at");
    }

    #[test]
    fn ends_at_must_not_be_past() {
        let b =
            NewCampaign { starts_at: "2020-01-01T00:00:00Z".into(), ends_at: "2021-01-01T00:00:00Z".into(), ..body() };
        assert_eq!(only(&b, "ends_at"), "is already past");
        // The start may be past: the campaign runs from now.
        let b = NewCampaign { starts_at: "2029-06-01T00:00:00Z".into(), ..body() };
        assert!(new(&b).is_ok());
        // Both wrong: both said.
        let b = NewCampaign { ends_at: "2001-01-01T00:00:00Z".into(), ..body() };
        assert_eq!(only(&b, "ends_at"), "must be after starts_at and is already past");
    }

    #[test]
    fn a_campaign_lasts_at_most_five_years() {
        let b = NewCampaign { ends_at: "2035-01-01T00:00:00Z".into(), ..body() };
        assert!(new(&b).is_ok(), "exactly 5 years");
        let b = NewCampaign { ends_at: "2035-01-03T00:00:00Z".into(), ..body() };
        assert_eq!(only(&b, "ends_at"), "must be at most 5 years after starts_at");
    }

    #[test]
    fn events_must_be_the_sellers_own() {
        let b = NewCampaign { events: Some(vec!["e1".into(), "nope".into()]), ..body() };
        assert_eq!(only(&b, "events"), "no event of yours named nope");
        let b = NewCampaign { events: Some(vec!["x".into(), "y".into(), "x".into()]), ..body() };
        assert_eq!(only(&b, "events"), "names x twice and no event of yours named x (and 1 more)");
    }

    #[test]
    fn another_sellers_event_is_as_unknown_as_a_missing_one() {
        let theirs = new(&NewCampaign { events: Some(vec!["e9".into()]), ..body() }).unwrap_err();
        let missing = new(&NewCampaign { events: Some(vec!["e8".into()]), ..body() }).unwrap_err();
        assert_eq!(theirs.0["events"], "no event of yours named e9");
        assert_eq!(missing.0["events"], "no event of yours named e8");
        // Even when the caller hands over the other seller's event.
        let c =
            validate_new(&NewCampaign { events: Some(vec!["e9".into()]), ..body() }, "s1", &events(), "g".into(), NOW);
        assert_eq!(c.unwrap_err().0.keys().collect::<Vec<_>>(), vec!["events"]);
    }

    #[test]
    fn events_must_be_a_short_list_without_repeats() {
        let b = NewCampaign { events: Some(vec![]), ..body() };
        assert_eq!(only(&b, "events"), "must name at least one event, or be left out for all");
        let b = NewCampaign { events: Some(vec!["e1".into(), "e2".into(), "e1".into()]), ..body() };
        assert_eq!(only(&b, "events"), "names e1 twice");
        let many: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
        let own: Vec<Event> = many.iter().map(|id| event(id, "s1", &["std"])).collect();
        let b = NewCampaign { events: Some(many.clone()), ..body() };
        let errs = validate_new(&b, "s1", &own, "g".into(), NOW).unwrap_err().0;
        assert_eq!(errs["events"], "must name at most 1,000 events");
        let b = NewCampaign { events: Some(many[..1000].to_vec()), ..body() };
        assert!(validate_new(&b, "s1", &own, "g".into(), NOW).is_ok());
    }

    #[test]
    fn tiers_must_be_in_a_targeted_event() {
        // Every event targeted: any of the seller's tiers.
        let b = NewCampaign { tiers: Some(vec!["vip".into(), "balcony".into()]), ..body() };
        assert!(new(&b).is_ok());
        let b = NewCampaign { tiers: Some(vec!["gold".into()]), ..body() };
        assert_eq!(only(&b, "tiers"), "no tier named gold in the targeted events");
        // e1 has no balcony.
        let b = NewCampaign { events: Some(vec!["e1".into()]), tiers: Some(vec!["balcony".into()]), ..body() };
        assert_eq!(only(&b, "tiers"), "no tier named balcony in the targeted events");
        // Another seller's tier is unknown too.
        let b = NewCampaign { tiers: Some(vec!["floor".into()]), ..body() };
        assert_eq!(only(&b, "tiers"), "no tier named floor in the targeted events");
    }

    #[test]
    fn tiers_must_be_a_short_list_without_repeats() {
        let b = NewCampaign { tiers: Some(vec![]), ..body() };
        assert_eq!(only(&b, "tiers"), "must name at least one tier, or be left out for all");
        let b = NewCampaign { tiers: Some(vec!["std".into(), "std".into()]), ..body() };
        assert_eq!(only(&b, "tiers"), "names std twice");
        let b = NewCampaign { tiers: Some(vec!["std".into(); 1001]), ..body() };
        assert_eq!(only(&b, "tiers"), "must name at most 1,000 tiers and names std twice");
    }

    #[test]
    fn tiers_are_not_judged_against_wrong_events() {
        let b = NewCampaign { events: Some(vec!["nope".into()]), tiers: Some(vec!["vip".into()]), ..body() };
        assert_eq!(only(&b, "events"), "no event of yours named nope");
    }

    #[test]
    fn funded_by_is_two_percentages_adding_up_to_100() {
        let with = |seller, platform| NewCampaign { funded_by: WireFunded { seller, platform }, ..body() };
        assert_eq!(only(&with(50, 40), "funded_by"), "seller and platform must add up to 100");
        assert_eq!(
            only(&with(150, -50), "funded_by"),
            "seller and platform must each be a percentage from 0 to 100, adding up to 100"
        );
        assert_eq!(
            only(&with(101, -1), "funded_by"),
            "seller and platform must each be a percentage from 0 to 100, adding up to 100"
        );
        assert_eq!(new(&with(0, 100)).unwrap().funded_by, FundedBy { seller_pct: 0, platform_pct: 100 });
        assert_eq!(new(&with(100, 0)).unwrap().funded_by, FundedBy { seller_pct: 100, platform_pct: 0 });
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let b = NewCampaign {
            id: Some("BAD".into()),
            name: String::new(),
            kind: "fixed".into(),
            value: 0,
            max_discount: Some(0),
            min_spend: Some(-1),
            stock: Some(Some(0)),
            starts_at: "soon".into(),
            ends_at: "later".into(),
            events: Some(vec![]),
            tiers: Some(vec![]),
            funded_by: WireFunded { seller: 1, platform: 1 },
        };
        let errs = new(&b).unwrap_err();
        let fields: Vec<&str> = errs.0.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "ends_at",
                "events",
                "funded_by",
                "id",
                "max_discount",
                "min_spend",
                "name",
                "starts_at",
                "stock",
                "tiers",
                "value"
            ]
        );
        let shown = errs.to_string();
        assert!(shown.starts_with("invalid fields: ends_at: must be an RFC 3339 time"), "{shown}");
        assert!(shown.contains("; name: must not be blank; starts_at: "), "{shown}");
    }

    #[test]
    fn field_errors_display_every_field() {
        let errs =
            FieldErrors(Fields::from([("name".into(), "must not be blank".into()), ("id".into(), "bad".into())]));
        assert_eq!(errs.to_string(), "invalid fields: id: bad; name: must not be blank");
    }

    // ------------------------------------------------------------ patch

    fn patch(current: &Campaign, issued: u64, p: CampaignPatch) -> Result<Campaign, FieldErrors> {
        validate_patch(current, issued, &p)
    }

    #[test]
    fn an_empty_patch_changes_nothing() {
        let c = campaign();
        assert_eq!(patch(&c, 3, CampaignPatch::default()).unwrap(), c);
    }

    #[test]
    fn paused_may_be_set_either_way() {
        let c = campaign();
        let paused = patch(&c, 0, CampaignPatch { paused: Some(true), ..Default::default() }).unwrap();
        assert!(paused.paused);
        assert_eq!(Campaign { paused: false, ..paused.clone() }, c, "nothing else changed");
        assert!(!patch(&paused, 0, CampaignPatch { paused: Some(false), ..Default::default() }).unwrap().paused);
    }

    #[test]
    fn a_patched_end_follows_the_start() {
        let c = campaign();
        let ends = |s: &str| patch(&c, 0, CampaignPatch { ends_at: Some(s.into()), ..Default::default() });
        assert_eq!(ends("2030-03-01T00:00:00Z").unwrap().ends_at_ms, T2030 + 59 * DAY);
        assert_eq!(ends("2030-01-01T00:00:00.001Z").unwrap().ends_at_ms, T2030 + 1, "shortened");
        assert_eq!(ends("2030-01-01T00:00:00Z").unwrap_err().0["ends_at"], "must be after starts_at");
        assert_eq!(ends("2036-01-01T00:00:00Z").unwrap_err().0["ends_at"], "must be at most 5 years after starts_at");
        assert_eq!(
            ends("tomorrow").unwrap_err().0["ends_at"],
            "must be an RFC 3339 time, such as 2030-01-31T20:00:00Z"
        );
    }

    #[test]
    fn a_patched_stock_is_never_below_issued() {
        let c = campaign();
        let stock = |n, issued| patch(&c, issued, CampaignPatch { stock: Some(n), ..Default::default() });
        let errs = stock(Some(11), 12).unwrap_err().0;
        assert_eq!(errs.keys().collect::<Vec<_>>(), vec!["stock"]);
        assert_eq!(errs["stock"], "cannot be below the 12 coupons already issued");
        assert_eq!(stock(Some(12), 12).unwrap().stock, Some(12), "exactly issued: sold out");
        assert_eq!(stock(Some(5_000), 12).unwrap().stock, Some(5_000));
        assert_eq!(stock(None, 12).unwrap().stock, None, "null: unlimited");
        assert_eq!(
            stock(Some(1_500), 2_000).unwrap_err().0["stock"],
            "cannot be below the 2,000 coupons already issued"
        );
    }

    #[test]
    fn a_patched_stock_is_bounded() {
        let c = campaign();
        let stock = |n, issued| patch(&c, issued, CampaignPatch { stock: Some(Some(n)), ..Default::default() });
        let range = "must be from 1 to 100,000,000 coupons, or null for unlimited";
        assert_eq!(stock(0, 0).unwrap_err().0["stock"], range);
        assert_eq!(stock(-1, 0).unwrap_err().0["stock"], range);
        assert_eq!(stock(MAX_STOCK + 1, 0).unwrap_err().0["stock"], range);
        assert_eq!(
            stock(0, 3).unwrap_err().0["stock"],
            format!("{range} and cannot be below the 3 coupons already issued")
        );
    }

    #[test]
    fn a_bad_patch_names_every_field() {
        let c = campaign();
        let p =
            CampaignPatch { paused: Some(true), ends_at: Some("2020-01-01T00:00:00Z".into()), stock: Some(Some(1)) };
        let errs = validate_patch(&c, 7, &p).unwrap_err().0;
        assert_eq!(errs.keys().collect::<Vec<_>>(), vec!["ends_at", "stock"]);
    }
}
