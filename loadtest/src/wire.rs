//! What the coordinator and its worker processes say to each other: one
//! JSON object per line, commands on the worker's stdin, reports on its
//! stdout (its stderr is for humans). Timestamps that cross processes are
//! Unix microseconds; everything else is relative.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::stats::Histogram;

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open sockets, join each, report progress and then `Joined`.
    OpenSockets(CrowdSpec),
    /// From now on, push gaps count towards the hold figures.
    HoldStart,
    /// Stop counting; answer `Held`.
    HoldEnd,
    /// Close every socket; answer `Closed`.
    CloseSockets,
    /// Start polling buyers; answer `PollReady` once all have joined.
    StartPolling(PollSpec),
    /// Stop polling; answer `Polled`.
    StopPolling,
    /// Seat-map benchmark: open watchers (each `watch`es) and admitted
    /// holders; report progress, then `SeatsReady`.
    SeatsOpen(Box<SeatsSpec>),
    /// Holders start holding and releasing at `rate_per_s` (this worker's
    /// share).
    SeatsStart { rate_per_s: f64 },
    /// Holders finish their cycle, release, and leave; answer `SeatsStopped`.
    SeatsStop,
    /// Where the watchers' maps are against the store's `version`; answer
    /// `SeatsAt`.
    SeatsProbe { version: u64 },
    /// Compare every watcher's map with the store's; answer `SeatsVerified`.
    SeatsVerify { version: u64, status: String },
}

/// Who this worker's buyers are and where they connect from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Buyers {
    pub server: SocketAddr,
    pub host: String,
    pub event: String,
    /// HS256 secret; sent over the pipe rather than argv so `ps` never shows it.
    pub secret: String,
    /// Buyer `i` is user `{user_prefix}{i}`.
    pub user_prefix: String,
    pub first: u64,
    pub count: u64,
    /// Buyer `i` binds to `sources[i % len]`, the same spread in every worker.
    pub sources: Vec<Ipv4Addr>,
    /// Connections being set up at once in this process.
    pub max_inflight: usize,
    /// Every buyer gives up and closes after this long, whatever happens.
    pub max_life_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrowdSpec {
    pub buyers: Buyers,
    /// Stop reporting progress and send `Joined` after this long, even if
    /// some sockets are still connecting.
    pub ramp_deadline_ms: u64,
}

/// One worker's part of the seat-map benchmark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeatsSpec {
    /// Buyers who only watch the map.
    pub watchers: Buyers,
    /// Buyers who join (admitted at once), then hold and release seats.
    pub holders: Buyers,
    /// Seat ids in compact-map order (the order of `status`).
    pub ids: Vec<String>,
    /// The store's map when the run began, one letter per seat.
    pub initial: String,
    /// This worker owns (is the only one to hold) the seats whose index is
    /// `worker` modulo `workers`, so it knows the exact order of their
    /// changes and can time what its watchers see against its holders.
    pub worker: usize,
    pub workers: usize,
    /// A hold is released after a uniformly random time in this range.
    pub hold_ms: (u64, u64),
    pub ramp_deadline_ms: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollSpec {
    pub buyers: Buyers,
    pub interval_ms: u64,
    pub ramp_deadline_ms: u64,
}

