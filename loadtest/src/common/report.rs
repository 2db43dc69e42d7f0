//! What the two benchmarks' reports share: the frame of a report
//! (`Summary`, around a benchmark's own `Figures`), its three forms (a
//! human summary on stderr, a JSON document for machines, a self-contained
//! HTML page from `page`) written under one name, and the figure types and
//! formats they have in common (host, targets, phase marks, chart bars,
//! milliseconds and sizes). It computes nothing about a run; each
//! benchmark's `figures` fill its report in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::common::page::{Body, Page};
use crate::common::server::Sample;
use crate::common::stats::{Histogram, Percentiles};
use crate::common::wire::Causes;

/// Which tool wrote a report, and when the run started and finished.
#[derive(Debug, Serialize)]
pub struct Stamp {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub finished_at: String,
}

impl Stamp {
    /// A run of `tool`; `publish` fills in the times.
    pub fn new(tool: &'static str) -> Self {
        Self { tool, version: env!("CARGO_PKG_VERSION"), started_at: String::new(), finished_at: String::new() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub cpus: usize,
    pub open_files_limit: u64,
    pub ephemeral_ports: (u32, u32),
}

/// One figure a benchmark exists to check, and whether it met its goal.
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub name: &'static str,
    pub goal: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub t_s: f64,
    pub label: &'static str,
}

/// One bar of a distribution chart: values in `[from_ms, from_ms + width)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub from_ms: f64,
    pub count: u64,
}

/// Folds a microsecond histogram into fixed-width bars, for charts.
pub fn bars(h: &Histogram, width_ms: f64) -> Vec<Bar> {
    let mut out: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for (value, count) in h.recorded() {
        *out.entry((value as f64 / 1000.0 / width_ms).floor() as u64).or_default() += count;
    }
    out.into_iter().map(|(i, count)| Bar { from_ms: i as f64 * width_ms, count }).collect()
}

pub fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| if v >= 100.0 { format!("{v:.0} ms") } else { format!("{v:.1} ms") })
}

pub fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:.0} %"))
}

pub fn kib(bytes: f64) -> String {
    format!("{:.2} KiB", bytes / 1024.0)
}

pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

/// `n` of `d`, or 0 when `d` is not positive.
pub fn per(n: f64, d: f64) -> f64 {
    if d > 0.0 { n / d } else { 0.0 }
}

/// `p50 …  p99 …  max …` of a distribution, as the summaries print it.
pub fn spread(p: &Percentiles) -> String {
    format!("p50 {}  p99 {}  max {}", ms(p.p50), ms(p.p99), ms(p.max))
}

/// `p50 …  p99 …` of a distribution.
pub fn p50_p99(p: &Percentiles) -> String {
    format!("p50 {}  p99 {}", ms(p.p50), ms(p.p99))
}

/// One line per cause of a tally, as the summaries print them.
pub fn causes(o: &mut String, title: &str, causes: &Causes) {
    for (why, n) in causes {
        let _ = writeln!(o, "        {title}: {why}: {n}");
    }
}

/// A benchmark's report: the frame every report has (the stamp, the run's
/// configuration `C`, the host, the targets, the caveats, the server over
/// the run) around the benchmark's own figures `F`, which serialise in its
/// middle.
#[derive(Debug, Serialize)]
pub struct Summary<C, F> {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub config: C,
    pub host: Host,
    pub targets: Vec<TargetCheck>,
    /// Caveats a reader of the figures must know.
    pub notes: Vec<String>,
    #[serde(flatten)]
    pub figures: F,
    pub timeline: Vec<Sample>,
    pub marks: Vec<Mark>,
}

/// A benchmark's own part of its report.
pub trait Figures: Serialize + Sized {
    /// The benchmark (`surge`, `seats`): the report files' prefix.
    const KIND: &'static str;
    type Config: Serialize;
    /// The human summary's figures (the caveats and targets follow).
    fn text(s: &Summary<Self::Config, Self>, o: &mut String);
    /// What its page shows inside the frame.
    fn page(s: &Summary<Self::Config, Self>) -> Body<'_>;
}

impl<F: Figures> Summary<F::Config, F> {
    /// The human summary, also the opening of the HTML page.
    pub fn text(&self) -> String {
        let mut o = String::new();
        F::text(self, &mut o);
        for note in &self.notes {
            let _ = writeln!(o, "note:   {note}");
        }
        let _ = writeln!(o, "targets:");
        for t in &self.targets {
            let pass = if t.pass { "PASS" } else { "MISS" };
            let _ = writeln!(o, "  [{pass}] {}: {} (goal {})", t.name, t.measured, t.goal);
        }
        o
    }

    /// The self-contained HTML report.
    pub fn page(&self) -> String {
        let text = self.text();
        let body = F::page(self);
        Page {
            kind: F::KIND,
            started_at: &self.stamp.started_at,
            version: self.stamp.version,
            targets: &self.targets,
            timeline: &self.timeline,
            marks: &self.marks,
            summary: &text,
            details: serde_json::json!({"config": self.config, "host": self.host, "server": body.server}),
            body,
        }
        .render()
    }
}

/// Now, the way reports give times: UTC, whole seconds, RFC 3339.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Writes `<kind>-<stamp>.json` and `.html` into `dir`; returns their paths.
pub fn write<F: Figures>(dir: &Path, stamp: &str, d: &Summary<F::Config, F>) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = dir.join(format!("{}-{stamp}.json", F::KIND));
    let html = dir.join(format!("{}-{stamp}.html", F::KIND));
    std::fs::write(&json, serde_json::to_string_pretty(d)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    std::fs::write(&html, d.page()).with_context(|| format!("cannot write {}", html.display()))?;
    Ok((json, html))
}

/// The end of a run that went well: stamps its times (finished now),
/// prints the summary on stderr, writes the reports into `dir` (named after
/// the finish time) and prints the JSON report's path on stdout.
pub fn publish<F: Figures>(dir: &Path, started_at: String, mut d: Summary<F::Config, F>) -> anyhow::Result<()> {
    let finished_at = now_rfc3339();
    let stamp = finished_at.replace(['-', ':'], "").replace('T', "-").trim_end_matches('Z').to_owned();
    (d.stamp.started_at, d.stamp.finished_at) = (started_at, finished_at);
    eprint!("{}", d.text());
    let (json_path, html_path) = write(dir, &stamp, &d)?;
    eprintln!("HTML report: {}", html_path.display());
    println!("{}", json_path.display());
    Ok(())
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
    fn figures_read_as_people_write_them() {
        assert_eq!((ms(Some(2.24)), ms(Some(250.4)), ms(None)), ("2.2 ms".into(), "250 ms".into(), "-".into()));
        assert_eq!(
            (pct(Some(49.6)), kib(2048.0), mib(3.0 * 1024.0 * 1024.0)),
            ("50 %".into(), "2.00 KiB".into(), "3.0 MiB".into())
        );
        assert_eq!((per(3.0, 2.0), per(1.0, 0.0)), (1.5, 0.0));
    }
}
