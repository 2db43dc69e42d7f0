//! `qt-load claims`: the coordinator of the coupon-claim storm. It creates
//! a fresh campaign as the seller, has worker processes open every buyer's
//! sockets, starts the storm at one moment on every socket (a barrier on
//! this machine's clock), gathers what each buyer was told, reads the
//! books (the seller's view, the database, Redis), has every buyer list its
//! own coupons (socket, and REST for a sample), audits them against each
//! other and writes the report. Every phase is bounded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;

use crate::claims::audit::{self, DbView, Inputs, RedisView};
use crate::claims::campaign::{Seller, new_campaign, rest_listing};
use crate::claims::figures::{self, Readings, claim_counters};
use crate::claims::plan::Shape;
use crate::claims::report::{ClaimsConfig, ClaimsSummary};
use crate::claims::store::{describe_db, read_db, read_redis};
use crate::claims::wire::{BuyerOutcome, ClaimsSpec, Command, ListReport, Listing, ReadyReport, StormReport};
use crate::common::args::RunArgs;
use crate::common::coordinator::{self, Clock, Reach, split};
use crate::common::host;
use crate::common::procs::Workers;
use crate::common::report::{self, Host};
use crate::common::server::{Sampler, Server, parse_all};
use crate::common::stats::tally;
use crate::common::tokens::Minter;
use crate::common::wire::unix_us;

type ClaimsWorkers = Workers<Command>;

/// Descriptors the server keeps for itself (its reserve) and for its
/// listener, database and the seller's calls: a server started with the
/// same open-files limit as this process refuses connections beyond the
/// limit less this.
const SERVER_FD_RESERVE: u64 = 600;
/// The listing step: its deadline and how many `coupons` requests each
/// worker has in flight.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
const LIST_CONCURRENCY: usize = 64;
/// Losers asked over REST, besides the winners of the sample.
const REST_LOSERS: u64 = 10;

#[derive(Debug, Args)]
pub struct ClaimsArgs {
    // --url, --event (unused), --seller, --secret, --procs, --source-ips, --ramp-timeout-s, --out
    #[command(flatten)]
    pub run: RunArgs,
    /// Id of the campaign to create ([a-z0-9-]); fresh per run by default.
    #[arg(long)]
    pub campaign: Option<String>,
    /// Coupons in the campaign.
    #[arg(long, default_value_t = 300)]
    pub stock: u64,
    /// An unlimited campaign instead (stock null).
    #[arg(long)]
    pub unlimited: bool,
    /// Distinct buyers; every one claims at least once.
    #[arg(long, default_value_t = 2_000)]
    pub buyers: u64,
    /// Claims in all (the ones beyond one per buyer and socket are retries).
    #[arg(long, default_value_t = 5_000)]
    pub claims: u64,
    /// Share of buyers that claim on two sockets at the same moment.
    #[arg(long, default_value_t = 0.1)]
    pub double_share: f64,
    /// Sockets being set up at once, over all workers.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// The storm starts this long after the fire command goes out.
    #[arg(long, default_value_t = 1_000)]
    pub barrier_ms: u64,
    /// Claims not answered this long after the barrier are lost.
    #[arg(long, default_value_t = 60)]
    pub storm_timeout_s: u64,
    /// The server's database, for the audit: sqlite://DATA_DIR/queueticket.db
    /// (read only) or the server's postgres://… URL.
    #[arg(long)]
    pub db: Option<String>,
    /// The server's Redis, for the audit of its live counts.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The server's Redis key prefix (--redis-prefix).
    #[arg(long, default_value = "qt")]
    pub redis_prefix: String,
    /// Winners whose coupons are read over REST as well (plus a few losers).
    #[arg(long, default_value_t = 50)]
    pub rest_sample: u64,
    /// How long the database may take to reach the seller's count (the
    /// distributed mode writes behind a log).
    #[arg(long, default_value_t = 30)]
    pub settle_timeout_s: u64,
    /// Most sockets the server takes; default: this process's open-files
    /// limit less the server's reserve (a server started alongside has the
    /// same limit).
    #[arg(long)]
    pub server_max_sockets: Option<u64>,
    /// What the server is, for the report (embedded, redis-kafka).
    #[arg(long, default_value = "unspecified")]
    pub label: String,
    /// Claims per second to pass: by default 5,000 for redis-kafka, else 20,000.
    #[arg(long)]
    pub target_per_s: Option<f64>,
}

/// Validated settings of one run.
struct Plan {
    reach: Reach,
    shape: Shape,
    stock: Option<u64>,
    campaign: String,
    user_prefix: String,
    target_per_s: f64,
    host: Host,
}

