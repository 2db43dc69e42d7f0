//! The reports of both benchmarks and their three forms: a human summary on
//! stderr, a JSON document for machines, and a self-contained HTML page
//! (inline CSS and SVG, no external assets) for people. This module owns
//! what the two share (the host and target types, the formats of figures,
//! the page's frame, tables and charts, and writing the files) and the
//! surge run's own summary; `seatsreport` holds the seat-map run's. It
//! computes nothing about a run itself; `figures` (and `seatsreport`) fill
//! the figures in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::server::Sample;
use crate::stats::{Histogram, Percentiles};

#[derive(Debug, Serialize)]
pub struct Summary {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub finished_at: String,
    pub config: Config,
    pub host: Host,
    pub targets: Vec<TargetCheck>,
    /// Caveats a reader of the figures must know.
    pub notes: Vec<String>,
    pub surge: SurgeFigures,
    pub hold: HoldFigures,
    pub poll: Option<PollFigures>,
    /// CPU per waiting buyer, polling over pushing.
    pub poll_to_push_cpu_ratio: Option<f64>,
    pub server: ServerReadings,
    pub timeline: Vec<Sample>,
    pub marks: Vec<Mark>,
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

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub cpus: usize,
    pub open_files_limit: u64,
    pub ephemeral_ports: (u32, u32),
}

#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub name: &'static str,
    pub goal: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Serialize)]
pub struct SurgeFigures {
    pub requested: u64,
    pub joined: u64,
    pub failed: u64,
    pub admitted: u64,
    pub pending: u64,
    pub errors: BTreeMap<String, u64>,
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
    pub cpu_s: f64,
    pub cpu_s_per_buyer_min: f64,
    /// The whole machine's busy share in the window (server, load
    /// generator and anything else): near 100 % means contended figures.
    pub host_cpu_busy_pct: Option<f64>,
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
    pub bad_status: u64,
    pub io_errors: u64,
    pub reconnects: u64,
    pub errors: BTreeMap<String, u64>,
    pub post_latency_ms: Percentiles,
    pub get_latency_ms: Percentiles,
    /// Buyers ready × polls per second each: the load the window saw.
    pub nominal_requests_per_s: f64,
    pub rss_bytes: f64,
    /// Server RSS growth per polling buyer (keep-alive connections).
    pub rss_per_buyer_bytes: f64,
    pub cpu_s: f64,
    pub cpu_s_per_buyer_min: f64,
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

/// One bar of a distribution chart: values in `[from_ms, from_ms + width)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub from_ms: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub t_s: f64,
    pub label: &'static str,
}

/// Width of a push-gap bar.
pub const BAR_MS: f64 = 100.0;

/// Folds a microsecond histogram into fixed-width bars, for charts.
pub fn bars(h: &Histogram, width_ms: f64) -> Vec<Bar> {
    let mut out: BTreeMap<u64, u64> = BTreeMap::new();
    for (low, high, count) in h.buckets() {
        let mid_ms = (low as f64 + high.saturating_sub(1) as f64) / 2.0 / 1000.0;
        *out.entry((mid_ms / width_ms).floor() as u64).or_default() += count;
    }
    out.into_iter().map(|(i, count)| Bar { from_ms: i as f64 * width_ms, count }).collect()
}

pub(crate) fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| if v >= 100.0 { format!("{v:.0} ms") } else { format!("{v:.1} ms") })
}

pub(crate) fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:.0} %"))
}

pub(crate) fn kib(bytes: f64) -> String {
    format!("{:.2} KiB", bytes / 1024.0)
}

pub(crate) fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

