//! Turns what the seat-map workers and `/metrics` reported into the
//! report's figures: merged distributions, rates per watcher and per
//! second, the server's cost over the holding window, the target checks
//! and the caveats. Pure: no I/O, no clocks.

use std::collections::BTreeMap;

use crate::common::report::{Host, Mark, Stamp, TargetCheck, bars, ms, per};
use crate::common::server::Sample;
use crate::common::stats::{Percentiles, merged, summed, tallies};
use crate::seats::report::{
    DELAY_BAR_MS, HoldFigures, SeatsConfig, SeatsResults, SeatsSummary, ServerFigures, SetupFigures, WatchFigures,
};
use crate::seats::wire::{HolderReport, MapCheck, SeatsReadyReport, WatchReport};

/// The counters of `/metrics` the report shows, growth over the window.
pub const SERVER_COUNTERS: &[&str] = &[
    "qt_holds_total",
    "qt_ws_messages_total",
    "qt_diffs_relayed_total",
    "qt_diffs_applied_total",
    "qt_seatmap_resyncs_total",
    "qt_slow_sockets_closed_total",
    "qt_send_timeouts_total",
];

/// `/metrics` readings and machine figures over the holding window.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub baseline: Sample,
    pub window_start: Sample,
    pub window_end: Sample,
    pub counters_start: BTreeMap<String, f64>,
    pub counters_end: BTreeMap<String, f64>,
    pub window_s: f64,
    pub host_busy_pct: Option<f64>,
    /// CPU seconds the load generator (coordinator and workers) used.
    pub loadgen_cpu_s: Option<f64>,
    /// Store version and seconds from the holders' stop until every
    /// watcher was at it (or the settle time-out).
    pub store_version: u64,
    pub settle_s: f64,
    pub bus_probe_ms: f64,
}

/// Everything measured, as the report's figures.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    config: SeatsConfig,
    host: Host,
    ready: &[SeatsReadyReport],
    holders: &[HolderReport],
    watches: &[WatchReport],
    r: &Readings,
    timeline: Vec<Sample>,
    marks: Vec<Mark>,
) -> SeatsSummary {
    let versions = ready
        .iter()
        .filter_map(|x| x.versions)
        .fold(None, |acc: Option<(u64, u64)>, (lo, hi)| Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi)))));
    let setup = SetupFigures {
        counts: summed(ready.iter().map(|x| &x.counts)),
        connect_ms: merged(ready.iter().map(|x| &x.connect_us)).summary_ms(),
        snapshot_ms: merged(ready.iter().map(|x| &x.snapshot_us)).summary_ms(),
        snapshot_versions: versions,
        bus_probe_ms: r.bus_probe_ms,
    };
    let window_s = holders.iter().map(|h| h.window_s).fold(0.0, f64::max);
    let holds_ok: u64 = holders.iter().map(|h| h.holds_ok).sum();
    let releases_ok: u64 = holders.iter().map(|h| h.releases_ok).sum();
    let holds = HoldFigures {
        window_s,
        target_per_s: config.rate_per_s,
        holds_sent: holders.iter().map(|h| h.holds_sent).sum(),
        holds_ok,
        holds_per_s: per(holds_ok as f64, window_s),
        releases_ok,
        releases_per_s: per(releases_ok as f64, window_s),
        unavailable: holders.iter().map(|h| h.unavailable).sum(),
        releases_empty: holders.iter().map(|h| h.releases_empty).sum(),
        errors: tallies(holders.iter().map(|h| &h.errors)),
        tokens_dropped: holders.iter().map(|h| h.tokens_dropped).sum(),
        no_free_seat: holders.iter().map(|h| h.no_free_seat).sum(),
        stuck: holders.iter().map(|h| h.stuck).sum(),
        hold_latency_ms: merged(holders.iter().map(|h| &h.hold_us)).summary_ms(),
        release_latency_ms: merged(holders.iter().map(|h| &h.release_us)).summary_ms(),
    };
    let sum = |f: &dyn Fn(&WatchReport) -> u64| watches.iter().map(f).sum::<u64>();
    let mut check: MapCheck = summed(watches.iter().map(|w| &w.check));
    check.examples.truncate(10);
    let open = check.open;
    let wwin = watches.iter().map(|w| w.window_s).fold(0.0, f64::max);
    let (frames, changes, bytes) = (sum(&|w| w.window_frames), sum(&|w| w.window_changes), sum(&|w| w.window_bytes));
    let delay = merged(watches.iter().map(|w| &w.delay_us));
    let watch = WatchFigures {
        check,
        store_version: r.store_version,
        settle_s: r.settle_s,
        frames_per_watcher_per_s: per(frames as f64, wwin * open as f64),
        changes_per_watcher_per_s: per(changes as f64, wwin * open as f64),
        bytes_per_watcher_per_s: per(bytes as f64, wwin * open as f64),
        changes_per_frame: per(changes as f64, frames as f64),
        frames_per_s: per(frames as f64, wwin),
        bytes_per_s: per(bytes as f64, wwin),
        feed: summed(watches.iter().map(|w| &w.feed)),
        diff_delay_ms: delay.summary_ms(),
        diff_delay_from_send_ms: merged(watches.iter().map(|w| &w.delay_from_send_us)).summary_ms(),
        before_reply: sum(&|w| w.before_reply),
        timing_anomalies: sum(&|w| w.timing_anomalies),
        delay_bars: bars(&delay, DELAY_BAR_MS),
    };
    let cpu_s = r.window_end.cpu_s - r.window_start.cpu_s;
    let sockets = (setup.counts.watching + setup.counts.admitted).max(1);
    let server = ServerFigures {
        window_s: r.window_s,
        cpu_s,
        cpu_pct_of_core: per(cpu_s * 100.0, r.window_s),
        rss_baseline_bytes: r.baseline.rss_bytes,
        rss_end_bytes: r.window_end.rss_bytes,
        rss_per_socket_bytes: (r.window_end.rss_bytes - r.baseline.rss_bytes) / sockets as f64,
        counters: SERVER_COUNTERS
            .iter()
            .filter_map(|&name| {
                let end = r.counters_end.get(name)?;
                Some((name.to_owned(), end - r.counters_start.get(name).copied().unwrap_or(0.0)))
            })
            .collect(),
        host_busy_pct: r.host_busy_pct,
        loadgen_cpu_pct_of_core: r.loadgen_cpu_s.map(|s| per(s * 100.0, r.window_s)),
    };
    let targets = targets(&holds, &watch);
    let notes = notes(&config, &setup, &holds, &watch, &server);
    let figures = SeatsResults { setup, holds, watch, server };
    SeatsSummary { stamp: Stamp::new("qt-load seats"), config, host, targets, notes, figures, timeline, marks }
}

