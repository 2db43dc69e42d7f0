//! The checkout report: its configuration, the figures the JSON document
//! has them, the human summary, and its HTML page, in the frame every
//! report shares (`common::report::Summary`, `common::page`). What the
//! figures are is `figures`' business; the audit's is `audit`'s.

use std::fmt::Write as _;

use serde::Serialize;

use crate::checkout::audit::Audit;
use crate::checkout::figures::{BuyFigures, ServerFigures, SetupFigures};
use crate::checkout::plan::Mix;
use crate::checkout::wire::BuyerRecord;
use crate::common::page::{Body, Chart};
use crate::common::report::{self, Figures, causes, mib, ms, p50_p99, pct, spread};

#[derive(Debug, Clone, Serialize)]
pub struct CheckoutConfig {
    pub url: String,
    pub event: String,
    /// What the server was (e.g. `embedded`, `redis-kafka`), as given.
    pub label: String,
    pub buyers: u64,
    /// Seats per buyer, least and most.
    pub seats: (u8, u8),
    pub mix: Mix,
    pub best_share: f64,
    pub refund_share: f64,
    /// The coupon campaign `best` buyers claim from (none: no coupons).
    pub campaign: Option<String>,
    pub coupon_value: i64,
    pub hold_s: u32,
    pub procs: usize,
    pub connect_concurrency: usize,
    pub source_ips: Vec<String>,
    pub user_prefix: String,
    pub barrier_ms: u64,
    /// Checkouts started per second (0: all at once).
    pub rate_per_s: f64,
    pub late_s: u64,
    pub final_timeout_s: u64,
    pub settle_timeout_s: u64,
    /// The payment sandbox whose ledger is audited.
    pub pg_url: String,
    pub target_per_s: f64,
    pub seed: u64,
    /// Seats of the event, free at the start.
    pub seats_total: u64,
    pub seats_free_at_start: u64,
}

pub type CheckoutSummary = report::Summary<CheckoutConfig, CheckoutResults>;

/// The checkout benchmark's own figures.
#[derive(Debug, Serialize)]
pub struct CheckoutResults {
    pub setup: SetupFigures,
    pub buy: BuyFigures,
    pub audit: Audit,
    /// Seconds the seat map took to show every sale and refund, and
    /// whether it did within the time-out.
    pub settle_s: f64,
    pub settled: bool,
    pub server: ServerFigures,
    /// Every buyer's record, for whoever digs into a failure.
    pub records: Vec<BuyerRecord>,
}

impl Figures for CheckoutResults {
    const KIND: &'static str = "checkout";
    type Config = CheckoutConfig;

