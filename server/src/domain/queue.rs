//! Waiting-room policy: live settings, the admission budget, the measured
//! admission rate with its ETA band, and when a position is worth pushing.
//!
//! The Redis adapter repeats the token-bucket arithmetic in Lua (it must run
//! inside the check-and-set); the shared contract tests keep the two equal.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Queue settings of one event, changeable live by its seller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueSettings {
    /// Most buyers admitted per minute.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rate_per_min: u32,
    /// Most buyers whose shopping window is open at once.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_active: u32,
    /// Length of a shopping window after admission.
    #[schema(minimum = 10, maximum = 86_400)]
    pub window_s: u32,
    /// How long a disconnected buyer keeps their place.
    #[schema(minimum = 5, maximum = 3_600)]
    pub grace_s: u32,
    /// While paused, buyers may join but nobody is admitted.
    pub paused: bool,
    /// How long a seat hold lasts before the server releases it.
    #[schema(minimum = 10, maximum = 3_600)]
    pub hold_s: u32,
    /// Most seats one buyer may hold for the event.
    #[schema(minimum = 1, maximum = 100)]
    pub max_seats_per_buyer: u32,
    /// Nobody is admitted before the on-sale time; earlier arrivals queue.
    pub on_sale_at_ms: i64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            rate_per_min: 600,
            max_active: 1_000,
            window_s: 600,
            grace_s: 60,
            paused: false,
            hold_s: 600,
            max_seats_per_buyer: 8,
            on_sale_at_ms: 0,
        }
    }
}

/// A partial update of [`QueueSettings`]; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rate_per_min: Option<u32>,
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_active: Option<u32>,
    #[schema(minimum = 10, maximum = 86_400)]
    pub window_s: Option<u32>,
    #[schema(minimum = 5, maximum = 3_600)]
    pub grace_s: Option<u32>,
    pub paused: Option<bool>,
    #[schema(minimum = 10, maximum = 3_600)]
    pub hold_s: Option<u32>,
    #[schema(minimum = 1, maximum = 100)]
    pub max_seats_per_buyer: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} must be between {min} and {max}")]
pub struct InvalidSetting {
    pub field: &'static str,
    pub min: u32,
    pub max: u32,
}

fn check(field: &'static str, value: Option<u32>, min: u32, max: u32, current: u32) -> Result<u32, InvalidSetting> {
    match value {
        None => Ok(current),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(InvalidSetting { field, min, max }),
    }
}

impl QueueSettings {
    /// Applies a patch, refusing any value out of its range so that a bad
    /// request changes nothing.
    pub fn apply(&self, patch: &QueuePatch) -> Result<QueueSettings, InvalidSetting> {
        Ok(QueueSettings {
            rate_per_min: check("rate_per_min", patch.rate_per_min, 1, 1_000_000, self.rate_per_min)?,
            max_active: check("max_active", patch.max_active, 1, 1_000_000, self.max_active)?,
            window_s: check("window_s", patch.window_s, 10, 86_400, self.window_s)?,
            // Under 5 s a connected buyer could be taken for a ghost between
            // two presence refreshes.
            grace_s: check("grace_s", patch.grace_s, 5, 3_600, self.grace_s)?,
            paused: patch.paused.unwrap_or(self.paused),
            hold_s: check("hold_s", patch.hold_s, 10, 3_600, self.hold_s)?,
            max_seats_per_buyer: check(
                "max_seats_per_buyer",
                patch.max_seats_per_buyer,
                1,
                100,
                self.max_seats_per_buyer,
            )?,
            on_sale_at_ms: self.on_sale_at_ms,
        })
    }

    /// Whether the admitter may let anybody in right now.
    pub fn admitting(&self, now_ms: i64) -> bool {
        !self.paused && now_ms >= self.on_sale_at_ms
    }
}

/// Admission tokens: `rate_per_min` accrue per minute, at most one second's
/// worth (and at least one) is banked, so over any span the admitted count
/// stays within one second's worth of the configured rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdmissionBucket {
    pub tokens: f64,
    pub updated_ms: i64,
}

impl AdmissionBucket {
    pub fn full(rate_per_min: u32, now_ms: i64) -> Self {
        Self { tokens: Self::capacity(rate_per_min), updated_ms: now_ms }
    }

