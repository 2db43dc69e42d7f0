//! Seat use cases: watching an event's live map, holding named or best
//! seats, releasing them. Holds need an admission pass for the event; the
//! store decides atomically; the bus tells everyone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use qt_protocol::Format;
use qt_protocol::frames::{Held, Released, Seatmap};

use super::catalog::Catalog;
use super::notices::LiveMaps;
use super::queue::QueueService;
use super::seatmap::seatmap_view;
use crate::clock::{Clock, rfc3339};
use crate::domain::event::Event;
use crate::domain::seats::{BestFilter, HoldRequestError, SeatLayout, SeatStatus, best_seats, check_seat_ids};
use crate::domain::{EventId, UserId};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::StoreResult;
use crate::store::seats::{HoldRefused, SeatStore, Snapshot};

/// `hold_best` tries this often when someone was faster: each refusal names
/// seats the node's replica did not know were taken yet, so a buyer racing
/// up to this many others (or their own other tabs) still gets seats.
const BEST_ATTEMPTS: u64 = 8;
/// On a retry, `hold_best` takes one of up to this many next-best picks at
/// random (fewer on early retries).
const MAX_SPREAD: u64 = 32;
/// A `hold_best` count beyond any venue's row is a mistake, not a limit.
const MAX_BEST_COUNT: u32 = 1_000;

pub struct SeatService {
    pub store: Arc<dyn SeatStore>,
    pub catalog: Arc<Catalog>,
    /// Holds need an admission.
    pub queue: Arc<QueueService>,
    /// This node's replicas, for best seats.
    pub maps: Arc<dyn LiveMaps>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
}

impl SeatService {
    /// Makes sure this node keeps a live replica of the event's seats.
    pub async fn go_live(&self, event: &str) -> AppResult<(EventId, Arc<Event>)> {
        let (id, e) = self.catalog.find(event)?;
        if !self.maps.is_live(&id) {
            let layout = self.catalog.layout(&e).await?;
            let snapshot = self.store.snapshot(&id).await?;
            self.maps.install(&id, e.clone(), layout, &snapshot, self.clock.now_ms());
        }
        Ok((id, e))
    }

    /// The event's seats as the store has them now, for a replica that
    /// missed diffs.
    pub async fn snapshot(&self, id: &str) -> StoreResult<Snapshot> {
        self.store.snapshot(id).await
    }

    /// The version of the last diff the relay published, for replicas to
    /// check themselves against.
    pub async fn relayed_version(&self, id: &str) -> StoreResult<u64> {
        self.store.relayed_version(id).await
    }

    /// The seat map as the store has it now (for REST clients).
    pub async fn seatmap(&self, event: &str, format: Format) -> AppResult<Seatmap> {
        let (id, e) = self.catalog.find(event)?;
        let layout = self.catalog.layout(&e).await?;
        let snapshot = self.store.snapshot(&id).await?;
        let mut status = vec![SeatStatus::Free; layout.len()];
        for (seat, s) in &snapshot.taken {
            if let Some(i) = layout.index_of(seat) {
                status[i] = *s;
            }
        }
        Ok(seatmap_view(&e, snapshot.version, &layout, &status, format))
    }

    /// When a hold made now ends: after the event's hold time, and never
    /// after the buyer's shopping window.
    fn hold_until(&self, e: &Event, window_end_ms: i64) -> i64 {
        (self.clock.now_ms() + i64::from(e.queue.hold_s) * 1000).min(window_end_ms)
    }

    async fn hold_ids(
        &self,
        user: &UserId,
        id: &EventId,
        e: &Event,
        seats: Vec<String>,
        until: i64,
    ) -> AppResult<Held> {
        let max = e.queue.max_seats_per_buyer;
        match self.store.hold(id, user, &seats, until, max).await? {
            Ok(held) => {
                self.metrics.holds.inc();
                Ok(Held {
                    event: id.to_string(),
                    seats,
                    expires_at: rfc3339(held.expires_ms),
                    version: Some(held.version),
                })
            }
            Err(HoldRefused::Unavailable(taken)) => Err(AppError::SeatUnavailable(taken)),
            Err(HoldRefused::Limit { held }) => Err(AppError::HoldLimit { held, max }),
        }
    }

