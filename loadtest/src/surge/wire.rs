//! What the surge coordinator and its workers say to each other (over the
//! pipe of `common::wire`): the commands of the socket and polling phases,
//! who joins and polls, and what each phase measured.

use serde::{Deserialize, Serialize};

use crate::common::stats::Histogram;
use crate::common::wire::{Buyers, Causes, protocol};

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
}

protocol! {
    bench: "surge",
    commands: Command,
    close: CloseSockets,
    /// Worker → coordinator, besides progress, closing and errors.
    answers: Answer {
        Joined(JoinReport),
        Held(HoldReport),
        PollReady(PollReady),
        Polled(PollReport),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrowdSpec {
    pub buyers: Buyers,
    /// Stop reporting progress and send `Joined` after this long, even if
    /// some sockets are still connecting.
    pub ramp_deadline_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollSpec {
    pub buyers: Buyers,
    pub interval_ms: u64,
    pub ramp_deadline_ms: u64,
}

/// How the joins went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinCounts {
    pub requested: u64,
    pub joined: u64,
    pub failed: u64,
    /// Answered `admitted` instead of waiting (the event was not paused?).
    pub admitted: u64,
    /// Still connecting or joining when the ramp deadline passed.
    pub pending: u64,
    /// Failure causes and how often each happened.
    pub errors: Causes,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JoinReport {
    pub counts: JoinCounts,
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

/// The polling buyers that joined (`POST …/queue`) and those that could not.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PollReady {
    pub ready: u64,
    pub failed: u64,
    pub errors: Causes,
}

/// What went wrong for the polling buyers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PollFaults {
    /// Answers other than 2xx.
    pub bad_status: u64,
    /// Requests whose connection failed or timed out.
    pub io_errors: u64,
    pub reconnects: u64,
    pub errors: Causes,
}

/// What the polling buyers did; also their running counts.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PollReport {
    pub ready: u64,
    pub failed: u64,
    pub post_us: Histogram,
    pub get_us: Histogram,
    pub ok: u64,
    pub faults: PollFaults,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::wire::Report;

    #[test]
    fn commands_and_reports_are_one_line_of_json() {
        let line = serde_json::to_string(&Command::HoldStart).unwrap();
        assert_eq!(line, r#"{"cmd":"hold_start"}"#);
        let r = Report::<Answer>::Progress { connected: 1, joined: 2, failed: 3 };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert!(matches!(serde_json::from_str(&line).unwrap(), Report::<Answer>::Progress { joined: 2, .. }));
        let mut joined = JoinReport::default();
        joined.counts.joined = 5;
        joined.join_us.record(1_234);
        let line = serde_json::to_string(&Report::Answer(Answer::Joined(joined))).unwrap();
        assert!(!line.contains('\n'));
        let Report::Answer(Answer::Joined(back)) = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
        assert_eq!((back.counts.joined, back.join_us.max()), (5, Some(1_234)));
    }
}
