//! The surge run's report: its figures as the JSON document has them, the
//! human summary, and its HTML page, in the frame every report shares
//! (`common::report::Summary`, `common::page`). What the figures are is
//! `figures`' business.

use std::fmt::Write as _;

use serde::Serialize;

use crate::common::page::{Body, Chart};
use crate::common::report::{self, Bar, Figures, causes, kib, mib, p50_p99, pct, spread};
use crate::common::server::Sample;
use crate::common::stats::Percentiles;
use crate::surge::wire::{JoinCounts, PollFaults};

/// Width of a push-gap bar.
pub const BAR_MS: f64 = 100.0;

pub type Summary = report::Summary<Config, SurgeResults>;

/// The surge benchmark's own figures, one part per phase.
#[derive(Debug, Serialize)]
pub struct SurgeResults {
    pub surge: SurgeFigures,
    pub hold: HoldFigures,
    pub poll: Option<PollFigures>,
    /// CPU per waiting buyer, polling over pushing.
    pub poll_to_push_cpu_ratio: Option<f64>,
    pub server: ServerReadings,
}

#[derive(Debug, Serialize)]
pub struct Config {
    pub url: String,
    pub event: String,
    pub sockets: u64,
    pub procs: usize,
    pub source_ips: Vec<String>,
    pub connect_concurrency: usize,
    pub hold_s: u64,
    pub settle_s: u64,
    pub poll_buyers: u64,
    pub poll_interval_ms: u64,
    pub user_prefix: String,
}

#[derive(Debug, Serialize)]
pub struct SurgeFigures {
    #[serde(flatten)]
    pub counts: JoinCounts,
    /// TCP connect + upgrade + hello, per socket.
    pub connect_ms: Percentiles,
    /// `join` sent → reply.
    pub join_latency_ms: Percentiles,
    /// First `join` sent → last reply.
    pub surge_s: f64,
    pub joins_per_s: f64,
    /// First connect → last reply: the whole ramp as a buyer sees it.
    pub ramp_s: f64,
}

#[derive(Debug, Serialize)]
pub struct HoldFigures {
    pub hold_s: f64,
    /// The steady window CPU and RSS are measured over.
    pub window_s: f64,
    pub waiting_at_end: u64,
    pub lost: u64,
    pub pushes_received: u64,
    pub server_pushes_in_window: f64,
    pub server_pushes_skipped_in_window: f64,
    /// Gaps between consecutive `queue` pushes that ended during the hold.
    pub push_gap_ms: Percentiles,
    /// The same during the surge, before the hold began.
    pub ramp_push_gap_ms: Percentiles,
    /// Each socket's longest silence in the hold (including the one still
    /// running when it ended).
    pub socket_worst_gap_ms: Percentiles,
    pub sockets_over_2s: u64,
    pub push_gap_bars: Vec<Bar>,
    pub rss_baseline_bytes: f64,
    pub rss_held_bytes: f64,
    pub rss_per_socket_bytes: f64,
    #[serde(flatten)]
    pub cpu: CpuFigures,
    /// Kernel TCP memory growth per held socket, machine-wide: on loopback
    /// that is both ends of the connection (not part of any RSS).
    pub tcp_kernel_per_socket_bytes: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct PollFigures {
    pub buyers: u64,
    pub ready: u64,
    pub failed: u64,
    pub interval_ms: u64,
    pub window_s: f64,
    pub requests_ok: u64,
    #[serde(flatten)]
    pub faults: PollFaults,
    pub post_latency_ms: Percentiles,
    pub get_latency_ms: Percentiles,
    /// Buyers ready × polls per second each: the load the window saw.
    pub nominal_requests_per_s: f64,
    pub rss_bytes: f64,
    /// Server RSS growth per polling buyer (keep-alive connections).
    pub rss_per_buyer_bytes: f64,
    #[serde(flatten)]
    pub cpu: CpuFigures,
}

/// The server's CPU over a steady window, per waiting buyer.
#[derive(Debug, Serialize)]
pub struct CpuFigures {
    pub cpu_s: f64,
    pub cpu_s_per_buyer_min: f64,
    /// The whole machine's busy share in the window (server, load
    /// generator and anything else): near 100 % means contended figures.
    pub host_cpu_busy_pct: Option<f64>,
}

/// Readings of `/metrics` at the edges of each phase.
#[derive(Debug, Serialize)]
pub struct ServerReadings {
    pub baseline: Sample,
    pub after_surge: Sample,
    pub hold_window_start: Sample,
    pub hold_end: Sample,
    pub poll_window_start: Option<Sample>,
    pub poll_end: Option<Sample>,
}

impl Figures for SurgeResults {
    const KIND: &'static str = "surge";
    type Config = Config;