    /// Holds exactly these seats, or none.
    pub async fn hold(&self, user: &UserId, event: &str, seats: &[String]) -> AppResult<Held> {
        let (id, window_end) = self.queue.require_admission(user, event).await?;
        let (_, e) = self.catalog.find(&id)?;
        let layout = self.catalog.layout(&e).await?;
        check_seat_ids(&layout, seats, e.queue.max_seats_per_buyer)?;
        self.hold_ids(user, &id, &e, seats.to_vec(), self.hold_until(&e, window_end)).await
    }

    /// Holds the best `count` seats: adjacent in one row where possible.
    pub async fn hold_best(
        &self,
        user: &UserId,
        event: &str,
        count: u32,
        tier: Option<&str>,
        section: Option<&str>,
    ) -> AppResult<Held> {
        if count == 0 || count > MAX_BEST_COUNT {
            return Err(HoldRequestError::BadCount(MAX_BEST_COUNT).into());
        }
        let (id, window_end) = self.queue.require_admission(user, event).await?;
        let (_, e) = self.go_live(&id).await?;
        if count > e.queue.max_seats_per_buyer {
            return Err(HoldRequestError::TooMany(e.queue.max_seats_per_buyer).into());
        }
        let (layout, _) = self.maps.view(&id).ok_or(AppError::Unavailable)?;
        check_best_filter(&e, &layout, tier, section)?;
        let filter = BestFilter { tier, section };
        // Seats the store said are taken, which the replica may not show yet.
        let mut taken: HashSet<String> = HashSet::new();
        let mut last_taken = Vec::new();
        for attempt in 0..BEST_ATTEMPTS {
            if attempt > 0 {
                // Racers that lost together would pick alike again: spread
                // them out a little, which also lets the replica catch up.
                tokio::time::sleep(Duration::from_micros(rand::random_range(0..500 * attempt))).await;
            }
            // The replica as it is now: diffs may have arrived meanwhile.
            let (layout, replica) = self.maps.view(&id).ok_or(AppError::Unavailable)?;
            let known: HashSet<usize> = taken.iter().filter_map(|t| layout.index_of(t)).collect();
            let status = |i: usize| if known.contains(&i) { SeatStatus::Held } else { replica[i] };
            // Racers that lost together know the same: on a retry each takes
            // one of the next few best picks so they stop colliding.
            let skip = if attempt == 0 { 0 } else { rand::random_range(0..(1 << attempt).min(MAX_SPREAD)) };
            let Some(picked) = pick_best(&layout, status, count as usize, filter, skip) else {
                return Err(AppError::NoSeatsLeft);
            };
            let ids: Vec<String> = picked.iter().map(|&i| layout.seats[i].id.clone()).collect();
            match self.hold_ids(user, &id, &e, ids, self.hold_until(&e, window_end)).await {
                Err(AppError::SeatUnavailable(refused)) => {
                    // Someone was faster: our replica lags a little; skip those.
                    taken.extend(refused.iter().cloned());
                    last_taken = refused;
                }
                other => return other,
            }
        }
        Err(AppError::SeatUnavailable(last_taken))
    }

    /// Releases those of `seats` the buyer holds.
    pub async fn release(&self, user: &UserId, event: &str, seats: &[String]) -> AppResult<Released> {
        let (id, e) = self.catalog.find(event)?;
        let layout = self.catalog.layout(&e).await?;
        // Releasing is never limited by the hold limit: check ids only.
        check_seat_ids(&layout, seats, u32::MAX)?;
        let released = self.store.release(&id, user, seats).await?;
        Ok(Released { event: id.to_string(), seats: released.seats, version: released.version })
    }

    /// The buyer's current holds at an event as one `held` message, so a
    /// client that reconnects or reloads knows which seats are its own.
    pub async fn own_holds(&self, user: &UserId, id: &EventId) -> AppResult<Option<Held>> {
        let (seats, earliest) = self.store.holds_of(id, user).await?;
        Ok(earliest.filter(|_| !seats.is_empty()).map(|until| Held {
            event: id.to_string(),
            seats,
            expires_at: rfc3339(until),
            version: None,
        }))
    }
}