    fn text(s: &CheckoutSummary, o: &mut String) {
        let (c, f) = (&s.config, &s.figures);
        let (st, b, a, srv) = (&f.setup, &f.buy, &f.audit, &f.server);
        let _ = writeln!(
            o,
            "== qt-load checkout [{}]: {} buyers of {} ({}), {}-{} seats each ({} seats, {} free), mix {}, best {:.0} %, \
             refunds {:.0} %, {} procs, {} ==",
            c.label,
            c.buyers,
            c.event,
            if c.rate_per_s > 0.0 { format!("{:.0} checkouts/s", c.rate_per_s) } else { "all at once".into() },
            c.seats.0,
            c.seats.1,
            c.seats_total,
            c.seats_free_at_start,
            c.mix.describe(),
            c.best_share * 100.0,
            c.refund_share * 100.0,
            c.procs,
            c.url
        );
        let _ = writeln!(
            o,
            "set-up: {}/{} sockets open, {} admitted, {} holding {} seats, {} without seats, {} coupons, {} failed; \
             connect p99 {}, join → held {}",
            st.open,
            st.buyers,
            st.admitted,
            st.held,
            st.seats_held,
            st.no_seats,
            st.coupons,
            st.failed,
            ms(st.connect_ms.p99),
            p50_p99(&st.admit_hold_ms)
        );
        let _ = writeln!(
            o,
            "buy:    {:.0} paid orders/s (ok+flaky: {} in {:.3} s from the first checkout to the last fast final payment); \
             all: {:.0}/s ({} paid in {:.3} s)",
            b.fast_paid_per_s, b.fast_paid, b.fast_window_s, b.all_paid_per_s, b.paid, b.all_window_s
        );
        let _ = writeln!(
            o,
            "        checkout → paid {}   (ok+flaky {})   checkout {}   pay reply {}",
            spread(&b.paid_ms),
            spread(&b.fast_paid_ms),
            p50_p99(&b.checkout_ms),
            p50_p99(&b.pay_reply_ms)
        );
        for (kind, k) in &b.by_kind {
            let _ = writeln!(
                o,
                "        {kind:>7}: {} buyers, {} orders, {} paid, {} failed, {} answered pending; checkout → final {}",
                k.buyers,
                k.orders,
                k.paid,
                k.failed,
                k.pending_replies,
                spread(&k.final_ms)
            );
        }
        let outcomes: Vec<String> = b.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ =
            writeln!(o, "        outcomes: {}; late buyers {}, stuck {}", outcomes.join(", "), b.late_buyers, b.stuck);
        let _ = writeln!(
            o,
            "audit:  {} orders: {} paid, {} failed, {} without a final payment; {} refunded by the seller",
            a.orders, a.paid, a.failed, a.no_final, a.refunded
        );
        let _ = writeln!(
            o,
            "        ledger: {} charges read{}, of the run's orders {} ({} DONE, {} CANCELED), {} of other orders",
            a.charges_read,
            if a.ledger_by_order { " (order by order)" } else { "" },
            a.run_charges,
            a.done_charges,
            a.canceled_charges,
            a.foreign_charges
        );
        let _ = writeln!(
            o,
            "        seats: {} sold ({} at the start), {} of paid orders, {} held at the end; map settled in {:.1} s{}",
            a.seats_sold,
            a.seats_sold_at_start,
            a.seats_paid,
            a.seats_held_at_end,
            f.settle_s,
            if f.settled { "" } else { " (did not settle)" }
        );
        let _ = writeln!(
            o,
            "server: CPU {:.2} s = {:.0} % of a core over {:.1} s, {:.2} ms per paid order; gateway confirm mean {}; RSS \
             {} -> {}; machine {} busy ({} before the buy), load generator {} of a core",
            srv.cpu_s,
            srv.cpu_pct_of_core,
            srv.window_s,
            srv.cpu_ms_per_paid_order,
            ms(srv.gateway_confirm_mean_ms),
            mib(srv.rss_before_bytes),
            mib(srv.rss_after_bytes),
            pct(srv.host_busy_pct),
            pct(srv.host_busy_before_pct),
            pct(srv.loadgen_cpu_pct_of_core)
        );
        let _ = writeln!(
            o,
            "        over the headline window: server {} of a core, machine {} busy",
            pct(srv.fast_window_cpu_pct_of_core),
            pct(srv.fast_window_host_busy_pct)
        );
        let counted: Vec<String> = srv.counters.iter().map(|(k, v)| format!("{k} +{v:.0}")).collect();
        let _ = writeln!(o, "        counters: {}", counted.join(", "));
        causes(o, "set-up error", &st.errors);
        for c in [
            &a.broken,
            &a.wrong_outcome,
            &a.paid_not_charged,
            &a.failed_but_charged,
            &a.refund_unmatched,
            &a.sold_not_paid,
            &a.paid_not_sold,
            &a.sold_twice,
            &a.refunded_not_free,
            &a.listed_wrong,
            &a.listed_unknown,
            &a.listed_missing,
        ] {
            for e in c.examples.iter().take(3) {
                let _ = writeln!(o, "        anomaly: {e}");
            }
        }
    }

    fn page(s: &CheckoutSummary) -> Body<'_> {
        let (c, f) = (&s.config, &s.figures);
        let b = &f.buy;
        let distributions = vec![
            ("connect + upgrade + hello", &f.setup.connect_ms),
            ("join → seats held", &f.setup.admit_hold_ms),
            ("checkout → order", &b.checkout_ms),
            ("pay → its reply", &b.pay_reply_ms),
            ("checkout → final paid (every paid order)", &b.paid_ms),
            ("checkout → final paid (ok + flaky)", &b.fast_paid_ms),
        ];
        Body {
            heading: format!(
                "Checkout and pay: {} buyers, {:.0} paid orders/s [{}]",
                c.buyers, b.fast_paid_per_s, c.label
            ),
            url: &c.url,
            event: &c.event,
            distributions,
            chart: Chart {
                title: "Checkout sent → final paid (every paid order)",
                bars: &b.paid_bars,
                width_ms: b.paid_bar_ms,
                promise_ms: b.paid_ms.p99.unwrap_or(0.0),
                promise: "p99",
                tick_ms: b.paid_bar_ms * 10.0,
            },
            errors: vec![("Outcomes", &b.outcomes), ("Set-up errors", &f.setup.errors)],
            details_title: "Configuration, host, figures by key prefix, audit and server counters",
            server: serde_json::json!({"by_kind": b.by_kind, "server": f.server, "audit": f.audit}),
        }
    }
}
