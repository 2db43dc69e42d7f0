//! The coordinator's view of the server under test: its `/metrics` (RSS,
//! CPU time, sockets, pushes; also sampled once a second for the timeline)
//! and the seller's queue settings of the event, which the benchmark pauses
//! so that every buyer stays in line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde::Serialize;
use serde_json::Value;

use crate::common::http1;
use crate::common::net::Target;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One reading of the server's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started (filled in by the caller).
    pub t_s: f64,
    pub rss_bytes: f64,
    pub cpu_s: f64,
    pub sockets_open: f64,
    pub local_waiters: f64,
    pub position_pushes: f64,
    pub pushes_skipped: f64,
    pub joins: f64,
}

/// Reads the gauges and counters we use from Prometheus text; missing ones
/// stay 0 (an older server may lack some), but RSS and CPU must be there.
pub fn parse_metrics(text: &str) -> anyhow::Result<Sample> {
    let mut s = Sample::default();
    let (mut rss, mut cpu) = (false, false);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.split_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<f64>() else { continue };
        match name {
            "process_resident_memory_bytes" => (s.rss_bytes, rss) = (v, true),
            "process_cpu_seconds_total" => (s.cpu_s, cpu) = (v, true),
            "qt_sockets_open" => s.sockets_open = v,
            "qt_local_waiters" => s.local_waiters = v,
            "qt_position_pushes_total" => s.position_pushes = v,
            "qt_pushes_skipped_total" => s.pushes_skipped = v,
            "qt_joins_total" => s.joins = v,
            _ => {}
        }
    }
    ensure!(rss && cpu, "the server's /metrics has no process_resident_memory_bytes or process_cpu_seconds_total");
    Ok(s)
}

/// Every unlabelled sample of a Prometheus text, by name.
pub fn parse_all(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            if name.contains('{') {
                return None;
            }
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[derive(Clone)]
pub struct Server {
    target: Target,
    seller_token: String,
}

impl Server {
    pub fn new(target: Target, seller_token: String) -> Self {
        Self { target, seller_token }
    }

    pub async fn metrics(&self) -> anyhow::Result<Sample> {
        parse_metrics(&self.get("/metrics").await?)
    }

    /// `/metrics` as a reading (RSS, CPU, …) plus every counter by name.
    pub async fn metrics_all(&self) -> anyhow::Result<(Sample, BTreeMap<String, f64>)> {
        let text = self.get("/metrics").await?;
        Ok((parse_metrics(&text)?, parse_all(&text)))
    }

    /// A public GET that must answer 200 with UTF-8.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        let (status, body) = http1::fetch(self.target.addr, "GET", path, None, None, CALL_TIMEOUT).await?;
        ensure!(status == 200, "GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
        String::from_utf8(body).with_context(|| format!("GET {path} is not UTF-8"))
    }

    fn settings_path(event: &str) -> String {
        format!("/api/v1/seller/events/{event}/queue")
    }

    /// The event's live queue settings, as the seller sees them.
    pub async fn queue_settings(&self, event: &str) -> anyhow::Result<Value> {
        let path = Self::settings_path(event);
        let (status, body) =
            http1::fetch(self.target.addr, "GET", &path, Some(&self.seller_token), None, CALL_TIMEOUT).await?;
        ensure!(status == 200, "GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).with_context(|| format!("GET {path} did not answer JSON"))
    }

    /// Changes settings live; returns the settings now in force.
    pub async fn patch_queue(&self, event: &str, patch: &Value) -> anyhow::Result<Value> {
        let path = Self::settings_path(event);
        let body = patch.to_string();
        let (status, reply) =
            http1::fetch(self.target.addr, "PATCH", &path, Some(&self.seller_token), Some(&body), CALL_TIMEOUT).await?;
        ensure!(status == 200, "PATCH {path} {body} answered {status}: {}", String::from_utf8_lossy(&reply));
        serde_json::from_slice(&reply).with_context(|| format!("PATCH {path} did not answer JSON"))
    }
}

/// Reads `/metrics` once a second in the background, for the timeline.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(server: Server, t0: Instant, max: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while t0.elapsed() < max {
                tick.tick().await;
                if let Ok(mut s) = server.metrics().await {
                    s.t_s = t0.elapsed().as_secs_f64();
                    out.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                }
            }
        });
        Self { samples, task }
    }

    pub fn stop(self) -> Vec<Sample> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_metrics_we_use() {
        let text = "# HELP process_resident_memory_bytes Resident set size.\n\
                    # TYPE process_resident_memory_bytes gauge\n\
                    process_resident_memory_bytes 52428800\n\
                    process_cpu_seconds_total 12.34\n\
                    qt_sockets_open 15000\n\
                    qt_local_waiters 14999\n\
                    qt_position_pushes_total 123456\n\
                    something_else{label=\"x\"} 7\n";
        let s = parse_metrics(text).unwrap();
        assert_eq!(s.rss_bytes, 52_428_800.0);
        assert_eq!(s.cpu_s, 12.34);
        assert_eq!((s.sockets_open, s.local_waiters, s.position_pushes), (15_000.0, 14_999.0, 123_456.0));
        assert_eq!(s.joins, 0.0, "absent counters read as zero");
        assert!(parse_metrics("qt_sockets_open 1\n").is_err(), "RSS and CPU are required");
        let all = parse_all(text);
        assert_eq!(all.get("qt_local_waiters"), Some(&14_999.0));
        assert!(!all.keys().any(|k| k.contains('{')), "labelled samples are left out");
    }
}
