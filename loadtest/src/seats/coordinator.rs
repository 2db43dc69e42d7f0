//! `qt-load seats`: the coordinator of the seat-map benchmark (issue 3).
//! It opens the event's queue so that every holder is admitted at once
//! (restoring the settings afterwards, also on error or Ctrl-C), checks that
//! seat diffs flow end to end (a hold and release seen by a watcher: with
//! Kafka the consumer group needs a moment), starts worker processes with
//! watchers and holders, runs the holders at the asked rate for a bounded
//! time, waits for the watchers to settle on the store's version and has
//! every watcher's map compared with the store's. It reads the server's
//! `/metrics` around the holding window and writes the report.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use qt_protocol::frames::SeatStatus;
use serde_json::{Value, json};

use crate::common::args::RunArgs;
use crate::common::coordinator::{self, Clock, Reach, split};
use crate::common::host;
use crate::common::procs::Workers;
use crate::common::report::{self, Host};
use crate::common::server::{Sampler, Server};
use crate::common::tokens::Minter;
use crate::common::wire::{Buyers, unix_us};
use crate::seats::figures::{self, Readings};
use crate::seats::layout::{CompactMap, letters, parse_compact};
use crate::seats::probe::probe_bus;
use crate::seats::report::{SeatsConfig, SeatsSummary};
use crate::seats::wire::{Command, HolderReport, SeatsAt, SeatsReadyReport, SeatsSpec, WatchReport};

type SeatsWorkers = Workers<Command>;

/// The queue settings the run needs: every `join` admitted at once, one
/// seat per hold well under the limit.
const OPEN_QUEUE: &[(&str, i64)] =
    &[("rate_per_min", 1_000_000), ("max_active", 1_000_000), ("max_seats_per_buyer", 8)];

#[derive(Debug, Args)]
pub struct SeatsArgs {
    // --url, --event, --seller, --secret, --procs, --source-ips, --ramp-timeout-s, --out
    #[command(flatten)]
    pub run: RunArgs,
    /// Sockets that watch the seat map (compact form).
    #[arg(long, default_value_t = 1_000)]
    pub watchers: u64,
    /// Admitted buyers who hold and release seats.
    #[arg(long, default_value_t = 400)]
    pub holders: u64,
    /// Holds per second over all holders (each is released again).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// How long holders hold and release.
    #[arg(long, default_value_t = 20)]
    pub duration_s: u64,
    /// A hold is released after a uniformly random time in this range (ms).
    #[arg(long, default_value = "20-200")]
    pub hold_ms: String,
    /// Sockets being set up at once, over all workers.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// After the holders stop, how long watchers get to reach the store's
    /// version before the maps are compared anyway.
    #[arg(long, default_value_t = 20)]
    pub settle_timeout_s: u64,
    /// What the server is, for the report (e.g. embedded, redis-kafka).
    #[arg(long, default_value = "unspecified")]
    pub label: String,
}

/// Validated settings of one run.
pub struct Plan {
    pub reach: Reach,
    hold_ms: (u64, u64),
    pub user_prefix: String,
    host: Host,
}

fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
    ensure!(a <= b, "empty range {s}");
    Ok((a, b))
}

fn plan(a: &SeatsArgs) -> anyhow::Result<Plan> {
    let reach = a.run.reach()?;
    ensure!((1..=100_000).contains(&a.watchers), "--watchers must be 1..=100000");
    ensure!((1..=10_000).contains(&a.holders), "--holders must be 1..=10000");
    ensure!(a.rate > 0.0 && a.rate <= 100_000.0, "--rate must be in (0, 100000]");
    ensure!((3..=3_600).contains(&a.duration_s), "--duration-s must be 3..=3600");
    ensure!((1..=10_000).contains(&a.connect_concurrency), "--connect-concurrency must be 1..=10000");
    ensure!((1..=600).contains(&a.settle_timeout_s), "--settle-timeout-s must be 1..=600");
    let hold_ms = parse_range(&a.hold_ms).context("--hold-ms must be like 20-200")?;
    ensure!(hold_ms.1 <= 60_000, "--hold-ms at most 60000");
    let per_proc = (a.watchers + a.holders).div_ceil(a.run.procs as u64);
    let host = reach.check_host(per_proc, "sockets", a.watchers + a.holders)?;
    Ok(Plan { reach, hold_ms, user_prefix: coordinator::user_prefix("ls"), host })
}

