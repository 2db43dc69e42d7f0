//! `qt-load checkout`: the coordinator of the checkout-and-pay benchmark.
//! It opens the event's queue for the run (every `join` admitted at once,
//! enough seats per buyer, a long hold; the settings are restored
//! afterwards, also on error or Ctrl-C), creates a coupon campaign for the
//! buyers who ask for the `best` coupon, plans who pays how, has worker
//! processes set every buyer up (socket, join, coupon, seats), starts the
//! buy at one moment (checkout, pay, the final payment), has the seller
//! refund a share of the paid orders, waits for the seat map to show the
//! sales and refunds, has every buyer list its orders, reads the payment
//! sandbox's ledger and audits it all against each other.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use qt_protocol::frames::SeatStatus;
use serde_json::{Value, json};

use crate::checkout::audit::{self, Inputs, Refund};
use crate::checkout::books::{Base, Seller, read_ledger, seat_map};
use crate::checkout::figures::{self, CpuPoint, Readings, counters};
use crate::checkout::plan::{BuyerPlan, Kind, Mix, parse_seats, plan};
use crate::checkout::report::{CheckoutConfig, CheckoutSummary};
use crate::checkout::wire::{BuyReport, BuyerRecord, CheckoutSpec, Command, ListReport, ReadyReport, Told};
use crate::common::args::RunArgs;
use crate::common::coordinator::{self, Clock, Reach, split};
use crate::common::host;
use crate::common::procs::Workers;
use crate::common::report::{self, Host};
use crate::common::server::{Sampler, Server, parse_metrics};
use crate::common::tokens::Minter;
use crate::common::wire::unix_us;

type CheckoutWorkers = Workers<Command>;

