//! `qt-load surge`: the coordinator of the waiting-room benchmark. It
//! pauses the event's admissions (restoring them afterwards, also on error
//! or Ctrl-C), starts worker processes, and walks them through the phases:
//! surge (open and join N sockets), hold (time position pushes; measure
//! server RSS and CPU), close, then the same buyers as REST pollers for the
//! same window, and finally writes the report. The coordinator itself opens
//! no buyer connections; it only reads `/metrics` and talks to the seller
//! API.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use serde_json::json;

use crate::common::args::RunArgs;
use crate::common::coordinator::{self, Clock, Reach, split};
use crate::common::host;
use crate::common::procs::Workers;
use crate::common::report::{self, Host};
use crate::common::server::{Sampler, Server};
use crate::common::tokens::Minter;
use crate::common::wire::Buyers;
use crate::surge::figures::{self, PollReadings, Readings, Window};
use crate::surge::report::{Config, Summary};
use crate::surge::wire::{Command, CrowdSpec, HoldReport, JoinReport, PollReady, PollReport, PollSpec};

type SurgeWorkers = Workers<Command>;

#[derive(Debug, Args)]
pub struct SurgeArgs {
    // --url, --event, --seller, --secret, --procs, --source-ips, --ramp-timeout-s, --out
    #[command(flatten)]
    pub run: RunArgs,
    /// WebSockets to open, one buyer each.
    #[arg(long, default_value_t = 1_000)]
    pub sockets: u64,
    /// Connections being set up (connect, upgrade, join) at once, over all
    /// worker processes. Keep it near the server's listen backlog: past
    /// that, the kernel drops SYNs and each retry costs a full second.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// How long every socket is held waiting once all have joined.
    #[arg(long, default_value_t = 30)]
    pub hold_s: u64,
    /// Seconds at the start of the hold left out of the CPU window, so the
    /// surge's own work does not count as steady-state push cost.
    #[arg(long, default_value_t = 5)]
    pub settle_s: u64,
    /// Polling buyers in the comparison phase (default: as many as sockets;
    /// 0 skips it).
    #[arg(long)]
    pub poll_buyers: Option<u64>,
    /// How often a polling buyer asks for its position.
    #[arg(long, default_value_t = 2_000)]
    pub poll_interval_ms: u64,
}

/// Validated settings of one run.
struct Plan {
    reach: Reach,
    poll_buyers: u64,
    user_prefix: String,
    window: Duration,
    ramp_deadline: Duration,
    host: Host,
}

fn plan(a: &SurgeArgs) -> anyhow::Result<Plan> {
    let reach = a.run.reach()?;
    ensure!((1..=200_000).contains(&a.sockets), "--sockets must be 1..=200000");
    ensure!((1..=10_000).contains(&a.connect_concurrency), "--connect-concurrency must be 1..=10000");
    ensure!((5..=3_600).contains(&a.hold_s), "--hold-s must be 5..=3600");
    ensure!(a.settle_s + 3 <= a.hold_s, "--settle-s must leave at least 3 s of --hold-s to measure");
    ensure!((100..=60_000).contains(&a.poll_interval_ms), "--poll-interval-ms must be 100..=60000");
    let poll_buyers = a.poll_buyers.unwrap_or(a.sockets);
    ensure!(poll_buyers <= 200_000, "--poll-buyers must be at most 200000");

    let per_proc = a.sockets.max(poll_buyers).div_ceil(a.run.procs as u64);
    // Closed sockets linger in TIME_WAIT on our side for a minute, so the
    // poll phase needs ports on top of the socket phase's.
    let host = reach.check_host(per_proc, "connections", a.sockets + poll_buyers)?;
    Ok(Plan {
        reach,
        poll_buyers,
        user_prefix: coordinator::user_prefix("lt"),
        window: Duration::from_secs(a.hold_s - a.settle_s),
        ramp_deadline: Duration::from_secs(a.run.ramp_timeout_s),
        host,
    })
}