/// The human summary, also the opening of the HTML page.
pub fn text(s: &Summary) -> String {
    let mut o = String::new();
    let (sg, h) = (&s.surge, &s.hold);
    let _ = writeln!(
        o,
        "== qt-load surge: {} sockets on {} ({}), {} procs ==",
        s.config.sockets, s.config.url, s.config.event, s.config.procs
    );
    let _ = writeln!(
        o,
        "surge:  joined {}/{}  failed {}  admitted {}  pending {}",
        sg.joined, sg.requested, sg.failed, sg.admitted, sg.pending
    );
    let _ = writeln!(
        o,
        "        join latency p50 {}  p99 {}  max {}   connect p50 {}  p99 {}",
        ms(sg.join_latency_ms.p50),
        ms(sg.join_latency_ms.p99),
        ms(sg.join_latency_ms.max),
        ms(sg.connect_ms.p50),
        ms(sg.connect_ms.p99)
    );
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
        "        push gap p50 {}  p99 {}  max {}   worst per socket p50 {}  p99 {}",
        ms(h.push_gap_ms.p50),
        ms(h.push_gap_ms.p99),
        ms(h.push_gap_ms.max),
        ms(h.socket_worst_gap_ms.p50),
        ms(h.socket_worst_gap_ms.p99)
    );
    let _ = writeln!(o, "        sockets that waited > 2 s for a push: {}", h.sockets_over_2s);
    let _ = writeln!(
        o,
        "        push gap during the surge: p50 {}  p99 {}  max {}",
        ms(h.ramp_push_gap_ms.p50),
        ms(h.ramp_push_gap_ms.p99),
        ms(h.ramp_push_gap_ms.max)
    );
    let _ = writeln!(
        o,
        "        server RSS {} -> {}  = {} per waiting socket",
        mib(h.rss_baseline_bytes),
        mib(h.rss_held_bytes),
        kib(h.rss_per_socket_bytes)
    );
    if let Some(k) = h.tcp_kernel_per_socket_bytes {
        let _ = writeln!(o, "        kernel TCP memory {} per held socket (both ends, not in RSS)", kib(k));
    }
    let _ = writeln!(
        o,
        "        server CPU {:.2} s over {:.1} s = {:.6} CPU s per waiting buyer per minute (push); machine {} busy",
        h.cpu_s,
        h.window_s,
        h.cpu_s_per_buyer_min,
        pct(h.host_cpu_busy_pct)
    );
    if let Some(p) = &s.poll {
        let _ = writeln!(
            o,
            "poll:   {} of {} buyers ready ({} failed), every {} ms, {:.0} req/s",
            p.ready, p.buyers, p.failed, p.interval_ms, p.nominal_requests_per_s
        );
        let _ = writeln!(
            o,
            "        GET latency p50 {}  p99 {}  max {}   errors: {} status, {} i/o",
            ms(p.get_latency_ms.p50),
            ms(p.get_latency_ms.p99),
            ms(p.get_latency_ms.max),
            p.bad_status,
            p.io_errors
        );
        let _ = writeln!(
            o,
            "        server CPU {:.2} s over {:.1} s = {:.6} CPU s per waiting buyer per minute (poll); machine {} busy",
            p.cpu_s,
            p.window_s,
            p.cpu_s_per_buyer_min,
            pct(p.host_cpu_busy_pct)
        );
        let _ =
            writeln!(o, "        server RSS {} = {} per polling buyer", mib(p.rss_bytes), kib(p.rss_per_buyer_bytes));
    }
    if let Some(r) = s.poll_to_push_cpu_ratio {
        let _ = writeln!(o, "ratio:  polling costs {r:.1}x the server CPU of pushing");
    }
    for (name, errors) in
        [("surge", &sg.errors), ("poll", &s.poll.as_ref().map(|p| p.errors.clone()).unwrap_or_default())]
    {
        for (why, n) in errors {
            let _ = writeln!(o, "        {name} error: {why}: {n}");
        }
    }
    notes_and_targets(&mut o, &s.notes, &s.targets);
    o
}

/// The summary's closing lines: the caveats, then every target's PASS or
/// MISS.
pub(crate) fn notes_and_targets(o: &mut String, notes: &[String], targets: &[TargetCheck]) {
    for note in notes {
        let _ = writeln!(o, "note:   {note}");
    }
    let _ = writeln!(o, "targets:");
    for t in targets {
        let _ =
            writeln!(o, "  [{}] {}: {} (goal {})", if t.pass { "PASS" } else { "MISS" }, t.name, t.measured, t.goal);
    }
}

