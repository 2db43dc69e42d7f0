//! Turns what the claim workers, the audit and `/metrics` reported into
//! the report's figures: merged distributions, claims per second over the
//! storm's wall time, what the server spent, the target checks and the
//! caveats. Pure: no I/O, no clocks.

use std::collections::BTreeMap;

use qt_protocol::coupons::CampaignView;

use crate::claims::audit::{ALREADY_CLAIMED, Audit, COUPON, SOLD_OUT};
use crate::claims::report::{
    ClaimsConfig, ClaimsResults, ClaimsSummary, ListFigures, ServerFigures, SetupFigures, StormFigures,
};
use crate::claims::wire::{ListReport, ReadyReport, StormReport};
use crate::common::report::{Host, Mark, Stamp, TargetCheck, bars, ms, per};
use crate::common::server::Sample;
use crate::common::stats::{Histogram, merged, tallies};

/// Unlabelled counters of `/metrics` the report shows, growth over the storm.
pub const SERVER_COUNTERS: &[&str] = &[
    "qt_ws_messages_total",
    "qt_coupon_claims_refused_by_db_total",
    "qt_abusive_sockets_closed_total",
    "qt_send_timeouts_total",
];
/// The labelled claim counter.
const CLAIMS_COUNTER: &str = "qt_coupon_claims_total";