fn default_target(label: &str) -> f64 {
    if label == "redis-kafka" { 5_000.0 } else { 20_000.0 }
}

fn plan(a: &ClaimsArgs) -> anyhow::Result<Plan> {
    let reach = a.run.reach()?;
    ensure!((1..=1_000_000).contains(&a.buyers), "--buyers must be 1..=1000000");
    ensure!(a.claims <= 10_000_000, "--claims at most 10000000");
    let shape = Shape::new(a.buyers, a.claims, a.double_share)?;
    ensure!(shape.claims_of(0).0 <= 100_000, "more than 100000 claims per socket");
    ensure!(a.unlimited || a.stock >= 1, "--stock must be at least 1 (or --unlimited)");
    ensure!((1..=10_000).contains(&a.connect_concurrency), "--connect-concurrency must be 1..=10000");
    ensure!((10..=60_000).contains(&a.barrier_ms), "--barrier-ms must be 10..=60000");
    ensure!((1..=600).contains(&a.storm_timeout_s), "--storm-timeout-s must be 1..=600");
    ensure!((1..=600).contains(&a.settle_timeout_s), "--settle-timeout-s must be 1..=600");
    let campaign =
        a.campaign.clone().unwrap_or_else(|| coordinator::user_prefix("storm-").trim_end_matches('-').into());
    ensure!(
        (1..=64).contains(&campaign.len())
            && campaign.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "--campaign must be 1 to 64 of a-z, 0-9 and -"
    );
    let parts = split(a.buyers, a.run.procs);
    let per_proc = parts.iter().map(|&(f, c)| shape.sockets_in(f, c)).max().unwrap_or(0);
    let host = reach.check_host(per_proc, "sockets", shape.sockets())?;
    let server_max = match a.server_max_sockets {
        Some(n) => n,
        None => host.open_files_limit.saturating_sub(SERVER_FD_RESERVE),
    };
    ensure!(
        shape.sockets() <= server_max,
        "{} sockets ({} buyers, {} of them on two) but the server takes about {server_max} (its open-files limit \
         less its reserve): use fewer --buyers or --double-share, or give --server-max-sockets",
        shape.sockets(),
        a.buyers,
        shape.doubles
    );
    Ok(Plan {
        reach,
        shape,
        stock: (!a.unlimited).then_some(a.stock),
        campaign,
        user_prefix: coordinator::user_prefix("lc"),
        target_per_s: a.target_per_s.unwrap_or_else(|| default_target(&a.label)),
        host,
    })
}

