//! `qt-load seats`: the coordinator of the seat-map benchmark (issue 3).
//! It opens the event's queue so that every holder is admitted at once
//! (restoring the settings afterwards, also on error or Ctrl-C), checks that
//! seat diffs flow end to end (a hold and release seen by a watcher: with
//! Kafka the consumer group needs a moment), starts worker processes with
//! watchers and holders, runs the holders at the asked rate for a bounded
//! time, waits for the watchers to settle on the store's version and has
//! every watcher's map compared with the store's. It reads the server's
//! `/metrics` around the holding window and writes the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::coordinator::{self, Clock, Reach, split};
use crate::host;
use crate::procs::Workers;
use crate::report::{self, Host};
use crate::seatlayout::{CompactMap, parse_compact};
use crate::seatsreport::{self, Readings, SeatsConfig};
use crate::server::{Sampler, Server};
use crate::tokens::{Minter, SecretArgs};
use crate::wire::{Buyers, Command, HolderReport, Report, SeatsReadyReport, SeatsSpec, WatchReport, unix_us};

/// The queue settings the run needs: every `join` admitted at once, one
/// seat per hold well under the limit.
const OPEN_QUEUE: &[(&str, i64)] =
    &[("rate_per_min", 1_000_000), ("max_active", 1_000_000), ("max_seats_per_buyer", 8)];
/// How long the bus may take to deliver the probe's diffs (Kafka's consumer
/// group assignment takes a few seconds after the server starts).
const BUS_PROBE_TIMEOUT: Duration = Duration::from_secs(60);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct SeatsArgs {
    /// The server under test; must be on 127.0.0.0/8.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, default_value = "demo-live")]
    pub event: String,
    /// Seller id that owns the event (for its queue settings).
    #[arg(long, default_value = "demo")]
    pub seller: String,
    // --secret, --secret-file
    #[command(flatten)]
    pub secret: SecretArgs,
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
    /// Worker processes (watchers and holders are split over them; each
    /// owns every `procs`-th seat).
    #[arg(long, default_value_t = 4)]
    pub procs: usize,
    /// Local addresses to connect from, e.g. 127.0.0.2-127.0.0.9.
    #[arg(long, default_value = "127.0.0.2-127.0.0.9")]
    pub source_ips: String,
    /// Sockets being set up at once, over all workers.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// After the holders stop, how long watchers get to reach the store's
    /// version before the maps are compared anyway.
    #[arg(long, default_value_t = 20)]
    pub settle_timeout_s: u64,
    /// Give up on sockets not set up after this long.
    #[arg(long, default_value_t = 120)]
    pub ramp_timeout_s: u64,
    /// What the server is, for the report (e.g. embedded, redis-kafka).
    #[arg(long, default_value = "unspecified")]
    pub label: String,
    /// Directory for the JSON and HTML reports.
    #[arg(long, default_value = "loadtest/reports")]
    pub out: PathBuf,
}

/// Validated settings of one run.
struct Plan {
    reach: Reach,
    hold_ms: (u64, u64),
    user_prefix: String,
    host: Host,
}

fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
    ensure!(a <= b, "empty range {s}");
    Ok((a, b))
}

fn plan(a: &SeatsArgs) -> anyhow::Result<Plan> {
    let reach = Reach::parse(&a.url, &a.source_ips, &a.secret)?;
    ensure!((1..=100_000).contains(&a.watchers), "--watchers must be 1..=100000");
    ensure!((1..=10_000).contains(&a.holders), "--holders must be 1..=10000");
    ensure!(a.rate > 0.0 && a.rate <= 100_000.0, "--rate must be in (0, 100000]");
    ensure!((3..=3_600).contains(&a.duration_s), "--duration-s must be 3..=3600");
    ensure!((1..=64).contains(&a.procs), "--procs must be 1..=64");
    ensure!((1..=10_000).contains(&a.connect_concurrency), "--connect-concurrency must be 1..=10000");
    ensure!((1..=600).contains(&a.settle_timeout_s), "--settle-timeout-s must be 1..=600");
    ensure!((5..=3_600).contains(&a.ramp_timeout_s), "--ramp-timeout-s must be 5..=3600");
    let hold_ms = parse_range(&a.hold_ms).context("--hold-ms must be like 20-200")?;
    ensure!(hold_ms.1 <= 60_000, "--hold-ms at most 60000");
    let per_proc = (a.watchers + a.holders).div_ceil(a.procs as u64);
    let host = reach.check_host(per_proc, "sockets", a.watchers + a.holders)?;
    Ok(Plan { reach, hold_ms, user_prefix: coordinator::user_prefix("ls"), host })
}