    pub fn capacity(rate_per_min: u32) -> f64 {
        (f64::from(rate_per_min) / 60.0).max(1.0)
    }

    pub fn refill(&mut self, rate_per_min: u32, now_ms: i64) {
        let elapsed = (now_ms - self.updated_ms).max(0) as f64;
        let accrued = elapsed * f64::from(rate_per_min) / 60_000.0;
        self.tokens = (self.tokens + accrued).min(Self::capacity(rate_per_min));
        self.updated_ms = now_ms.max(self.updated_ms);
    }

    /// How many buyers may be admitted now, taking the tokens for them.
    pub fn take_budget(&mut self, settings: &QueueSettings, active: u64, waiting: u64, now_ms: i64) -> u64 {
        self.refill(settings.rate_per_min, now_ms);
        if !settings.admitting(now_ms) {
            return 0;
        }
        let room = u64::from(settings.max_active).saturating_sub(active);
        let n = (self.tokens.floor() as u64).min(room).min(waiting);
        self.tokens -= n as f64;
        n
    }
}

/// Admission rate as measured by the admitter, the basis of every ETA.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateStats {
    /// Mean admissions per minute over the recent past.
    pub per_min: f64,
    /// The slowest recent pace, for the pessimistic end of the ETA band.
    pub low_per_min: f64,
    /// The fastest recent pace, for the optimistic end of the ETA band.
    pub high_per_min: f64,
}

impl RateStats {
    /// Before anything was measured: the configured rate, or what the
    /// windows let through when `max_active` binds (every window used in
    /// full), with a band that admits we do not know how fast buyers finish.
    pub fn expected(settings: &QueueSettings) -> Self {
        let turnover = f64::from(settings.max_active) * 60.0 / f64::from(settings.window_s.max(1));
        let rate = f64::from(settings.rate_per_min).min(turnover);
        Self { per_min: rate, low_per_min: rate * 0.5, high_per_min: f64::from(settings.rate_per_min).max(rate) }
    }
}

const METER_BUCKET_MS: i64 = 5_000;
const METER_BUCKETS: usize = 12;

/// Counts admissions in 5-second buckets over the last minute.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    buckets: VecDeque<(i64, u64)>,
}

impl RateMeter {
    pub fn record(&mut self, now_ms: i64, admitted: u64) {
        let start = now_ms - now_ms.rem_euclid(METER_BUCKET_MS);
        match self.buckets.back_mut() {
            Some((s, n)) if *s == start => *n += admitted,
            _ => self.buckets.push_back((start, admitted)),
        }
        while self.buckets.len() > METER_BUCKETS + 1 {
            self.buckets.pop_front();
        }
    }

    /// Rates over complete buckets; the configured rate until at least two
    /// buckets were seen, or while admissions have stopped (a pause, a full
    /// house) so that waiting buyers still see a finite estimate.
    pub fn stats(&mut self, now_ms: i64, settings: &QueueSettings) -> RateStats {
        self.record(now_ms, 0);
        let current = now_ms - now_ms.rem_euclid(METER_BUCKET_MS);
        let oldest = current - METER_BUCKET_MS * METER_BUCKETS as i64;
        let complete: Vec<f64> = self
            .buckets
            .iter()
            .filter(|(s, _)| *s < current && *s >= oldest)
            .map(|(_, n)| *n as f64 * 60_000.0 / METER_BUCKET_MS as f64)
            .collect();
        let expected = RateStats::expected(settings);
        if complete.len() < 2 {
            return expected;
        }
        let mean = complete.iter().sum::<f64>() / complete.len() as f64;
        if mean <= 0.0 {
            return expected;
        }
        let low = complete.iter().copied().fold(f64::INFINITY, f64::min).max(mean * 0.25);
        let high = complete.iter().copied().fold(0.0, f64::max);
        RateStats { per_min: mean, low_per_min: low, high_per_min: high.max(mean) }
    }
}

/// Estimated wait, with the band it probably falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Eta {
    pub eta_s: u64,
    pub low_s: u64,
    pub high_s: u64,
}

/// What an ETA says when no pace is known at all (never with valid
/// settings): far off, yet small enough that adding to it cannot overflow.
const UNKNOWN_ETA_S: u64 = u64::MAX / 2;

