//! What a checkout run measured, computed from every buyer's record (the
//! workers send their records; every time in them is Unix µs on this
//! machine's one clock): paid orders per second over the window from the
//! first `checkout` to the last final `payment` (for the payments that
//! answer at once, and for all), latency from `checkout` sent to the final
//! `paid` (overall and by key prefix), the outcomes, the server's CPU over
//! the buy; then the targets, each PASS or MISS, and the caveats.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checkout::audit::Audit;
use crate::checkout::plan::Kind;
use crate::checkout::report::{CheckoutConfig, CheckoutResults, CheckoutSummary};
use crate::checkout::wire::{BuyReport, BuyerRecord, ReadyReport, Told};
use crate::common::report::{Bar, Host, Mark, Stamp, TargetCheck, bars, ms, per};
use crate::common::server::Sample;
use crate::common::stats::{Histogram, Percentiles, merged, tallies, tally};
use crate::common::wire::Causes;

/// Labelled counters whose growth over the buy the report shows.
const LABELLED: &[&str] = &["qt_orders_total{", "qt_payments_total{"];
/// Unlabelled counters whose growth the report shows.
const COUNTERS: &[&str] = &[
    "qt_ws_messages_total",
    "qt_holds_total",
    "qt_outbox_published_total",
    "qt_diffs_applied_total",
    "qt_gateway_confirm_seconds_sum",
    "qt_gateway_confirm_seconds_count",
];

#[derive(Debug, Serialize)]
pub struct SetupFigures {
    pub buyers: u64,
    pub open: u64,
    pub admitted: u64,
    pub held: u64,
    pub no_seats: u64,
    pub seats_held: u64,
    pub coupons: u64,
    pub failed: u64,
    pub errors: Causes,
    pub connect_ms: Percentiles,
    pub admit_hold_ms: Percentiles,
}

/// One key prefix's buyers and what came of them.
#[derive(Debug, Default, Serialize)]
pub struct KindFigures {
    pub buyers: u64,
    pub orders: u64,
    pub paid: u64,
    pub failed: u64,
    /// `pay` answered `pending` (the final answer was pushed).
    pub pending_replies: u64,
    /// `checkout` sent → the final `paid` (or, for declines, `failed`).
    pub final_ms: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct BuyFigures {
    /// Buyers by what came of them (`paid`, `failed`, `no seats`, …).
    pub outcomes: Causes,
    pub orders: u64,
    pub paid: u64,
    /// Buyers that got their seats only after the start.
    pub late_buyers: u64,
    /// Barrier → the first `checkout` sent.
    pub start_lag_ms: f64,
    /// Payments that answer at once (`ok`, `flaky`, `decline` keys): paid
    /// orders of theirs ÷ (first `checkout` → their last final `payment`).
    pub fast_window_s: f64,
    pub fast_paid: u64,
    pub fast_paid_per_s: f64,
    /// Every payment (`slow` and `lost` too): paid orders ÷ (first
    /// `checkout` → the last final `payment`).
    pub all_window_s: f64,
    pub all_paid_per_s: f64,
    /// `checkout` sent → final `paid`: every paid order, the fast ones.
    pub paid_ms: Percentiles,
    pub fast_paid_ms: Percentiles,
    /// `checkout` sent → its `order`; `pay` sent → its reply.
    pub checkout_ms: Percentiles,
    pub pay_reply_ms: Percentiles,
    pub by_kind: BTreeMap<&'static str, KindFigures>,
    pub stuck: u64,
    pub paid_bar_ms: f64,
    pub paid_bars: Vec<Bar>,
}

#[derive(Debug, Default, Serialize)]
pub struct ServerFigures {
    /// From just before the start command to the workers' last answer.
    pub window_s: f64,
    pub cpu_s: f64,
    /// Server CPU over that window, as a share of one core; and per paid
    /// order.
    pub cpu_pct_of_core: f64,
    pub cpu_ms_per_paid_order: f64,
    pub rss_before_bytes: f64,
    pub rss_after_bytes: f64,
    pub counters: BTreeMap<String, f64>,
    /// Over the headline window (first checkout → last fast final
    /// payment): the server's CPU as a share of one core, and the
    /// machine's busy share (from readings every 100 ms).
    pub fast_window_cpu_pct_of_core: Option<f64>,
    pub fast_window_host_busy_pct: Option<f64>,
    /// The server's mean time for one confirm, every retry included
    /// (`qt_gateway_confirm_seconds`), in milliseconds.
    pub gateway_confirm_mean_ms: Option<f64>,
    pub host_busy_pct: Option<f64>,
    /// The machine's busy share in the second before the buy, when server
    /// and load generator idle: other processes' load.
    pub host_busy_before_pct: Option<f64>,
    pub loadgen_cpu_pct_of_core: Option<f64>,
}

/// One reading of the server's and the machine's CPU during the buy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuPoint {
    pub unix_us: u64,
    pub server_cpu_s: f64,
    /// The machine's busy and total ticks.
    pub machine: Option<(u64, u64)>,
}

