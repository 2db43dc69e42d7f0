//! The claim storm's report: its figures as the JSON document has them,
//! the human summary, and its HTML page, in the frame every report shares
//! (`common::report::Summary`, `common::page`). What the figures are is
//! `figures`' business; the audit's is `audit`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qt_protocol::coupons::CampaignView;
use serde::Serialize;

use crate::claims::audit::Audit;
use crate::common::page::{Body, Chart};
use crate::common::report::{self, Bar, Figures, causes, mib, ms, pct, spread};
use crate::common::stats::Percentiles;
use crate::common::wire::Causes;

#[derive(Debug, Clone, Serialize)]
pub struct ClaimsConfig {
    pub url: String,
    /// What the server was (e.g. `embedded`, `redis-kafka`), as given.
    pub label: String,
    pub campaign: String,
    /// `None`: unlimited.
    pub stock: Option<u64>,
    pub buyers: u64,
    pub claims: u64,
    /// Buyers that claimed on two sockets at once.
    pub doubled_buyers: u64,
    /// Claims beyond each socket's first.
    pub retries: u64,
    pub sockets: u64,
    pub procs: usize,
    pub connect_concurrency: usize,
    pub source_ips: Vec<String>,
    pub user_prefix: String,
    pub barrier_ms: u64,
    pub storm_timeout_s: u64,
    pub target_per_s: f64,
    /// The database and Redis read for the audit (no credentials).
    pub db: Option<String>,
    pub redis_prefix: Option<String>,
    pub rest_sample: u64,
}

