//! What a coordinator and its worker processes say to each other, whatever
//! the benchmark: one JSON object per line, commands on the worker's stdin,
//! reports on its stdout (its stderr is for humans). Each benchmark brings
//! its own commands and answers (`Commands`); progress, closing and errors
//! are the same for all. Also who a worker's buyers are (`Buyers`).
//! Timestamps that cross processes are Unix microseconds; everything else
//! is relative.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::common::host;

/// A benchmark's commands to its workers.
pub trait Commands: Serialize + DeserializeOwned {
    /// The hidden `worker` subcommand's argument that serves them.
    const BENCH: &'static str;
    /// Closes every socket; answered by `Report::Closed`.
    const CLOSE_SOCKETS: Self;
    /// What the workers answer besides progress, closing and errors.
    type Answer: Serialize + DeserializeOwned + Send + 'static;
}

/// Declares a benchmark's side of the pipe: `Commands` for its command
/// type (the name its workers are started by, the command that closes
/// every socket) and its answer enum, whose every variant carries a report
/// type of its own, so that a coordinator asks for answers by their type
/// (`Workers::answers::<JoinReport>`).
macro_rules! protocol {
    (
        bench: $bench:literal,
        commands: $cmd:ident,
        close: $close:ident,
        $(#[$doc:meta])*
        answers: $answer:ident { $($(#[$vdoc:meta])* $variant:ident($report:ty)),+ $(,)? }
    ) => {
        impl $crate::common::wire::Commands for $cmd {
            const BENCH: &'static str = $bench;
            const CLOSE_SOCKETS: Self = $cmd::$close;
            type Answer = $answer;
        }

        $(#[$doc])*
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "answer", rename_all = "snake_case")]
        pub enum $answer {
            $($(#[$vdoc])* $variant($report)),+
        }

        $(impl TryFrom<$answer> for $report {
            type Error = $answer;

            fn try_from(a: $answer) -> Result<Self, $answer> {
                match a {
                    $answer::$variant(r) => Ok(r),
                    other => Err(other),
                }
            }
        })+
    };
}
pub(crate) use protocol;

/// Worker → coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Report<A> {
    /// Sockets set up so far, about once a second while they are.
    Progress {
        connected: u64,
        joined: u64,
        failed: u64,
    },
    Closed(Closed),
    Error {
        message: String,
    },
    /// The benchmark's own answer (tagged `answer`).
    Answer(A),
}

/// How the sockets of a worker ended: closed politely, or cut off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub closed: u64,
    pub forced: u64,
}

/// A worker's failures by cause.
pub type Causes = BTreeMap<String, u64>;

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

/// One buyer of a worker.
pub struct Buyer {
    /// Its place among this worker's buyers.
    pub slot: usize,
    /// Its number in the run.
    pub index: u64,
    pub user: String,
    pub source: Ipv4Addr,
}

impl Buyers {
    /// Refuses buyers that have nowhere to connect from, or that (with
    /// `others` sockets besides) would not fit in this process's files.
    pub fn check(&self, others: u64) -> anyhow::Result<()> {
        host::check_fd_budget(self.count + others)?;
        anyhow::ensure!(!self.sources.is_empty(), "no source addresses");
        Ok(())
    }

    pub fn each(&self) -> impl Iterator<Item = Buyer> + '_ {
        (0..self.count).map(|k| {
            let index = self.first + k;
            Buyer {
                slot: k as usize,
                index,
                user: format!("{}{index}", self.user_prefix),
                source: self.sources[(index % self.sources.len() as u64) as usize],
            }
        })
    }

    /// The start of every buyer's socket URL; its token follows.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws?token=", self.host)
    }
}

pub fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(tag = "answer", rename_all = "snake_case")]
    enum Answer {
        Done(Closed),
        Counted { n: u64 },
    }

    #[test]
    fn reports_are_one_line_of_json() {
        let r = Report::<()>::Progress { connected: 1, joined: 2, failed: 3 };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert!(matches!(serde_json::from_str(&line).unwrap(), Report::<()>::Progress { joined: 2, .. }));
        let line = serde_json::to_string(&Report::Answer(Answer::Counted { n: 7 })).unwrap();
        assert_eq!(line, r#"{"ev":"answer","answer":"counted","n":7}"#);
        let back: Report<Answer> = serde_json::from_str(&line).unwrap();
        assert!(matches!(back, Report::Answer(Answer::Counted { n: 7 })));
        let done = Report::Answer(Answer::Done(Closed { closed: 3, forced: 1 }));
        let back: Report<Answer> = serde_json::from_str(&serde_json::to_string(&done).unwrap()).unwrap();
        assert!(matches!(back, Report::Answer(Answer::Done(Closed { closed: 3, forced: 1 }))));
    }

    #[test]
    fn buyers_spread_over_the_source_addresses() {
        let b = Buyers {
            server: "127.0.0.1:1".parse().unwrap(),
            host: "127.0.0.1:1".into(),
            event: "e".into(),
            secret: String::new(),
            user_prefix: "u-".into(),
            first: 10,
            count: 3,
            sources: vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
            max_inflight: 1,
            max_life_ms: 1,
        };
        let all: Vec<(usize, u64, String, Ipv4Addr)> = b.each().map(|x| (x.slot, x.index, x.user, x.source)).collect();
        assert_eq!(all[0], (0, 10, "u-10".into(), Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(all[2], (2, 12, "u-12".into(), Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(b.ws_url(), "ws://127.0.0.1:1/ws?token=");
    }
}