/// Seconds until `position` is reached, `start_ms` from now, at `per_min`.
fn seconds_at(start_ms: i64, position: u64, per_min: f64) -> u64 {
    if per_min.is_nan() || per_min <= 0.0 {
        return UNKNOWN_ETA_S;
    }
    // Float-to-int casts saturate, so a huge estimate stays huge.
    (start_ms as f64 / 1_000.0 + position as f64 * 60.0 / per_min).ceil() as u64
}

/// The ETA band of `position` at `now_ms`. Admissions start at the on-sale
/// time, so before it the wait is the time left until then plus what the
/// position needs at the expected pace from then on. A pause does not
/// change it: the band says how long once admissions resume.
pub fn eta(position: u64, stats: &RateStats, settings: &QueueSettings, now_ms: i64) -> Eta {
    let start_ms = settings.on_sale_at_ms.saturating_sub(now_ms).max(0);
    Eta {
        eta_s: seconds_at(start_ms, position, stats.per_min),
        low_s: seconds_at(start_ms, position, stats.high_per_min),
        high_s: seconds_at(start_ms, position, stats.low_per_min),
    }
}

/// How stale a recorded "last seen" may be. A place is dropped once unseen
/// for longer than the grace plus this, so it is kept for the whole grace.
pub const PRESENCE_RESOLUTION_MS: i64 = 1_000;

/// The time before which a waiting buyer not seen since is a ghost.
pub fn ghost_cutoff(now_ms: i64, grace_s: u32) -> i64 {
    now_ms - i64::from(grace_s) * 1000 - PRESENCE_RESOLUTION_MS
}

/// A waiting socket hears from us at least this often (the contract).
pub const MAX_PUSH_GAP_MS: i64 = 2_000;
/// Room left for a tick that runs late (scheduling, a slow store call).
const PUSH_SLACK_MS: i64 = 250;

/// The position last pushed to a waiting buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastPush {
    pub position: u64,
    pub at_ms: i64,
}

