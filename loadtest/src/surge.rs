//! `qt-load surge`: the coordinator of the waiting-room benchmark. It
//! pauses the event's admissions (restoring them afterwards, also on error
//! or Ctrl-C), starts worker processes, and walks them through the phases:
//! surge (open and join N sockets), hold (time position pushes; measure
//! server RSS and CPU), close, then the same buyers as REST pollers for the
//! same window, and finally writes the report. The coordinator itself opens
//! no buyer connections; it only reads `/metrics` and talks to the seller
//! API.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use serde_json::json;

use crate::coordinator::{self, Clock, Reach, split};
use crate::figures::{self, PollReadings, Readings};
use crate::host;
use crate::procs::Workers;
use crate::report::{self, Config, Host, Summary};
use crate::server::{Sample, Sampler, Server};
use crate::tokens::{Minter, SecretArgs};
use crate::wire::{Buyers, Command, CrowdSpec, HoldReport, JoinReport, PollSpec, Report};

#[derive(Debug, Args)]
pub struct SurgeArgs {
    /// The server under test; must be on 127.0.0.0/8.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Event whose waiting room is measured.
    #[arg(long, default_value = "demo-live")]
    pub event: String,
    /// Seller id that owns the event (for pausing admissions).
    #[arg(long, default_value = "demo")]
    pub seller: String,
    /// WebSockets to open, one buyer each.
    #[arg(long, default_value_t = 1_000)]
    pub sockets: u64,
    // --secret, --secret-file
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Worker processes; each may hold at most `ulimit -n` sockets.
    #[arg(long, default_value_t = 4)]
    pub procs: usize,
    /// Local addresses to connect from, e.g. 127.0.0.2-127.0.0.9,127.0.0.20.
    #[arg(long, default_value = "127.0.0.2-127.0.0.9")]
    pub source_ips: String,
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
    /// Give up on sockets (or pollers) not joined after this long.
    #[arg(long, default_value_t = 120)]
    pub ramp_timeout_s: u64,
    /// Directory for the JSON and HTML reports.
    #[arg(long, default_value = "loadtest/reports")]
    pub out: PathBuf,
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
    let reach = Reach::parse(&a.url, &a.source_ips, &a.secret)?;
    ensure!((1..=200_000).contains(&a.sockets), "--sockets must be 1..=200000");
    ensure!((1..=64).contains(&a.procs), "--procs must be 1..=64");
    ensure!((1..=10_000).contains(&a.connect_concurrency), "--connect-concurrency must be 1..=10000");
    ensure!((5..=3_600).contains(&a.hold_s), "--hold-s must be 5..=3600");
    ensure!(a.settle_s + 3 <= a.hold_s, "--settle-s must leave at least 3 s of --hold-s to measure");
    ensure!((100..=60_000).contains(&a.poll_interval_ms), "--poll-interval-ms must be 100..=60000");
    ensure!((5..=3_600).contains(&a.ramp_timeout_s), "--ramp-timeout-s must be 5..=3600");
    let poll_buyers = a.poll_buyers.unwrap_or(a.sockets);
    ensure!(poll_buyers <= 200_000, "--poll-buyers must be at most 200000");

    let per_proc = a.sockets.max(poll_buyers).div_ceil(a.procs as u64);
    // Closed sockets linger in TIME_WAIT on our side for a minute, so the
    // poll phase needs ports on top of the socket phase's.
    let host = reach.check_host(per_proc, "connections", a.sockets + poll_buyers)?;
    Ok(Plan {
        reach,
        poll_buyers,
        user_prefix: coordinator::user_prefix("lt"),
        window: Duration::from_secs(a.hold_s - a.settle_s),
        ramp_deadline: Duration::from_secs(a.ramp_timeout_s),
        host,
    })
}

pub async fn run(a: SurgeArgs) -> anyhow::Result<()> {
    let plan = plan(&a)?;
    let minter = Minter::new(&plan.reach.secret);
    let (server, before) = coordinator::seller_session(&plan.reach, &minter, &a.url, &a.event, &a.seller).await?;
    let was_paused = before["paused"].as_bool().context("the queue settings have no `paused` field")?;
    server.patch_queue(&a.event, &json!({ "paused": true })).await.context("cannot pause admissions")?;
    eprintln!("paused admissions of {} (they were {})", a.event, if was_paused { "paused" } else { "running" });

    let started_at = report::now_rfc3339();
    let outcome =
        Workers::with(a.procs, async |workers| coordinator::interruptible(measure(&a, &plan, &server, workers)).await)
            .await;
    let restore = json!({ "paused": was_paused });
    let summary = coordinator::restore_queue(&server, &a.event, &restore, outcome, || {
        format!("restored admissions of {} to {}", a.event, if was_paused { "paused" } else { "running" })
    })
    .await?;
    report::publish(&a.out, started_at, summary)
}

fn buyers(a: &SurgeArgs, plan: &Plan, share: (u64, u64)) -> Buyers {
    // Long enough for every phase, short enough that nothing outlives a
    // hung coordinator by much.
    let max_life_ms = (a.ramp_timeout_s * 2 + a.hold_s * 2 + 120) * 1_000;
    plan.reach.buyers(&a.event, plan.user_prefix.clone(), share, a.connect_concurrency.div_ceil(a.procs), max_life_ms)
}