/// `qt_coupon_claims_total` by `outcome` from a Prometheus text.
pub fn claim_counters(text: &str) -> BTreeMap<String, f64> {
    let prefix = format!("{CLAIMS_COUNTER}{{");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (labels, value) = rest.split_once("} ")?;
            let outcome = labels.split(',').find_map(|kv| kv.strip_prefix("outcome=\""))?.strip_suffix('"')?;
            Some((outcome.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn growth(start: &BTreeMap<String, f64>, end: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    end.iter().map(|(k, v)| (k.clone(), v - start.get(k).copied().unwrap_or(0.0))).collect()
}

/// A bar width for a latency chart of values up to `max_ms`: the smallest
/// of 1-2-5 steps that needs at most 80 bars.
pub fn bar_width_ms(max_ms: f64) -> f64 {
    let steps = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0];
    steps.into_iter().find(|w| max_ms / w <= 80.0).unwrap_or(10_000.0)
}

/// `/metrics` and machine readings around the storm.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub barrier_unix_us: u64,
    pub before: Sample,
    pub after: Sample,
    pub counters_before: BTreeMap<String, f64>,
    pub counters_after: BTreeMap<String, f64>,
    pub claims_before: BTreeMap<String, f64>,
    pub claims_after: BTreeMap<String, f64>,
    /// Fire command → the last worker's answer, seconds.
    pub window_s: f64,
    pub host_busy_pct: Option<f64>,
    pub loadgen_cpu_s: Option<f64>,
    pub campaign_view: Option<CampaignView>,
    pub db_settle_s: Option<f64>,
}

/// Every worker's storm, merged.
fn storm_figures(storms: &[StormReport], barrier_unix_us: u64) -> StormFigures {
    let since_barrier = |t: Option<u64>| t.map_or(0.0, |t| t.saturating_sub(barrier_unix_us) as f64 / 1e6);
    let last_answer = storms.iter().filter_map(|s| s.last_answer_unix_us).max();
    let last_coupon = storms.iter().filter_map(|s| s.last_coupon_unix_us).max();
    let outcomes = tallies(storms.iter().map(|s| &s.outcomes));
    let answered: u64 = storms.iter().map(|s| s.answered).sum();
    let planned: u64 = storms.iter().map(|s| s.planned).sum();
    let good: u64 = [COUPON, SOLD_OUT, ALREADY_CLAIMED].iter().filter_map(|k| outcomes.get(*k)).sum();
    let winners = outcomes.get(COUPON).copied().unwrap_or(0);
    let latency: Histogram = merged(storms.iter().map(|s| &s.latency_us));
    let (wall_s, coupon_wall_s) = (since_barrier(last_answer), since_barrier(last_coupon));
    let latency_bar_ms = bar_width_ms(latency.max().unwrap_or(0) as f64 / 1000.0);
    StormFigures {
        wall_s,
        planned,
        sent: storms.iter().map(|s| s.sent).sum(),
        answered,
        claims_per_s: per(answered as f64, wall_s),
        coupon_wall_s,
        coupons_per_s: per(winners as f64, coupon_wall_s),
        failures: planned.saturating_sub(good),
        outcomes,
        latency_ms: latency.summary_ms(),
        coupon_latency_ms: merged(storms.iter().map(|s| &s.coupon_latency_us)).summary_ms(),
        start_lag_ms: merged(storms.iter().map(|s| &s.start_lag_us)).summary_ms(),
        sockets_lost: storms.iter().map(|s| s.sockets_lost).sum(),
        stuck: storms.iter().map(|s| s.stuck).sum(),
        latency_bar_ms,
        latency_bars: bars(&latency, latency_bar_ms),
    }
}

/// Everything measured, as the report's figures.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    config: ClaimsConfig,
    host: Host,
    ready: &[ReadyReport],
    storms: &[StormReport],
    lists: &[ListReport],
    rest_errors: BTreeMap<String, u64>,
    audit: Audit,
    r: Readings,
    timeline: Vec<Sample>,
    marks: Vec<Mark>,
) -> ClaimsSummary {
    let setup = SetupFigures {
        buyers: ready.iter().map(|x| x.buyers).sum(),
        sockets: ready.iter().map(|x| x.sockets).sum(),
        open: ready.iter().map(|x| x.open).sum(),
        failed: ready.iter().map(|x| x.failed).sum(),
        errors: tallies(ready.iter().map(|x| &x.errors)),
        connect_ms: merged(ready.iter().map(|x| &x.connect_us)).summary_ms(),
    };
    let storm = storm_figures(storms, r.barrier_unix_us);
    let listing = ListFigures {
        socket_asked: lists.iter().map(|l| l.asked).sum(),
        socket_latency_ms: merged(lists.iter().map(|l| &l.latency_us)).summary_ms(),
        socket_errors: tallies(lists.iter().map(|l| &l.errors)),
        rest_asked: audit.rest_list.asked,
        rest_errors,
    };
    let cpu_s = r.after.cpu_s - r.before.cpu_s;
    let server = ServerFigures {
        window_s: r.window_s,
        cpu_s,
        cpu_pct_of_core: per(cpu_s * 100.0, storm.wall_s),
        cpu_us_per_claim: per(cpu_s * 1e6, storm.answered as f64),
        rss_before_bytes: r.before.rss_bytes,
        rss_after_bytes: r.after.rss_bytes,
        claims_by_outcome: growth(&r.claims_before, &r.claims_after),
        counters: growth(&r.counters_before, &r.counters_after)
            .into_iter()
            .filter(|(k, _)| SERVER_COUNTERS.contains(&k.as_str()))
            .collect(),
        host_busy_pct: r.host_busy_pct,
        loadgen_cpu_pct_of_core: r.loadgen_cpu_s.map(|s| per(s * 100.0, storm.wall_s)),
    };
    let targets = targets(&config, &storm, &audit);
    let notes = notes(&config, &setup, &storm, &audit, &server);
    let figures = ClaimsResults {
        setup,
        storm,
        audit,
        listing,
        campaign_view: r.campaign_view,
        db_settle_s: r.db_settle_s,
        server,
    };
    ClaimsSummary { stamp: Stamp::new("qt-load claims"), config, host, targets, notes, figures, timeline, marks }
}

