//! The coordinator's side of its worker processes: starting them (the same
//! binary, hidden `worker <benchmark>` subcommand), sending commands,
//! gathering one answer per worker while printing progress, and reaping
//! them. The other side is `worker`; the messages are in `wire`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::common::wire::{Commands, Report};

/// The worker processes of one benchmark (`C` its commands) and the stream
/// of their reports.
pub struct Workers<C: Commands> {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    reports: mpsc::UnboundedReceiver<(usize, Report<C::Answer>)>,
}

impl<C: Commands> Workers<C> {
    /// Starts `n` workers, lets `drive` walk them through a run, and shuts
    /// them down afterwards, also when `drive` failed: their stdin closes,
    /// they close their sockets and exit; stragglers are killed and reaped.
    pub async fn with<T>(n: usize, drive: impl AsyncFnOnce(&mut Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut workers = Self::spawn(n)?;
        let outcome = drive(&mut workers).await;
        workers.shutdown().await;
        outcome
    }

    fn spawn(n: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find our own executable to start workers")?;
        let (tx, reports) = mpsc::unbounded_channel();
        let (mut children, mut stdins) = (Vec::new(), Vec::new());
        for i in 0..n {
            let mut child = tokio::process::Command::new(&exe)
                .args(["worker", C::BENCH])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // If we die, so do they (and their stdin closes anyway).
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker process")?;
            let stdout = child.stdout.take().context("worker has no stdout")?;
            stdins.push(child.stdin.take().context("worker has no stdin")?);
            children.push(child);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let report = serde_json::from_str(&line)
                        .unwrap_or_else(|e| Report::Error { message: format!("unreadable report {line:?}: {e}") });
                    if tx.send((i, report)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((i, Report::Error { message: "worker exited".into() }));
            });
        }
        Ok(Self { children, stdins, reports })
    }

    pub async fn send(&mut self, make: impl Fn(usize) -> C) -> anyhow::Result<()> {
        for (i, stdin) in self.stdins.iter_mut().enumerate() {
            let mut line = serde_json::to_string(&make(i))?;
            line.push('\n');
            stdin.write_all(line.as_bytes()).await.with_context(|| format!("worker {i} stopped listening"))?;
            stdin.flush().await?;
        }
        Ok(())
    }

    /// Waits for one `pick`ed report from every worker, printing progress
    /// meanwhile; fails on a worker's error or at `deadline`.
    pub async fn gather<T>(
        &mut self,
        phase: &str,
        deadline: Duration,
        mut pick: impl FnMut(Report<C::Answer>) -> Option<T>,
    ) -> anyhow::Result<Vec<T>> {
        let n = self.stdins.len();
        let mut got: Vec<Option<T>> = (0..n).map(|_| None).collect();
        let mut progress = vec![(0u64, 0u64, 0u64); n];
        let end = tokio::time::Instant::now() + deadline;
        let mut last_print = Instant::now();
        while got.iter().any(Option::is_none) {
            let Ok(next) = tokio::time::timeout_at(end, self.reports.recv()).await else {
                bail!("{phase}: workers did not answer within {deadline:?}");
            };
            let Some((i, report)) = next else { bail!("{phase}: all workers are gone") };
            match report {
                Report::Error { message } => bail!("{phase}: worker {i}: {message}"),
                Report::Progress { connected, joined, failed } => {
                    progress[i] = (connected, joined, failed);
                    if last_print.elapsed() >= Duration::from_secs(1) {
                        let (c, j, f) = progress.iter().fold((0, 0, 0), |a, p| (a.0 + p.0, a.1 + p.1, a.2 + p.2));
                        eprintln!("  {phase}: connected {c}, joined {j}, failed {f}");
                        last_print = Instant::now();
                    }
                }
                other => match pick(other) {
                    Some(t) => got[i] = Some(t),
                    None => bail!("{phase}: worker {i} answered out of turn"),
                },
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Waits for one answer of type `T` from every worker (see `gather`).
    pub async fn answers<T: TryFrom<C::Answer>>(&mut self, phase: &str, deadline: Duration) -> anyhow::Result<Vec<T>> {
        self.gather(phase, deadline, |r| match r {
            Report::Answer(a) => T::try_from(a).ok(),
            _ => None,
        })
        .await
    }

    /// Has every worker close all its sockets; waits (bounded) until each
    /// has.
    pub async fn close_sockets(&mut self) -> anyhow::Result<()> {
        self.send(|_| C::CLOSE_SOCKETS).await?;
        self.gather("close", Duration::from_secs(60), |r| matches!(r, Report::Closed(_)).then_some(())).await?;
        Ok(())
    }

    /// The workers' process ids (for their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Closes their stdin (which ends them) and reaps them, bounded.
    async fn shutdown(mut self) {
        self.stdins.clear();
        for child in &mut self.children {
            // A worker closes its sockets (bounded by their close timeout)
            // before it exits.
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}