pub async fn run(a: SeatsArgs) -> anyhow::Result<()> {
    let plan = plan(&a)?;
    let minter = Minter::new(&plan.reach.secret);
    let (server, before) = coordinator::seller_session(&plan.reach, &minter, &a.url, &a.event, &a.seller).await?;
    let mut open = serde_json::Map::new();
    let mut restore = serde_json::Map::new();
    for (field, value) in OPEN_QUEUE.iter().map(|(f, v)| (*f, json!(v))).chain([("paused", json!(false))]) {
        let was = before.get(field).with_context(|| format!("the queue settings have no `{field}`"))?;
        restore.insert(field.into(), was.clone());
        open.insert(field.into(), value);
    }
    server.patch_queue(&a.event, &Value::Object(open)).await.context("cannot open the queue for the run")?;
    eprintln!("opened the queue of {} (admit at once); will restore {}", a.event, Value::Object(restore.clone()));

    let started_at = report::now_rfc3339();
    let outcome = coordinator::interruptible(measure(&a, &plan, &server, &minter)).await;
    let summary = coordinator::restore_queue(&server, &a.event, &Value::Object(restore), outcome, || {
        format!("restored the queue settings of {}", a.event)
    })
    .await?;
    report::publish(&a.out, started_at, summary)
}

async fn store_map(server: &Server, event: &str) -> anyhow::Result<CompactMap> {
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

async fn measure(
    a: &SeatsArgs,
    plan: &Plan,
    server: &Server,
    minter: &Minter,
) -> anyhow::Result<seatsreport::SeatsSummary> {
    let mut clock = Clock::start();
    let start_map = store_map(server, &a.event).await?;
    let free: Vec<usize> = (0..start_map.ids.len()).filter(|&i| start_map.status[i] == b'f').collect();
    ensure!(free.len() >= a.procs * 2, "only {} free seats at {}: nothing to hold", free.len(), a.event);
    eprintln!("{}: {} seats, {} free, version {}", a.event, start_map.ids.len(), free.len(), start_map.version);

    eprintln!("checking that seat diffs reach watchers");
    let probe_seat = &start_map.ids[*free.last().unwrap_or(&0)];
    let bus_probe_ms = probe_bus(plan, server, minter, &a.event, probe_seat).await?;
    eprintln!("  a hold and its release reached a watcher after {bus_probe_ms:.0} ms");

    let sampler =
        Sampler::start(server.clone(), clock.t0, Duration::from_secs(a.ramp_timeout_s * 2 + a.duration_s * 2 + 600));
    let result = Workers::with(a.procs, async |workers| {
        let (baseline, _) = server.metrics_all().await?;
        let ready = open_sockets(a, plan, &start_map, workers).await?;
        clock.mark("watching");
        let (watching, admitted): (u64, u64) = ready.iter().fold((0, 0), |s, r| (s.0 + r.watching, s.1 + r.admitted));
        ensure!(admitted > 0, "no holder was admitted; see the set-up errors");
        ensure!(watching > 0, "no watcher is watching; see the set-up errors");
        eprintln!("  {watching} watchers watching, {admitted} holders admitted");

        // Holding window.
        let (window_start, counters_start) = server.metrics_all().await?;
        let host_before = host::cpu_ticks();
        let pids = workers.pids();
        let cpu_before = loadgen_cpu(&pids);
        let window_started = Instant::now();
        let rate = a.rate / a.procs as f64;
        workers.send(|_| Command::SeatsStart { rate_per_s: rate }).await?;
        clock.mark("holding");
        eprintln!("holding: {:.0} holds/s for {} s", a.rate, a.duration_s);
        tokio::time::sleep(Duration::from_secs(a.duration_s)).await;
        workers.send(|_| Command::SeatsStop).await?;
        let holders: Vec<HolderReport> = workers
            .gather("stop", Duration::from_secs(60), |r| match r {
                Report::SeatsStopped(h) => Some(h),
                _ => None,
            })
            .await?;
        let window_s = window_started.elapsed().as_secs_f64();
        let (window_end, counters_end) = server.metrics_all().await?;
        let host_busy_pct = host::busy_pct(host_before, host::cpu_ticks());
        let loadgen_cpu_s = cpu_before.zip(loadgen_cpu(&pids)).map(|(b, e)| e - b);
        clock.mark("stopped");

        // Settle on the store's version, then compare every map.
        let settled = Instant::now();
        let (truth, settle_s) = settle(a, server, workers).await?;
        clock.mark("settled");
        let status = String::from_utf8(truth.status.clone()).context("status letters")?;
        let version = truth.version;
        workers.send(|_| Command::SeatsVerify { version, status: status.clone() }).await?;
        let watches: Vec<WatchReport> = workers
            .gather("verify", Duration::from_secs(60), |r| match r {
                Report::SeatsVerified(w) => Some(w),
                _ => None,
            })
            .await?;
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
        url: a.url.clone(),
        event: a.event.clone(),
        label: a.label.clone(),
        watchers: a.watchers,
        holders: a.holders,
        rate_per_s: a.rate,
        duration_s: a.duration_s,
        hold_ms: plan.hold_ms,
        procs: a.procs,
        connect_concurrency: a.connect_concurrency,
        source_ips: plan.reach.sources.iter().map(ToString::to_string).collect(),
        user_prefix: plan.user_prefix.clone(),
        seats: start_map.ids.len(),
        seats_free_at_start: free.len(),
    };
    Ok(seatsreport::assemble(config, plan.host.clone(), &ready, &holders, &watches, &readings, timeline, clock.marks))
}

fn buyers(a: &SeatsArgs, plan: &Plan, kind: &str, share: (u64, u64)) -> Buyers {
    let max_life_ms = (a.ramp_timeout_s * 2 + a.duration_s * 2 + a.settle_timeout_s + 300) * 1_000;
    let user_prefix = format!("{}{kind}", plan.user_prefix);
    plan.reach.buyers(&a.event, user_prefix, share, a.connect_concurrency.div_ceil(a.procs), max_life_ms)
}

async fn open_sockets(
    a: &SeatsArgs,
    plan: &Plan,
    map: &CompactMap,
    workers: &mut Workers,
) -> anyhow::Result<Vec<SeatsReadyReport>> {
    eprintln!("opening {} watchers and {} holders from {} processes", a.watchers, a.holders, a.procs);
    let (ws, hs) = (split(a.watchers, a.procs), split(a.holders, a.procs));
    let initial = String::from_utf8(map.status.clone()).context("status letters")?;
    let seed = unix_us();
    let ramp_deadline_ms = a.ramp_timeout_s * 1_000;
    workers
        .send(|i| {
            Command::SeatsOpen(Box::new(SeatsSpec {
                watchers: buyers(a, plan, "w", ws[i]),
                holders: buyers(a, plan, "h", hs[i]),
                ids: map.ids.clone(),
                initial: initial.clone(),
                worker: i,
                workers: a.procs,
                hold_ms: plan.hold_ms,
                ramp_deadline_ms,
                seed,
            }))
        })
        .await?;
    workers
        .gather("set-up", Duration::from_secs(a.ramp_timeout_s + 30), |r| match r {
            Report::SeatsReady(x) => Some(x),
            _ => None,
        })
        .await
}

/// Waits until every open watcher is at the store's version (re-reading
/// the store while it still moves), bounded; returns the store's map.
async fn settle(a: &SeatsArgs, server: &Server, workers: &mut Workers) -> anyhow::Result<(CompactMap, f64)> {
    let started = Instant::now();
    let give_up = started + Duration::from_secs(a.settle_timeout_s);
    let mut last_print = Instant::now();
    loop {
        let truth = store_map(server, &a.event).await?;
        let version = truth.version;
        workers.send(|_| Command::SeatsProbe { version }).await?;
        let at = workers
            .gather("settle", Duration::from_secs(30), |r| match r {
                Report::SeatsAt(x) => Some(x),
                _ => None,
            })
            .await?;
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

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Sends a request and returns its reply; pushes that arrive meanwhile go
/// to `pushes`.
async fn ask(ws: &mut Ws, msg: Value, pushes: &mut Vec<Value>) -> anyhow::Result<Value> {
    let req = msg["req"].clone();
    ws.send(Message::text(msg.to_string())).await.context("the probe socket failed")?;
    let until = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(until, ws.next()).await.context("no reply in time")?;
        let Some(Ok(Message::Text(t))) = next else {
            if matches!(next, Some(Ok(_))) {
                continue;
            }
            bail!("the probe socket closed");
        };
        let v: Value = serde_json::from_str(&t).context("unreadable frame")?;
        if v["req"] == req {
            return Ok(v);
        }
        pushes.push(v);
    }
}

/// Seat versions a watcher follows from frames: `seats` frames only count
/// when they continue its version (the bus delivered them); a pushed
/// `seatmap` resets it (the server resynced).
fn follow(version: &mut u64, bus_changes: &mut u64, frame: &Value) {
    match frame["type"].as_str() {
        Some("seats") => {
            let n = frame["changes"].as_array().map_or(0, Vec::len) as u64;
            if let Some(v) = frame["version"].as_u64()
                && v == *version + n
            {
                *version = v;
                *bus_changes += n;
            }
        }
        Some("seatmap") => {
            if let Some(v) = frame["version"].as_u64() {
                *version = v;
            }
        }
        _ => {}
    }
}

/// One buyer holds and releases `seat` while watching, until both changes
/// arrive as `seats` diffs and its map is at the store's version: proof
/// that the relay, the bus and the feed work before the run counts on them.
/// Returns how long that took, in ms.
async fn probe_bus(plan: &Plan, server: &Server, minter: &Minter, event: &str, seat: &str) -> anyhow::Result<f64> {
    let token = minter.buyer(&format!("{}probe", plan.user_prefix))?;
    let url = format!("{}/ws?token={token}", plan.reach.target.ws_base());
    let connect = async {
        let stream = tokio::net::TcpStream::connect(plan.reach.target.addr).await?;
        stream.set_nodelay(true)?;
        anyhow::Ok(tokio_tungstenite::client_async(url.as_str(), stream).await?.0)
    };
    let mut ws = tokio::time::timeout(REPLY_TIMEOUT, connect)
        .await
        .context("the probe's upgrade timed out")?
        .context("the probe's upgrade failed")?;
    let mut pushes = Vec::new();
    let started = Instant::now();
    let outcome = async {
        let joined = ask(&mut ws, json!({"type": "join", "event": event, "req": 1}), &mut pushes).await?;
        if joined["type"] != "admitted" {
            bail!("the probe buyer was not admitted at once: {joined}");
        }
        let map =
            ask(&mut ws, json!({"type": "watch", "event": event, "format": "compact", "req": 2}), &mut pushes).await?;
        let mut version = map["version"].as_u64().context("the probe's seat map has no version")?;
        let mut req = 10;
        let until = Instant::now() + BUS_PROBE_TIMEOUT;
        while Instant::now() < until {
            let mut bus_changes = 0;
            for kind in ["hold", "release"] {
                req += 1;
                let reply =
                    ask(&mut ws, json!({"type": kind, "event": event, "seats": [seat], "req": req}), &mut pushes)
                        .await?;
                if reply["type"] == "error" {
                    bail!("the probe's {kind} of {seat} failed: {reply}");
                }
            }
            // Give the diffs up to 2 s, following what arrives.
            let round = Instant::now() + Duration::from_secs(2);
            loop {
                for p in pushes.drain(..) {
                    follow(&mut version, &mut bus_changes, &p);
                }
                let store = store_map(server, event).await?.version;
                if bus_changes >= 2 && version == store {
                    return Ok(started.elapsed().as_secs_f64() * 1_000.0);
                }
                if Instant::now() >= round {
                    break;
                }
                if let Ok(Some(Ok(Message::Text(t)))) =
                    tokio::time::timeout(Duration::from_millis(100), ws.next()).await
                    && let Ok(v) = serde_json::from_str::<Value>(&t)
                {
                    pushes.push(v);
                }
            }
            eprintln!("  no diffs yet (version {version}); trying again");
        }
        bail!("seat diffs did not reach a watcher within {BUS_PROBE_TIMEOUT:?}: is the bus working?")
    }
    .await;
    let _ = ask(&mut ws, json!({"type": "leave", "event": event, "req": 3}), &mut pushes).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    outcome
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

    #[test]
    fn the_probe_counts_only_diffs_that_continue_its_version() {
        let (mut v, mut n) = (10, 0);
        follow(&mut v, &mut n, &json!({"type": "seats", "version": 11, "changes": [{"id": "a", "status": "held"}]}));
        assert_eq!((v, n), (11, 1));
        follow(&mut v, &mut n, &json!({"type": "seats", "version": 13, "changes": [{"id": "a", "status": "free"}]}));
        assert_eq!((v, n), (11, 1), "a gap is not delivery");
        follow(&mut v, &mut n, &json!({"type": "seatmap", "version": 13}));
        assert_eq!((v, n), (13, 1), "a pushed map resets the version but proves no diff");
        follow(&mut v, &mut n, &json!({"type": "held", "seats": ["a"]}));
        assert_eq!((v, n), (13, 1));
    }
}
