//! Turns what the workers and `/metrics` reported into the report's
//! figures: merged distributions, rates, per-socket and per-buyer costs,
//! the target checks and the caveats. Pure: no I/O, no clocks.

use crate::common::report::{self, Host, Mark, Stamp, TargetCheck};
use crate::common::server::Sample;
use crate::common::stats::{merged, summed};
use crate::surge::report::{
    BAR_MS, Config, CpuFigures, HoldFigures, PollFigures, ServerReadings, Summary, SurgeFigures, SurgeResults,
};
use crate::surge::wire::{HoldReport, JoinCounts, JoinReport, PollReport};

/// The server over a steady window: `/metrics` at its edges, its length,
/// and how busy the whole machine was.
pub struct Window {
    pub start: Sample,
    pub end: Sample,
    pub window_s: f64,
    pub host_busy: Option<f64>,
}

/// `/metrics` readings and machine figures of the socket phases.
pub struct Readings {
    pub baseline: Sample,
    pub after_surge: Sample,
    /// The hold after its settling seconds.
    pub push: Window,
    /// Growth of the kernel's TCP memory per held socket pair.
    pub tcp_kernel_per_socket: Option<f64>,
    pub hold_s: f64,
}

/// `/metrics` readings and worker reports of the polling phase.
pub struct PollReadings {
    /// Before any poller connected.
    pub before: Sample,
    pub window: Window,
    pub reports: Vec<PollReport>,
}

impl Window {
    /// The server's CPU over the window, per waiting buyer.
    fn cpu(&self, buyers: u64) -> CpuFigures {
        let cpu_s = self.end.cpu_s - self.start.cpu_s;
        CpuFigures {
            cpu_s,
            cpu_s_per_buyer_min: cpu_per_buyer_min(cpu_s, self.window_s, buyers),
            host_cpu_busy_pct: self.host_busy,
        }
    }
}

/// CPU seconds per waiting buyer per minute.
pub fn cpu_per_buyer_min(cpu_s: f64, window_s: f64, buyers: u64) -> f64 {
    if window_s <= 0.0 || buyers == 0 { 0.0 } else { cpu_s / window_s * 60.0 / buyers as f64 }
}

/// Everything measured, as the report's figures. `config` and `host`
/// pass through as they are.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    config: Config,
    host: Host,
    joins: &[JoinReport],
    holds: &[HoldReport],
    r: &Readings,
    poll: Option<PollReadings>,
    timeline: Vec<Sample>,
    marks: Vec<Mark>,
) -> Summary {
    let counts: JoinCounts = summed(joins.iter().map(|j| &j.counts));
    let joined = counts.joined;
    let first_sent = joins.iter().filter_map(|j| j.first_join_sent_unix_us).min();
    let first_connect = joins.iter().filter_map(|j| j.first_connect_unix_us).min();
    let last_reply = joins.iter().filter_map(|j| j.last_join_reply_unix_us).max();
    let span = |from: Option<u64>| match (from, last_reply) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
        _ => 0.0,
    };
    let surge_s = span(first_sent);
    let surge = SurgeFigures {
        counts,
        connect_ms: merged(joins.iter().map(|j| &j.connect_us)).summary_ms(),
        join_latency_ms: merged(joins.iter().map(|j| &j.join_us)).summary_ms(),
        surge_s,
        joins_per_s: if surge_s > 0.0 { joined as f64 / surge_s } else { 0.0 },
        ramp_s: span(first_connect),
    };

    let hold_gap = merged(holds.iter().map(|h| &h.hold_gap_us));
    let waiting: u64 = holds.iter().map(|h| h.waiting).sum();
    let over_2s: u64 = holds.iter().map(|h| h.over_2s).sum();
    let rss_per_socket = if joined > 0 { (r.push.end.rss_bytes - r.baseline.rss_bytes) / joined as f64 } else { 0.0 };
    let push_cpu = r.push.cpu(joined);
    let push_per_min = push_cpu.cpu_s_per_buyer_min;
    let hold = HoldFigures {
        hold_s: r.hold_s,
        window_s: r.push.window_s,
        waiting_at_end: waiting,
        lost: holds.iter().map(|h| h.lost).sum(),
        pushes_received: holds.iter().map(|h| h.pushes).sum(),
        server_pushes_in_window: r.push.end.position_pushes - r.push.start.position_pushes,
        server_pushes_skipped_in_window: r.push.end.pushes_skipped - r.push.start.pushes_skipped,
        push_gap_ms: hold_gap.summary_ms(),
        ramp_push_gap_ms: merged(holds.iter().map(|h| &h.ramp_gap_us)).summary_ms(),
        socket_worst_gap_ms: merged(holds.iter().map(|h| &h.socket_max_gap_us)).summary_ms(),
        sockets_over_2s: over_2s,
        push_gap_bars: report::bars(&hold_gap, BAR_MS),
        rss_baseline_bytes: r.baseline.rss_bytes,
        rss_held_bytes: r.push.end.rss_bytes,
        rss_per_socket_bytes: rss_per_socket,
        cpu: push_cpu,
        tcp_kernel_per_socket_bytes: r.tcp_kernel_per_socket,
    };

    let mut poll_window = (None, None);
    let poll = poll.map(|PollReadings { before, window, reports }| {
        let ready: u64 = reports.iter().map(|p| p.ready).sum();
        let figures = PollFigures {
            buyers: config.poll_buyers,
            ready,
            failed: reports.iter().map(|p| p.failed).sum(),
            interval_ms: config.poll_interval_ms,
            window_s: window.window_s,
            requests_ok: reports.iter().map(|p| p.ok).sum(),
            faults: summed(reports.iter().map(|p| &p.faults)),
            post_latency_ms: merged(reports.iter().map(|p| &p.post_us)).summary_ms(),
            get_latency_ms: merged(reports.iter().map(|p| &p.get_us)).summary_ms(),
            nominal_requests_per_s: ready as f64 * 1_000.0 / config.poll_interval_ms as f64,
            rss_bytes: window.end.rss_bytes,
            rss_per_buyer_bytes: if ready > 0 { (window.end.rss_bytes - before.rss_bytes) / ready as f64 } else { 0.0 },
            cpu: window.cpu(ready),
        };
        poll_window = (Some(window.start), Some(window.end));
        figures
    });
    let ratio = poll.as_ref().filter(|_| push_per_min > 0.0).map(|p| p.cpu.cpu_s_per_buyer_min / push_per_min);
    let targets = targets(config.sockets, &surge, &hold);
    let notes = notes(&r.baseline, &surge, &hold);
    let server = ServerReadings {
        baseline: r.baseline.clone(),
        after_surge: r.after_surge.clone(),
        hold_window_start: r.push.start.clone(),
        hold_end: r.push.end.clone(),
        poll_window_start: poll_window.0,
        poll_end: poll_window.1,
    };
    let figures = SurgeResults { surge, hold, poll, poll_to_push_cpu_ratio: ratio, server };
    Summary { stamp: Stamp::new("qt-load surge"), config, host, targets, notes, figures, timeline, marks }
}