pub async fn run(a: SeatsArgs) -> anyhow::Result<()> {
    let plan = plan(&a)?;
    let minter = Minter::new(&plan.reach.secret);
    let (server, before) = coordinator::seller_session(&a.run, &plan.reach, &minter).await?;
    let mut open = serde_json::Map::new();
    let mut restore = serde_json::Map::new();
    for (field, value) in OPEN_QUEUE.iter().map(|(f, v)| (*f, json!(v))).chain([("paused", json!(false))]) {
        let was = before.get(field).with_context(|| format!("the queue settings have no `{field}`"))?;
        restore.insert(field.into(), was.clone());
        open.insert(field.into(), value);
    }
    server.patch_queue(&a.run.event, &Value::Object(open)).await.context("cannot open the queue for the run")?;
    eprintln!("opened the queue of {} (admit at once); will restore {}", a.run.event, Value::Object(restore.clone()));

    let started_at = report::now_rfc3339();
    let outcome = coordinator::interruptible(measure(&a, &plan, &server, &minter)).await;
    let summary = coordinator::restore_queue(&server, &a.run.event, &Value::Object(restore), outcome, || {
        format!("restored the queue settings of {}", a.run.event)
    })
    .await?;
    report::publish(&a.run.out, started_at, summary)
}

pub async fn store_map(server: &Server, event: &str) -> anyhow::Result<CompactMap> {
    let body = server.get(&format!("/api/v1/events/{event}/seatmap?format=compact")).await?;
    parse_compact(&body).context("the REST seat map is not a compact map")
}

/// Wall time and CPU seconds of the load generator's processes so far.
fn loadgen_cpu(pids: &[u32]) -> Option<f64> {
    let mut total = host::process_cpu_s(std::process::id())?;
    for pid in pids {
        total += host::process_cpu_s(*pid)?;
    }
    Some(total)
}

async fn measure(a: &SeatsArgs, plan: &Plan, server: &Server, minter: &Minter) -> anyhow::Result<SeatsSummary> {
    let mut clock = Clock::start();
    let start_map = store_map(server, &a.run.event).await?;
    let free: Vec<usize> = (0..start_map.ids.len()).filter(|&i| start_map.status[i] == SeatStatus::Free).collect();
    ensure!(free.len() >= a.run.procs * 2, "only {} free seats at {}: nothing to hold", free.len(), a.run.event);
    eprintln!("{}: {} seats, {} free, version {}", a.run.event, start_map.ids.len(), free.len(), start_map.version);

    eprintln!("checking that seat diffs reach watchers");
    let probe_seat = &start_map.ids[*free.last().unwrap_or(&0)];
    let bus_probe_ms = probe_bus(plan, server, minter, &a.run.event, probe_seat).await?;
    eprintln!("  a hold and its release reached a watcher after {bus_probe_ms:.0} ms");

    let sampler = Sampler::start(
        server.clone(),
        clock.t0,
        Duration::from_secs(a.run.ramp_timeout_s * 2 + a.duration_s * 2 + 600),
    );
    let result = SeatsWorkers::with(a.run.procs, async |workers| {
        let (baseline, _) = server.metrics_all().await?;
        let ready = open_sockets(a, plan, &start_map, workers).await?;
        clock.mark("watching");
        let (watching, admitted): (u64, u64) =
            ready.iter().fold((0, 0), |s, r| (s.0 + r.counts.watching, s.1 + r.counts.admitted));
        ensure!(admitted > 0, "no holder was admitted; see the set-up errors");
        ensure!(watching > 0, "no watcher is watching; see the set-up errors");
        eprintln!("  {watching} watchers watching, {admitted} holders admitted");

        // Holding window.
        let (window_start, counters_start) = server.metrics_all().await?;
        let host_before = host::cpu_ticks();
        let pids = workers.pids();
        let cpu_before = loadgen_cpu(&pids);
        let window_started = Instant::now();
        let rate = a.rate / a.run.procs as f64;
        workers.send(|_| Command::Start { rate_per_s: rate }).await?;
        clock.mark("holding");
        eprintln!("holding: {:.0} holds/s for {} s", a.rate, a.duration_s);
        tokio::time::sleep(Duration::from_secs(a.duration_s)).await;
        workers.send(|_| Command::Stop).await?;
        let holders: Vec<HolderReport> = workers.answers("stop", Duration::from_secs(60)).await?;
        let window_s = window_started.elapsed().as_secs_f64();
        let (window_end, counters_end) = server.metrics_all().await?;
        let host_busy_pct = host::busy_pct(host_before, host::cpu_ticks());
        let loadgen_cpu_s = cpu_before.zip(loadgen_cpu(&pids)).map(|(b, e)| e - b);
        clock.mark("stopped");

        // Settle on the store's version, then compare every map.
        let settled = Instant::now();
        let (truth, settle_s) = settle(a, server, workers).await?;
        clock.mark("settled");
        let status = letters(&truth.status);
        let version = truth.version;
        workers.send(|_| Command::Verify { version, status: status.clone() }).await?;
        let watches: Vec<WatchReport> = workers.answers("verify", Duration::from_secs(60)).await?;
        eprintln!("closing sockets (settled after {:.1} s)", settled.elapsed().as_secs_f64());
        workers.close_sockets().await?;
        clock.mark("closed");
        let readings = Readings {
            baseline,
            window_start,
            window_end,
            counters_start,
            counters_end,
            window_s,
            host_busy_pct,
            loadgen_cpu_s,
            store_version: truth.version,
            settle_s,
            bus_probe_ms,
        };
        Ok((ready, holders, watches, readings))
    })
    .await;
    let timeline = sampler.stop();
    let (ready, holders, watches, readings) = result?;
    let config = SeatsConfig {
        url: a.run.url.clone(),
        event: a.run.event.clone(),
        label: a.label.clone(),
        watchers: a.watchers,
        holders: a.holders,
        rate_per_s: a.rate,
        duration_s: a.duration_s,
        hold_ms: plan.hold_ms,
        procs: a.run.procs,
        connect_concurrency: a.connect_concurrency,
        source_ips: plan.reach.sources.iter().map(ToString::to_string).collect(),
        user_prefix: plan.user_prefix.clone(),
        seats: start_map.ids.len(),
        seats_free_at_start: free.len(),
    };
    Ok(figures::assemble(config, plan.host.clone(), &ready, &holders, &watches, &readings, timeline, clock.marks))
}