#[derive(Debug, Serialize)]
pub struct SetupFigures {
    pub buyers: u64,
    pub sockets: u64,
    pub open: u64,
    pub failed: u64,
    pub errors: Causes,
    pub connect_ms: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct StormFigures {
    /// Barrier → the last reply, over all workers.
    pub wall_s: f64,
    pub planned: u64,
    pub sent: u64,
    /// Claims that got a reply (any reply).
    pub answered: u64,
    /// `answered` ÷ `wall_s`.
    pub claims_per_s: f64,
    /// Barrier → the last `coupon` reply, and coupons issued per second in it.
    pub coupon_wall_s: f64,
    pub coupons_per_s: f64,
    /// Every planned claim by what came of it.
    pub outcomes: Causes,
    /// Planned claims not answered `coupon`, `sold_out` or `already_claimed`.
    pub failures: u64,
    pub latency_ms: Percentiles,
    pub coupon_latency_ms: Percentiles,
    /// Barrier → each socket's first send.
    pub start_lag_ms: Percentiles,
    pub sockets_lost: u64,
    pub stuck: u64,
    pub latency_bar_ms: f64,
    pub latency_bars: Vec<Bar>,
}

#[derive(Debug, Serialize)]
pub struct ListFigures {
    /// Buyers asked over a socket of theirs (`coupons`).
    pub socket_asked: u64,
    pub socket_latency_ms: Percentiles,
    pub socket_errors: Causes,
    /// Buyers asked over REST (`GET /api/v1/me/coupons`).
    pub rest_asked: u64,
    pub rest_errors: Causes,
}

#[derive(Debug, Serialize)]
pub struct ServerFigures {
    /// From just before the fire command to the workers' last answer
    /// (server CPU is read over it); the machine's busy share and the load
    /// generator's CPU are read from the barrier on.
    pub window_s: f64,
    pub cpu_s: f64,
    /// Server CPU over the storm's wall time, as a share of one core.
    pub cpu_pct_of_core: f64,
    pub cpu_us_per_claim: f64,
    pub rss_before_bytes: f64,
    pub rss_after_bytes: f64,
    /// Growth over the window: `qt_coupon_claims_total` by outcome and
    /// a few unlabelled counters.
    pub claims_by_outcome: BTreeMap<String, f64>,
    pub counters: BTreeMap<String, f64>,
    pub host_busy_pct: Option<f64>,
    /// Load generator CPU over the storm's wall time, share of one core.
    pub loadgen_cpu_pct_of_core: Option<f64>,
}

pub type ClaimsSummary = report::Summary<ClaimsConfig, ClaimsResults>;

/// The claim storm's own figures.
#[derive(Debug, Serialize)]
pub struct ClaimsResults {
    pub setup: SetupFigures,
    pub storm: StormFigures,
    pub audit: Audit,
    pub listing: ListFigures,
    /// The seller's view of the campaign after the storm.
    pub campaign_view: Option<CampaignView>,
    /// Seconds the database took to reach the seller's count.
    pub db_settle_s: Option<f64>,
    pub server: ServerFigures,
}

fn stock(s: Option<u64>) -> String {
    s.map_or_else(|| "unlimited".into(), |s| s.to_string())
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl Figures for ClaimsResults {
    const KIND: &'static str = "claims";
    type Config = ClaimsConfig;

    fn text(s: &ClaimsSummary, o: &mut String) {
        let (c, f) = (&s.config, &s.figures);
        let (st, sm, a, l, srv) = (&f.setup, &f.storm, &f.audit, &f.listing, &f.server);
        let _ = writeln!(
            o,
            "== qt-load claims [{}]: campaign {} (stock {}), {} buyers ({} on two sockets), {} claims on {} sockets, {} \
             procs, {} ==",
            c.label,
            c.campaign,
            stock(c.stock),
            c.buyers,
            c.doubled_buyers,
            c.claims,
            c.sockets,
            c.procs,
            c.url
        );
        let _ = writeln!(
            o,
            "set-up: {}/{} sockets open, {} failed; connect p99 {}",
            st.open,
            st.sockets,
            st.failed,
            ms(st.connect_ms.p99)
        );
        let _ = writeln!(
            o,
            "storm:  {:.0} claims/s ({} answered of {} sent, {} planned, in {:.3} s from the barrier); {:.0} coupons/s \
             ({} in {:.3} s)",
            sm.claims_per_s, sm.answered, sm.sent, sm.planned, sm.wall_s, sm.coupons_per_s, a.winners, sm.coupon_wall_s
        );
        let _ = writeln!(
            o,
            "        claim latency {}   coupon answers {}   start lag p99 {}",
            spread(&sm.latency_ms),
            spread(&sm.coupon_latency_ms),
            ms(sm.start_lag_ms.p99)
        );
        let outcomes: Vec<String> = sm.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "        outcomes: {}; failures {}", outcomes.join(", "), sm.failures);
        let _ = writeln!(
            o,
            "audit:  issued {} (seller view) of expected {}; {} buyers told a coupon, {} not; {} told two",
            opt(a.seller_issued),
            a.expected_issued,
            a.winners,
            a.losers,
            a.two_coupons
        );
        if let Some(d) = &a.db {
            let _ = writeln!(
                o,
                "        {}: {} rows, campaigns.issued {}; told but not stored {}, stored but not told {}, foreign rows {}",
                d.kind,
                d.rows,
                opt(d.campaign_issued),
                d.told_not_stored,
                d.stored_not_told,
                d.foreign_rows
            );
        }
        if let Some(r) = &a.redis {
            if r.found {
                let _ = writeln!(
                    o,
                    "        redis: {} = {}, claims hash {} ({} confirmed, {} pending, {} failed); {} buyers differ from \
                     the database",
                    r.issued_key,
                    opt(r.issued),
                    r.claims,
                    r.confirmed,
                    r.pending,
                    r.failed,
                    r.differs_from_db
                );
            } else {
                let _ = writeln!(o, "        redis: no keys for the campaign ({}): not counted there", r.issued_key);
            }
        }
        let _ = writeln!(
            o,
            "        listings: socket {} asked, {} agree, {} missing their coupon, {} unexpected, {} errors; REST {} \
             asked, {} agree",
            a.socket_list.asked,
            a.socket_list.ok,
            a.socket_list.missing,
            a.socket_list.unexpected,
            a.socket_list.errors,
            a.rest_list.asked,
            a.rest_list.ok
        );
        let _ = writeln!(
            o,
            "        losers with failures {}, losers told already_claimed {}, winners also told sold_out {}; \
             over-issue {}, lost {}",
            a.losers_failed, a.losers_already_claimed, a.winners_sold_out, a.over_issue, a.lost
        );
        let _ = writeln!(
            o,
            "server: CPU {:.2} s = {:.0} % of a core over the storm, {:.0} µs per claim; RSS {} -> {}; machine {} \
             busy, load generator {} of a core",
            srv.cpu_s,
            srv.cpu_pct_of_core,
            srv.cpu_us_per_claim,
            mib(srv.rss_before_bytes),
            mib(srv.rss_after_bytes),
            pct(srv.host_busy_pct),
            pct(srv.loadgen_cpu_pct_of_core)
        );
        let counted: Vec<String> = srv.claims_by_outcome.iter().map(|(k, v)| format!("{k} +{v:.0}")).collect();
        let others: Vec<String> = srv.counters.iter().map(|(k, v)| format!("{k} +{v:.0}")).collect();
        let _ = writeln!(o, "        qt_coupon_claims_total: {}; {}", counted.join(", "), others.join(", "));
        causes(o, "set-up error", &st.errors);
        causes(o, "listing error (socket)", &l.socket_errors);
        causes(o, "listing error (REST)", &l.rest_errors);
        for e in &a.examples {
            let _ = writeln!(o, "        anomaly: {e}");
        }
    }

    fn page(s: &ClaimsSummary) -> Body<'_> {
        let (c, f) = (&s.config, &s.figures);
        let p99 = f.storm.latency_ms.p99.unwrap_or(0.0);
        Body {
            heading: format!(
                "Coupon claims: {} claims by {} buyers, stock {} [{}]",
                c.claims,
                c.buyers,
                stock(c.stock),
                c.label
            ),
            url: &c.url,
            event: &c.campaign,
            distributions: vec![
                ("connect + upgrade + hello", &f.setup.connect_ms),
                ("claim latency (every answer)", &f.storm.latency_ms),
                ("claim latency (coupon answers)", &f.storm.coupon_latency_ms),
                ("barrier → a socket's first send", &f.storm.start_lag_ms),
                ("coupons listing (socket)", &f.listing.socket_latency_ms),
            ],
            chart: Chart {
                title: "Claim latency (every answer)",
                bars: &f.storm.latency_bars,
                width_ms: f.storm.latency_bar_ms,
                promise_ms: p99,
                promise: "p99",
                tick_ms: f.storm.latency_bar_ms * 10.0,
            },
            errors: vec![
                ("Outcomes", &f.storm.outcomes),
                ("Set-up errors", &f.setup.errors),
                ("Listing errors (socket)", &f.listing.socket_errors),
                ("Listing errors (REST)", &f.listing.rest_errors),
            ],
            details_title: "Configuration, host, audit and server counters",
            server: serde_json::json!({"server": f.server, "audit": f.audit, "campaign": f.campaign_view}),
        }
    }
}