/// The figures this benchmark exists to check (issue 3).
fn targets(h: &HoldFigures, w: &WatchFigures) -> Vec<TargetCheck> {
    let p99 = |p: &Percentiles| p.p99.unwrap_or(f64::INFINITY);
    vec![
        TargetCheck {
            name: "holds per second",
            goal: format!(">= {:.0}/s (95 % of the asked rate)", h.target_per_s * 0.95),
            measured: format!("{:.0}/s", h.holds_per_s),
            pass: h.holds_per_s >= h.target_per_s * 0.95,
        },
        TargetCheck {
            name: "hold latency p99",
            goal: "< 10 ms".into(),
            measured: ms(h.hold_latency_ms.p99),
            pass: p99(&h.hold_latency_ms) < 10.0,
        },
        TargetCheck {
            name: "diff delay p99 (holder's reply → watcher)",
            goal: "< 100 ms".into(),
            measured: format!("{} over {} changes", ms(w.diff_delay_ms.p99), w.diff_delay_ms.count),
            pass: p99(&w.diff_delay_ms) < 100.0,
        },
        TargetCheck {
            name: "watchers whose final map equals the store's",
            goal: format!("all {}", w.check.watchers),
            measured: format!(
                "{} equal, {} differ, {} closed",
                w.check.matched,
                w.check.mismatched,
                w.check.closed.values().sum::<u64>()
            ),
            pass: w.check.watchers > 0 && w.check.matched == w.check.watchers,
        },
    ]
}