/// Server CPU (share of a core) and machine busy share between the
/// readings nearest `from` (at or before) and `to` (at or after).
fn cpu_between(trace: &[CpuPoint], from: u64, to: u64) -> (Option<f64>, Option<f64>) {
    let a = trace.iter().rev().find(|p| p.unix_us <= from).or_else(|| trace.first());
    let b = trace.iter().find(|p| p.unix_us >= to).or_else(|| trace.last());
    match (a, b) {
        (Some(a), Some(b)) if b.unix_us > a.unix_us => {
            let s = (b.unix_us - a.unix_us) as f64 / 1e6;
            (Some((b.server_cpu_s - a.server_cpu_s) * 100.0 / s), crate::common::host::busy_pct(a.machine, b.machine))
        }
        _ => (None, None),
    }
}

/// `/metrics` and machine readings around the buy.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub barrier_unix_us: u64,
    pub before: Sample,
    pub after: Sample,
    pub counters_before: BTreeMap<String, f64>,
    pub counters_after: BTreeMap<String, f64>,
    pub window_s: f64,
    pub host_busy_pct: Option<f64>,
    pub host_busy_before_pct: Option<f64>,
    /// The server's CPU every 100 ms during the buy.
    pub cpu_trace: Vec<CpuPoint>,
    pub loadgen_cpu_s: Option<f64>,
    /// How long the seat map took to show the sales and refunds.
    pub settle_s: f64,
    pub settled: bool,
}

/// The counters of a `/metrics` text the report follows: a few unlabelled
/// ones, and the orders and payments by status.
pub fn counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let wanted = COUNTERS.contains(&name) || LABELLED.iter().any(|p| name.starts_with(p));
            wanted.then(|| Some((name.to_owned(), value.trim().parse().ok()?)))?
        })
        .collect()
}

fn growth(start: &BTreeMap<String, f64>, end: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    end.iter().map(|(k, v)| (k.clone(), v - start.get(k).copied().unwrap_or(0.0))).collect()
}

/// A bar width for a latency chart up to `max_ms`: the smallest 1-2-5 step
/// that needs at most 80 bars.
pub fn bar_width_ms(max_ms: f64) -> f64 {
    let steps = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0];
    steps.into_iter().find(|w| max_ms / w <= 80.0).unwrap_or(10_000.0)
}

fn span(from: u64, to: Option<u64>) -> f64 {
    to.map_or(0.0, |t| t.saturating_sub(from) as f64 / 1e6)
}

fn between(h: &mut Histogram, from: Option<u64>, to: Option<u64>) {
    if let (Some(a), Some(b)) = (from, to) {
        h.record(b.saturating_sub(a));
    }
}