pub async fn run(a: SurgeArgs) -> anyhow::Result<()> {
    let plan = plan(&a)?;
    let minter = Minter::new(&plan.reach.secret);
    let (server, before) = coordinator::seller_session(&a.run, &plan.reach, &minter).await?;
    let was_paused = before["paused"].as_bool().context("the queue settings have no `paused` field")?;
    server.patch_queue(&a.run.event, &json!({ "paused": true })).await.context("cannot pause admissions")?;
    eprintln!("paused admissions of {} (they were {})", a.run.event, if was_paused { "paused" } else { "running" });

    let started_at = report::now_rfc3339();
    let outcome = SurgeWorkers::with(a.run.procs, async |workers| {
        coordinator::interruptible(measure(&a, &plan, &server, workers)).await
    })
    .await;
    let restore = json!({ "paused": was_paused });
    let summary = coordinator::restore_queue(&server, &a.run.event, &restore, outcome, || {
        format!("restored admissions of {} to {}", a.run.event, if was_paused { "paused" } else { "running" })
    })
    .await?;
    report::publish(&a.run.out, started_at, summary)
}

fn buyers(a: &SurgeArgs, plan: &Plan, share: (u64, u64)) -> Buyers {
    // Long enough for every phase, short enough that nothing outlives a
    // hung coordinator by much.
    let max_life_ms = (a.run.ramp_timeout_s * 2 + a.hold_s * 2 + 120) * 1_000;
    plan.reach.buyers(
        &a.run.event,
        plan.user_prefix.clone(),
        share,
        a.connect_concurrency.div_ceil(a.run.procs),
        max_life_ms,
    )
}

/// What the socket phases measured.
struct SocketPhases {
    joins: Vec<JoinReport>,
    holds: Vec<HoldReport>,
    readings: Readings,
}

async fn measure(a: &SurgeArgs, plan: &Plan, server: &Server, workers: &mut SurgeWorkers) -> anyhow::Result<Summary> {
    let mut clock = Clock::start();
    let run_cap = plan.ramp_deadline * 2 + Duration::from_secs(a.hold_s * 2 + 300);
    let sampler = Sampler::start(server.clone(), clock.t0, run_cap);
    let sockets = socket_phases(a, plan, server, workers, &mut clock).await?;
    let poll = if plan.poll_buyers > 0 { Some(poll_phase(a, plan, server, workers, &mut clock).await?) } else { None };
    let timeline = sampler.stop();
    let config = Config {
        url: a.run.url.clone(),
        event: a.run.event.clone(),
        sockets: a.sockets,
        procs: a.run.procs,
        source_ips: plan.reach.sources.iter().map(ToString::to_string).collect(),
        connect_concurrency: a.connect_concurrency,
        hold_s: a.hold_s,
        settle_s: a.settle_s,
        poll_buyers: plan.poll_buyers,
        poll_interval_ms: a.poll_interval_ms,
        user_prefix: plan.user_prefix.clone(),
    };
    let SocketPhases { joins, holds, readings } = sockets;
    Ok(figures::assemble(config, plan.host.clone(), &joins, &holds, &readings, poll, timeline, clock.marks))
}