    fn text(s: &Summary, o: &mut String) {
        let (sg, h) = (&s.figures.surge, &s.figures.hold);
        let c = &s.config;
        let _ = writeln!(o, "== qt-load surge: {} sockets on {} ({}), {} procs ==", c.sockets, c.url, c.event, c.procs);
        let _ = writeln!(
            o,
            "surge:  joined {}/{}  failed {}  admitted {}  pending {}",
            sg.counts.joined, sg.counts.requested, sg.counts.failed, sg.counts.admitted, sg.counts.pending
        );
        let _ =
            writeln!(o, "        join latency {}   connect {}", spread(&sg.join_latency_ms), p50_p99(&sg.connect_ms));
        let _ = writeln!(
            o,
            "        {:.0} joins/s over {:.2} s (first join sent -> last reply); ramp {:.2} s",
            sg.joins_per_s, sg.surge_s, sg.ramp_s
        );
        let _ = writeln!(
            o,
            "hold:   {:.0} s, {} waiting at end, {} lost, {} pushes received",
            h.hold_s, h.waiting_at_end, h.lost, h.pushes_received
        );
        let _ = writeln!(
            o,
            "        push gap {}   worst per socket {}",
            spread(&h.push_gap_ms),
            p50_p99(&h.socket_worst_gap_ms)
        );
        let _ = writeln!(o, "        sockets that waited > 2 s for a push: {}", h.sockets_over_2s);
        let _ = writeln!(o, "        push gap during the surge: {}", spread(&h.ramp_push_gap_ms));
        let (rss, held, per) = (mib(h.rss_baseline_bytes), mib(h.rss_held_bytes), kib(h.rss_per_socket_bytes));
        let _ = writeln!(o, "        server RSS {rss} -> {held}  = {per} per waiting socket");
        if let Some(k) = h.tcp_kernel_per_socket_bytes {
            let _ = writeln!(o, "        kernel TCP memory {} per held socket (both ends, not in RSS)", kib(k));
        }
        cpu_line(o, &h.cpu, h.window_s, "push");
        if let Some(p) = &s.figures.poll {
            let _ = writeln!(
                o,
                "poll:   {} of {} buyers ready ({} failed), every {} ms, {:.0} req/s",
                p.ready, p.buyers, p.failed, p.interval_ms, p.nominal_requests_per_s
            );
            let _ = writeln!(
                o,
                "        GET latency {}   errors: {} status, {} i/o",
                spread(&p.get_latency_ms),
                p.faults.bad_status,
                p.faults.io_errors
            );
            cpu_line(o, &p.cpu, p.window_s, "poll");
            let (rss, per) = (mib(p.rss_bytes), kib(p.rss_per_buyer_bytes));
            let _ = writeln!(o, "        server RSS {rss} = {per} per polling buyer");
        }
        if let Some(r) = s.figures.poll_to_push_cpu_ratio {
            let _ = writeln!(o, "ratio:  polling costs {r:.1}x the server CPU of pushing");
        }
        causes(o, "surge error", &sg.counts.errors);
        if let Some(p) = &s.figures.poll {
            causes(o, "poll error", &p.faults.errors);
        }
    }

    fn page(s: &Summary) -> Body<'_> {
        let (sg, h) = (&s.figures.surge, &s.figures.hold);
        let mut distributions = vec![
            ("connect + upgrade + hello", &sg.connect_ms),
            ("join latency (send → reply)", &sg.join_latency_ms),
            ("push gap during the surge", &h.ramp_push_gap_ms),
            ("push gap during the hold", &h.push_gap_ms),
            ("worst gap per socket (hold)", &h.socket_worst_gap_ms),
        ];
        let mut errors = vec![("Surge errors", &sg.counts.errors)];
        if let Some(p) = &s.figures.poll {
            distributions.extend([("poll: POST join", &p.post_latency_ms), ("poll: GET status", &p.get_latency_ms)]);
            errors.push(("Poll errors", &p.faults.errors));
        }
        Body {
            heading: format!("Waiting-room surge: {} sockets", s.config.sockets),
            url: &s.config.url,
            event: &s.config.event,
            distributions,
            chart: Chart {
                title: "Position-push gaps during the hold",
                bars: &h.push_gap_bars,
                width_ms: BAR_MS,
                promise_ms: 2_000.0,
                promise: "2 s promise",
                tick_ms: 500.0,
            },
            errors,
            details_title: "Configuration and host",
            server: serde_json::to_value(&s.figures.server).unwrap_or_default(),
        }
    }
}

/// The server's CPU over a steady window, per waiting buyer (`how`: push
/// or poll), and how busy the machine was.
fn cpu_line(o: &mut String, c: &CpuFigures, window_s: f64, how: &str) {
    let _ = writeln!(
        o,
        "        server CPU {:.2} s over {window_s:.1} s = {:.6} CPU s per waiting buyer per minute ({how}); machine {} \
         busy",
        c.cpu_s,
        c.cpu_s_per_buyer_min,
        pct(c.host_cpu_busy_pct)
    );
}
