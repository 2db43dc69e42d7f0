//! The hidden `worker` subcommand: one process of the load generator,
//! driven by the coordinator over stdin/stdout JSON lines (see `wire`).
//! Several processes are needed because each may hold at most `ulimit -n`
//! sockets. It runs on one thread and exits when its stdin closes, so a
//! coordinator that dies never leaves workers behind.

use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

use crate::crowd::Crowd;
use crate::pollers::Pollers;
use crate::seatcrowd::SeatCrowd;
use crate::wire::{Command, Report};

/// Writes one report line. A failed write means the coordinator is gone;
/// stdin's end will stop us, so there is nothing else to do here.
fn emit(report: &Report) {
    let Ok(line) = serde_json::to_string(report) else { return };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn emit_error(e: &anyhow::Error) {
    emit(&Report::Error { message: format!("{e:#}") });
}

pub fn main(rt: Runtime) -> anyhow::Result<()> {
    LocalSet::new().block_on(&rt, serve())
}

async fn serve() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut crowd: Option<Rc<Crowd>> = None;
    let mut pollers: Option<Rc<Pollers>> = None;
    let mut seats: Option<Rc<SeatCrowd>> = None;
    while let Some(line) = lines.next_line().await.context("cannot read commands from stdin")? {
        let cmd: Command = match serde_json::from_str(&line) {
            Ok(cmd) => cmd,
            Err(e) => {
                emit_error(&anyhow::anyhow!("bad command {line:?}: {e}"));
                continue;
            }
        };
        match cmd {
            Command::OpenSockets(spec) => match Crowd::start(&spec) {
                Ok(c) => {
                    let c = Rc::new(c);
                    crowd = Some(c.clone());
                    let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                    // The ramp reports on its own so that we keep reading
                    // stdin (and notice the coordinator's end) meanwhile.
                    tokio::task::spawn_local(async move {
                        let report = c.ramp(deadline, emit).await;
                        emit(&Report::Joined(report));
                    });
                }
                Err(e) => emit_error(&e),
            },
            Command::HoldStart => {
                if let Some(c) = &crowd {
                    c.hold_start();
                }
            }
            Command::HoldEnd => match &crowd {
                Some(c) => emit(&Report::Held(c.hold_end())),
                None => emit_error(&anyhow::anyhow!("hold_end without sockets")),
            },
            Command::CloseSockets => match (crowd.take().map(Rc::try_unwrap), seats.take().map(Rc::try_unwrap)) {
                (Some(Ok(c)), _) => emit(&c.close().await),
                (_, Some(Ok(c))) => emit(&c.close().await),
                (Some(Err(_)), _) | (_, Some(Err(_))) => {
                    emit_error(&anyhow::anyhow!("close_sockets while the ramp is still running"))
                }
                (None, None) => emit(&Report::Closed { closed: 0, forced: 0 }),
            },
            Command::StartPolling(spec) => match Pollers::start(&spec) {
                Ok(p) => {
                    let p = Rc::new(p);
                    pollers = Some(p.clone());
                    let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                    tokio::task::spawn_local(async move { emit(&p.ramp(deadline).await) });
                }
                Err(e) => emit_error(&e),
            },
            Command::StopPolling => match pollers.take().map(Rc::try_unwrap) {
                Some(Ok(p)) => emit(&Report::Polled(p.stop().await)),
                Some(Err(_)) => emit_error(&anyhow::anyhow!("stop_polling while the ramp is still running")),
                None => emit_error(&anyhow::anyhow!("stop_polling without pollers")),
            },
            Command::SeatsOpen(spec) => match SeatCrowd::start(&spec) {
                Ok(c) => {
                    let c = Rc::new(c);
                    seats = Some(c.clone());
                    let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                    tokio::task::spawn_local(async move {
                        let report = c.ramp(deadline, emit).await;
                        emit(&Report::SeatsReady(report));
                    });
                }
                Err(e) => emit_error(&e),
            },
            Command::SeatsStart { rate_per_s } => match &seats {
                Some(c) => c.start_holding(rate_per_s),
                None => emit_error(&anyhow::anyhow!("seats_start without seat sockets")),
            },
            Command::SeatsStop => match seats.clone() {
                // Answered from a task so that stdin (and the coordinator's
                // end) is still read while holders drain.
                Some(c) => {
                    tokio::task::spawn_local(async move { emit(&Report::SeatsStopped(c.stop_holding().await)) });
                }
                None => emit_error(&anyhow::anyhow!("seats_stop without seat sockets")),
            },
            Command::SeatsProbe { version } => match &seats {
                Some(c) => emit(&Report::SeatsAt(c.probe(version))),
                None => emit_error(&anyhow::anyhow!("seats_probe without seat sockets")),
            },
            Command::SeatsVerify { version, status } => match &seats {
                Some(c) => emit(&Report::SeatsVerified(c.verify(version, &status))),
                None => emit_error(&anyhow::anyhow!("seats_verify without seat sockets")),
            },
        }
    }
    // The coordinator is gone: close what is open, quickly, and leave.
    if let Some(Ok(c)) = crowd.map(Rc::try_unwrap) {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    }
    if let Some(Ok(c)) = seats.map(Rc::try_unwrap) {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    }
    if let Some(Ok(p)) = pollers.map(Rc::try_unwrap) {
        let _ = tokio::time::timeout(Duration::from_secs(5), p.stop()).await;
    }
    Ok(())
}
