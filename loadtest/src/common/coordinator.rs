//! What the coordinators of both benchmarks (`surge`, `seats`) do alike
//! around their own phases: settle where the load goes and comes from and
//! whether this machine can carry it, name and split the run's buyers over
//! the worker processes, talk to the server as the event's seller and give
//! the seller their queue settings back afterwards (also on error or
//! Ctrl-C), and keep the run's clock for phase marks and `/metrics`
//! readings. The workers themselves are `procs`; the reports, `report`
//! and `page`.

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::common::args::{RunArgs, SecretArgs};
use crate::common::host;
use crate::common::net::{self, Target};
use crate::common::report::{Host, Mark};
use crate::common::server::{Sample, Server};
use crate::common::tokens::Minter;
use crate::common::wire::{Buyers, unix_us};

/// Where a run's load goes, where it comes from, and the secret its
/// buyers' tokens are minted with.
pub struct Reach {
    pub target: Target,
    pub sources: Vec<Ipv4Addr>,
    pub secret: String,
}

impl Reach {
    /// Reads `--url`, `--source-ips` and the secret.
    pub fn parse(url: &str, source_ips: &str, secret: &SecretArgs) -> anyhow::Result<Self> {
        let target = Target::parse(url)?;
        let sources = net::parse_sources(source_ips)?;
        let secret = secret.load()?;
        Ok(Self { target, sources, secret })
    }

    /// Checks that `per_proc` connections (`what`) fit in each worker
    /// process's open-files limit and `connections` in the ephemeral ports
    /// of the source addresses; returns the machine's limits.
    pub fn check_host(&self, per_proc: u64, what: &str, connections: u64) -> anyhow::Result<Host> {
        // Each worker holds its share; the workers check their own limit again.
        let open_files_limit = host::check_fd_budget(per_proc)
            .with_context(|| format!("{per_proc} {what} per worker process do not fit"))?;
        let ephemeral_ports = host::ephemeral_ports()?;
        let ports = u64::from(ephemeral_ports.1 - ephemeral_ports.0 + 1);
        let per_source = connections.div_ceil(self.sources.len() as u64);
        ensure!(
            per_source * 10 <= ports * 9,
            "{per_source} connections per source address but only {ports} ephemeral ports: add --source-ips"
        );
        Ok(Host {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            open_files_limit,
            ephemeral_ports,
        })
    }

    /// One worker's `share` of buyers (see `split`): users
    /// `{user_prefix}{i}`, set up at most `max_inflight` at a time, each
    /// giving up after `max_life_ms` whatever happens.
    pub fn buyers(
        &self,
        event: &str,
        user_prefix: String,
        (first, count): (u64, u64),
        max_inflight: usize,
        max_life_ms: u64,
    ) -> Buyers {
        Buyers {
            server: self.target.addr,
            host: self.target.host.clone(),
            event: event.to_owned(),
            secret: self.secret.clone(),
            user_prefix,
            first,
            count,
            sources: self.sources.clone(),
            max_inflight,
            max_life_ms,
        }
    }
}

/// The run's user names start with `tag` and the clock's seconds (hex,
/// wrapping after about six months), so that runs do not share buyers.
pub fn user_prefix(tag: &str) -> String {
    format!("{tag}{:x}-", unix_us() / 1_000_000 % 0xff_ffff)
}

/// Splits `n` buyers over `procs` workers: (first, count) each.
pub fn split(n: u64, procs: usize) -> Vec<(u64, u64)> {
    let procs = procs as u64;
    (0..procs).map(|i| (n * i / procs, n * (i + 1) / procs - n * i / procs)).collect()
}

/// The server as the event's seller sees it: checks that it answers
/// `/metrics` and reads the event's queue settings as the run finds them.
pub async fn seller_session(run: &RunArgs, reach: &Reach, minter: &Minter) -> anyhow::Result<(Server, Value)> {
    let RunArgs { url, event, seller, .. } = run;
    let server = Server::new(reach.target.clone(), minter.seller("qt-load", seller)?);
    server.metrics().await.with_context(|| format!("the server at {url} does not answer /metrics"))?;
    let before = server
        .queue_settings(event)
        .await
        .with_context(|| format!("cannot read the queue settings of {event} as seller {seller}"))?;
    Ok((server, before))
}

/// `run`'s outcome, unless Ctrl-C comes first.
pub async fn interruptible<T>(run: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        r = run => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    }
}

/// Whatever the run's `outcome`, gives the seller their event back: puts
/// the queue settings in `restore` again and says so (`restored`, or a
/// warning). The outcome's error comes first; a failed restore fails too.
pub async fn restore_queue<T>(
    server: &Server,
    event: &str,
    restore: &Value,
    outcome: anyhow::Result<T>,
    restored: impl FnOnce() -> String,
) -> anyhow::Result<T> {
    let done = server.patch_queue(event, restore).await;
    match &done {
        Ok(_) => eprintln!("{}", restored()),
        Err(e) => eprintln!("WARNING: could not restore the queue settings of {event}: {e:#}"),
    }
    let value = outcome?;
    done.context("could not restore the queue settings")?;
    Ok(value)
}

/// Phase marks and sample times, relative to the start of the run.
pub struct Clock {
    pub t0: Instant,
    pub marks: Vec<Mark>,
}

impl Clock {
    pub fn start() -> Self {
        Self { t0: Instant::now(), marks: Vec::new() }
    }

    pub fn mark(&mut self, label: &'static str) {
        self.marks.push(Mark { t_s: self.t0.elapsed().as_secs_f64(), label });
    }

    /// Reads `/metrics`, timed on this clock.
    pub async fn read(&self, server: &Server) -> anyhow::Result<Sample> {
        let mut s = server.metrics().await?;
        s.t_s = self.t0.elapsed().as_secs_f64();
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_buyer_once() {
        let s = split(15_000, 4);
        assert_eq!(s, vec![(0, 3_750), (3_750, 3_750), (7_500, 3_750), (11_250, 3_750)]);
        let s = split(10, 3);
        assert_eq!(s.iter().map(|p| p.1).sum::<u64>(), 10);
        assert_eq!(s.last().map(|p| p.0 + p.1), Some(10));
    }
}