/// A checkout or pay reply, three times over (see the crowd), plus slack.
const BUY_SLACK: Duration = Duration::from_secs(120);
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the seat map is read while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// How often the server's CPU is read during the buy.
const CPU_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct CheckoutArgs {
    // --url, --event, --seller, --secret, --procs, --source-ips, --ramp-timeout-s, --out
    #[command(flatten)]
    pub run: RunArgs,
    /// Buyers, one socket each. With 1-2 seats each, 1,500 buyers need
    /// about 2,250 of the demo hall's 2,400 seats; beyond that, later
    /// buyers find no seats (counted apart, not as failures).
    #[arg(long, default_value_t = 1_500)]
    pub buyers: u64,
    /// Seats each buyer holds with `hold_best`: uniform in this range.
    #[arg(long, default_value = "1-2")]
    pub seats: String,
    /// Payment key prefixes and their weights (the sandbox's outcomes).
    #[arg(long, default_value = "ok=90,flaky=4,decline=3,slow=2,lost=1")]
    pub mix: String,
    /// Share of buyers that claim a coupon of the run's campaign and check
    /// out with `coupon: "best"` (the others check out without one).
    #[arg(long, default_value_t = 0.2)]
    pub best_share: f64,
    /// The run's campaign: a fixed amount off, in the event's minor unit.
    #[arg(long, default_value_t = 5_000)]
    pub coupon_value: i64,
    /// Share of the paid orders (`ok` keys) the seller refunds afterwards.
    #[arg(long, default_value_t = 0.02)]
    pub refund_share: f64,
    /// The event's `hold_s` for the run (holds and orders last this long).
    #[arg(long, default_value_t = 900)]
    pub hold_s: u32,
    /// Buyers being set up at once, over all workers.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Checkouts started per second over all buyers (0: every buyer at the
    /// same moment, a burst).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// The buy starts this long after the start command goes out.
    #[arg(long, default_value_t = 1_000)]
    pub barrier_ms: u64,
    /// Buyers without seats at the start keep trying this long.
    #[arg(long, default_value_t = 15)]
    pub late_s: u64,
    /// A `pending` payment's final answer must come within this long.
    #[arg(long, default_value_t = 90)]
    pub final_timeout_s: u64,
    /// How long the seat map may take to show every sale and refund.
    #[arg(long, default_value_t = 30)]
    pub settle_timeout_s: u64,
    /// The payment sandbox whose ledger is audited; default: the one the
    /// server mounts, {url}/pg-sandbox.
    #[arg(long)]
    pub pg_url: Option<String>,
    /// What the server is, for the report (embedded, redis-kafka).
    #[arg(long, default_value = "unspecified")]
    pub label: String,
    /// Paid orders per second to pass: by default 500 for redis-kafka, else 1,000.
    #[arg(long)]
    pub target_per_s: Option<f64>,
    /// Seeds the plan (who pays how); default: the clock.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Validated settings of one run.
struct Plan {
    reach: Reach,
    seats: (u8, u8),
    mix: Mix,
    plans: Vec<BuyerPlan>,
    pg: Base,
    user_prefix: String,
    campaign: Option<String>,
    target_per_s: f64,
    seed: u64,
    host: Host,
}

fn default_target(label: &str) -> f64 {
    if label == "redis-kafka" { 500.0 } else { 1_000.0 }
}

fn make_plan(a: &CheckoutArgs) -> anyhow::Result<Plan> {
    let reach = a.run.reach()?;
    ensure!((1..=100_000).contains(&a.buyers), "--buyers must be 1..=100000");
    let seats = parse_seats(&a.seats)?;
    let mix = Mix::parse(&a.mix).context("--mix must be like ok=90,flaky=4,decline=3,slow=2,lost=1")?;
    ensure!((0.0..=1.0).contains(&a.best_share), "--best-share must be 0..=1");
    ensure!((0.0..=1.0).contains(&a.refund_share), "--refund-share must be 0..=1");
    ensure!(a.coupon_value >= 1, "--coupon-value must be at least 1");
    ensure!((60..=3_600).contains(&a.hold_s), "--hold-s must be 60..=3600");
    ensure!((1..=10_000).contains(&a.connect_concurrency), "--connect-concurrency must be 1..=10000");
    ensure!((10..=60_000).contains(&a.barrier_ms), "--barrier-ms must be 10..=60000");
    ensure!(a.rate >= 0.0 && a.rate <= 1_000_000.0, "--rate must be 0..=1000000 (0: all at once)");
    ensure!(a.late_s <= 600, "--late-s at most 600");
    ensure!((1..=600).contains(&a.final_timeout_s), "--final-timeout-s must be 1..=600");
    ensure!((1..=600).contains(&a.settle_timeout_s), "--settle-timeout-s must be 1..=600");
    let pg_url = a.pg_url.clone().unwrap_or_else(|| format!("{}/pg-sandbox", a.run.url.trim_end_matches('/')));
    let pg = Base::parse(&pg_url).context("--pg-url")?;
    let per_proc = a.buyers.div_ceil(a.run.procs as u64);
    let host = reach.check_host(per_proc, "sockets", a.buyers)?;
    let seed = a.seed.unwrap_or_else(unix_us);
    let plans = plan(a.buyers, &mix, seats, a.best_share, seed);
    let campaign =
        (plans.iter().any(|p| p.best)).then(|| coordinator::user_prefix("co-").trim_end_matches('-').to_owned());
    Ok(Plan {
        reach,
        seats,
        mix,
        plans,
        pg,
        user_prefix: coordinator::user_prefix("lk"),
        campaign,
        target_per_s: a.target_per_s.unwrap_or_else(|| default_target(&a.label)),
        seed,
        host,
    })
}

pub async fn run(a: CheckoutArgs) -> anyhow::Result<()> {
    let plan = make_plan(&a)?;
    let minter = Minter::new(&plan.reach.secret);
    let (server, before) = coordinator::seller_session(&a.run, &plan.reach, &minter).await?;
    let open_queue = [
        ("rate_per_min", json!(1_000_000)),
        ("max_active", json!(1_000_000)),
        ("max_seats_per_buyer", json!(plan.seats.1.max(2))),
        ("hold_s", json!(a.hold_s)),
        ("paused", json!(false)),
    ];
    let mut open = serde_json::Map::new();
    let mut restore = serde_json::Map::new();
    for (field, value) in open_queue {
        let was = before.get(field).with_context(|| format!("the queue settings have no `{field}`"))?;
        restore.insert(field.into(), was.clone());
        open.insert(field.into(), value);
    }
    server.patch_queue(&a.run.event, &Value::Object(open)).await.context("cannot open the queue for the run")?;
    eprintln!("opened the queue of {} for the run; will restore {}", a.run.event, Value::Object(restore.clone()));
    let seller = Seller { target: plan.reach.target.clone(), token: minter.seller("qt-load", &a.run.seller)? };

    let started_at = report::now_rfc3339();
    let outcome = coordinator::interruptible(measure(&a, &plan, &server, &seller)).await;
    let summary = coordinator::restore_queue(&server, &a.run.event, &Value::Object(restore), outcome, || {
        format!("restored the queue settings of {}", a.run.event)
    })
    .await?;
    report::publish(&a.run.out, started_at, summary)
}

/// CPU seconds of the load generator's processes so far.
fn loadgen_cpu(pids: &[u32]) -> Option<f64> {
    let mut total = host::process_cpu_s(std::process::id())?;
    for pid in pids {
        total += host::process_cpu_s(*pid)?;
    }
    Some(total)
}

async fn read_metrics(server: &Server) -> anyhow::Result<(crate::common::server::Sample, BTreeMap<String, f64>)> {
    let text = server.get("/metrics").await?;
    Ok((parse_metrics(&text)?, counters(&text)))
}

/// The seats the run's paid orders should leave sold, given the refunds.
fn expected_sold(records: &[BuyerRecord], refunded: &BTreeSet<String>) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.final_status == Some(Told::Paid))
        .filter_map(|r| r.order.as_ref())
        .filter(|o| !refunded.contains(&o.id))
        .flat_map(|o| o.seats.iter().cloned())
        .collect()
}

