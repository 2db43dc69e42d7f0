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
    Error { message: String },
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