/// What could make a figure misleading.
fn notes(baseline: &Sample, s: &SurgeFigures, h: &HoldFigures) -> Vec<String> {
    let mut out = Vec::new();
    if baseline.joins > 0.0 || baseline.sockets_open > 0.0 {
        out.push(format!(
            "the server was not fresh ({} joins served before this run): memory freed by earlier sockets stays with \
             its allocator, so RSS per socket reads low; restart the server for that figure",
            baseline.joins
        ));
    }
    let c = &s.counts;
    if c.failed > 0 || c.pending > 0 {
        out.push(format!("{} sockets failed and {} were still pending; see the surge errors", c.failed, c.pending));
    }
    if h.server_pushes_skipped_in_window > 0.0 {
        out.push(format!(
            "the server skipped {} pushes because a socket's outbox was full",
            h.server_pushes_skipped_in_window
        ));
    }
    out
}

/// The figures this benchmark exists to check.
fn targets(requested: u64, s: &SurgeFigures, h: &HoldFigures) -> Vec<TargetCheck> {
    vec![
        TargetCheck {
            name: "sockets held waiting by one server",
            goal: format!("{requested}"),
            measured: format!("{} joined, {} still waiting at the end", s.counts.joined, h.waiting_at_end),
            pass: s.counts.joined == requested && h.waiting_at_end == requested,
        },
        TargetCheck {
            name: "joins per second",
            goal: ">= 5000/s".into(),
            measured: format!("{:.0}/s", s.joins_per_s),
            pass: s.joins_per_s >= 5_000.0,
        },
        TargetCheck {
            name: "server RSS per waiting socket",
            goal: "< 10 KiB".into(),
            measured: format!("{:.2} KiB", h.rss_per_socket_bytes / 1024.0),
            pass: h.rss_per_socket_bytes < 10.0 * 1024.0,
        },
        TargetCheck {
            name: "sockets that waited > 2 s for a push",
            goal: "0".into(),
            measured: format!("{} (worst gap {:.0} ms)", h.sockets_over_2s, h.socket_worst_gap_ms.max.unwrap_or(0.0)),
            pass: h.sockets_over_2s == 0 && h.waiting_at_end > 0,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_normalised_per_buyer_and_minute() {
        assert!((cpu_per_buyer_min(3.0, 30.0, 10_000) - 0.0006).abs() < 1e-12);
        assert_eq!(cpu_per_buyer_min(1.0, 0.0, 10), 0.0);
        assert_eq!(cpu_per_buyer_min(1.0, 10.0, 0), 0.0);
    }
}