fn targets(c: &ClaimsConfig, s: &StormFigures, a: &Audit) -> Vec<TargetCheck> {
    let issued = a.seller_issued.map_or_else(|| "?".into(), |i| i.to_string());
    let rows = a.db.as_ref().map_or_else(|| "not read".into(), |d| d.rows.to_string());
    let lists_off = a.socket_list.missing + a.socket_list.unexpected + a.rest_list.missing + a.rest_list.unexpected;
    let list_errors = a.socket_list.errors + a.rest_list.errors;
    vec![
        TargetCheck {
            name: "claims per second (answered ÷ barrier → last reply)",
            goal: format!(">= {:.0}/s", c.target_per_s),
            measured: format!("{:.0}/s ({} in {:.3} s)", s.claims_per_s, s.answered, s.wall_s),
            pass: s.claims_per_s >= c.target_per_s,
        },
        TargetCheck {
            name: "over-issue (coupons beyond min(stock, buyers); second coupons of a buyer)",
            goal: "0".into(),
            measured: format!(
                "{} (issued {issued}, rows {rows}, buyers told {}, expected {}; {} buyers told two)",
                a.over_issue, a.winners, a.expected_issued, a.two_coupons
            ),
            pass: a.over_issue == 0,
        },
        TargetCheck {
            name: "lost claims (buyers whose coupon the books disagree on)",
            goal: "0".into(),
            measured: format!(
                "{} (told not stored {}, stored not told {}, listings off {})",
                a.lost,
                a.db.as_ref().map_or(0, |d| d.told_not_stored),
                a.db.as_ref().map_or(0, |d| d.stored_not_told),
                lists_off
            ),
            pass: a.lost == 0,
        },
        TargetCheck {
            name: "issued = min(stock, buyers) = buyers told coupon, every count agreeing",
            goal: format!("{} everywhere", a.expected_issued),
            measured: format!(
                "seller view {issued}, buyers told {}, rows {rows}, counts agree: {}",
                a.winners, a.counts_agree
            ),
            pass: a.seller_issued == Some(a.expected_issued as i64) && a.winners == a.expected_issued && a.counts_agree,
        },
        TargetCheck {
            name: "every claim answered coupon, sold_out or already_claimed",
            goal: format!("all {}", s.planned),
            measured: format!("{} failures ({} losers with one)", s.failures, a.losers_failed),
            pass: s.failures == 0 && a.losers_failed == 0,
        },
        TargetCheck {
            name: "each buyer's coupons list what it was told (socket; REST sample)",
            goal: format!("all {} asked", a.socket_list.asked + a.rest_list.asked),
            measured: format!(
                "{} + {} agree, {lists_off} off, {list_errors} unanswered",
                a.socket_list.ok, a.rest_list.ok
            ),
            pass: lists_off == 0 && list_errors == 0 && a.socket_list.asked > 0,
        },
    ]
}