/// The buy's figures from every buyer's record.
pub fn buy_figures(records: &[BuyerRecord], reports: &[BuyReport], barrier_unix_us: u64) -> BuyFigures {
    let mut outcomes = Causes::new();
    let (mut paid_h, mut fast_h, mut checkout_h, mut pay_h) =
        (Histogram::new(), Histogram::new(), Histogram::new(), Histogram::new());
    let mut kinds: BTreeMap<Kind, (KindFigures, Histogram)> = BTreeMap::new();
    let first = records.iter().filter_map(|r| r.checkout_us).min();
    let (mut last_fast, mut last_any): (Option<u64>, Option<u64>) = (None, None);
    let (mut fast_paid, mut paid, mut orders, mut late) = (0, 0, 0, 0);
    for r in records {
        tally(&mut outcomes, &r.outcome);
        orders += u64::from(r.order.is_some());
        late += u64::from(r.late);
        between(&mut checkout_h, r.checkout_us, r.order_us);
        between(&mut pay_h, r.pay_us, r.pay_reply_us);
        let Some(kind) = r.kind else { continue };
        let (k, kh) = kinds.entry(kind).or_default();
        k.buyers += 1;
        k.orders += u64::from(r.order.is_some());
        k.pending_replies += u64::from(r.pay_reply == Some(Told::Pending));
        if r.final_status.is_some() {
            last_any = last_any.max(r.final_us);
            if kind.fast() {
                last_fast = last_fast.max(r.final_us);
            }
            between(kh, r.checkout_us, r.final_us);
        }
        match r.final_status {
            Some(Told::Paid) => {
                k.paid += 1;
                paid += 1;
                between(&mut paid_h, r.checkout_us, r.final_us);
                if kind.fast() {
                    fast_paid += 1;
                    between(&mut fast_h, r.checkout_us, r.final_us);
                }
            }
            Some(Told::Failed) => k.failed += 1,
            _ => {}
        }
    }
    let first = first.unwrap_or(barrier_unix_us);
    let (fast_window_s, all_window_s) = (span(first, last_fast), span(first, last_any));
    let paid_bar_ms = bar_width_ms(paid_h.max().unwrap_or(0) as f64 / 1000.0);
    BuyFigures {
        outcomes,
        orders,
        paid,
        late_buyers: late,
        start_lag_ms: first.saturating_sub(barrier_unix_us) as f64 / 1000.0,
        fast_window_s,
        fast_paid,
        fast_paid_per_s: per(fast_paid as f64, fast_window_s),
        all_window_s,
        all_paid_per_s: per(paid as f64, all_window_s),
        paid_ms: paid_h.summary_ms(),
        fast_paid_ms: fast_h.summary_ms(),
        checkout_ms: checkout_h.summary_ms(),
        pay_reply_ms: pay_h.summary_ms(),
        by_kind: kinds
            .into_iter()
            .map(|(kind, (mut k, h))| {
                k.final_ms = h.summary_ms();
                (kind.prefix(), k)
            })
            .collect(),
        stuck: reports.iter().map(|r| r.stuck).sum(),
        paid_bar_ms,
        paid_bars: bars(&paid_h, paid_bar_ms),
    }
}

/// Everything measured, as the report's figures.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    config: CheckoutConfig,
    host: Host,
    ready: &[ReadyReport],
    reports: &[BuyReport],
    audit: Audit,
    r: Readings,
    timeline: Vec<Sample>,
    marks: Vec<Mark>,
) -> CheckoutSummary {
    let setup = SetupFigures {
        buyers: ready.iter().map(|x| x.buyers).sum(),
        open: ready.iter().map(|x| x.open).sum(),
        admitted: ready.iter().map(|x| x.admitted).sum(),
        held: ready.iter().map(|x| x.held).sum(),
        no_seats: ready.iter().map(|x| x.no_seats).sum(),
        seats_held: ready.iter().map(|x| x.seats_held).sum(),
        coupons: ready.iter().map(|x| x.coupons).sum(),
        failed: ready.iter().map(|x| x.failed).sum(),
        errors: tallies(ready.iter().map(|x| &x.errors)),
        connect_ms: merged(ready.iter().map(|x| &x.connect_us)).summary_ms(),
        admit_hold_ms: merged(ready.iter().map(|x| &x.admit_hold_us)).summary_ms(),
    };
    let records: Vec<BuyerRecord> = reports.iter().flat_map(|b| b.records.iter().cloned()).collect();
    let buy = buy_figures(&records, reports, r.barrier_unix_us);
    let cpu_s = r.after.cpu_s - r.before.cpu_s;
    let counters = growth(&r.counters_before, &r.counters_after);
    let confirms = counters.get("qt_gateway_confirm_seconds_count").copied().unwrap_or(0.0);
    let gateway_confirm_mean_ms = (confirms > 0.0)
        .then(|| counters.get("qt_gateway_confirm_seconds_sum").copied().unwrap_or(0.0) * 1000.0 / confirms);
    let first = records.iter().filter_map(|x| x.checkout_us).min().unwrap_or(r.barrier_unix_us);
    let fast_end = first + (buy.fast_window_s * 1e6) as u64;
    let (fast_window_cpu_pct_of_core, fast_window_host_busy_pct) = cpu_between(&r.cpu_trace, first, fast_end);
    let server = ServerFigures {
        fast_window_cpu_pct_of_core,
        fast_window_host_busy_pct,
        window_s: r.window_s,
        cpu_s,
        cpu_pct_of_core: per(cpu_s * 100.0, r.window_s),
        cpu_ms_per_paid_order: per(cpu_s * 1000.0, buy.paid as f64),
        rss_before_bytes: r.before.rss_bytes,
        rss_after_bytes: r.after.rss_bytes,
        counters,
        gateway_confirm_mean_ms,
        host_busy_pct: r.host_busy_pct,
        host_busy_before_pct: r.host_busy_before_pct,
        loadgen_cpu_pct_of_core: r.loadgen_cpu_s.map(|s| per(s * 100.0, r.window_s)),
    };
    let targets = targets(&config, &buy, &audit);
    let notes = notes(&config, &setup, &buy, &audit, &server, &r);
    let figures = CheckoutResults { setup, buy, audit, settle_s: r.settle_s, settled: r.settled, records, server };
    CheckoutSummary { stamp: Stamp::new("qt-load checkout"), config, host, targets, notes, figures, timeline, marks }
}