/// The paid `ok` orders the seller refunds: `share` of the paid orders,
/// spread over the run.
fn pick_refunds(records: &[BuyerRecord], share: f64) -> Vec<String> {
    let paid = records.iter().filter(|r| r.final_status == Some(Told::Paid)).count();
    let want = (paid as f64 * share).round() as usize;
    let candidates: Vec<&str> = records
        .iter()
        .filter(|r| r.final_status == Some(Told::Paid) && r.kind == Some(Kind::Ok))
        .filter_map(|r| r.order.as_ref().map(|o| o.id.as_str()))
        .collect();
    let want = want.min(candidates.len());
    (0..want).map(|k| candidates[k * candidates.len() / want].to_owned()).collect()
}

/// Reads the server's CPU seconds and the machine's CPU ticks every
/// `CPU_POLL` until stopped: (Unix µs, server CPU s, machine busy and total
/// ticks), so the figures can take both over the buy's own window.
fn poll_cpu(server: Server) -> (tokio::task::JoinHandle<()>, std::sync::Arc<std::sync::Mutex<Vec<CpuPoint>>>) {
    let points = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = points.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(CPU_POLL);
        loop {
            tick.tick().await;
            if let Ok(s) = server.metrics().await {
                let point = CpuPoint { unix_us: unix_us(), server_cpu_s: s.cpu_s, machine: host::cpu_ticks() };
                out.lock().unwrap_or_else(|p| p.into_inner()).push(point);
            }
        }
    });
    (task, points)
}

/// What the run gathered, before the figures.
struct Gathered {
    ready: Vec<ReadyReport>,
    bought: Vec<BuyReport>,
    lists: Vec<ListReport>,
    refunds: Vec<Refund>,
    readings: Readings,
    map: BTreeMap<String, SeatStatus>,
}

