//! The results of a seat-map run: the figures assembled from what the
//! workers and `/metrics` reported (pure), and their three forms: a human
//! summary on stderr, a JSON document, and a self-contained HTML page (on
//! the frame and helpers it shares with the surge report, in `report`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{
    Bar, Document, Host, Mark, TargetCheck, bar_chart, bars, distributions_head, errors_list, esc, kib, mib, ms,
    notes_and_targets, page_end, page_head, pct, pct_row, targets_table, timeline_and_summary,
};
use crate::server::Sample;
use crate::stats::{Percentiles, merged, tallies};
use crate::wire::{HolderReport, SeatsReadyReport, WatchReport};

/// Width of a diff-delay bar.
const DELAY_BAR_MS: f64 = 5.0;
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

#[derive(Debug, Clone, Serialize)]
pub struct SeatsConfig {
    pub url: String,
    pub event: String,
    /// What the server was (e.g. `embedded`, `redis-kafka`), as given.
    pub label: String,
    pub watchers: u64,
    pub holders: u64,
    pub rate_per_s: f64,
    pub duration_s: u64,
    pub hold_ms: (u64, u64),
    pub procs: usize,
    pub connect_concurrency: usize,
    pub source_ips: Vec<String>,
    pub user_prefix: String,
    pub seats: usize,
    pub seats_free_at_start: usize,
}

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