fn row(name: &'static str, goal: impl Into<String>, measured: String, pass: bool) -> TargetCheck {
    TargetCheck { name, goal: goal.into(), measured, pass }
}

fn targets(c: &CheckoutConfig, b: &BuyFigures, a: &Audit) -> Vec<TargetCheck> {
    let examples =
        |x: &crate::checkout::audit::Check| x.examples.first().map_or_else(String::new, |e| format!("; e.g. {e}"));
    vec![
        row(
            "paid orders per second (ok+flaky paid ÷ first checkout → last ok/flaky/decline final payment)",
            format!(">= {:.0}/s", c.target_per_s),
            format!(
                "{:.0}/s ({} in {:.3} s); all payments incl. slow+lost: {:.0}/s ({} in {:.3} s)",
                b.fast_paid_per_s, b.fast_paid, b.fast_window_s, b.all_paid_per_s, b.paid, b.all_window_s
            ),
            b.fast_paid_per_s >= c.target_per_s,
        ),
        row(
            "every buyer with seats got an order and a final payment",
            "0 broken",
            format!(
                "{} broken ({} orders without a final payment, {} buyers stuck; no seats: {}){}",
                a.broken.bad,
                a.no_final,
                b.stuck,
                a.no_seats,
                examples(&a.broken)
            ),
            a.broken.ok() && b.stuck == 0 && a.orders > 0,
        ),
        row(
            "final outcome as the key asks (decline → failed, ok/flaky/slow/lost → paid), no contradicting push",
            "0",
            format!("{} wrong, {} contradicted{}", a.wrong_outcome.bad, a.flipped.bad, examples(&a.wrong_outcome)),
            a.wrong_outcome.ok() && a.flipped.ok(),
        ),
        row(
            "charges = paid orders (one DONE charge of the total and key per paid order, none for failed)",
            format!("{} DONE", a.paid - a.refunded.min(a.paid)),
            format!(
                "{} DONE, {} CANCELED of the run's orders ({} read{}, {} of other orders); {} paid without their charge, \
                 {} failed with a DONE charge{}",
                a.done_charges,
                a.canceled_charges,
                a.charges_read,
                if a.ledger_by_order { ", order by order" } else { "" },
                a.foreign_charges,
                a.paid_not_charged.bad,
                a.failed_but_charged.bad,
                examples(&a.paid_not_charged).to_owned() + &examples(&a.failed_but_charged)
            ),
            a.paid_not_charged.ok()
                && a.failed_but_charged.ok()
                && a.done_charges == a.paid.saturating_sub(a.refunded)
                && a.foreign_new == 0,
        ),
        row(
            "sold seats = seats of paid orders, none sold twice",
            format!("{} sold", a.seats_paid + a.seats_sold_at_start),
            format!(
                "{} sold ({} at the start), {} of paid orders; {} sold without a paid order, {} paid not sold, {} in two \
                 paid orders; {} held at the end{}",
                a.seats_sold,
                a.seats_sold_at_start,
                a.seats_paid,
                a.sold_not_paid.bad,
                a.paid_not_sold.bad,
                a.sold_twice.bad,
                a.seats_held_at_end,
                examples(&a.sold_not_paid).to_owned() + &examples(&a.paid_not_sold) + &examples(&a.sold_twice)
            ),
            a.sold_not_paid.ok() && a.paid_not_sold.ok() && a.sold_twice.ok(),
        ),
        row(
            "every refund matched (answered refunded, one CANCELED charge, seats free; no other refund)",
            format!("{} refunds", a.refunds_asked),
            format!(
                "{} refunded, {} refused, {} unmatched charges, {} seats not free{}",
                a.refunded,
                a.refund_refused.bad,
                a.refund_unmatched.bad,
                a.refunded_not_free.bad,
                examples(&a.refund_refused).to_owned()
                    + &examples(&a.refund_unmatched)
                    + &examples(&a.refunded_not_free)
            ),
            a.refund_refused.ok() && a.refund_unmatched.ok() && a.refunded_not_free.ok(),
        ),
        row(
            "each buyer's orders list its order as it was told",
            format!("all {} asked", a.listed + a.list_errors),
            format!(
                "{} listed, {} unanswered; {} wrong status, {} unknown orders, {} missing{}",
                a.listed,
                a.list_errors,
                a.listed_wrong.bad,
                a.listed_unknown.bad,
                a.listed_missing.bad,
                examples(&a.listed_wrong).to_owned() + &examples(&a.listed_unknown) + &examples(&a.listed_missing)
            ),
            a.list_errors == 0 && a.listed_wrong.ok() && a.listed_unknown.ok() && a.listed_missing.ok() && a.listed > 0,
        ),
        row(
            "`best` checkouts of buyers with a coupon got it",
            format!("{} discounted", a.best_orders),
            format!("{} of {}{}", a.best_discounted, a.best_orders, examples(&a.best_without_coupon)),
            a.best_without_coupon.ok(),
        ),
    ]
}