/// Push when waiting for the next tick (`tick_ms` away) could break the
/// 2 s promise, or at once when the position moved a lot: by a tenth of
/// itself, or at all near the front of the line.
pub fn should_push(last: Option<LastPush>, position: u64, now_ms: i64, tick_ms: i64) -> bool {
    let Some(last) = last else { return true };
    if now_ms - last.at_ms + tick_ms + PUSH_SLACK_MS > MAX_PUSH_GAP_MS {
        return true;
    }
    if last.position == position {
        return false;
    }
    position <= 10 || last.position.abs_diff(position) * 10 >= last.position
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, max_active: u32) -> QueueSettings {
        QueueSettings { rate_per_min: rate, max_active, ..QueueSettings::default() }
    }

    #[test]
    fn bucket_admits_at_most_the_rate_plus_one_second() {
        let s = settings(600, 1_000_000);
        let mut bucket = AdmissionBucket::full(600, 0);
        let mut admitted = 0;
        for step in 0..=600 {
            admitted += bucket.take_budget(&s, 0, u64::MAX, step * 100);
        }
        // 60 s at 10/s, plus the one-second bank it started with.
        assert_eq!(admitted, 600 + 10);
    }

    #[test]
    fn bucket_respects_max_active_and_waiting() {
        let s = settings(6_000, 5);
        let mut bucket = AdmissionBucket::full(6_000, 0);
        assert_eq!(bucket.take_budget(&s, 3, 100, 0), 2);
        assert_eq!(bucket.take_budget(&s, 0, 1, 0), 1);
    }

    #[test]
    fn slow_rate_still_admits_one_at_a_time() {
        let s = settings(6, 10);
        let mut bucket = AdmissionBucket { tokens: 0.0, updated_ms: 0 };
        assert_eq!(bucket.take_budget(&s, 0, 10, 9_999), 0);
        assert_eq!(bucket.take_budget(&s, 0, 10, 10_000), 1);
        assert_eq!(bucket.take_budget(&s, 0, 10, 10_001), 0);
    }

    #[test]
    fn paused_or_not_yet_on_sale_admits_nobody() {
        let mut s = settings(600, 10);
        s.paused = true;
        let mut bucket = AdmissionBucket::full(600, 0);
        assert_eq!(bucket.take_budget(&s, 0, 10, 1_000), 0);
        s.paused = false;
        s.on_sale_at_ms = 5_000;
        assert_eq!(bucket.take_budget(&s, 0, 10, 4_999), 0);
        assert!(bucket.take_budget(&s, 0, 10, 5_000) > 0);
    }

    #[test]
    fn patch_rejects_out_of_range_and_changes_nothing() {
        let s = QueueSettings::default();
        let err = s.apply(&QueuePatch { rate_per_min: Some(0), ..Default::default() }).unwrap_err();
        assert_eq!(err.field, "rate_per_min");
        let ok = s.apply(&QueuePatch { max_active: Some(7), paused: Some(true), ..Default::default() }).unwrap();
        assert_eq!(ok.max_active, 7);
        assert!(ok.paused);
        assert_eq!(ok.rate_per_min, s.rate_per_min);
    }

    #[test]
    fn meter_uses_configured_rate_until_measured() {
        let s = settings(120, 10);
        let mut meter = RateMeter::default();
        assert_eq!(meter.stats(0, &s), RateStats::expected(&s));
        // 10 admissions every 5 s = 120/min, steady.
        for t in (0..30_000).step_by(5_000) {
            meter.record(t, 10);
        }
        let stats = meter.stats(30_000, &s);
        assert!((stats.per_min - 120.0).abs() < 1e-9, "{stats:?}");
        assert_eq!(stats.low_per_min, 120.0);
        assert_eq!(stats.high_per_min, 120.0);
    }

    #[test]
    fn expected_rate_is_bounded_by_window_turnover() {
        // 10 windows of 600 s let at most one buyer in a minute, whatever the rate.
        let s = QueueSettings { rate_per_min: 600, max_active: 10, window_s: 600, ..QueueSettings::default() };
        let stats = RateStats::expected(&s);
        assert_eq!(stats.per_min, 1.0);
        assert_eq!(stats.high_per_min, 600.0, "buyers who finish early let others in sooner");
        assert_eq!(eta(30, &stats, &s, 0).eta_s, 1_800);
    }

    #[test]
    fn meter_band_spans_uneven_pace() {
        let s = settings(120, 10);
        let mut meter = RateMeter::default();
        meter.record(0, 5);
        meter.record(5_000, 15);
        let stats = meter.stats(10_000, &s);
        assert_eq!(stats.per_min, 120.0);
        assert_eq!(stats.low_per_min, 60.0);
        assert_eq!(stats.high_per_min, 180.0);
        let e = eta(60, &stats, &s, 0);
        assert_eq!(e, Eta { eta_s: 30, low_s: 20, high_s: 60 });
    }

    #[test]
    fn eta_before_the_on_sale_counts_from_the_on_sale() {
        const NOW: i64 = 1_700_000_000_000;
        // 120/min expected, the band from half that to the full rate.
        let s = QueueSettings { on_sale_at_ms: NOW + 3_600_000, ..settings(120, 10_000) };
        let stats = RateStats::expected(&s);
        assert_eq!(eta(1, &stats, &s, NOW), Eta { eta_s: 3_601, low_s: 3_601, high_s: 3_601 });
        assert_eq!(eta(60, &stats, &s, NOW), Eta { eta_s: 3_630, low_s: 3_630, high_s: 3_660 });
        // From the on-sale time on, only the position counts.
        for now in [NOW + 3_600_000, NOW + 3_600_001, NOW + 7_200_000] {
            assert_eq!(eta(60, &stats, &s, now), Eta { eta_s: 30, low_s: 30, high_s: 60 });
        }
        // A part of a second left still shows as a second.
        assert_eq!(eta(60, &stats, &s, NOW + 3_599_999).eta_s, 31);
    }

    /// Positions 1..N, on-sale in the past, now or ahead, paused or not,
    /// expected and measured paces: the band is ordered, starts no earlier
    /// than the on-sale, adds exactly the time left to the on-sale, never
    /// shrinks further back in line and never grows as time passes.
    #[test]
    fn eta_band_holds_for_every_position_and_on_sale_time() {
        const NOW: i64 = 1_700_000_000_000;
        let mut measured = RateMeter::default();
        measured.record(NOW - 10_000, 5);
        measured.record(NOW - 5_000, 15);
        let offsets_ms = [-86_400_000, -1, 0, 1, 999, 1_000, 1_001, 59_999, 3_600_000, 30 * 86_400_000];
        for (rate, max_active) in [(1, 1), (120, 200), (600, 10), (1_000_000, 1_000_000)] {
            for paused in [false, true] {
                for offset_ms in offsets_ms {
                    let s = QueueSettings { paused, on_sale_at_ms: NOW + offset_ms, ..settings(rate, max_active) };
                    let paces = [RateStats::expected(&s), measured.clone().stats(NOW, &s)];
                    for stats in paces {
                        let left_ms = offset_ms.max(0);
                        let mut previous = Eta { eta_s: 0, low_s: 0, high_s: 0 };
                        for position in 1..=2_000 {
                            let e = eta(position, &stats, &s, NOW);
                            let ctx = format!("rate {rate}, paused {paused}, on-sale in {offset_ms} ms, #{position}");
                            assert!(e.low_s <= e.eta_s && e.eta_s <= e.high_s, "{ctx}: {e:?}");
                            assert!(e.low_s as i64 * 1_000 >= left_ms, "{ctx}: {e:?} before the on-sale");
                            let at_on_sale = eta(position, &stats, &s, NOW + left_ms);
                            let added = e.eta_s - at_on_sale.eta_s;
                            let left_s = left_ms as f64 / 1_000.0;
                            assert!(
                                added as f64 >= left_s.floor() && added as f64 <= left_s.ceil(),
                                "{ctx}: adds {added} s for {left_ms} ms"
                            );
                            assert!(e.eta_s >= previous.eta_s && e.low_s >= previous.low_s, "{ctx}");
                            assert!(e.high_s >= previous.high_s, "{ctx}");
                            previous = e;
                            let later = eta(position, &stats, &s, NOW + 1_000);
                            assert!(later.eta_s <= e.eta_s && later.high_s <= e.high_s, "{ctx}: grew with time");
                            assert_eq!(
                                eta(position, &stats, &QueueSettings { paused: !paused, ..s }, NOW),
                                e,
                                "{ctx}: a pause does not move the band"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn eta_without_a_pace_is_far_off_and_does_not_overflow() {
        let s = QueueSettings { on_sale_at_ms: i64::MAX, ..QueueSettings::default() };
        let none = RateStats { per_min: 0.0, low_per_min: f64::NAN, high_per_min: -1.0 };
        let e = eta(u64::MAX, &none, &s, i64::MIN);
        assert_eq!(e, Eta { eta_s: UNKNOWN_ETA_S, low_s: UNKNOWN_ETA_S, high_s: UNKNOWN_ETA_S });
        let far = eta(u64::MAX, &RateStats::expected(&s), &s, i64::MIN);
        assert!(far.low_s <= far.eta_s && far.eta_s <= far.high_s, "{far:?}");
    }

    #[test]
    fn push_policy() {
        let last = Some(LastPush { position: 1_000, at_ms: 0 });
        assert!(should_push(None, 5, 0, 500));
        assert!(!should_push(last, 995, 100, 500), "small move waits for the periodic push");
        assert!(should_push(last, 900, 100, 500), "a tenth is a big move");
        assert!(should_push(last, 1_000, 1_500, 500), "periodic push");
        let near = Some(LastPush { position: 8, at_ms: 0 });
        assert!(should_push(near, 7, 1, 500), "near the front every step shows");
        assert!(!should_push(near, 8, 1, 500));
    }

    /// Ticks that run up to 200 ms late never stretch a gap past 2 s.
    #[test]
    fn periodic_pushes_keep_the_promise_under_jittery_ticks() {
        for tick in [100_i64, 250, 500, 1_000] {
            let mut last = LastPush { position: 50, at_ms: 0 };
            let mut worst = 0;
            let mut seed = 0x9e37_79b9_u64;
            let mut scheduled = 0;
            while scheduled < 120_000 {
                scheduled += tick;
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let now = scheduled + (seed >> 33) as i64 % 200;
                if should_push(Some(last), 50, now, tick) {
                    worst = worst.max(now - last.at_ms);
                    last = LastPush { position: 50, at_ms: now };
                }
            }
            assert!(worst < MAX_PUSH_GAP_MS, "tick {tick} ms: worst gap {worst} ms");
            assert!(worst > MAX_PUSH_GAP_MS / 2, "tick {tick} ms: pushes are not wastefully frequent ({worst} ms)");
        }
    }
}