fn buyers(a: &SeatsArgs, plan: &Plan, kind: &str, share: (u64, u64)) -> Buyers {
    let max_life_ms = (a.run.ramp_timeout_s * 2 + a.duration_s * 2 + a.settle_timeout_s + 300) * 1_000;
    let user_prefix = format!("{}{kind}", plan.user_prefix);
    plan.reach.buyers(&a.run.event, user_prefix, share, a.connect_concurrency.div_ceil(a.run.procs), max_life_ms)
}

async fn open_sockets(
    a: &SeatsArgs,
    plan: &Plan,
    map: &CompactMap,
    workers: &mut SeatsWorkers,
) -> anyhow::Result<Vec<SeatsReadyReport>> {
    eprintln!("opening {} watchers and {} holders from {} processes", a.watchers, a.holders, a.run.procs);
    let (ws, hs) = (split(a.watchers, a.run.procs), split(a.holders, a.run.procs));
    let initial = letters(&map.status);
    let seed = unix_us();
    let ramp_deadline_ms = a.run.ramp_timeout_s * 1_000;
    workers
        .send(|i| {
            Command::Open(Box::new(SeatsSpec {
                watchers: buyers(a, plan, "w", ws[i]),
                holders: buyers(a, plan, "h", hs[i]),
                ids: map.ids.clone(),
                initial: initial.clone(),
                worker: i,
                workers: a.run.procs,
                hold_ms: plan.hold_ms,
                ramp_deadline_ms,
                seed,
            }))
        })
        .await?;
    workers.answers("set-up", Duration::from_secs(a.run.ramp_timeout_s + 30)).await
}

/// Waits until every open watcher is at the store's version (re-reading
/// the store while it still moves), bounded; returns the store's map.
async fn settle(a: &SeatsArgs, server: &Server, workers: &mut SeatsWorkers) -> anyhow::Result<(CompactMap, f64)> {
    let started = Instant::now();
    let give_up = started + Duration::from_secs(a.settle_timeout_s);
    let mut last_print = Instant::now();
    loop {
        let truth = store_map(server, &a.run.event).await?;
        let version = truth.version;
        workers.send(|_| Command::Probe { version }).await?;
        let at: Vec<SeatsAt> = workers.answers("settle", Duration::from_secs(30)).await?;
        let (ok, behind, ahead, awaiting) =
            at.iter().fold((0, 0, 0, 0), |s, x| (s.0 + x.at, s.1 + x.behind, s.2 + x.ahead, s.3 + x.awaiting));
        let done = behind == 0 && ahead == 0 && awaiting == 0;
        if done || Instant::now() >= give_up {
            if !done {
                eprintln!(
                    "  settle: gave up: {ok} at version {version}, {behind} behind, {ahead} ahead, {awaiting} awaiting a map"
                );
            }
            return Ok((truth, started.elapsed().as_secs_f64()));
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            eprintln!("  settle: {ok} at version {version}, {behind} behind, {ahead} ahead, {awaiting} awaiting a map");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_splits() {
        assert_eq!(parse_range("20-200").unwrap(), (20, 200));
        assert_eq!(parse_range("50").unwrap(), (50, 50));
        assert!(parse_range("200-20").is_err());
        assert!(parse_range("a-b").is_err());
        let s = split(10_000, 3);
        assert_eq!(s.iter().map(|p| p.1).sum::<u64>(), 10_000);
        assert_eq!(s.last().map(|p| p.0 + p.1), Some(10_000));
    }
}