/// What could make a figure misleading.
fn notes(c: &SeatsConfig, s: &SetupFigures, h: &HoldFigures, w: &WatchFigures, srv: &ServerFigures) -> Vec<String> {
    let mut out = Vec::new();
    if s.counts.failed > 0 {
        out.push(format!("{} sockets failed to set up; see the set-up errors", s.counts.failed));
    }
    if h.tokens_dropped > 0 {
        out.push(format!(
            "{} hold slots went unused because all {} holders were busy: more holders (or shorter holds) would be \
             needed for the asked rate",
            h.tokens_dropped, c.holders
        ));
    }
    if w.feed.timed_watchers < w.check.open {
        out.push(format!(
            "{} of {} open watchers stopped timing (a gap, a pushed map or an unexplained change); their delays \
             before that count, their maps are still checked",
            w.check.open - w.feed.timed_watchers,
            w.check.open
        ));
    }
    if w.before_reply > 0 {
        out.push(format!(
            "{} changes reached a watcher before the holder had its reply; they count as 0 ms",
            w.before_reply
        ));
    }
    if srv.host_busy_pct.is_some_and(|b| b > 90.0) {
        out.push(
            "the machine was over 90 % busy: server and load generator competed for the CPUs, so latencies \
             include waiting for a core"
                .into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::stats::Histogram;
    use crate::seats::wire::{FeedCounts, SetupCounts};

    fn config() -> SeatsConfig {
        SeatsConfig {
            url: "http://127.0.0.1:1".into(),
            event: "e".into(),
            label: "embedded".into(),
            watchers: 4,
            holders: 2,
            rate_per_s: 100.0,
            duration_s: 10,
            hold_ms: (20, 200),
            procs: 2,
            connect_concurrency: 8,
            source_ips: vec![],
            user_prefix: "x".into(),
            seats: 10,
            seats_free_at_start: 10,
        }
    }

    fn hist(values: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        values.iter().for_each(|v| h.record(*v));
        h
    }

    #[test]
    fn figures_merge_workers_and_check_the_targets() {
        let ready = [
            SeatsReadyReport {
                counts: SetupCounts { watchers: 2, watching: 2, holders: 1, admitted: 1, ..SetupCounts::default() },
                ..Default::default()
            },
            SeatsReadyReport {
                counts: SetupCounts { watchers: 2, watching: 2, holders: 1, admitted: 1, ..SetupCounts::default() },
                ..Default::default()
            },
        ];
        let holders = [
            HolderReport {
                window_s: 10.0,
                holds_ok: 400,
                releases_ok: 500,
                hold_us: hist(&[1_000, 2_000]),
                ..Default::default()
            },
            HolderReport {
                window_s: 10.1,
                holds_ok: 480,
                releases_ok: 480,
                hold_us: hist(&[3_000]),
                ..Default::default()
            },
        ];
        let watch = |matched| WatchReport {
            check: MapCheck { watchers: 2, open: 2, matched, mismatched: 2 - matched, ..MapCheck::default() },
            window_frames: 400,
            window_changes: 4_000,
            window_bytes: 128_000,
            window_s: 10.0,
            feed: FeedCounts { timed_watchers: 2, ..FeedCounts::default() },
            delay_us: hist(&[10_000, 20_000, 30_000]),
            ..Default::default()
        };
        let watches = [watch(2), watch(2)];
        let mut r = Readings { window_s: 10.0, ..Default::default() };
        r.window_start.cpu_s = 5.0;
        r.window_end.cpu_s = 12.5;
        r.counters_start.insert("qt_holds_total".into(), 10.0);
        r.counters_end.insert("qt_holds_total".into(), 990.0);
        let host = Host { cpus: 2, open_files_limit: 1, ephemeral_ports: (1, 2) };
        let s = assemble(config(), host.clone(), &ready, &holders, &watches, &r, vec![], vec![]);
        assert_eq!((s.figures.setup.counts.watching, s.figures.setup.counts.admitted), (4, 2));
        assert!((s.figures.holds.holds_per_s - 880.0 / 10.1).abs() < 1e-9, "over the longest window");
        assert_eq!(s.figures.holds.hold_latency_ms.count, 3);
        assert!((s.figures.watch.frames_per_watcher_per_s - 20.0).abs() < 1e-9, "800 frames / 10 s / 4 watchers");
        assert!((s.figures.watch.changes_per_frame - 10.0).abs() < 1e-9);
        assert!((s.figures.server.cpu_pct_of_core - 75.0).abs() < 1e-9);
        assert_eq!(s.figures.server.counters.get("qt_holds_total"), Some(&980.0));
        assert_eq!(s.figures.watch.diff_delay_ms.count, 6);
        let pass: Vec<bool> = s.targets.iter().map(|t| t.pass).collect();
        assert_eq!(pass, [false, true, true, true], "87/s is below 95 % of 100/s");

        let watches = [watch(2), watch(1)];
        let s = assemble(config(), host, &ready, &holders, &watches, &r, vec![], vec![]);
        assert!(!s.targets[3].pass, "one watcher differs");
        assert!(s.text().contains("3 of 4 watchers equal"));
        let html = s.page();
        assert!(html.contains("100 ms target") && html.ends_with("</html>\n"));
    }
}