/// The best seats, or with `skip` the pick after skipping that many better
/// ones (each skipped pick counted as taken); the last pick found when fewer
/// are left.
fn pick_best(
    layout: &SeatLayout,
    status: impl Fn(usize) -> SeatStatus,
    count: usize,
    filter: BestFilter<'_>,
    skip: u64,
) -> Option<Vec<usize>> {
    let mut skipped: HashSet<usize> = HashSet::new();
    let mut picked = best_seats(layout, &status, count, filter)?;
    for _ in 0..skip {
        skipped.extend(picked.iter().copied());
        let free = |i: usize| if skipped.contains(&i) { SeatStatus::Held } else { status(i) };
        match best_seats(layout, free, count, filter) {
            Some(next) => picked = next,
            None => break,
        }
    }
    Some(picked)
}

/// A `hold_best` filter must name a tier and a section the event has: an
/// unknown one is a mistake, not a sell-out.
fn check_best_filter(e: &Event, layout: &SeatLayout, tier: Option<&str>, section: Option<&str>) -> AppResult<()> {
    let clip = |s: &str| s.chars().take(64).collect::<String>();
    if let Some(t) = tier
        && !e.tiers.iter().any(|x| x.id == t)
        && !layout.seats.iter().any(|s| s.tier == t)
    {
        return Err(AppError::BadRequest(format!("no such tier at this event: {}", clip(t))));
    }
    if let Some(sec) = section
        && !layout.rows.iter().any(|r| r.section == sec)
    {
        return Err(AppError::BadRequest(format!("no such section at this event: {}", clip(sec))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::demo;
    use crate::error::ErrorCode;

    use crate::domain::demo::EVENT_ID;
    use crate::services::testkit::{Kit, demo_settings, kit};

    /// The kit with buyer `user` admitted (the queue is open).
    async fn admitted(user: &str) -> (Kit, UserId) {
        let k = kit(demo_settings(false)).await;
        let user = UserId::from(user);
        k.queue.join(&user, EVENT_ID).await.unwrap();
        (k, user)
    }

    #[tokio::test]
    async fn holds_need_an_admission_and_change_nothing_without_one() {
        let k = kit(demo_settings(true)).await;
        let user = UserId::from("a");
        k.queue.join(&user, EVENT_ID).await.unwrap();
        let err = k.seats.hold(&user, EVENT_ID, &["A-1-1".into()]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotAdmitted);
        let err = k.seats.hold_best(&user, EVENT_ID, 2, None, None).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotAdmitted);
        assert!(k.store.snapshot(EVENT_ID).await.unwrap().taken.is_empty());
    }

    #[tokio::test]
    async fn a_hold_is_all_or_nothing_and_release_gives_back_only_ones_own() {
        let (k, a) = admitted("a").await;
        let b = UserId::from("b");
        k.queue.join(&b, EVENT_ID).await.unwrap();
        let held = k.seats.hold(&a, EVENT_ID, &["A-1-1".into(), "A-1-2".into()]).await.unwrap();
        assert_eq!(held.seats, vec!["A-1-1", "A-1-2"]);
        assert_eq!(held.version, Some(2));
        let err = k.seats.hold(&b, EVENT_ID, &["A-1-2".into(), "A-1-3".into()]).await.unwrap_err();
        assert!(matches!(&err, AppError::SeatUnavailable(taken) if taken == &["A-1-2"]), "{err:?}");
        let snapshot = k.store.snapshot(EVENT_ID).await.unwrap();
        assert_eq!(snapshot.taken.len(), 2, "nothing of the refused hold was taken");
        let released = k.seats.release(&b, EVENT_ID, &["A-1-1".into()]).await.unwrap();
        assert!(released.seats.is_empty(), "not b's to release");
        let released = k.seats.release(&a, EVENT_ID, &["A-1-1".into()]).await.unwrap();
        assert_eq!(released.seats, vec!["A-1-1"]);
        let own = k.seats.own_holds(&a, &EventId::from(EVENT_ID)).await.unwrap().unwrap();
        assert_eq!(own.seats, vec!["A-1-2"]);
        assert_eq!(k.seats.metrics.holds.get(), 1);
    }

    #[tokio::test]
    async fn holds_are_bounded_by_the_buyer_limit_and_unknown_seats_are_refused() {
        let (k, a) = admitted("a").await;
        let max = demo_settings(false).max_seats_per_buyer;
        let too_many: Vec<String> = (1..=max + 1).map(|n| format!("A-1-{n}")).collect();
        assert_eq!(k.seats.hold(&a, EVENT_ID, &too_many).await.unwrap_err().code(), ErrorCode::HoldLimit);
        assert_eq!(k.seats.hold(&a, EVENT_ID, &["Z-9-99".into()]).await.unwrap_err().code(), ErrorCode::NotFound);
        assert!(k.store.snapshot(EVENT_ID).await.unwrap().taken.is_empty());
    }

    #[tokio::test]
    async fn best_seats_are_adjacent_and_a_lagging_replica_is_overcome_by_retries() {
        let (k, a) = admitted("a").await;
        let b = UserId::from("b");
        k.queue.join(&b, EVENT_ID).await.unwrap();
        // The kit's replica never sees diffs: b's pick collides with a's and
        // must learn from the refusals.
        let first = k.seats.hold_best(&a, EVENT_ID, 2, None, None).await.unwrap();
        let second = k.seats.hold_best(&b, EVENT_ID, 2, None, None).await.unwrap();
        assert_eq!(first.seats.len(), 2);
        assert!(second.seats.iter().all(|s| !first.seats.contains(s)), "{first:?} {second:?}");
        let layout = SeatLayout::new(demo::seats());
        for held in [&first, &second] {
            let rows: HashSet<(String, String)> = held
                .seats
                .iter()
                .map(|id| {
                    let s = &layout.seats[layout.index_of(id).unwrap()];
                    (s.section.clone(), s.row.clone())
                })
                .collect();
            assert_eq!(rows.len(), 1, "one row: {held:?}");
        }
        let err = k.seats.hold_best(&a, EVENT_ID, 0, None, None).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }

    #[tokio::test]
    async fn the_rest_seatmap_shows_the_store_in_either_form() {
        let (k, a) = admitted("a").await;
        k.seats.hold(&a, EVENT_ID, &["C-3-12".into()]).await.unwrap();
        for format in [Format::Full, Format::Compact] {
            let map = k.seats.seatmap(EVENT_ID, format).await.unwrap();
            assert_eq!(map.version, 1);
            let statuses = map.statuses();
            assert_eq!(statuses.len(), demo::seats().len());
            let held: Vec<_> = statuses.iter().filter(|(_, s)| *s == SeatStatus::Held).collect();
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].0, "C-3-12");
        }
        assert_eq!(k.seats.seatmap("nope", Format::Full).await.unwrap_err().code(), ErrorCode::NotFound);
    }

    #[test]
    fn a_retry_picks_among_the_next_best() {
        let layout = crate::domain::seats::one_row(1..=3);
        let free = |_: usize| SeatStatus::Free;
        let any = BestFilter::default();
        let best = pick_best(&layout, free, 1, any, 0).unwrap();
        assert_eq!(Some(best.clone()), best_seats(&layout, free, 1, any));
        assert_eq!(layout.seats[best[0]].id, "A-1-2", "the middle seat");
        let second = pick_best(&layout, free, 1, any, 1).unwrap();
        assert_ne!(second, best);
        let third = pick_best(&layout, free, 1, any, 2).unwrap();
        assert!(third != best && third != second);
        assert_eq!(pick_best(&layout, free, 1, any, 1_000), Some(third), "the last pick when fewer are left");
        assert_eq!(pick_best(&layout, free, 2, any, 5).map(|p| p.len()), Some(2));
        assert_eq!(pick_best(&layout, |_| SeatStatus::Held, 1, any, 3), None);
    }

    #[test]
    fn best_filters_must_name_what_the_event_has() {
        let (e, layout) = (demo::event(0), SeatLayout::new(demo::seats()));
        for (tier, section) in [(None, None), (Some("a"), None), (Some("vip"), Some("C")), (None, Some("E"))] {
            assert!(check_best_filter(&e, &layout, tier, section).is_ok(), "{tier:?} {section:?}");
        }
        let err = check_best_filter(&e, &layout, Some("no-such-tier"), None).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(err.public_message().contains("tier") && err.public_message().contains("no-such-tier"), "{err}");
        let err = check_best_filter(&e, &layout, None, Some("Z|1")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(err.public_message().contains("section") && err.public_message().contains("Z|1"), "{err}");
        // A section of another case is another section; a long name is clipped.
        assert!(check_best_filter(&e, &layout, None, Some("c")).is_err());
        let long = "x".repeat(500);
        let err = check_best_filter(&e, &layout, Some(&long), None).unwrap_err();
        assert!(err.public_message().len() < 120, "{err}");
    }
}