pub async fn run(a: ClaimsArgs) -> anyhow::Result<()> {
    let plan = plan(&a)?;
    let minter = Minter::new(&plan.reach.secret);
    let token = minter.seller("qt-load", &a.run.seller)?;
    let server = Server::new(plan.reach.target.clone(), token.clone());
    server.metrics().await.with_context(|| format!("the server at {} does not answer /metrics", a.run.url))?;
    let seller = Seller { target: plan.reach.target.clone(), token };
    let started_at = report::now_rfc3339();
    let summary = coordinator::interruptible(measure(&a, &plan, &server, &seller, &minter)).await?;
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

/// `/metrics` as a reading, its counters, and the claims by outcome.
async fn read_metrics(
    server: &Server,
) -> anyhow::Result<(crate::common::server::Sample, BTreeMap<String, f64>, BTreeMap<String, f64>)> {
    let text = server.get("/metrics").await?;
    Ok((crate::common::server::parse_metrics(&text)?, parse_all(&text), claim_counters(&text)))
}

/// What the run gathered, before the figures.
struct Gathered {
    ready: Vec<ReadyReport>,
    storms: Vec<StormReport>,
    lists: Vec<ListReport>,
    rest: Vec<Listing>,
    rest_errors: BTreeMap<String, u64>,
    db: Option<DbView>,
    redis: Option<RedisView>,
    readings: Readings,
}

async fn measure(
    a: &ClaimsArgs,
    plan: &Plan,
    server: &Server,
    seller: &Seller,
    minter: &Minter,
) -> anyhow::Result<ClaimsSummary> {
    let mut clock = Clock::start();
    let body = new_campaign(&plan.campaign, plan.stock, time::OffsetDateTime::now_utc())?;
    let created = seller.create(&body).await.context("cannot create the campaign")?;
    ensure!(created.issued == 0, "the new campaign {} has {} issued already", created.id, created.issued);
    eprintln!(
        "created campaign {} (stock {}); {} buyers, {} on two sockets, {} claims on {} sockets",
        created.id,
        plan.stock.map_or_else(|| "unlimited".into(), |s| s.to_string()),
        plan.shape.buyers,
        plan.shape.doubles,
        plan.shape.claims,
        plan.shape.sockets()
    );
    clock.mark("campaign");

    let run_max = Duration::from_secs(a.run.ramp_timeout_s * 2 + a.storm_timeout_s + a.settle_timeout_s + 600);
    let sampler = Sampler::start(server.clone(), clock.t0, run_max);
    let result = ClaimsWorkers::with(a.run.procs, async |workers| {
        let ready = open_sockets(a, plan, workers).await?;
        clock.mark("open");
        let (open, failed) = ready.iter().fold((0, 0), |s, r| (s.0 + r.open, s.1 + r.failed));
        ensure!(open > 0, "no socket opened; see the set-up errors");
        eprintln!("  {open} sockets open, {failed} failed");

        // The storm.
        let (before, counters_before, claims_before) = read_metrics(server).await?;
        let pids = workers.pids();
        let window = Instant::now();
        let barrier_unix_us = unix_us() + a.barrier_ms * 1_000;
        let timeout_ms = a.storm_timeout_s * 1_000;
        workers.send(|_| Command::Fire { at_unix_us: barrier_unix_us, timeout_ms }).await?;
        eprintln!("storm: {} claims at the barrier in {} ms", plan.shape.claims, a.barrier_ms);
        // The machine's and our CPU from the barrier on (the server's
        // `/metrics` is read before the command: a call at the barrier
        // would be load of its own, and the server idles until then).
        tokio::time::sleep(Duration::from_micros(barrier_unix_us.saturating_sub(unix_us()))).await;
        let host_before = host::cpu_ticks();
        let cpu_before = loadgen_cpu(&pids);
        clock.mark("storm");
        let deadline = Duration::from_millis(a.barrier_ms + timeout_ms) + Duration::from_secs(30);
        let storms: Vec<Box<StormReport>> = workers.answers("storm", deadline).await?;
        let storms: Vec<StormReport> = storms.into_iter().map(|s| *s).collect();
        let window_s = window.elapsed().as_secs_f64();
        let host_busy_pct = host::busy_pct(host_before, host::cpu_ticks());
        let loadgen_cpu_s = cpu_before.zip(loadgen_cpu(&pids)).map(|(b, e)| e - b);
        let (after, counters_after, claims_after) = read_metrics(server).await?;
        clock.mark("stormed");

        // The books.
        let view = seller.get(&plan.campaign).await.context("cannot read the campaign after the storm")?;
        eprintln!("  the seller's view: issued {}, remaining {:?}", view.issued, view.remaining);
        let (db, db_settle_s) = match &a.db {
            Some(url) => {
                let (db, s) = settle_db(url, &plan.campaign, view.issued, a.settle_timeout_s).await?;
                (Some(db), Some(s))
            }
            None => (None, None),
        };
        let redis = match &a.redis_url {
            Some(url) => Some(read_redis(url, &a.redis_prefix, &plan.campaign).await?),
            None => None,
        };
        clock.mark("books");

        // Every buyer's own coupons.
        let timeout_ms = LIST_TIMEOUT.as_millis() as u64;
        workers.send(|_| Command::List { timeout_ms, concurrency: LIST_CONCURRENCY }).await?;
        let lists: Vec<ListReport> = workers.answers("list", LIST_TIMEOUT + Duration::from_secs(30)).await?;
        let outcomes: Vec<&BuyerOutcome> = storms.iter().flat_map(|s| &s.buyers).collect();
        let (rest, rest_errors) = rest_sample(a, plan, minter, &outcomes).await;
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
            claims_before,
            claims_after,
            window_s,
            host_busy_pct,
            loadgen_cpu_s,
            campaign_view: Some(view),
            db_settle_s,
        };
        Ok(Gathered { ready, storms, lists, rest, rest_errors, db, redis, readings })
    })
    .await;
    let timeline = sampler.stop();
    let g = result?;
    let outcomes: Vec<BuyerOutcome> = g.storms.iter().flat_map(|s| s.buyers.iter().cloned()).collect();
    let socket_listings: Vec<Listing> = g.lists.iter().flat_map(|l| l.listings.iter().cloned()).collect();
    let audit = audit::audit(&Inputs {
        stock: plan.stock,
        buyers: plan.shape.buyers,
        user_prefix: &plan.user_prefix,
        outcomes: &outcomes,
        seller_issued: g.readings.campaign_view.as_ref().map(|v| v.issued),
        db: g.db.as_ref(),
        redis: g.redis.as_ref(),
        socket_listings: &socket_listings,
        socket_list_errors: g.lists.iter().map(|l| l.errors.values().sum::<u64>()).sum(),
        rest_listings: &g.rest,
        rest_list_errors: g.rest_errors.values().sum(),
    });
    let config = ClaimsConfig {
        url: a.run.url.clone(),
        label: a.label.clone(),
        campaign: plan.campaign.clone(),
        stock: plan.stock,
        buyers: plan.shape.buyers,
        claims: plan.shape.claims,
        doubled_buyers: plan.shape.doubles,
        retries: plan.shape.retries(),
        sockets: plan.shape.sockets(),
        procs: a.run.procs,
        connect_concurrency: a.connect_concurrency,
        source_ips: plan.reach.sources.iter().map(ToString::to_string).collect(),
        user_prefix: plan.user_prefix.clone(),
        barrier_ms: a.barrier_ms,
        storm_timeout_s: a.storm_timeout_s,
        target_per_s: plan.target_per_s,
        db: a.db.as_deref().map(describe_db),
        redis_prefix: a.redis_url.as_ref().map(|_| a.redis_prefix.clone()),
        rest_sample: a.rest_sample,
    };
    Ok(figures::assemble(
        config,
        plan.host.clone(),
        &g.ready,
        &g.storms,
        &g.lists,
        g.rest_errors,
        audit,
        g.readings,
        timeline,
        clock.marks,
    ))
}

