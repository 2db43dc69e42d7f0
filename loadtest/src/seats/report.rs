//! The seat-map run's report: its figures as the JSON document has them,
//! the human summary, and its HTML page, in the frame every report shares
//! (`common::report::Summary`, `common::page`). What the figures are is
//! `figures`' business.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::common::page::{Body, Chart};
use crate::common::report::{self, Bar, Figures, causes, kib, mib, ms, p50_p99, pct, spread};
use crate::common::stats::Percentiles;
use crate::common::wire::Causes;
use crate::seats::wire::{FeedCounts, MapCheck, SetupCounts};

/// Width of a diff-delay bar.
pub const DELAY_BAR_MS: f64 = 5.0;
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

#[derive(Debug, Serialize)]
pub struct SetupFigures {
    #[serde(flatten)]
    pub counts: SetupCounts,
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
    pub errors: Causes,
    pub tokens_dropped: u64,
    pub no_free_seat: u64,
    pub stuck: u64,
    pub hold_latency_ms: Percentiles,
    pub release_latency_ms: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct WatchFigures {
    #[serde(flatten)]
    pub check: MapCheck,
    pub store_version: u64,
    pub settle_s: f64,
    pub frames_per_watcher_per_s: f64,
    pub changes_per_watcher_per_s: f64,
    pub bytes_per_watcher_per_s: f64,
    pub changes_per_frame: f64,
    /// Frames (and bytes) the server wrote to all watchers per second.
    pub frames_per_s: f64,
    pub bytes_per_s: f64,
    #[serde(flatten)]
    pub feed: FeedCounts,
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

pub type SeatsSummary = report::Summary<SeatsConfig, SeatsResults>;

/// The seat-map benchmark's own figures.
#[derive(Debug, Serialize)]
pub struct SeatsResults {
    pub setup: SetupFigures,
    pub holds: HoldFigures,
    pub watch: WatchFigures,
    pub server: ServerFigures,
}

impl Figures for SeatsResults {
    const KIND: &'static str = "seats";
    type Config = SeatsConfig;

    fn text(s: &SeatsSummary, o: &mut String) {
        let (c, f) = (&s.config, &s.figures);
        let (st, h, w, srv) = (&f.setup, &f.holds, &f.watch, &f.server);
        let _ = writeln!(
            o,
            "== qt-load seats [{}]: {} watchers, {} holders at {:.0} holds/s for {} s on {} ({}), {} procs ==",
            c.label, c.watchers, c.holders, c.rate_per_s, c.duration_s, c.url, c.event, c.procs
        );
        let _ = writeln!(
            o,
            "set-up: {}/{} watching, {}/{} holders admitted, {} failed; connect p99 {}, snapshot p99 {}; bus probe {:.0} ms",
            st.counts.watching,
            st.counts.watchers,
            st.counts.admitted,
            st.counts.holders,
            st.counts.failed,
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
            "        hold latency {}   release latency {}",
            spread(&h.hold_latency_ms),
            spread(&h.release_latency_ms)
        );
        let _ = writeln!(
            o,
            "diffs:  delay (reply → watcher) {}   from send {}   ({} changes timed, {} before the reply)",
            spread(&w.diff_delay_ms),
            p50_p99(&w.diff_delay_from_send_ms),
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
            w.feed.resyncs,
            w.feed.gaps,
            w.check.closed.values().sum::<u64>(),
            w.feed.scan_errors,
            w.timing_anomalies,
            w.feed.timed_watchers,
            w.check.open
        );
        let _ = writeln!(
            o,
            "final:  {} of {} watchers equal to the store (version {}), {} differ; settled {:.1} s after the holders stopped",
            w.check.matched, w.check.watchers, w.store_version, w.check.mismatched, w.settle_s
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
        causes(o, "set-up error", &st.counts.errors);
        causes(o, "holder error", &h.errors);
        causes(o, "watcher closed", &w.check.closed);
        causes(o, "server error to a watcher", &w.feed.server_errors);
        for e in &w.check.examples {
            let _ = writeln!(o, "        mismatch: {e}");
        }
    }

    fn page(s: &SeatsSummary) -> Body<'_> {
        let (c, f) = (&s.config, &s.figures);
        Body {
            heading: format!("Seat map: {} watchers, {:.0} holds/s [{}]", c.watchers, c.rate_per_s, c.label),
            url: &c.url,
            event: &c.event,
            distributions: vec![
                ("connect + upgrade + hello", &f.setup.connect_ms),
                ("watch → seat map", &f.setup.snapshot_ms),
                ("hold latency", &f.holds.hold_latency_ms),
                ("release latency", &f.holds.release_latency_ms),
                ("diff delay (holder's reply → watcher)", &f.watch.diff_delay_ms),
                ("diff delay (holder's send → watcher)", &f.watch.diff_delay_from_send_ms),
            ],
            chart: Chart {
                title: "Diff delay (holder's reply → watcher)",
                bars: &f.watch.delay_bars,
                width_ms: DELAY_BAR_MS,
                promise_ms: 100.0,
                promise: "100 ms target",
                tick_ms: 25.0,
            },
            errors: vec![
                ("Set-up errors", &f.setup.counts.errors),
                ("Holder errors", &f.holds.errors),
                ("Watchers closed", &f.watch.check.closed),
            ],
            details_title: "Configuration, host and server counters",
            server: serde_json::to_value(&f.server).unwrap_or_default(),
        }
    }
}