/// Worker → coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Report {
    Progress { connected: u64, joined: u64, failed: u64 },
    Joined(JoinReport),
    Held(HoldReport),
    Closed { closed: u64, forced: u64 },
    PollReady { ready: u64, failed: u64, errors: BTreeMap<String, u64> },
    Polled(PollReport),
    SeatsReady(SeatsReadyReport),
    SeatsStopped(HolderReport),
    SeatsAt(SeatsAt),
    SeatsVerified(WatchReport),
    Error { message: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SeatsReadyReport {
    pub watchers: u64,
    pub watching: u64,
    pub holders: u64,
    pub admitted: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    /// TCP connect + upgrade + hello, watchers and holders.
    pub connect_us: Histogram,
    /// `watch` sent → its `seatmap`.
    pub snapshot_us: Histogram,
    /// Lowest and highest snapshot version the watchers started from.
    pub versions: Option<(u64, u64)>,
}

/// What the holders did between `SeatsStart` and `SeatsStop`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HolderReport {
    /// `SeatsStart` → `SeatsStop`, seconds.
    pub window_s: f64,
    pub holds_sent: u64,
    pub holds_ok: u64,
    /// `seat_unavailable` answers (contention).
    pub unavailable: u64,
    pub releases_ok: u64,
    /// `released` that named no seat (the hold was already gone).
    pub releases_empty: u64,
    /// Other failures by cause (error codes, time-outs, closed sockets).
    pub errors: BTreeMap<String, u64>,
    /// Pacing tokens dropped because every holder was busy (the rate was
    /// more than the holders could do).
    pub tokens_dropped: u64,
    /// Times a holder found none of this worker's seats free.
    pub no_free_seat: u64,
    pub hold_us: Histogram,
    pub release_us: Histogram,
    /// Holders still in a cycle when stopping gave up.
    pub stuck: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SeatsAt {
    pub at: u64,
    pub behind: u64,
    pub ahead: u64,
    /// Waiting for a fresh snapshot (after a gap).
    pub awaiting: u64,
    pub closed: u64,
}

/// What the watchers saw, and whether their maps ended equal to the store's.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WatchReport {
    pub watchers: u64,
    pub open: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// A few mismatches, for a human.
    pub examples: Vec<String>,
    /// Close reasons of watchers the server (or the network) closed.
    pub closed: BTreeMap<String, u64>,
    /// Counted from `SeatsStart` to `SeatsStop`.
    pub window_frames: u64,
    pub window_changes: u64,
    pub window_bytes: u64,
    pub window_s: f64,
    /// Over the whole run.
    pub frames: u64,
    pub changes: u64,
    /// Seat maps the server pushed unasked (the watcher had fallen behind).
    pub resyncs: u64,
    /// Version gaps seen (each answered by a fresh `watch`).
    pub gaps: u64,
    pub scan_errors: u64,
    pub server_errors: BTreeMap<String, u64>,
    /// Distinct `seats` frames parsed (others were byte-equal to one).
    pub frames_parsed: u64,
    /// Watchers that timed every change of our seats to the end.
    pub timed_watchers: u64,
    /// A watched change of our seat → the holder's `held`/`released` reply.
    pub delay_us: Histogram,
    /// The same from when the holder sent its request.
    pub delay_from_send_us: Histogram,
    /// Changes seen before the holder had its reply (counted as 0 above).
    pub before_reply: u64,
    /// Changes that did not fit our holders' record (the watcher stopped
    /// timing); should be 0.
    pub timing_anomalies: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JoinReport {
    pub requested: u64,
    pub joined: u64,
    pub failed: u64,
    /// Answered `admitted` instead of waiting (the event was not paused?).
    pub admitted: u64,
    /// Still connecting or joining when the ramp deadline passed.
    pub pending: u64,
    /// Failure causes and how often each happened.
    pub errors: BTreeMap<String, u64>,
    /// TCP connect + WebSocket upgrade + hello.
    pub connect_us: Histogram,
    /// `join` sent → its reply received.
    pub join_us: Histogram,
    pub first_join_sent_unix_us: Option<u64>,
    pub last_join_reply_unix_us: Option<u64>,
    pub first_connect_unix_us: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HoldReport {
    /// Sockets still waiting at the end of the hold.
    pub waiting: u64,
    /// Sockets the server closed or dropped from the line during the hold.
    pub lost: u64,
    /// Push gaps that ended before the hold started (during the surge).
    pub ramp_gap_us: Histogram,
    /// Push gaps that ended during the hold.
    pub hold_gap_us: Histogram,
    /// Each waiting socket's longest silence in the hold, counting the
    /// silence still running when it ended.
    pub socket_max_gap_us: Histogram,
    /// Sockets whose longest silence exceeded the 2 s promise.
    pub over_2s: u64,
    pub pushes: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PollReport {
    pub ready: u64,
    pub failed: u64,
    pub post_us: Histogram,
    pub get_us: Histogram,
    pub ok: u64,
    pub bad_status: u64,
    pub io_errors: u64,
    pub reconnects: u64,
    pub errors: BTreeMap<String, u64>,
}

pub fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_reports_are_one_line_of_json() {
        let line = serde_json::to_string(&Command::HoldStart).unwrap();
        assert_eq!(line, r#"{"cmd":"hold_start"}"#);
        let r = Report::Progress { connected: 1, joined: 2, failed: 3 };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert!(matches!(serde_json::from_str(&line).unwrap(), Report::Progress { joined: 2, .. }));
    }
}