/// A benchmark's summary, as `publish` writes it.
pub trait Document: Serialize {
    /// The benchmark (`surge`, `seats`): the report files' prefix.
    const KIND: &'static str;
    /// When the run started and finished (`now_rfc3339`).
    fn set_times(&mut self, started_at: String, finished_at: String);
    /// The human summary, also the opening of the HTML page.
    fn text(&self) -> String;
    /// The self-contained HTML report.
    fn page(&self) -> String;
}

impl Document for Summary {
    const KIND: &'static str = "surge";

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

/// Now, the way reports give times: UTC, whole seconds, RFC 3339.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Writes `<kind>-<stamp>.json` and `.html` into `dir`; returns their paths.
pub fn write<D: Document>(dir: &Path, stamp: &str, d: &D) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = dir.join(format!("{}-{stamp}.json", D::KIND));
    let html = dir.join(format!("{}-{stamp}.html", D::KIND));
    std::fs::write(&json, serde_json::to_string_pretty(d)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    std::fs::write(&html, d.page()).with_context(|| format!("cannot write {}", html.display()))?;
    Ok((json, html))
}

/// The end of a run that went well: stamps its times (finished now),
/// prints the summary on stderr, writes the reports into `dir` (named after
/// the finish time) and prints the JSON report's path on stdout.
pub fn publish<D: Document>(dir: &Path, started_at: String, mut d: D) -> anyhow::Result<()> {
    let finished_at = now_rfc3339();
    let stamp = finished_at.replace(['-', ':'], "").replace('T', "-").trim_end_matches('Z').to_owned();
    d.set_times(started_at, finished_at);
    eprint!("{}", d.text());
    let (json_path, html_path) = write(dir, &stamp, &d)?;
    eprintln!("HTML report: {}", html_path.display());
    println!("{}", json_path.display());
    Ok(())
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) fn pct_row(o: &mut String, name: &str, p: &Percentiles) {
    let _ = write!(o, "<tr><th>{}</th><td>{}</td>", esc(name), p.count);
    for v in [p.p50, p.p90, p.p99, p.p999, p.max] {
        let _ = write!(o, "<td>{}</td>", ms(v));
    }
    o.push_str("</tr>\n");
}

/// Bars as an inline SVG histogram; the promise (e.g. "2 s promise")
/// drawn as a red line, bars past it red; an axis label every `tick_ms`.
pub(crate) fn bar_chart(bars: &[Bar], width_ms: f64, promise_ms: f64, promise: &str, tick_ms: f64) -> String {
    let (w, h, pad) = (720.0, 220.0, 30.0);
    let max_x = bars.last().map_or(promise_ms, |b| b.from_ms + width_ms).max(promise_ms + width_ms);
    let max_y = bars.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let sx = |x: f64| pad + x / max_x * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - y / max_y * (h - 2.0 * pad);
    let mut o = format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#);
    for b in bars {
        let (x0, x1) = (sx(b.from_ms), sx(b.from_ms + width_ms));
        let y = sy(b.count as f64);
        let fill = if b.from_ms >= promise_ms { "#c0392b" } else { "#2e86c1" };
        let _ = write!(
            o,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{:.0}–{:.0} ms: {}</title></rect>"#,
            (x1 - x0 - 0.5).max(0.5),
            h - pad - y,
            b.from_ms,
            b.from_ms + width_ms,
            b.count
        );
    }
    let px = sx(promise_ms);
    let _ = write!(
        o,
        r##"<line x1="{px:.1}" y1="{pad}" x2="{px:.1}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="4"/>"##,
        h - pad
    );
    let _ = write!(
        o,
        r#"<text x="{:.1}" y="{}" class="lbl" text-anchor="end">{}</text>"#,
        px - 4.0,
        pad + 10.0,
        esc(promise)
    );
    let mut tick = 0.0;
    while tick <= max_x {
        let label = if tick_ms >= 500.0 { format!("{:.1}s", tick / 1000.0) } else { format!("{tick:.0}") };
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{:.1}" class="lbl" text-anchor="middle">{label}</text>"#,
            sx(tick),
            h - 10.0,
        );
        tick += tick_ms;
    }
    let _ = write!(o, r#"<text x="{pad}" y="14" class="lbl">max {max_y:.0} per bar</text></svg>"#);
    o
}

/// Server RSS (MiB) and open sockets over the run, with phase marks.
pub(crate) fn timeline_chart(samples: &[Sample], marks: &[Mark]) -> String {
    let (w, h, pad) = (720.0, 240.0, 36.0);
    let max_t = samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let max_rss = samples.iter().map(|s| s.rss_bytes).fold(1.0, f64::max);
    let max_sock = samples.iter().map(|s| s.sockets_open).fold(1.0, f64::max);
    let sx = |t: f64| pad + t / max_t * (w - 2.0 * pad);
    let sy = |v: f64, max: f64| h - pad - v / max * (h - 2.0 * pad);
    let line = |f: &dyn Fn(&Sample) -> (f64, f64)| {
        samples.iter().map(f).map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ")
    };
    let rss = line(&|s| (sx(s.t_s), sy(s.rss_bytes, max_rss)));
    let socks = line(&|s| (sx(s.t_s), sy(s.sockets_open, max_sock)));
    let mut o = format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#);
    // Marks close together (e.g. "all joined" and "hold") share one label.
    let mut labelled_x = f64::NEG_INFINITY;
    for m in marks {
        let x = sx(m.t_s);
        let _ = write!(o, r##"<line x1="{x:.1}" y1="{pad}" x2="{x:.1}" y2="{:.1}" stroke="#bbb"/>"##, h - pad);
        if x - labelled_x >= 14.0 {
            labelled_x = x;
            let _ = write!(
                o,
                r#"<text x="{:.1}" y="{:.1}" class="lbl" transform="rotate(90 {:.1} {:.1})">{}</text>"#,
                x + 3.0,
                pad + 24.0,
                x + 3.0,
                pad + 24.0,
                esc(m.label)
            );
        }
    }
    let _ = write!(o, r##"<polyline points="{rss}" fill="none" stroke="#8e44ad" stroke-width="2"/>"##);
    let _ = write!(o, r##"<polyline points="{socks}" fill="none" stroke="#27ae60" stroke-width="2"/>"##);
    let _ = write!(
        o,
        r##"<text x="{pad}" y="14" class="lbl" fill="#8e44ad">RSS (max {})</text><text x="{:.1}" y="14" class="lbl" fill="#27ae60">open sockets (max {max_sock:.0})</text>"##,
        mib(max_rss),
        pad + 200.0
    );
    let _ = write!(
        o,
        r#"<text x="{:.1}" y="{:.1}" class="lbl" text-anchor="end">{max_t:.0} s</text></svg>"#,
        w - pad,
        h - 10.0
    );
    o
}

/// The page's opening: its head and style sheet, then the heading `h1`
/// (HTML) and which server and event were measured, when, by which qt-load.
pub(crate) fn page_head(o: &mut String, kind: &str, h1: &str, url: &str, event: &str, started_at: &str, version: &str) {
    let _ = writeln!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>qt-load {kind} {}</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ddd;padding:.25em .6em;text-align:right}}\
         th{{background:#f6f6f6;text-align:left}}.pass{{color:#1e8449;font-weight:600}}.miss{{color:#c0392b;font-weight:600}}\
         pre{{background:#f6f6f6;padding:1em;overflow:auto}}.lbl{{font-size:11px;fill:#555}}\
         </style></head><body>",
        esc(started_at)
    );
    let _ = writeln!(
        o,
        "<h1>{h1}</h1><p>{} · event <code>{}</code> · {} · qt-load {version}</p>",
        esc(url),
        esc(event),
        esc(started_at)
    );
}

/// The target checks as a table, each marked PASS or MISS.
pub(crate) fn targets_table(o: &mut String, targets: &[TargetCheck]) {
    o.push_str("<h2>Targets</h2><table><tr><th>figure</th><th>goal</th><th>measured</th><th></th></tr>\n");
    for t in targets {
        let (class, word) = if t.pass { ("pass", "PASS") } else { ("miss", "MISS") };
        let _ = writeln!(
            o,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
            esc(t.name),
            esc(&t.goal),
            esc(&t.measured)
        );
    }
    o.push_str("</table>\n");
}

/// Opens the table of distributions; `pct_row` adds its rows.
pub(crate) fn distributions_head(o: &mut String) {
    o.push_str("<h2>Distributions</h2><table><tr><th></th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
}

/// The server over the run (`timeline_chart`), then the human summary.
pub(crate) fn timeline_and_summary(o: &mut String, samples: &[Sample], marks: &[Mark], text: &str) {
    o.push_str("\n<h2>Server over the run</h2>\n");
    o.push_str(&timeline_chart(samples, marks));
    o.push_str("\n<h2>Summary</h2><pre>");
    o.push_str(&esc(text));
    o.push_str("</pre>\n");
}

/// The page's end: the run's configuration, the host and the server's
/// figures as JSON under `heading`.
pub(crate) fn page_end(o: &mut String, heading: &str, config: &impl Serialize, host: &Host, server: &impl Serialize) {
    let _ = write!(o, "<h2>{heading}</h2><pre>");
    let cfg = serde_json::json!({"config": config, "host": host, "server": server});
    o.push_str(&esc(&serde_json::to_string_pretty(&cfg).unwrap_or_default()));
    o.push_str("</pre></body></html>\n");
}

pub(crate) fn errors_list(o: &mut String, title: &str, errors: &BTreeMap<String, u64>) {
    if errors.is_empty() {
        return;
    }
    let _ = write!(o, "<h3>{}</h3><ul>", esc(title));
    for (why, n) in errors {
        let _ = write!(o, "<li>{}: {n}</li>", esc(why));
    }
    o.push_str("</ul>\n");
}

/// The self-contained HTML report.
pub fn page(s: &Summary) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let h1 = format!("Waiting-room surge: {} sockets", s.config.sockets);
    page_head(&mut o, "surge", &h1, &s.config.url, &s.config.event, &s.started_at, s.version);
    targets_table(&mut o, &s.targets);
    distributions_head(&mut o);
    pct_row(&mut o, "connect + upgrade + hello", &s.surge.connect_ms);
    pct_row(&mut o, "join latency (send → reply)", &s.surge.join_latency_ms);
    pct_row(&mut o, "push gap during the surge", &s.hold.ramp_push_gap_ms);
    pct_row(&mut o, "push gap during the hold", &s.hold.push_gap_ms);
    pct_row(&mut o, "worst gap per socket (hold)", &s.hold.socket_worst_gap_ms);
    if let Some(p) = &s.poll {
        pct_row(&mut o, "poll: POST join", &p.post_latency_ms);
        pct_row(&mut o, "poll: GET status", &p.get_latency_ms);
    }
    o.push_str("</table>\n<h2>Position-push gaps during the hold</h2>\n");
    o.push_str(&bar_chart(&s.hold.push_gap_bars, BAR_MS, 2_000.0, "2 s promise", 500.0));
    timeline_and_summary(&mut o, &s.timeline, &s.marks, &text(s));
    errors_list(&mut o, "Surge errors", &s.surge.errors);
    if let Some(p) = &s.poll {
        errors_list(&mut o, "Poll errors", &p.errors);
    }
    page_end(&mut o, "Configuration and host", &s.config, &s.host, &s.server);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fold_microseconds_into_fixed_width_bins() {
        let mut h = Histogram::new();
        for v in [1_500_000, 1_510_000, 1_990_000, 2_100_000] {
            h.record(v);
        }
        let b = bars(&h, 100.0);
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 4);
        assert_eq!(b[0], Bar { from_ms: 1_500.0, count: 2 });
        assert_eq!(b.last().unwrap().from_ms, 2_100.0);
    }

    #[test]
    fn html_escapes_what_it_prints() {
        assert_eq!(esc("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
        let svg = bar_chart(&[Bar { from_ms: 2_000.0, count: 3 }], 100.0, 2_000.0, "2 s promise", 500.0);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("#c0392b"), "bars past the promise are red");
    }
}