async fn measure(a: &CheckoutArgs, plan: &Plan, server: &Server, seller: &Seller) -> anyhow::Result<CheckoutSummary> {
    let mut clock = Clock::start();
    let target = &plan.reach.target;
    let (_, start_map) = seat_map(target, &a.run.event).await.context("cannot read the seat map")?;
    let sold_at_start: BTreeSet<String> =
        start_map.iter().filter(|(_, s)| **s == SeatStatus::Sold).map(|(id, _)| id.clone()).collect();
    let free = start_map.values().filter(|s| **s == SeatStatus::Free).count() as u64;
    let wanted: u64 = plan.plans.iter().map(|p| u64::from(p.seats)).sum();
    ensure!(free > 0, "no free seat at {}: nothing to buy", a.run.event);
    eprintln!(
        "{}: {} seats, {} free; {} buyers want {} seats{}",
        a.run.event,
        start_map.len(),
        free,
        a.buyers,
        wanted,
        if wanted > free { " (more than there are: later buyers find none)" } else { "" }
    );
    let before_ledger = read_ledger(&plan.pg, &[]).await.with_context(|| {
        format!("cannot read the payment sandbox's ledger at {} (give --pg-url)", plan.pg.describe())
    })?;
    let ledger_before: BTreeSet<String> = before_ledger.charges.iter().map(|c| c.order_id.clone()).collect();
    if let Some(id) = &plan.campaign {
        let c = seller.create_campaign(id, &a.run.event, a.coupon_value).await.context("cannot create the campaign")?;
        eprintln!("created campaign {} ({} off, unlimited) for the best-coupon buyers", c.id, a.coupon_value);
    }
    let counts = plan.mix.counts(a.buyers);
    eprintln!(
        "plan: {} (seed {}); {} buyers ask for the best coupon",
        counts.iter().map(|(k, n)| format!("{} {n}", k.prefix())).collect::<Vec<_>>().join(", "),
        plan.seed,
        plan.plans.iter().filter(|p| p.best).count()
    );
    clock.mark("planned");

    let run_max =
        Duration::from_secs(a.run.ramp_timeout_s * 2 + a.late_s + a.final_timeout_s + a.settle_timeout_s + 900);
    let sampler = Sampler::start(server.clone(), clock.t0, run_max);
    let result = CheckoutWorkers::with(a.run.procs, async |workers| {
        let ready = set_up(a, plan, workers).await?;
        clock.mark("set up");
        let (held, no_seats, failed) =
            ready.iter().fold((0, 0, 0), |s, r| (s.0 + r.held, s.1 + r.no_seats, s.2 + r.failed));
        ensure!(held > 0, "no buyer holds seats; see the set-up errors");
        eprintln!("  {held} buyers hold their seats, {no_seats} found none, {failed} failed");

        // The buy.
        let (before, counters_before) = read_metrics(server).await?;
        let pids = workers.pids();
        let window = Instant::now();
        let barrier_unix_us = unix_us() + a.barrier_ms * 1_000;
        let (late_ms, final_timeout_ms) = (a.late_s * 1_000, a.final_timeout_s * 1_000);
        let (poller, cpu_points) = poll_cpu(server.clone());
        let rate_per_s = a.rate;
        workers.send(|_| Command::Go { at_unix_us: barrier_unix_us, rate_per_s, late_ms, final_timeout_ms }).await?;
        match a.rate {
            0.0 => eprintln!("buy: every buyer checks out and pays at the barrier in {} ms", a.barrier_ms),
            r => eprintln!("buy: {r:.0} checkouts a second from the barrier in {} ms", a.barrier_ms),
        }
        let idle_from = host::cpu_ticks();
        tokio::time::sleep(Duration::from_micros(barrier_unix_us.saturating_sub(unix_us()))).await;
        let host_before = host::cpu_ticks();
        let host_busy_before_pct = host::busy_pct(idle_from, host_before);
        let cpu_before = loadgen_cpu(&pids);
        clock.mark("buy");
        let pacing = if a.rate > 0.0 { Duration::from_secs_f64(a.buyers as f64 / a.rate) } else { Duration::ZERO };
        let deadline = Duration::from_millis(a.barrier_ms + late_ms + final_timeout_ms) + pacing + BUY_SLACK;
        let bought: Vec<Box<BuyReport>> = workers.answers("buy", deadline).await?;
        let bought: Vec<BuyReport> = bought.into_iter().map(|b| *b).collect();
        poller.abort();
        let cpu_trace = std::mem::take(&mut *cpu_points.lock().unwrap_or_else(|p| p.into_inner()));
        let window_s = window.elapsed().as_secs_f64();
        let host_busy_pct = host::busy_pct(host_before, host::cpu_ticks());
        let loadgen_cpu_s = cpu_before.zip(loadgen_cpu(&pids)).map(|(b, e)| e - b);
        let (after, counters_after) = read_metrics(server).await?;
        clock.mark("bought");
        let records: Vec<BuyerRecord> = bought.iter().flat_map(|b| b.records.iter().cloned()).collect();
        let paid = records.iter().filter(|r| r.final_status == Some(Told::Paid)).count();
        eprintln!("  {paid} paid of {} orders", records.iter().filter(|r| r.order.is_some()).count());

        // The seller refunds a share of the paid orders.
        let mut refunds = Vec::new();
        for order in pick_refunds(&records, a.refund_share) {
            let answer = match seller.refund(&order).await {
                Ok(o) => o.status.as_str().to_owned(),
                Err(e) => format!("{e:#}"),
            };
            refunds.push(Refund { order, answer });
        }
        if !refunds.is_empty() {
            let ok = refunds.iter().filter(|r| r.answer == "refunded").count();
            eprintln!("  the seller refunded {ok} of {} orders", refunds.len());
        }
        clock.mark("refunded");

        // The seat map settles on the sales and refunds.
        let refunded: BTreeSet<String> =
            refunds.iter().filter(|r| r.answer == "refunded").map(|r| r.order.clone()).collect();
        let mut want = expected_sold(&records, &refunded);
        want.extend(sold_at_start.iter().cloned());
        let settle_started = Instant::now();
        let (map, settled) = loop {
            let (_, map) = seat_map(target, &a.run.event).await?;
            let sold: BTreeSet<&String> =
                map.iter().filter(|(_, s)| **s == SeatStatus::Sold).map(|(id, _)| id).collect();
            let done = sold.len() == want.len() && want.iter().all(|s| sold.contains(s));
            if done || settle_started.elapsed() >= Duration::from_secs(a.settle_timeout_s) {
                if !done {
                    eprintln!(
                        "  the seat map shows {} sold, {} expected; auditing it as it is",
                        sold.len(),
                        want.len()
                    );
                }
                break (map, done);
            }
            tokio::time::sleep(SETTLE_POLL).await;
        };
        let settle_s = settle_started.elapsed().as_secs_f64();
        clock.mark("settled");

        // Every buyer's own orders.
        let timeout_ms = LIST_TIMEOUT.as_millis() as u64;
        workers.send(|_| Command::List { timeout_ms }).await?;
        let lists: Vec<ListReport> = workers.answers("list", LIST_TIMEOUT + Duration::from_secs(30)).await?;
        clock.mark("listed");
        eprintln!("closing sockets");
        workers.close_sockets().await?;
        clock.mark("closed");
        let readings = Readings {
            barrier_unix_us,
            before,
            after,
            counters_before,
            counters_after,
            window_s,
            host_busy_pct,
            host_busy_before_pct,
            cpu_trace,
            loadgen_cpu_s,
            settle_s,
            settled,
        };
        Ok(Gathered { ready, bought, lists, refunds, readings, map })
    })
    .await;
    let timeline = sampler.stop();
    let g = result?;
    let records: Vec<BuyerRecord> = g.bought.iter().flat_map(|b| b.records.iter().cloned()).collect();
    let orders: Vec<String> = records.iter().filter_map(|r| r.order.as_ref().map(|o| o.id.clone())).collect();
    let ledger = read_ledger(&plan.pg, &orders).await.context("cannot read the payment sandbox's ledger")?;
    let listings: Vec<_> = g.lists.iter().flat_map(|l| l.listings.iter().cloned()).collect();
    let audit = audit::audit(&Inputs {
        records: &records,
        refunds: &g.refunds,
        ledger: &ledger,
        ledger_before: &ledger_before,
        map: &g.map,
        sold_at_start: &sold_at_start,
        listings: &listings,
        list_errors: g.lists.iter().map(|l| l.errors.values().sum::<u64>()).sum(),
    });
    let config = CheckoutConfig {
        url: a.run.url.clone(),
        event: a.run.event.clone(),
        label: a.label.clone(),
        buyers: a.buyers,
        seats: plan.seats,
        mix: plan.mix.clone(),
        best_share: a.best_share,
        refund_share: a.refund_share,
        campaign: plan.campaign.clone(),
        coupon_value: a.coupon_value,
        hold_s: a.hold_s,
        procs: a.run.procs,
        connect_concurrency: a.connect_concurrency,
        source_ips: plan.reach.sources.iter().map(ToString::to_string).collect(),
        user_prefix: plan.user_prefix.clone(),
        barrier_ms: a.barrier_ms,
        rate_per_s: a.rate,
        late_s: a.late_s,
        final_timeout_s: a.final_timeout_s,
        settle_timeout_s: a.settle_timeout_s,
        pg_url: plan.pg.describe(),
        target_per_s: plan.target_per_s,
        seed: plan.seed,
        seats_total: start_map.len() as u64,
        seats_free_at_start: free,
    };
    Ok(figures::assemble(config, plan.host.clone(), &g.ready, &g.bought, audit, g.readings, timeline, clock.marks))
}