async fn open_sockets(a: &ClaimsArgs, plan: &Plan, workers: &mut ClaimsWorkers) -> anyhow::Result<Vec<ReadyReport>> {
    eprintln!("opening {} sockets from {} processes", plan.shape.sockets(), a.run.procs);
    let parts = split(plan.shape.buyers, a.run.procs);
    let ramp_deadline_ms = a.run.ramp_timeout_s * 1_000;
    let max_life_ms = (a.run.ramp_timeout_s * 2 + a.storm_timeout_s + a.settle_timeout_s + 300) * 1_000;
    let inflight = a.connect_concurrency.div_ceil(a.run.procs);
    workers
        .send(|i| {
            Command::Open(Box::new(ClaimsSpec {
                buyers: plan.reach.buyers(&a.run.event, plan.user_prefix.clone(), parts[i], inflight, max_life_ms),
                shape: plan.shape,
                campaign: plan.campaign.clone(),
                ramp_deadline_ms,
            }))
        })
        .await?;
    workers.answers("set-up", Duration::from_secs(a.run.ramp_timeout_s + 30)).await
}

/// Reads the database until it has the seller's count (rows and
/// `campaigns.issued`), bounded; the last reading and how long it took.
async fn settle_db(url: &str, campaign: &str, issued: i64, timeout_s: u64) -> anyhow::Result<(DbView, f64)> {
    let started = Instant::now();
    loop {
        let db = read_db(url, campaign).await?;
        let caught_up = db.rows.len() as i64 == issued && db.campaign_issued == Some(issued);
        if caught_up || started.elapsed() >= Duration::from_secs(timeout_s) {
            if !caught_up {
                eprintln!(
                    "  the database did not reach the seller's {issued}: {} rows, campaigns.issued {:?}",
                    db.rows.len(),
                    db.campaign_issued
                );
            }
            return Ok((db, started.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The first `--rest-sample` winners and a few losers, by index, read over
/// `GET /api/v1/me/coupons`.
async fn rest_sample(
    a: &ClaimsArgs,
    plan: &Plan,
    minter: &Minter,
    outcomes: &[&BuyerOutcome],
) -> (Vec<Listing>, BTreeMap<String, u64>) {
    let winners = outcomes.iter().filter(|o| !o.told.is_empty()).take(a.rest_sample as usize);
    let losers = outcomes.iter().filter(|o| o.told.is_empty()).take(REST_LOSERS.min(a.rest_sample) as usize);
    let (mut listings, mut errors) = (Vec::new(), BTreeMap::new());
    for o in winners.chain(losers) {
        let user = format!("{}{}", plan.user_prefix, o.index);
        let got = match minter.buyer(&user) {
            Ok(token) => rest_listing(&plan.reach.target, &token, o.index, &plan.campaign).await,
            Err(e) => Err(e),
        };
        match got {
            Ok(l) => listings.push(l),
            Err(e) => {
                let why = format!("{e:#}");
                tally(&mut errors, why.split(':').next().unwrap_or("error"));
            }
        }
    }
    (listings, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_mode() {
        assert_eq!((default_target("redis-kafka"), default_target("embedded")), (5_000.0, 20_000.0));
    }
}