#[derive(Debug, Serialize)]
pub struct SetupFigures {
    pub watchers: u64,
    pub watching: u64,
    pub holders: u64,
    pub admitted: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub connect_ms: Percentiles,
    pub snapshot_ms: Percentiles,
    pub snapshot_versions: Option<(u64, u64)>,
    /// The bus check before the run: hold + release until a watcher saw both.
    pub bus_probe_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct HoldFigures {
    pub window_s: f64,
    pub target_per_s: f64,
    pub holds_sent: u64,
    pub holds_ok: u64,
    pub holds_per_s: f64,
    pub releases_ok: u64,
    pub releases_per_s: f64,
    pub unavailable: u64,
    pub releases_empty: u64,
    pub errors: BTreeMap<String, u64>,
    pub tokens_dropped: u64,
    pub no_free_seat: u64,
    pub stuck: u64,
    pub hold_latency_ms: Percentiles,
    pub release_latency_ms: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct WatchFigures {
    pub watchers: u64,
    pub open: u64,
    pub matched: u64,
    pub mismatched: u64,
    pub examples: Vec<String>,
    pub closed: BTreeMap<String, u64>,
    pub store_version: u64,
    pub settle_s: f64,
    pub frames_per_watcher_per_s: f64,
    pub changes_per_watcher_per_s: f64,
    pub bytes_per_watcher_per_s: f64,
    pub changes_per_frame: f64,
    /// Frames (and bytes) the server wrote to all watchers per second.
    pub frames_per_s: f64,
    pub bytes_per_s: f64,
    pub resyncs: u64,
    pub gaps: u64,
    pub scan_errors: u64,
    pub server_errors: BTreeMap<String, u64>,
    pub frames_parsed: u64,
    pub timed_watchers: u64,
    pub diff_delay_ms: Percentiles,
    pub diff_delay_from_send_ms: Percentiles,
    pub before_reply: u64,
    pub timing_anomalies: u64,
    pub delay_bars: Vec<Bar>,
}

#[derive(Debug, Serialize)]
pub struct ServerFigures {
    pub window_s: f64,
    pub cpu_s: f64,
    /// Server CPU in the window as a share of one core.
    pub cpu_pct_of_core: f64,
    pub rss_baseline_bytes: f64,
    pub rss_end_bytes: f64,
    pub rss_per_socket_bytes: f64,
    /// Growth of the counters in `SERVER_COUNTERS` over the window.
    pub counters: BTreeMap<String, f64>,
    pub host_busy_pct: Option<f64>,
    /// Load generator CPU in the window as a share of one core.
    pub loadgen_cpu_pct_of_core: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct SeatsSummary {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub finished_at: String,
    pub config: SeatsConfig,
    pub host: Host,
    pub targets: Vec<TargetCheck>,
    pub notes: Vec<String>,
    pub setup: SetupFigures,
    pub holds: HoldFigures,
    pub watch: WatchFigures,
    pub server: ServerFigures,
    pub timeline: Vec<Sample>,
    pub marks: Vec<Mark>,
}

fn per(n: f64, d: f64) -> f64 {
    if d > 0.0 { n / d } else { 0.0 }
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
        watchers: ready.iter().map(|x| x.watchers).sum(),
        watching: ready.iter().map(|x| x.watching).sum(),
        holders: ready.iter().map(|x| x.holders).sum(),
        admitted: ready.iter().map(|x| x.admitted).sum(),
        failed: ready.iter().map(|x| x.failed).sum(),
        errors: tallies(ready.iter().map(|x| &x.errors)),
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
    let watchers = sum(&|w| w.watchers);
    let open = sum(&|w| w.open);
    let wwin = watches.iter().map(|w| w.window_s).fold(0.0, f64::max);
    let (frames, changes, bytes) = (sum(&|w| w.window_frames), sum(&|w| w.window_changes), sum(&|w| w.window_bytes));
    let delay = merged(watches.iter().map(|w| &w.delay_us));
    let watch = WatchFigures {
        watchers,
        open,
        matched: sum(&|w| w.matched),
        mismatched: sum(&|w| w.mismatched),
        examples: watches.iter().flat_map(|w| w.examples.iter().cloned()).take(10).collect(),
        closed: tallies(watches.iter().map(|w| &w.closed)),
        store_version: r.store_version,
        settle_s: r.settle_s,
        frames_per_watcher_per_s: per(frames as f64, wwin * open as f64),
        changes_per_watcher_per_s: per(changes as f64, wwin * open as f64),
        bytes_per_watcher_per_s: per(bytes as f64, wwin * open as f64),
        changes_per_frame: per(changes as f64, frames as f64),
        frames_per_s: per(frames as f64, wwin),
        bytes_per_s: per(bytes as f64, wwin),
        resyncs: sum(&|w| w.resyncs),
        gaps: sum(&|w| w.gaps),
        scan_errors: sum(&|w| w.scan_errors),
        server_errors: tallies(watches.iter().map(|w| &w.server_errors)),
        frames_parsed: sum(&|w| w.frames_parsed),
        timed_watchers: sum(&|w| w.timed_watchers),
        diff_delay_ms: delay.summary_ms(),
        diff_delay_from_send_ms: merged(watches.iter().map(|w| &w.delay_from_send_us)).summary_ms(),
        before_reply: sum(&|w| w.before_reply),
        timing_anomalies: sum(&|w| w.timing_anomalies),
        delay_bars: bars(&delay, DELAY_BAR_MS),
    };
    let cpu_s = r.window_end.cpu_s - r.window_start.cpu_s;
    let sockets = (setup.watching + setup.admitted).max(1);
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
    SeatsSummary {
        tool: "qt-load seats",
        version: env!("CARGO_PKG_VERSION"),
        started_at: String::new(),
        finished_at: String::new(),
        config,
        host,
        targets,
        notes,
        setup,
        holds,
        watch,
        server,
        timeline,
        marks,
    }
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
            goal: format!("all {}", w.watchers),
            measured: format!(
                "{} equal, {} differ, {} closed",
                w.matched,
                w.mismatched,
                w.closed.values().sum::<u64>()
            ),
            pass: w.watchers > 0 && w.matched == w.watchers,
        },
    ]
}

/// What could make a figure misleading.
fn notes(c: &SeatsConfig, s: &SetupFigures, h: &HoldFigures, w: &WatchFigures, srv: &ServerFigures) -> Vec<String> {
    let mut out = Vec::new();
    if s.failed > 0 {
        out.push(format!("{} sockets failed to set up; see the set-up errors", s.failed));
    }
    if h.tokens_dropped > 0 {
        out.push(format!(
            "{} hold slots went unused because all {} holders were busy: more holders (or shorter holds) would be \
             needed for the asked rate",
            h.tokens_dropped, c.holders
        ));
    }
    if w.timed_watchers < w.open {
        out.push(format!(
            "{} of {} open watchers stopped timing (a gap, a pushed map or an unexplained change); their delays \
             before that count, their maps are still checked",
            w.open - w.timed_watchers,
            w.open
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

/// The human summary, also the opening of the HTML page.
pub fn text(s: &SeatsSummary) -> String {
    let mut o = String::new();
    let (c, st, h, w, srv) = (&s.config, &s.setup, &s.holds, &s.watch, &s.server);
    let _ = writeln!(
        o,
        "== qt-load seats [{}]: {} watchers, {} holders at {:.0} holds/s for {} s on {} ({}), {} procs ==",
        c.label, c.watchers, c.holders, c.rate_per_s, c.duration_s, c.url, c.event, c.procs
    );
    let _ = writeln!(
        o,
        "set-up: {}/{} watching, {}/{} holders admitted, {} failed; connect p99 {}, snapshot p99 {}; bus probe {:.0} ms",
        st.watching,
        st.watchers,
        st.admitted,
        st.holders,
        st.failed,
        ms(st.connect_ms.p99),
        ms(st.snapshot_ms.p99),
        st.bus_probe_ms
    );
    let _ = writeln!(
        o,
        "holds:  {:.0} holds/s and {:.0} releases/s over {:.1} s ({} ok of {} sent; {} seat_unavailable, {} empty \
         releases, {} slots unused)",
        h.holds_per_s,
        h.releases_per_s,
        h.window_s,
        h.holds_ok,
        h.holds_sent,
        h.unavailable,
        h.releases_empty,
        h.tokens_dropped
    );
    let _ = writeln!(
        o,
        "        hold latency p50 {}  p99 {}  max {}   release latency p50 {}  p99 {}  max {}",
        ms(h.hold_latency_ms.p50),
        ms(h.hold_latency_ms.p99),
        ms(h.hold_latency_ms.max),
        ms(h.release_latency_ms.p50),
        ms(h.release_latency_ms.p99),
        ms(h.release_latency_ms.max)
    );
    let _ = writeln!(
        o,
        "diffs:  delay (reply → watcher) p50 {}  p99 {}  max {}   from send p50 {}  p99 {}   ({} changes timed, {} \
         before the reply)",
        ms(w.diff_delay_ms.p50),
        ms(w.diff_delay_ms.p99),
        ms(w.diff_delay_ms.max),
        ms(w.diff_delay_from_send_ms.p50),
        ms(w.diff_delay_from_send_ms.p99),
        w.diff_delay_ms.count,
        w.before_reply
    );
    let _ = writeln!(
        o,
        "        per watcher {:.1} frames/s, {:.0} changes/s, {}/s ({:.1} changes per frame); all watchers {:.0} \
         frames/s, {}/s",
        w.frames_per_watcher_per_s,
        w.changes_per_watcher_per_s,
        kib(w.bytes_per_watcher_per_s),
        w.changes_per_frame,
        w.frames_per_s,
        mib(w.bytes_per_s)
    );
    let _ = writeln!(
        o,
        "        {} resyncs (pushed maps), {} gaps, {} closed, {} scan errors, {} timing anomalies; {}/{} watchers \
         timed to the end",
        w.resyncs,
        w.gaps,
        w.closed.values().sum::<u64>(),
        w.scan_errors,
        w.timing_anomalies,
        w.timed_watchers,
        w.open
    );
    let _ = writeln!(
        o,
        "final:  {} of {} watchers equal to the store (version {}), {} differ; settled {:.1} s after the holders stopped",
        w.matched, w.watchers, w.store_version, w.mismatched, w.settle_s
    );
    let _ = writeln!(
        o,
        "server: CPU {:.2} s over {:.1} s = {:.0} % of a core; RSS {} -> {} ({} per socket); machine {} busy, load \
         generator {} of a core",
        srv.cpu_s,
        srv.window_s,
        srv.cpu_pct_of_core,
        mib(srv.rss_baseline_bytes),
        mib(srv.rss_end_bytes),
        kib(srv.rss_per_socket_bytes),
        pct(srv.host_busy_pct),
        pct(srv.loadgen_cpu_pct_of_core)
    );
    let counters: Vec<String> = srv.counters.iter().map(|(k, v)| format!("{k} +{v:.0}")).collect();
    let _ = writeln!(o, "        {}", counters.join(", "));
    for (title, errors) in [
        ("set-up error", &st.errors),
        ("holder error", &h.errors),
        ("watcher closed", &w.closed),
        ("server error to a watcher", &w.server_errors),
    ] {
        for (why, n) in errors {
            let _ = writeln!(o, "        {title}: {why}: {n}");
        }
    }
    for e in &w.examples {
        let _ = writeln!(o, "        mismatch: {e}");
    }
    notes_and_targets(&mut o, &s.notes, &s.targets);
    o
}

/// The self-contained HTML report.
pub fn page(s: &SeatsSummary) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let h1 = format!(
        "Seat map: {} watchers, {:.0} holds/s [{}]",
        s.config.watchers,
        s.config.rate_per_s,
        esc(&s.config.label)
    );
    page_head(&mut o, "seats", &h1, &s.config.url, &s.config.event, &s.started_at, s.version);
    targets_table(&mut o, &s.targets);
    distributions_head(&mut o);
    pct_row(&mut o, "connect + upgrade + hello", &s.setup.connect_ms);
    pct_row(&mut o, "watch → seat map", &s.setup.snapshot_ms);
    pct_row(&mut o, "hold latency", &s.holds.hold_latency_ms);
    pct_row(&mut o, "release latency", &s.holds.release_latency_ms);
    pct_row(&mut o, "diff delay (holder's reply → watcher)", &s.watch.diff_delay_ms);
    pct_row(&mut o, "diff delay (holder's send → watcher)", &s.watch.diff_delay_from_send_ms);
    o.push_str("</table>\n<h2>Diff delay (holder's reply → watcher)</h2>\n");
    o.push_str(&bar_chart(&s.watch.delay_bars, DELAY_BAR_MS, 100.0, "100 ms target", 25.0));
    timeline_and_summary(&mut o, &s.timeline, &s.marks, &text(s));
    errors_list(&mut o, "Set-up errors", &s.setup.errors);
    errors_list(&mut o, "Holder errors", &s.holds.errors);
    errors_list(&mut o, "Watchers closed", &s.watch.closed);
    page_end(&mut o, "Configuration, host and server counters", &s.config, &s.host, &s.server);
    o
}

impl Document for SeatsSummary {
    const KIND: &'static str = "seats";

    fn set_times(&mut self, started_at: String, finished_at: String) {
        self.started_at = started_at;
        self.finished_at = finished_at;
    }

    fn text(&self) -> String {
        text(self)
    }

    fn page(&self) -> String {
        page(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Histogram;

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
            SeatsReadyReport { watchers: 2, watching: 2, holders: 1, admitted: 1, ..Default::default() },
            SeatsReadyReport { watchers: 2, watching: 2, holders: 1, admitted: 1, ..Default::default() },
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
            watchers: 2,
            open: 2,
            matched,
            mismatched: 2 - matched,
            window_frames: 400,
            window_changes: 4_000,
            window_bytes: 128_000,
            window_s: 10.0,
            timed_watchers: 2,
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
        assert_eq!((s.setup.watching, s.setup.admitted), (4, 2));
        assert!((s.holds.holds_per_s - 880.0 / 10.1).abs() < 1e-9, "over the longest window");
        assert_eq!(s.holds.hold_latency_ms.count, 3);
        assert!((s.watch.frames_per_watcher_per_s - 20.0).abs() < 1e-9, "800 frames / 10 s / 4 watchers");
        assert!((s.watch.changes_per_frame - 10.0).abs() < 1e-9);
        assert!((s.server.cpu_pct_of_core - 75.0).abs() < 1e-9);
        assert_eq!(s.server.counters.get("qt_holds_total"), Some(&980.0));
        assert_eq!(s.watch.diff_delay_ms.count, 6);
        let pass: Vec<bool> = s.targets.iter().map(|t| t.pass).collect();
        assert_eq!(pass, [false, true, true, true], "87/s is below 95 % of 100/s");

        let watches = [watch(2), watch(1)];
        let s = assemble(config(), host, &ready, &holders, &watches, &r, vec![], vec![]);
        assert!(!s.targets[3].pass, "one watcher differs");
        assert!(text(&s).contains("3 of 4 watchers equal"));
        let html = page(&s);
        assert!(html.contains("100 ms target") && html.ends_with("</html>\n"));
    }
}