fn notes(c: &ClaimsConfig, setup: &SetupFigures, s: &StormFigures, a: &Audit, srv: &ServerFigures) -> Vec<String> {
    let mut out = Vec::new();
    if setup.failed > 0 {
        out.push(format!("{} sockets failed to open; their claims count as failures", setup.failed));
    }
    if a.db.is_none() {
        out.push("the database was not read (no --db): lost claims are judged by the listings alone".into());
    }
    if a.redis.as_ref().is_some_and(|r| !r.found) {
        out.push(format!(
            "Redis has no counts for the campaign (no {}): this server counts claims elsewhere (in process)",
            a.redis.as_ref().map_or("", |r| r.issued_key.as_str())
        ));
    }
    if a.losers_already_claimed > 0 {
        out.push(format!(
            "{} buyers without a coupon were told already_claimed (another socket of theirs was mid-claim, or the \
             server counts a claim they never heard of)",
            a.losers_already_claimed
        ));
    }
    if c.stock.is_none_or(|st| st >= c.buyers) {
        out.push(
            "the stock covers every buyer: no sold_out race; the storm measures raw claim throughput (first claims \
             issue, retries answer already_claimed)"
                .into(),
        );
    }
    let lag = s.start_lag_ms.p99.unwrap_or(0.0);
    if lag > s.wall_s * 1000.0 * 0.25 {
        out.push(format!(
            "sockets started late (start lag p99 {}): the load generator, not only the server, paced the storm",
            ms(Some(lag))
        ));
    }
    if srv.host_busy_pct.is_some_and(|b| b > 90.0) {
        out.push(format!(
            "the machine was {:.0} % busy: server and load generator ({:.0} % of a core) competed for {} CPUs, so \
             throughput and latency include waiting for a core",
            srv.host_busy_pct.unwrap_or(0.0),
            srv.loadgen_cpu_pct_of_core.unwrap_or(0.0),
            c.procs.min(2)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::audit::{DbAudit, ListAudit};

    fn config() -> ClaimsConfig {
        ClaimsConfig {
            url: "http://127.0.0.1:1".into(),
            label: "embedded".into(),
            campaign: "storm-1".into(),
            stock: Some(300),
            buyers: 2_000,
            claims: 5_000,
            doubled_buyers: 200,
            retries: 2_800,
            sockets: 2_200,
            procs: 2,
            connect_concurrency: 8,
            source_ips: vec![],
            user_prefix: "x".into(),
            barrier_ms: 1_000,
            storm_timeout_s: 60,
            target_per_s: 20_000.0,
            db: None,
            redis_prefix: None,
            rest_sample: 0,
        }
    }

    fn hist(values: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        values.iter().for_each(|v| h.record(*v));
        h
    }

    #[test]
    fn metrics_and_widths() {
        let text = "# TYPE qt_coupon_claims counter\n\
                    qt_coupon_claims_total{outcome=\"issued\"} 300\n\
                    qt_coupon_claims_total{outcome=\"sold_out\"} 1700\n\
                    qt_coupon_claims_total{node=\"a\",outcome=\"already_claimed\"} 3000\n\
                    qt_ws_messages_total 5000\n";
        let c = claim_counters(text);
        assert_eq!(c.len(), 3);
        assert_eq!((c["issued"], c["sold_out"], c["already_claimed"]), (300.0, 1_700.0, 3_000.0));
        assert_eq!((bar_width_ms(3.0), bar_width_ms(40.0), bar_width_ms(900.0)), (0.1, 0.5, 20.0));
    }

    #[test]
    fn throughput_is_over_the_wall_time_from_the_barrier_and_targets_are_checked() {
        let barrier = 10_000_000;
        let storm = |answered: u64, last: u64, outcomes: &[(&str, u64)]| StormReport {
            planned: outcomes.iter().map(|o| o.1).sum(),
            sent: answered,
            answered,
            outcomes: outcomes.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            latency_us: hist(&[1_000, 5_000, 9_000]),
            last_answer_unix_us: Some(barrier + last),
            last_coupon_unix_us: Some(barrier + 50_000),
            ..StormReport::default()
        };
        let storms = [
            storm(2_500, 200_000, &[("coupon", 150), ("sold_out", 850), ("already_claimed", 1_500)]),
            storm(
                2_499,
                250_000,
                &[("coupon", 150), ("sold_out", 849), ("already_claimed", 1_500), ("rate_limited", 1)],
            ),
        ];
        let audit = Audit {
            buyers: 2_000,
            stock: Some(300),
            expected_issued: 300,
            seller_issued: Some(300),
            winners: 300,
            losers: 1_700,
            losers_failed: 1,
            counts_agree: true,
            db: Some(DbAudit { kind: "sqlite".into(), rows: 300, ..DbAudit::default() }),
            socket_list: ListAudit { asked: 2_000, ok: 2_000, ..ListAudit::default() },
            ..Audit::default()
        };
        let mut r = Readings { barrier_unix_us: barrier, ..Readings::default() };
        (r.before.cpu_s, r.after.cpu_s) = (1.0, 1.5);
        r.claims_before.insert("issued".into(), 0.0);
        r.claims_after.insert("issued".into(), 300.0);
        r.counters_after.insert("qt_ws_messages_total".into(), 5_000.0);
        r.counters_after.insert("qt_unrelated_total".into(), 5.0);
        let host = Host { cpus: 2, open_files_limit: 1, ephemeral_ports: (1, 2) };
        let s = assemble(config(), host, &[], &storms, &[], BTreeMap::new(), audit, r, vec![], vec![]);
        let st = &s.figures.storm;
        assert_eq!((st.answered, st.planned, st.failures, st.wall_s), (4_999, 5_000, 1, 0.25));
        assert!((st.claims_per_s - 19_996.0).abs() < 1e-6);
        assert!((st.coupons_per_s - 6_000.0).abs() < 1e-6, "300 coupons in 50 ms");
        assert_eq!(st.latency_ms.count, 6);
        assert!((s.figures.server.cpu_pct_of_core - 200.0).abs() < 1e-9, "0.5 s of CPU in 0.25 s");
        assert!((s.figures.server.cpu_us_per_claim - 0.5e6 / 4_999.0).abs() < 1e-9);
        assert_eq!(s.figures.server.claims_by_outcome.get("issued"), Some(&300.0));
        assert_eq!(s.figures.server.counters.keys().collect::<Vec<_>>(), ["qt_ws_messages_total"]);
        let pass: Vec<bool> = s.targets.iter().map(|t| t.pass).collect();
        assert_eq!(pass, [false, true, true, true, false, true], "just under 20,000/s; one rate_limited");
        let text = s.text();
        assert!(text.contains("[MISS] claims per second") && text.contains("rate_limited 1"), "{text}");
        let html = s.page();
        assert!(html.contains("Coupon claims: 5000 claims") && html.ends_with("</html>\n"));
    }
}
