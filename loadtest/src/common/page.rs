//! The one HTML page both reports fill in (`Page`): head and style sheet,
//! which server and event were measured, the targets with PASS or MISS, a
//! table of distributions, a histogram with its promise drawn in, the
//! server over the run, the human summary, the error tallies and the run's
//! configuration. Self-contained (inline CSS and SVG, no external assets)
//! and built with maud, so every value on it is escaped. It knows no
//! benchmark.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::common::report::{Bar, Mark, TargetCheck, mib, ms};
use crate::common::server::Sample;
use crate::common::stats::Percentiles;
use crate::common::wire::Causes;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}\
    table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}\
    th{background:#f6f6f6;text-align:left}.pass{color:#1e8449;font-weight:600}.miss{color:#c0392b;font-weight:600}\
    pre{background:#f6f6f6;padding:1em;overflow:auto}.lbl{font-size:11px;fill:#555}";
/// Bars past a promise, and the promise's line.
const RED: &str = "#c0392b";
const BLUE: &str = "#2e86c1";
const PURPLE: &str = "#8e44ad";
const GREEN: &str = "#27ae60";

/// A distribution as fixed-width bars, with the figure's promise (e.g.
/// "2 s promise") drawn as a red line and the bars past it red.
pub struct Chart<'a> {
    pub title: &'a str,
    pub bars: &'a [Bar],
    pub width_ms: f64,
    pub promise_ms: f64,
    pub promise: &'a str,
    /// An axis label every this many milliseconds.
    pub tick_ms: f64,
}

/// What a benchmark shows on its page.
pub struct Body<'a> {
    pub heading: String,
    pub url: &'a str,
    pub event: &'a str,
    /// Rows of the distributions table.
    pub distributions: Vec<(&'a str, &'a Percentiles)>,
    pub chart: Chart<'a>,
    /// Tallies by cause, each under its title; empty ones are left out.
    pub errors: Vec<(&'a str, &'a Causes)>,
    /// The heading of the run's configuration, host and `server` figures.
    pub details_title: &'a str,
    pub server: serde_json::Value,
}

/// A report page: the frame every report has around a benchmark's `body`.
pub struct Page<'a> {
    /// The benchmark (`surge`, `seats`), for the title.
    pub kind: &'a str,
    pub started_at: &'a str,
    pub version: &'a str,
    pub targets: &'a [TargetCheck],
    pub timeline: &'a [Sample],
    pub marks: &'a [Mark],
    /// The human summary.
    pub summary: &'a str,
    /// The run's configuration, host and server figures, as JSON.
    pub details: serde_json::Value,
    pub body: Body<'a>,
}

impl Page<'_> {
    pub fn render(&self) -> String {
        let details = serde_json::to_string_pretty(&self.details).unwrap_or_default();
        let body = &self.body;
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "qt-load " (self.kind) " " (self.started_at) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    h1 { (body.heading) }
                    p { (body.url) " · event " code { (body.event) } " · " (self.started_at) " · qt-load " (self.version) }
                    h2 { "Targets" }
                    (targets_table(self.targets))
                    h2 { "Distributions" }
                    (distributions_table(&body.distributions))
                    h2 { (body.chart.title) }
                    (bar_chart(&body.chart))
                    h2 { "Server over the run" }
                    (timeline_chart(self.timeline, self.marks))
                    h2 { "Summary" }
                    pre { (self.summary) }
                    @for (title, errors) in &body.errors {
                        @if !errors.is_empty() {
                            h3 { (title) }
                            ul { @for (why, n) in *errors { li { (why) ": " (n) } } }
                        }
                    }
                    h2 { (body.details_title) }
                    pre { (details) }
                }
            }
        };
        page.into_string() + "\n"
    }
}

/// The target checks, each marked PASS or MISS.
fn targets_table(targets: &[TargetCheck]) -> Markup {
    html! {
        table {
            tr { th { "figure" } th { "goal" } th { "measured" } th {} }
            @for t in targets {
                tr {
                    th { (t.name) }
                    td { (t.goal) }
                    td { (t.measured) }
                    @if t.pass { td.pass { "PASS" } } @else { td.miss { "MISS" } }
                }
            }
        }
    }
}

fn distributions_table(rows: &[(&str, &Percentiles)]) -> Markup {
    html! {
        table {
            tr { th {} th { "count" } th { "p50" } th { "p90" } th { "p99" } th { "p99.9" } th { "max" } }
            @for (name, p) in rows {
                tr {
                    th { (name) }
                    td { (p.count) }
                    @for v in [p.p50, p.p90, p.p99, p.p999, p.max] { td { (ms(v)) } }
                }
            }
        }
    }
}

