//! Seat use cases: watching an event's live map, holding named or best
//! seats, releasing them. Holds need an admission pass for the event; the
//! store decides atomically; the bus tells everyone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::seatmap::{Format, seatmap_frame};
use crate::app::Ctx;
use crate::clock::rfc3339;
use crate::domain::event::Event;
use crate::domain::seats::{BestFilter, HoldRequestError, SeatLayout, SeatStatus, best_seats, check_seat_ids};
use crate::domain::{EventId, UserId};
use crate::error::{AppError, AppResult};
use crate::store::seats::HoldRefused;
use crate::ws::hub::Peer;
use crate::ws::protocol::Req;

/// `hold_best` tries this often when someone was faster: each refusal names
/// seats the node's replica did not know were taken yet, so a buyer racing
/// up to this many others (or their own other tabs) still gets seats.
const BEST_ATTEMPTS: u64 = 8;
/// On a retry, `hold_best` takes one of up to this many next-best picks at
/// random (fewer on early retries).
const MAX_SPREAD: u64 = 32;
/// A `hold_best` count beyond any venue's row is a mistake, not a limit.
const MAX_BEST_COUNT: u32 = 1_000;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "held")]
pub struct HeldView {
    pub event: EventId,
    pub seats: Vec<String>,
    pub expires_at: String,
    /// The seat-map version right after this hold (an addition): diffs up
    /// to it may still arrive and already include these seats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "released")]
pub struct ReleasedView {
    pub event: EventId,
    pub seats: Vec<String>,
    /// The seat-map version right after the release (an addition).
    pub version: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "hold_expired")]
pub struct HoldExpiredView<'a> {
    pub event: &'a str,
    pub seats: &'a [String],
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "unwatched")]
pub struct UnwatchedView<'a> {
    pub event: &'a str,
}

impl Ctx {
    /// The seat layout of an event's venue, loaded once per node.
    pub async fn layout(&self, event: &Event) -> AppResult<Arc<SeatLayout>> {
        if let Some(layout) = self.catalog.layout(&event.venue_id) {
            return Ok(layout);
        }
        let layout = Arc::new(SeatLayout::new(self.sql.venue_seats(&event.venue_id).await?));
        self.catalog.set_layout(&event.venue_id, layout.clone());
        Ok(layout)
    }

    /// Makes sure this node keeps a live replica of the event's seats.
    pub async fn go_live(&self, event: &str) -> AppResult<(EventId, Arc<Event>)> {
        let (id, e) = self.find_event(event)?;
        if !self.feed.is_live(&id) {
            let layout = self.layout(&e).await?;
            let snapshot = self.seats.snapshot(&id).await?;
            self.feed.install(&id, e.clone(), layout, &snapshot, self.clock.now_ms());
        }
        Ok((id, e))
    }

    /// Starts watching: the snapshot (answering `req`) and then diffs are
    /// queued to the socket.
    pub async fn watch(&self, peer: &Arc<Peer>, event: &str, format: Format, req: Option<&Req>) -> AppResult<EventId> {
        // An event dropped as idle between the two calls is rare; loading
        // it again is the whole remedy.
        for _ in 0..2 {
            let (id, _) = self.go_live(event).await?;
            if self.feed.watch(&id, peer, format, req) {
                return Ok(id);
            }
        }
        Err(AppError::Unavailable)
    }

    /// The seat map as the store has it now (for REST clients).
    pub async fn seatmap(&self, event: &str, format: Format) -> AppResult<String> {
        let (id, e) = self.find_event(event)?;
        let layout = self.layout(&e).await?;
        let snapshot = self.seats.snapshot(&id).await?;
        let mut status = vec![SeatStatus::Free; layout.len()];
        for (seat, s) in &snapshot.taken {
            if let Some(i) = layout.index_of(seat) {
                status[i] = *s;
            }
        }
        Ok(seatmap_frame(&e, snapshot.version, &layout, &status, format, None))
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
    ) -> AppResult<HeldView> {
        let max = e.queue.max_seats_per_buyer;
        match self.seats.hold(id, user, &seats, until, max).await? {
            Ok(held) => {
                self.metrics.holds.inc();
                Ok(HeldView {
                    event: id.clone(),
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
    pub async fn hold(&self, user: &UserId, event: &str, seats: &[String]) -> AppResult<HeldView> {
        let (id, window_end) = self.require_admission(user, event).await?;
        let (_, e) = self.find_event(&id)?;
        let layout = self.layout(&e).await?;
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
    ) -> AppResult<HeldView> {
        if count == 0 || count > MAX_BEST_COUNT {
            return Err(HoldRequestError::BadCount(MAX_BEST_COUNT).into());
        }
        let (id, window_end) = self.require_admission(user, event).await?;
        let (_, e) = self.go_live(&id).await?;
        if count > e.queue.max_seats_per_buyer {
            return Err(HoldRequestError::TooMany(e.queue.max_seats_per_buyer).into());
        }
        let (layout, _) = self.feed.view(&id).ok_or(AppError::Unavailable)?;
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
            let (layout, replica) = self.feed.view(&id).ok_or(AppError::Unavailable)?;
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
    pub async fn release(&self, user: &UserId, event: &str, seats: &[String]) -> AppResult<ReleasedView> {
        let (id, e) = self.find_event(event)?;
        let layout = self.layout(&e).await?;
        // Releasing is never limited by the hold limit: check ids only.
        check_seat_ids(&layout, seats, u32::MAX)?;
        let released = self.seats.release(&id, user, seats).await?;
        Ok(ReleasedView { event: id, seats: released.seats, version: released.version })
    }

    /// The buyer's current holds at an event as one `held` message, so a
    /// client that reconnects or reloads knows which seats are its own.
    pub async fn own_holds(&self, user: &UserId, id: &EventId) -> AppResult<Option<HeldView>> {
        let (seats, earliest) = self.seats.holds_of(id, user).await?;
        Ok(earliest.filter(|_| !seats.is_empty()).map(|until| HeldView {
            event: id.clone(),
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
