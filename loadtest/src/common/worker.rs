//! The worker process's side of the pipe (the hidden `worker <benchmark>`
//! subcommand): it reads the coordinator's commands from stdin, hands each
//! to the benchmark's `Serve`, and writes reports to stdout. Several
//! processes are needed because each may hold at most `ulimit -n` sockets.
//! It runs on one thread and exits when its stdin closes, so a coordinator
//! that dies never leaves workers behind.

use std::io::Write;
use std::rc::Rc;

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

use crate::common::wire::{Closed, Commands, Report};

/// One benchmark's side of a worker process.
pub trait Serve: Default {
    type Command: Commands;
    /// Acts on one command and answers it (now, or from a task it spawns).
    fn handle(&mut self, cmd: Self::Command) -> impl Future<Output = ()>;
    /// The coordinator is gone: closes what is open, quickly.
    fn finish(self) -> impl Future<Output = ()>;
}

/// Serves one benchmark's commands until stdin closes.
pub fn run<S: Serve>(rt: Runtime) -> anyhow::Result<()> {
    LocalSet::new().block_on(&rt, serve::<S>())
}

async fn serve<S: Serve>() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut state = S::default();
    while let Some(line) = lines.next_line().await.context("cannot read commands from stdin")? {
        match serde_json::from_str(&line) {
            Ok(cmd) => state.handle(cmd).await,
            Err(e) => fail(format!("bad command {line:?}: {e}")),
        }
    }
    state.finish().await;
    Ok(())
}

/// Writes one report line. A failed write means the coordinator is gone;
/// stdin's end will stop us, so there is nothing else to do here.
fn emit<A: Serialize>(report: &Report<A>) {
    let Ok(line) = serde_json::to_string(report) else { return };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The benchmark's answer to a command.
pub fn answer<A: Serialize>(a: A) {
    emit(&Report::Answer(a));
}

/// A command failed; its error chain goes to the coordinator.
pub fn fail(e: impl std::fmt::Display) {
    emit(&Report::<()>::Error { message: format!("{e:#}") });
}

pub fn progress(connected: u64, joined: u64, failed: u64) {
    emit(&Report::<()>::Progress { connected, joined, failed });
}

pub fn closed(c: Closed) {
    emit(&Report::<()>::Closed(c));
}

/// Keeps a crowd that `started` in `slot` and answers once its `ramp` is
/// done, from a task, so that stdin (and the coordinator's end) is still
/// read meanwhile; or says why it did not start.
pub fn launch<T: 'static, A: Serialize, F: Future<Output = A> + 'static>(
    slot: &mut Option<Rc<T>>,
    started: anyhow::Result<T>,
    ramp: impl FnOnce(Rc<T>) -> F,
) {
    match started {
        Ok(crowd) => {
            let crowd = Rc::new(crowd);
            *slot = Some(crowd.clone());
            let ramp = ramp(crowd);
            tokio::task::spawn_local(async move { answer(ramp.await) });
        }
        Err(e) => fail(e),
    }
}
