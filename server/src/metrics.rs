//! Process and server counters, exposed at `/metrics` in the OpenMetrics
//! text format. `prometheus-client` holds the registry and writes the text;
//! `procfs` reads this process's figures on each scrape. Load tests read RSS
//! and CPU time from here, and the integration tests read the counters, so
//! the sample names are a contract: renaming one breaks them and dashboards.
//!
//! Call sites only count (`inc`, `add`, `dec`); nothing here decides what a
//! count means or reaches into the rest of the server.

use procfs::WithCurrentSystemInfo;
use procfs::process::Process;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::{self, ConstCounter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{self, ConstGauge};
use prometheus_client::registry::{Registry, Unit};
use tracing::warn;

/// The content type of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A count that only rises; the exposition adds `_total` to its name.
#[derive(Clone, Debug, Default)]
pub struct Counter(counter::Counter);

impl Counter {
    fn registered(registry: &mut Registry, name: &str, help: &str) -> Self {
        let c = Self::default();
        registry.register(name, help, c.0.clone());
        c
    }
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A level that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(gauge::Gauge);

impl Gauge {
    fn registered(registry: &mut Registry, name: &str, help: &str) -> Self {
        let g = Self::default();
        registry.register(name, help, g.0.clone());
        g
    }
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn dec(&self) {
        self.0.dec();
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// How a coupon claim ended, as the `outcome` label says it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ClaimOutcome {
    issued,
    sold_out,
    already_claimed,
    not_active,
    unavailable,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: ClaimOutcome,
}

/// Coupon claims by outcome.
#[derive(Clone, Debug, Default)]
pub struct ClaimCounts(Family<OutcomeLabel, counter::Counter>);

impl ClaimCounts {
    pub fn inc(&self, outcome: ClaimOutcome) {
        self.0.get_or_create(&OutcomeLabel { outcome }).inc();
    }
    pub fn get(&self, outcome: ClaimOutcome) -> u64 {
        self.0.get_or_create(&OutcomeLabel { outcome }).get()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// Orders by the status they reached (`created` counts as `pending`).
#[derive(Clone, Debug, Default)]
pub struct OrderCounts(Family<StatusLabel, counter::Counter>);

impl OrderCounts {
    pub fn inc(&self, status: qt_protocol::orders::OrderStatus) {
        self.0.get_or_create(&StatusLabel { status: status.as_str() }).inc();
    }
    pub fn get(&self, status: qt_protocol::orders::OrderStatus) -> u64 {
        self.0.get_or_create(&StatusLabel { status: status.as_str() }).get()
    }
}

/// Payments by outcome: `pending` when started, then `paid` or `failed`.
#[derive(Clone, Debug, Default)]
pub struct PaymentCounts(Family<StatusLabel, counter::Counter>);

impl PaymentCounts {
    fn name(status: qt_protocol::orders::PaymentStatus) -> &'static str {
        match status {
            qt_protocol::orders::PaymentStatus::Paid => "paid",
            qt_protocol::orders::PaymentStatus::Failed => "failed",
            qt_protocol::orders::PaymentStatus::Pending => "started",
        }
    }
    pub fn inc(&self, status: qt_protocol::orders::PaymentStatus) {
        self.0.get_or_create(&StatusLabel { status: Self::name(status) }).inc();
    }
    pub fn get(&self, status: qt_protocol::orders::PaymentStatus) -> u64 {
        self.0.get_or_create(&StatusLabel { status: Self::name(status) }).get()
    }
}

/// The server's counters (each field's doc names its sample) and the
/// registry that writes them with the process's figures.
#[derive(Debug)]
pub struct Metrics {
    /// `qt_sockets_open`
    pub sockets_open: Gauge,
    /// `qt_ws_messages_total`
    pub ws_messages: Counter,
    /// `qt_joins_total`
    pub joins: Counter,
    /// `qt_admitted_total`
    pub admitted: Counter,
    /// `qt_dropped_total`
    pub dropped_ghosts: Counter,
    /// `qt_position_pushes_total`
    pub position_pushes: Counter,
    /// `qt_pushes_skipped_total`
    pub pushes_skipped_full: Counter,
    /// `qt_slow_sockets_closed_total`
    pub slow_sockets_closed: Counter,
    /// `qt_abusive_sockets_closed_total`: sockets closed for staying over
    /// their frame budget.
    pub abusive_sockets_closed: Counter,
    /// `qt_send_timeouts_total`
    pub send_timeouts: Counter,
    /// `qt_holds_total`
    pub holds: Counter,
    /// `qt_diffs_relayed_total`
    pub diffs_relayed: Counter,
    /// `qt_diffs_applied_total`
    pub diffs_applied: Counter,
    /// `qt_seatmap_resyncs_total`
    pub resyncs: Counter,
    /// `qt_coupon_claims_total{outcome}`
    pub coupon_claims: ClaimCounts,
    /// `qt_coupon_claims_refused_by_db_total`: claims the live store let
    /// through and the database refused (it must stay 0).
    pub coupon_claims_refused_by_db: Counter,
    /// `qt_orders_total{status}`: orders reaching each status.
    pub orders: OrderCounts,
    /// `qt_payments_total{status}`: payments started, paid and failed.
    pub payments: PaymentCounts,
    /// `qt_gateway_confirm_seconds`: a confirm call with all its retries.
    pub gateway_seconds: prometheus_client::metrics::histogram::Histogram,
    /// `qt_outbox_published_total`
    pub outbox_published: Counter,
    /// `qt_local_waiters`: the hub owns that count, so [`Metrics::render`]
    /// takes it and sets this just before writing.
    local_waiters: gauge::Gauge<u64, std::sync::atomic::AtomicU64>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        // The registry adds the full stop to each help text, and writes the
        // families in the order they are registered here.
        let mut r = Registry::default();
        let sockets_open = Gauge::registered(&mut r, "qt_sockets_open", "Open buyer WebSockets on this node");
        let local_waiters = gauge::Gauge::default();
        r.register("qt_local_waiters", "Buyers waiting on a socket of this node", local_waiters.clone());
        Self {
            sockets_open,
            local_waiters,
            ws_messages: Counter::registered(&mut r, "qt_ws_messages", "Client messages received"),
            joins: Counter::registered(&mut r, "qt_joins", "Joins answered"),
            admitted: Counter::registered(&mut r, "qt_admitted", "Buyers admitted by this node's admitter"),
            dropped_ghosts: Counter::registered(&mut r, "qt_dropped", "Waiting places dropped after the grace"),
            position_pushes: Counter::registered(&mut r, "qt_position_pushes", "Position pushes sent"),
            pushes_skipped_full: Counter::registered(
                &mut r,
                "qt_pushes_skipped",
                "Position pushes skipped because a socket's queue was full",
            ),
            slow_sockets_closed: Counter::registered(
                &mut r,
                "qt_slow_sockets_closed",
                "Sockets closed for not keeping up",
            ),
            abusive_sockets_closed: Counter::registered(
                &mut r,
                "qt_abusive_sockets_closed",
                "Sockets closed for staying over their frame budget",
            ),
            send_timeouts: Counter::registered(
                &mut r,
                "qt_send_timeouts",
                "Sockets given up because the client did not read a frame in time",
            ),
            holds: Counter::registered(&mut r, "qt_holds", "Successful holds"),
            diffs_relayed: Counter::registered(
                &mut r,
                "qt_diffs_relayed",
                "Seat diffs published to the bus by this node",
            ),
            diffs_applied: Counter::registered(
                &mut r,
                "qt_diffs_applied",
                "Seat diffs applied to this node's replicas",
            ),
            resyncs: Counter::registered(&mut r, "qt_seatmap_resyncs", "Replicas reloaded from the store after a gap"),
            coupon_claims: {
                let c = ClaimCounts::default();
                r.register("qt_coupon_claims", "Coupon claims answered, by outcome", c.0.clone());
                c
            },
            coupon_claims_refused_by_db: Counter::registered(
                &mut r,
                "qt_coupon_claims_refused_by_db",
                "Claims the live store issued and the database refused",
            ),
            orders: {
                let c = OrderCounts::default();
                r.register("qt_orders", "Orders reaching each status", c.0.clone());
                c
            },
            payments: {
                let c = PaymentCounts::default();
                r.register("qt_payments", "Payments started, paid and failed", c.0.clone());
                c
            },
            gateway_seconds: {
                let buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];
                let h = prometheus_client::metrics::histogram::Histogram::new(buckets);
                r.register_with_unit(
                    "qt_gateway_confirm",
                    "Payment confirms, with every retry",
                    prometheus_client::registry::Unit::Seconds,
                    h.clone(),
                );
                h
            },
            outbox_published: Counter::registered(&mut r, "qt_outbox_published", "Outbox rows published to the bus"),
            registry: {
                r.register_collector(Box::new(ProcessCollector));
                r
            },
        }
    }
}

impl Metrics {
    /// The OpenMetrics text of every counter, with `local_waiters` as
    /// `qt_local_waiters`; serve it as [`CONTENT_TYPE`].
    pub fn render(&self, local_waiters: usize) -> String {
        self.local_waiters.set(local_waiters as u64);
        let mut out = String::with_capacity(4096);
        text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What this process uses, as `/metrics` reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessUsage {
    pub rss_bytes: u64,
    /// User and system time of all threads.
    pub cpu_seconds: f64,
}

/// Resident set size and CPU time of this process, from `/proc/self/stat`.
pub fn process_usage() -> procfs::ProcResult<ProcessUsage> {
    let stat = Process::myself()?.stat()?;
    Ok(ProcessUsage {
        rss_bytes: stat.rss_bytes().get(),
        cpu_seconds: (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64,
    })
}

/// Writes `process_resident_memory_bytes` and `process_cpu_seconds_total`,
/// read afresh on each scrape. When `/proc` cannot be read it writes neither
/// (rather than zeros a load test would take for figures).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let usage = match process_usage() {
            Ok(usage) => usage,
            Err(e) => {
                warn!(error = %e, "cannot read this process's figures from /proc");
                return Ok(());
            }
        };
        let rss = ConstGauge::new(usage.rss_bytes);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory",
            "Resident set size.",
            Some(&Unit::Bytes),
            rss.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(usage.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::{Metrics, process_usage};

    /// Every sample `/metrics` had before prometheus-client, with its help.
    const EXPORTED: [(&str, &str); 21] = [
        ("process_resident_memory_bytes", "Resident set size."),
        ("process_cpu_seconds_total", "User and system CPU time."),
        ("qt_sockets_open", "Open buyer WebSockets on this node."),
        ("qt_local_waiters", "Buyers waiting on a socket of this node."),
        ("qt_ws_messages_total", "Client messages received."),
        ("qt_joins_total", "Joins answered."),
        ("qt_admitted_total", "Buyers admitted by this node's admitter."),
        ("qt_dropped_total", "Waiting places dropped after the grace."),
        ("qt_position_pushes_total", "Position pushes sent."),
        ("qt_pushes_skipped_total", "Position pushes skipped because a socket's queue was full."),
        ("qt_slow_sockets_closed_total", "Sockets closed for not keeping up."),
        ("qt_abusive_sockets_closed_total", "Sockets closed for staying over their frame budget."),
        ("qt_send_timeouts_total", "Sockets given up because the client did not read a frame in time."),
        ("qt_holds_total", "Successful holds."),
        ("qt_diffs_relayed_total", "Seat diffs published to the bus by this node."),
        ("qt_diffs_applied_total", "Seat diffs applied to this node's replicas."),
        ("qt_seatmap_resyncs_total", "Replicas reloaded from the store after a gap."),
        ("qt_coupon_claims_refused_by_db_total", "Claims the live store issued and the database refused."),
        ("qt_gateway_confirm_seconds_sum", "Payment confirms, with every retry."),
        ("qt_gateway_confirm_seconds_count", "Payment confirms, with every retry."),
        ("qt_outbox_published_total", "Outbox rows published to the bus."),
    ];

    /// Sample lines by name, read as loadtest reads them (labelled samples,
    /// such as histogram buckets, aside).
    fn samples(text: &str) -> BTreeMap<&str, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
            .map(|l| {
                let (name, value) = l.split_once(' ').expect("a sample is `name value`");
                (name, value.parse().expect("a number"))
            })
            .collect()
    }

    /// The integration tests' reading: the first line that starts with the
    /// name and parses after it.
    fn metric(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
    }

    #[test]
    fn exports_the_names_and_help_it_always_had() {
        let text = Metrics::default().render(0);
        let names: Vec<&str> = samples(&text).into_keys().collect();
        let mut want: Vec<&str> = EXPORTED.iter().map(|(n, _)| *n).collect();
        want.sort_unstable();
        assert_eq!(names, want, "{text}");
        for (name, help) in EXPORTED {
            let family = name.strip_suffix("_total").unwrap_or(name);
            let family = family.strip_suffix("_sum").or_else(|| family.strip_suffix("_count")).unwrap_or(family);
            assert!(text.contains(&format!("# HELP {family} {help}\n")), "help of {name} in {text}");
            assert_eq!(metric(&text, name), Some(samples(&text)[name]), "{name} as the tests read it");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn counts_what_call_sites_count() {
        let m = Metrics::default();
        for _ in 0..7 {
            m.holds.inc();
        }
        m.position_pushes.add(40);
        m.position_pushes.add(2);
        m.sockets_open.inc();
        m.sockets_open.inc();
        m.sockets_open.dec();
        assert_eq!((m.holds.get(), m.position_pushes.get(), m.sockets_open.get()), (7, 42, 1));
        let text = m.render(14_999);
        let s = samples(&text);
        assert_eq!(s["qt_holds_total"], 7.0);
        assert_eq!(s["qt_position_pushes_total"], 42.0);
        assert_eq!(s["qt_sockets_open"], 1.0);
        assert_eq!(s["qt_local_waiters"], 14_999.0);
        assert_eq!(s["qt_joins_total"], 0.0);
        assert_eq!(samples(&m.render(3))["qt_local_waiters"], 3.0, "set anew on each render");
    }

    #[test]
    fn reads_our_own_process() {
        // A fresh test process may not have used one clock tick yet.
        let until = Instant::now() + Duration::from_secs(5);
        let mut spin = 0u64;
        while process_usage().unwrap().cpu_seconds == 0.0 && Instant::now() < until {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let usage = process_usage().unwrap();
        assert!(usage.rss_bytes > 1024 * 1024, "a test process uses more than 1 MiB: {usage:?}");
        assert!(usage.cpu_seconds > 0.0, "{usage:?}");
        let text = Metrics::default().render(0);
        let s = samples(&text);
        assert!(s["process_resident_memory_bytes"] > 1024.0 * 1024.0, "{text}");
        assert!(s["process_cpu_seconds_total"] >= usage.cpu_seconds, "{text}");
    }
}
