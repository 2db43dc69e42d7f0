//! What the seat-map coordinator and its workers say to each other (over
//! the pipe of `common::wire`): the commands of set-up, holding, settling
//! and checking, each worker's share of the run, and what its watchers and
//! holders measured.

use serde::{Deserialize, Serialize};

use crate::common::stats::Histogram;
use crate::common::wire::{Buyers, Causes, protocol};

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open watchers (each `watch`es) and admitted holders; report
    /// progress, then `Ready`.
    Open(Box<SeatsSpec>),
    /// Holders start holding and releasing at `rate_per_s` (this worker's
    /// share).
    Start { rate_per_s: f64 },
    /// Holders finish their cycle, release, and leave; answer `Stopped`.
    Stop,
    /// Where the watchers' maps are against the store's `version`; answer
    /// `At`.
    Probe { version: u64 },
    /// Compare every watcher's map with the store's (`status`, compact
    /// letters); answer `Verified`.
    Verify { version: u64, status: String },
    /// Close every socket; answer `Closed`.
    CloseSockets,
}

protocol! {
    bench: "seats",
    commands: Command,
    close: CloseSockets,
    /// Worker → coordinator, besides progress, closing and errors.
    answers: Answer {
        Ready(SeatsReadyReport),
        Stopped(HolderReport),
        At(SeatsAt),
        Verified(WatchReport),
    }
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
    /// The store's map when the run began, one status letter per seat.
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

/// How far set-up got: sockets asked for and set up, and the failures by
/// cause.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetupCounts {
    pub watchers: u64,
    pub watching: u64,
    pub holders: u64,
    pub admitted: u64,
    pub failed: u64,
    pub errors: Causes,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SeatsReadyReport {
    pub counts: SetupCounts,
    /// TCP connect + upgrade + hello, watchers and holders.
    pub connect_us: Histogram,
    /// `watch` sent → its `seatmap`.
    pub snapshot_us: Histogram,
    /// Lowest and highest snapshot version the watchers started from.
    pub versions: Option<(u64, u64)>,
}

/// What the holders did between `Start` and `Stop`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HolderReport {
    /// `Start` → `Stop`, seconds.
    pub window_s: f64,
    pub holds_sent: u64,
    pub holds_ok: u64,
    /// `seat_unavailable` answers (contention).
    pub unavailable: u64,
    pub releases_ok: u64,
    /// `released` that named no seat (the hold was already gone).
    pub releases_empty: u64,
    /// Other failures by cause (error codes, time-outs, closed sockets).
    pub errors: Causes,
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

/// Whether the watchers' maps ended equal to the store's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MapCheck {
    pub watchers: u64,
    pub open: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// A few mismatches, for a human.
    pub examples: Vec<String>,
    /// Close reasons of watchers the server (or the network) closed.
    pub closed: Causes,
}

/// How the feed went for the watchers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeedCounts {
    /// Seat maps the server pushed unasked (the watcher had fallen behind).
    pub resyncs: u64,
    /// Version gaps seen (each answered by a fresh `watch`).
    pub gaps: u64,
    pub scan_errors: u64,
    pub server_errors: Causes,
    /// Distinct `seats` frames parsed (others were byte-equal to one).
    pub frames_parsed: u64,
    /// Watchers that timed every change of our seats to the end.
    pub timed_watchers: u64,
}

/// What the watchers saw, and whether their maps ended equal to the store's.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WatchReport {
    pub check: MapCheck,
    /// Counted from `Start` to `Stop`.
    pub window_frames: u64,
    pub window_changes: u64,
    pub window_bytes: u64,
    pub window_s: f64,
    /// Over the whole run.
    pub frames: u64,
    pub changes: u64,
    pub bytes: u64,
    pub feed: FeedCounts,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::wire::Report;

    #[test]
    fn commands_and_answers_are_one_line_of_json() {
        let line = serde_json::to_string(&Command::Probe { version: 3 }).unwrap();
        assert_eq!(line, r#"{"cmd":"probe","version":3}"#);
        let at = Report::Answer(Answer::At(SeatsAt { at: 2, behind: 1, ..SeatsAt::default() }));
        let line = serde_json::to_string(&at).unwrap();
        assert!(!line.contains('\n'));
        let Report::Answer(Answer::At(back)) = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
        assert_eq!((back.at, back.behind, back.closed), (2, 1, 0));
    }
}