/// Surge (open and join), hold (time pushes, read RSS and CPU), close.
async fn socket_phases(
    a: &SurgeArgs,
    plan: &Plan,
    server: &Server,
    workers: &mut SurgeWorkers,
    clock: &mut Clock,
) -> anyhow::Result<SocketPhases> {
    let baseline = clock.read(server).await?;
    let tcp_kernel_baseline = host::tcp_kernel_bytes();
    if baseline.sockets_open > 0.0 {
        eprintln!(
            "note: the server already has {} open sockets; RSS per socket counts from there",
            baseline.sockets_open
        );
    }

    // Surge: every worker opens its share and joins as fast as allowed.
    eprintln!("surge: opening {} sockets from {} processes", a.sockets, a.run.procs);
    let shares = split(a.sockets, a.run.procs);
    clock.mark("surge");
    let ramp_deadline_ms = plan.ramp_deadline.as_millis() as u64;
    workers.send(|i| Command::OpenSockets(CrowdSpec { buyers: buyers(a, plan, shares[i]), ramp_deadline_ms })).await?;
    let joins: Vec<JoinReport> = workers.answers("surge", plan.ramp_deadline + Duration::from_secs(30)).await?;
    clock.mark("all joined");
    let after_surge = clock.read(server).await?;

    // Hold: everyone waits; the workers time the pushes, we read the server
    // over a window that leaves the surge's own work out.
    eprintln!("hold: {} s ({} s settle, then the measured window)", a.hold_s, a.settle_s);
    workers.send(|_| Command::HoldStart).await?;
    let hold_started = Instant::now();
    clock.mark("hold");
    tokio::time::sleep(Duration::from_secs(a.settle_s)).await;
    let push = steady_window(server, clock, "push window", plan.window).await?;
    let tcp_kernel_held = host::tcp_kernel_bytes();
    workers.send(|_| Command::HoldEnd).await?;
    let hold_s = hold_started.elapsed().as_secs_f64();
    clock.mark("hold end");
    let holds: Vec<HoldReport> = workers.answers("hold", Duration::from_secs(30)).await?;

    eprintln!("closing sockets");
    workers.close_sockets().await?;
    let closed_by = Instant::now() + Duration::from_secs(30);
    while server.metrics().await?.sockets_open > 0.0 && Instant::now() < closed_by {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    clock.mark("closed");

    let joined: u64 = joins.iter().map(|j| j.counts.joined).sum();
    let tcp_kernel_per_socket = match (tcp_kernel_baseline, tcp_kernel_held) {
        (Some(before), Some(held)) if joined > 0 => Some(held.saturating_sub(before) as f64 / joined as f64),
        _ => None,
    };
    let readings = Readings { baseline, after_surge, push, tcp_kernel_per_socket, hold_s };
    Ok(SocketPhases { joins, holds, readings })
}

/// The same buyers the old way, for a window of the same length.
async fn poll_phase(
    a: &SurgeArgs,
    plan: &Plan,
    server: &Server,
    workers: &mut SurgeWorkers,
    clock: &mut Clock,
) -> anyhow::Result<PollReadings> {
    eprintln!("poll: {} buyers, one GET every {} ms", plan.poll_buyers, a.poll_interval_ms);
    let shares = split(plan.poll_buyers, a.run.procs);
    let before = clock.read(server).await?;
    clock.mark("poll");
    let ramp_deadline_ms = plan.ramp_deadline.as_millis() as u64;
    workers
        .send(|i| {
            Command::StartPolling(PollSpec {
                buyers: buyers(a, plan, shares[i]),
                interval_ms: a.poll_interval_ms,
                ramp_deadline_ms,
            })
        })
        .await?;
    let ready: Vec<PollReady> = workers.answers("poll ramp", plan.ramp_deadline + Duration::from_secs(30)).await?;
    eprintln!("  poll: {} buyers polling", ready.iter().map(|p| p.ready).sum::<u64>());
    // Let every jittered first poll happen before the window opens.
    let settle = Duration::from_secs(a.settle_s).max(Duration::from_millis(a.poll_interval_ms + 1_000));
    tokio::time::sleep(settle).await;
    let window = steady_window(server, clock, "poll window", plan.window).await?;
    workers.send(|_| Command::StopPolling).await?;
    clock.mark("poll end");
    let reports: Vec<PollReport> = workers.answers("poll", Duration::from_secs(60)).await?;
    Ok(PollReadings { before, window, reports })
}

/// Reads the server, marks `label`, waits `len`, reads it again.
async fn steady_window(
    server: &Server,
    clock: &mut Clock,
    label: &'static str,
    len: Duration,
) -> anyhow::Result<Window> {
    let start = clock.read(server).await?;
    let host_before = host::cpu_ticks();
    let window_started = Instant::now();
    clock.mark(label);
    tokio::time::sleep(len).await;
    let end = clock.read(server).await?;
    let window_s = window_started.elapsed().as_secs_f64();
    let host_busy = host::busy_pct(host_before, host::cpu_ticks());
    Ok(Window { start, end, window_s, host_busy })
}