/// One decimal, the precision of every coordinate.
fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// The chart as an inline SVG histogram.
pub fn bar_chart(c: &Chart<'_>) -> Markup {
    let (w, h, pad) = (720.0, 220.0, 30.0);
    let max_x = c.bars.last().map_or(c.promise_ms, |b| b.from_ms + c.width_ms).max(c.promise_ms + c.width_ms);
    let max_y = c.bars.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let sx = |x: f64| pad + x / max_x * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - y / max_y * (h - 2.0 * pad);
    let px = sx(c.promise_ms);
    let ticks = (0..).map(|i| f64::from(i) * c.tick_ms).take_while(|t| *t <= max_x);
    let label = |t: f64| if c.tick_ms >= 500.0 { format!("{:.1}s", t / 1000.0) } else { format!("{t:.0}") };
    html! {
        svg viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) role="img" {
            @for b in c.bars {
                @let (x0, x1, y) = (sx(b.from_ms), sx(b.from_ms + c.width_ms), sy(b.count as f64));
                rect x=(f1(x0)) y=(f1(y)) width=(f1((x1 - x0 - 0.5).max(0.5))) height=(f1(h - pad - y))
                    fill=(if b.from_ms >= c.promise_ms { RED } else { BLUE }) {
                    title { (format!("{:.0}–{:.0} ms: {}", b.from_ms, b.from_ms + c.width_ms, b.count)) }
                }
            }
            line x1=(f1(px)) y1=(pad) x2=(f1(px)) y2=(f1(h - pad)) stroke=(RED) stroke-dasharray="4" {}
            text x=(f1(px - 4.0)) y=(pad + 10.0) class="lbl" text-anchor="end" { (c.promise) }
            @for t in ticks {
                text x=(f1(sx(t))) y=(f1(h - 10.0)) class="lbl" text-anchor="middle" { (label(t)) }
            }
            text x=(pad) y="14" class="lbl" { "max " (format!("{max_y:.0}")) " per bar" }
        }
    }
}

/// Server RSS (MiB) and open sockets over the run, with phase marks.
pub fn timeline_chart(samples: &[Sample], marks: &[Mark]) -> Markup {
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
    // Marks close together (e.g. "all joined" and "hold") share one label.
    let mut labelled_x = f64::NEG_INFINITY;
    let marks: Vec<(f64, Option<&str>)> = marks
        .iter()
        .map(|m| {
            let x = sx(m.t_s);
            let labelled = x - labelled_x >= 14.0;
            if labelled {
                labelled_x = x;
            }
            (x, labelled.then_some(m.label))
        })
        .collect();
    html! {
        svg viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) role="img" {
            @for (x, label) in &marks {
                line x1=(f1(*x)) y1=(pad) x2=(f1(*x)) y2=(f1(h - pad)) stroke="#bbb" {}
                @if let Some(label) = label {
                    @let (lx, ly) = (f1(x + 3.0), f1(pad + 24.0));
                    text x=(lx) y=(ly) class="lbl" transform=(format!("rotate(90 {lx} {ly})")) { (label) }
                }
            }
            polyline points=(rss) fill="none" stroke=(PURPLE) stroke-width="2" {}
            polyline points=(socks) fill="none" stroke=(GREEN) stroke-width="2" {}
            text x=(pad) y="14" class="lbl" fill=(PURPLE) { "RSS (max " (mib(max_rss)) ")" }
            text x=(f1(pad + 200.0)) y="14" class="lbl" fill=(GREEN) { "open sockets (max " (format!("{max_sock:.0}")) ")" }
            text x=(f1(w - pad)) y=(f1(h - 10.0)) class="lbl" text-anchor="end" { (format!("{max_t:.0} s")) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn chart(bars: &[Bar]) -> Chart<'_> {
        Chart { title: "t", bars, width_ms: 100.0, promise_ms: 2_000.0, promise: "2 s promise", tick_ms: 500.0 }
    }

    #[test]
    fn html_escapes_what_it_prints() {
        assert_eq!(html! { ("<a href=\"x\">&</a>") }.into_string(), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
        let svg = bar_chart(&chart(&[Bar { from_ms: 2_000.0, count: 3 }])).into_string();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("#c0392b"), "bars past the promise are red");
    }

    #[test]
    fn a_page_escapes_its_values_and_leaves_out_empty_tallies() {
        let targets = [TargetCheck { name: "n", goal: "< 10 ms".into(), measured: "<b>".into(), pass: false }];
        let p = Percentiles { count: 3, p50: Some(1.0), ..Percentiles::default() };
        let (none, some) = (BTreeMap::new(), BTreeMap::from([("a <b>".to_owned(), 2)]));
        let html = Page {
            kind: "surge",
            started_at: "t",
            version: "0",
            targets: &targets,
            timeline: &[Sample { t_s: 1.0, rss_bytes: 1.0, ..Sample::default() }],
            marks: &[Mark { t_s: 0.5, label: "hold" }],
            summary: "a < b",
            details: serde_json::json!({"k": "<v>"}),
            body: Body {
                heading: "Run [<label>]".into(),
                url: "http://127.0.0.1:1",
                event: "e&1",
                distributions: vec![("row", &p)],
                chart: chart(&[]),
                errors: vec![("Empty", &none), ("Some", &some)],
                details_title: "Configuration",
                server: serde_json::Value::Null,
            },
        }
        .render();
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert!(html.contains("Run [&lt;label&gt;]") && html.contains("<code>e&amp;1</code>"));
        assert!(html.contains("<td class=\"miss\">MISS</td>") && html.contains("&lt;b&gt;"));
        assert!(html.contains("<td>1.0 ms</td>") && html.contains("a &lt; b"));
        assert!(!html.contains("Empty") && html.contains("<li>a &lt;b&gt;: 2</li>"));
        assert!(html.contains("&quot;&lt;v&gt;&quot;"), "the JSON is escaped too");
        assert_eq!(html.matches("<svg").count(), 2);
    }
}
