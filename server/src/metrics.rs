//! Process and server counters, exposed at `/metrics` in Prometheus text
//! format. Load tests read RSS and CPU time from here.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub sockets_open: Gauge,
    pub ws_messages: Counter,
    pub joins: Counter,
    pub admitted: Counter,
    pub dropped_ghosts: Counter,
    pub position_pushes: Counter,
    pub pushes_skipped_full: Counter,
    pub slow_sockets_closed: Counter,
    /// Sockets closed for staying over their frame budget.
    pub abusive_sockets_closed: Counter,
    pub send_timeouts: Counter,
    pub holds: Counter,
    pub diffs_relayed: Counter,
    pub diffs_applied: Counter,
    pub resyncs: Counter,
}

/// Resident set size and CPU seconds of this process, from /proc.
pub fn process_usage() -> (u64, f64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    // Fields 14 and 15 of /proc/self/stat, after the parenthesised name, are
    // user and system time in clock ticks (USER_HZ, 100 on Linux).
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime = f.get(11)?.parse::<u64>().ok()?;
            let stime = f.get(12)?.parse::<u64>().ok()?;
            Some((utime + stime) as f64 / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

impl Metrics {
    pub fn render(&self, local_waiters: usize) -> String {
        let (rss, cpu) = process_usage();
        let mut out = String::with_capacity(1024);
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        line("process_resident_memory_bytes", "gauge", "Resident set size.", rss.to_string());
        line("process_cpu_seconds_total", "counter", "User and system CPU time.", format!("{cpu:.2}"));
        line("qt_sockets_open", "gauge", "Open buyer WebSockets on this node.", self.sockets_open.get().to_string());
        line("qt_local_waiters", "gauge", "Buyers waiting on a socket of this node.", local_waiters.to_string());
        line("qt_ws_messages_total", "counter", "Client messages received.", self.ws_messages.get().to_string());
        line("qt_joins_total", "counter", "Joins answered.", self.joins.get().to_string());
        line(
            "qt_admitted_total",
            "counter",
            "Buyers admitted by this node's admitter.",
            self.admitted.get().to_string(),
        );
        line(
            "qt_dropped_total",
            "counter",
            "Waiting places dropped after the grace.",
            self.dropped_ghosts.get().to_string(),
        );
        line("qt_position_pushes_total", "counter", "Position pushes sent.", self.position_pushes.get().to_string());
        line(
            "qt_pushes_skipped_total",
            "counter",
            "Position pushes skipped because a socket's queue was full.",
            self.pushes_skipped_full.get().to_string(),
        );
        line(
            "qt_slow_sockets_closed_total",
            "counter",
            "Sockets closed for not keeping up.",
            self.slow_sockets_closed.get().to_string(),
        );
        line(
            "qt_abusive_sockets_closed_total",
            "counter",
            "Sockets closed for staying over their frame budget.",
            self.abusive_sockets_closed.get().to_string(),
        );
        line(
            "qt_send_timeouts_total",
            "counter",
            "Sockets given up because the client did not read a frame in time.",
            self.send_timeouts.get().to_string(),
        );
        line("qt_holds_total", "counter", "Successful holds.", self.holds.get().to_string());
        line(
            "qt_diffs_relayed_total",
            "counter",
            "Seat diffs published to the bus by this node.",
            self.diffs_relayed.get().to_string(),
        );
        line(
            "qt_diffs_applied_total",
            "counter",
            "Seat diffs applied to this node's replicas.",
            self.diffs_applied.get().to_string(),
        );
        line(
            "qt_seatmap_resyncs_total",
            "counter",
            "Replicas reloaded from the store after a gap.",
            self.resyncs.get().to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_usage() {
        let (rss, _cpu) = super::process_usage();
        assert!(rss > 1024 * 1024, "a test process uses more than 1 MiB");
    }
}