fn notes(
    c: &CheckoutConfig,
    setup: &SetupFigures,
    b: &BuyFigures,
    a: &Audit,
    srv: &ServerFigures,
    r: &Readings,
) -> Vec<String> {
    let mut out = vec![
        "the headline rate counts the payments that answer at once (ok, flaky, decline keys); slow keys answer after \
         the sandbox's slow delay and lost ones after a retry, so the rate over all payments is given beside it"
            .into(),
    ];
    if setup.failed > 0 {
        out.push(format!("{} buyers failed in set-up; they count as broken", setup.failed));
    }
    if a.no_seats > 0 {
        out.push(format!(
            "{} buyers found no seats (the event has fewer than the buyers asked for); counted apart, not as failures",
            a.no_seats
        ));
    }
    if b.late_buyers > 0 {
        out.push(format!("{} buyers got their seats only after the start (a later wave)", b.late_buyers));
    }
    if a.seats_held_at_end > 0 {
        out.push(format!("{} seats were still held at the end", a.seats_held_at_end));
    }
    if a.foreign_charges > 0 {
        out.push(format!(
            "the ledger has {} charges of orders that are not this run's ({} new during the run)",
            a.foreign_charges, a.foreign_new
        ));
    }
    if !r.settled {
        out.push(format!(
            "the seat map did not show every sale and refund within {} s; the seat rows read it as it was then",
            c.settle_timeout_s
        ));
    }
    if b.start_lag_ms > 250.0 {
        out.push(format!(
            "the first checkout went out {} after the start: the load generator was slow to fire",
            ms(Some(b.start_lag_ms))
        ));
    }
    if let Some(before) = srv.host_busy_before_pct.filter(|x| *x > 15.0) {
        out.push(format!(
            "the machine was {before:.0} % busy in the second before the buy, with server and load generator idle: \
             other processes shared the CPUs, so the figures are contended"
        ));
    }
    if srv.fast_window_host_busy_pct.is_some_and(|x| x > 90.0) {
        out.push(format!(
            "the machine was {:.0} % busy over the headline window (server {:.0} % of a core): the rate is bound by \
             this machine's CPUs",
            srv.fast_window_host_busy_pct.unwrap_or(0.0),
            srv.fast_window_cpu_pct_of_core.unwrap_or(0.0)
        ));
    }
    if srv.host_busy_pct.is_some_and(|x| x > 90.0) {
        out.push(format!(
            "the machine was {:.0} % busy: server and load generator ({:.0} % of a core) competed for {} CPUs",
            srv.host_busy_pct.unwrap_or(0.0),
            srv.loadgen_cpu_pct_of_core.unwrap_or(0.0),
            std::thread::available_parallelism().map_or(1, usize::from)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::wire::OrderFacts;

    fn rec(kind: Kind, checkout: u64, fin: u64, told: Told) -> BuyerRecord {
        BuyerRecord {
            kind: Some(kind),
            outcome: if told == Told::Paid { "paid" } else { "failed" }.into(),
            order: Some(OrderFacts::default()),
            checkout_us: Some(checkout),
            order_us: Some(checkout + 1_000),
            pay_us: Some(checkout + 1_000),
            pay_reply_us: Some(checkout + 2_000),
            final_us: Some(fin),
            final_status: Some(told),
            ..BuyerRecord::default()
        }
    }

    #[test]
    fn rates_are_over_the_window_from_the_first_checkout() {
        let t0 = 10_000_000;
        let records = [
            rec(Kind::Ok, t0 + 1_000, t0 + 201_000, Told::Paid),
            rec(Kind::Ok, t0 + 2_000, t0 + 401_000, Told::Paid),
            rec(Kind::Flaky, t0 + 3_000, t0 + 501_000, Told::Paid),
            rec(Kind::Decline, t0 + 4_000, t0 + 101_000, Told::Failed),
            rec(Kind::Slow, t0 + 5_000, t0 + 5_001_000, Told::Paid),
            BuyerRecord { outcome: "no seats".into(), kind: Some(Kind::Ok), ..BuyerRecord::default() },
        ];
        let b = buy_figures(&records, &[], t0);
        assert_eq!((b.fast_paid, b.paid, b.orders), (3, 4, 5));
        assert!((b.fast_window_s - 0.5).abs() < 1e-9, "{}", b.fast_window_s);
        assert!((b.fast_paid_per_s - 6.0).abs() < 1e-9);
        assert!((b.all_window_s - 5.0).abs() < 1e-9);
        assert!((b.all_paid_per_s - 0.8).abs() < 1e-9);
        assert_eq!((b.paid_ms.count, b.fast_paid_ms.count), (4, 3));
        assert_eq!(b.by_kind["decline"].failed, 1);
        assert_eq!(b.by_kind["ok"].buyers, 3);
        assert_eq!(b.outcomes["no seats"], 1);
        assert!((b.start_lag_ms - 1.0).abs() < 1e-9);
    }

    #[test]
    fn cpu_is_taken_between_the_readings_around_the_window() {
        let p =
            |t: u64, cpu: f64, busy: u64| CpuPoint { unix_us: t, server_cpu_s: cpu, machine: Some((busy, t / 10_000)) };
        let trace = [p(0, 1.0, 0), p(100_000, 1.1, 5), p(200_000, 1.25, 10), p(300_000, 1.3, 15)];
        let (cpu, busy) = cpu_between(&trace, 150_000, 200_000);
        assert!((cpu.unwrap() - 150.0).abs() < 1e-9, "0.15 s of CPU in 0.1 s: {cpu:?}");
        assert_eq!(busy, Some(50.0));
        assert_eq!(cpu_between(&[], 0, 1), (None, None));
    }

    #[test]
    fn the_counters_we_follow() {
        let text =
            "# TYPE qt_orders counter\nqt_orders_total{status=\"paid\"} 12\nqt_holds_total 4\nqt_other_total 1\n";
        let c = counters(text);
        assert_eq!(c.len(), 2);
        assert_eq!((c["qt_orders_total{status=\"paid\"}"], c["qt_holds_total"]), (12.0, 4.0));
        assert_eq!((bar_width_ms(30.0), bar_width_ms(900.0), bar_width_ms(6_000.0)), (1.0, 20.0, 100.0));
    }
}