/// What the socket phases measured.
struct SocketPhases {
    joins: Vec<JoinReport>,
    holds: Vec<HoldReport>,
    readings: Readings,
}

async fn measure(a: &SurgeArgs, plan: &Plan, server: &Server, workers: &mut Workers) -> anyhow::Result<Summary> {
    let mut clock = Clock::start();
    let run_cap = plan.ramp_deadline * 2 + Duration::from_secs(a.hold_s * 2 + 300);
    let sampler = Sampler::start(server.clone(), clock.t0, run_cap);
    let sockets = socket_phases(a, plan, server, workers, &mut clock).await?;
    let poll = if plan.poll_buyers > 0 { Some(poll_phase(a, plan, server, workers, &mut clock).await?) } else { None };
    let timeline = sampler.stop();
    let config = Config {
        url: a.url.clone(),
        event: a.event.clone(),
        sockets: a.sockets,
        procs: a.procs,
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
    workers: &mut Workers,
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
    eprintln!("surge: opening {} sockets from {} processes", a.sockets, a.procs);
    let shares = split(a.sockets, a.procs);
    clock.mark("surge");
    let ramp_deadline_ms = plan.ramp_deadline.as_millis() as u64;
    workers.send(|i| Command::OpenSockets(CrowdSpec { buyers: buyers(a, plan, shares[i]), ramp_deadline_ms })).await?;
    let joins = workers
        .gather("surge", plan.ramp_deadline + Duration::from_secs(30), |r| match r {
            Report::Joined(j) => Some(j),
            _ => None,
        })
        .await?;
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
    let holds = workers
        .gather("hold", Duration::from_secs(30), |r| match r {
            Report::Held(h) => Some(h),
            _ => None,
        })
        .await?;

    eprintln!("closing sockets");
    workers.close_sockets().await?;
    let closed_by = Instant::now() + Duration::from_secs(30);
    while server.metrics().await?.sockets_open > 0.0 && Instant::now() < closed_by {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    clock.mark("closed");

    let joined: u64 = joins.iter().map(|j| j.joined).sum();
    let tcp_kernel_per_socket = match (tcp_kernel_baseline, tcp_kernel_held) {
        (Some(before), Some(held)) if joined > 0 => Some(held.saturating_sub(before) as f64 / joined as f64),
        _ => None,
    };
    let readings = Readings {
        baseline,
        after_surge,
        hold_window_start: push.start,
        hold_end: push.end,
        push_window_s: push.window_s,
        push_host_busy: push.host_busy,
        tcp_kernel_per_socket,
        hold_s,
    };
    Ok(SocketPhases { joins, holds, readings })
}

/// The same buyers the old way, for a window of the same length.
async fn poll_phase(
    a: &SurgeArgs,
    plan: &Plan,
    server: &Server,
    workers: &mut Workers,
    clock: &mut Clock,
) -> anyhow::Result<PollReadings> {
    eprintln!("poll: {} buyers, one GET every {} ms", plan.poll_buyers, a.poll_interval_ms);
    let shares = split(plan.poll_buyers, a.procs);
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
    let ready = workers
        .gather("poll ramp", plan.ramp_deadline + Duration::from_secs(30), |r| match r {
            Report::PollReady { ready, .. } => Some(ready),
            _ => None,
        })
        .await?;
    eprintln!("  poll: {} buyers polling", ready.iter().sum::<u64>());
    // Let every jittered first poll happen before the window opens.
    let settle = Duration::from_secs(a.settle_s).max(Duration::from_millis(a.poll_interval_ms + 1_000));
    tokio::time::sleep(settle).await;
    let Steady { start, end, window_s, host_busy } = steady_window(server, clock, "poll window", plan.window).await?;
    workers.send(|_| Command::StopPolling).await?;
    clock.mark("poll end");
    let reports = workers
        .gather("poll", Duration::from_secs(60), |r| match r {
            Report::Polled(p) => Some(p),
            _ => None,
        })
        .await?;
    Ok(PollReadings { before, start, end, window_s, host_busy, reports })
}

/// The server over a steady window: `/metrics` at its edges, its length,
/// and how busy the whole machine was.
struct Steady {
    start: Sample,
    end: Sample,
    window_s: f64,
    host_busy: Option<f64>,
}

/// Reads the server, marks `label`, waits `len`, reads it again.
async fn steady_window(
    server: &Server,
    clock: &mut Clock,
    label: &'static str,
    len: Duration,
) -> anyhow::Result<Steady> {
    let start = clock.read(server).await?;
    let host_before = host::cpu_ticks();
    let window_started = Instant::now();
    clock.mark(label);
    tokio::time::sleep(len).await;
    let end = clock.read(server).await?;
    let window_s = window_started.elapsed().as_secs_f64();
    let host_busy = host::busy_pct(host_before, host::cpu_ticks());
    Ok(Steady { start, end, window_s, host_busy })
}