async fn set_up(a: &CheckoutArgs, plan: &Plan, workers: &mut CheckoutWorkers) -> anyhow::Result<Vec<ReadyReport>> {
    eprintln!("setting up {} buyers from {} processes", a.buyers, a.run.procs);
    let parts = split(a.buyers, a.run.procs);
    let ramp_deadline_ms = a.run.ramp_timeout_s * 1_000;
    let max_life_ms =
        (a.run.ramp_timeout_s * 2 + a.late_s + a.final_timeout_s + a.settle_timeout_s + 600) * 1_000 + a.barrier_ms;
    let inflight = a.connect_concurrency.div_ceil(a.run.procs);
    workers
        .send(|i| {
            let (first, count) = parts[i];
            Command::Open(Box::new(CheckoutSpec {
                buyers: plan.reach.buyers(&a.run.event, plan.user_prefix.clone(), parts[i], inflight, max_life_ms),
                plans: plan.plans[first as usize..(first + count) as usize].to_vec(),
                campaign: plan.campaign.clone(),
                ramp_deadline_ms,
                seed: plan.seed,
                worker: i,
                workers: a.run.procs,
            }))
        })
        .await?;
    let ready: Vec<Box<ReadyReport>> =
        workers.answers("set-up", Duration::from_secs(a.run.ramp_timeout_s + 30)).await?;
    Ok(ready.into_iter().map(|r| *r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::wire::OrderFacts;

    fn paid(kind: Kind, id: &str, seats: &[&str]) -> BuyerRecord {
        BuyerRecord {
            kind: Some(kind),
            final_status: Some(Told::Paid),
            order: Some(OrderFacts {
                id: id.into(),
                seats: seats.iter().map(|s| (*s).to_owned()).collect(),
                ..OrderFacts::default()
            }),
            ..BuyerRecord::default()
        }
    }

    #[test]
    fn refunds_are_ok_orders_spread_over_the_run() {
        let records: Vec<BuyerRecord> = (0..100)
            .map(|i| paid(if i % 10 == 0 { Kind::Slow } else { Kind::Ok }, &format!("o-{i}"), &["s"]))
            .collect();
        let picked = pick_refunds(&records, 0.05);
        assert_eq!(picked.len(), 5);
        assert!(picked.iter().all(|id| id != "o-0" && id != "o-10"), "only ok keys: {picked:?}");
        assert!(pick_refunds(&records, 0.0).is_empty());
        let sold =
            expected_sold(&[paid(Kind::Ok, "a", &["1", "2"]), paid(Kind::Ok, "b", &["3"])], &["b".into()].into());
        assert_eq!(sold, ["1".to_owned(), "2".to_owned()].into());
        assert_eq!((default_target("redis-kafka"), default_target("embedded")), (500.0, 1_000.0));
    }
}
