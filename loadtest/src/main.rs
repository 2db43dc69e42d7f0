//! `qt-load`: the QueueTicket benchmarks, one folder each, and what they
//! share in `common`.
//!
//! - `surge` is the waiting-room benchmark: N WebSocket buyers join and
//!   wait, then the same buyers poll over REST; it reports join latency and
//!   rate, push gaps, server RSS per socket and CPU per waiting buyer (push
//!   vs poll).
//! - `seats` is the seat-map benchmark: N watchers follow one event's map
//!   while admitted buyers hold and release seats at a set rate; it reports
//!   hold latency, diff delay to watchers, and whether every watcher's map
//!   ends equal to the store's.
//! - `claims` is the coupon-claim storm: many buyers claim one campaign's
//!   coupons at one moment; it reports claims per second and latency, and
//!   audits what buyers were told against the seller's count, the database
//!   and Redis (no over-issue, no lost claim).
//! - `checkout` is the checkout-and-pay benchmark: buyers hold seats,
//!   check out and pay with a mix of the payment sandbox's outcomes; it
//!   reports paid orders per second and checkout-to-paid latency, and
//!   audits the sandbox's charges and the sold seats against the paid
//!   orders.
//! - `kafka-mock` runs librdkafka's mock cluster, a stand-in broker for
//!   the server's Kafka mode on a machine without Kafka.
//! - `smoke` is one guest buyer for a human to watch.
//! - `worker` (hidden) is a child process of `surge`, `seats`, `claims` or
//!   `checkout`.
//!
//! Every process runs a single-threaded runtime: the server under test
//! shares the machine, so the load generator must stay lean.

mod checkout;
mod claims;
mod common;
mod kafkamock;
mod seats;
mod smoke;
mod surge;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::common::worker;

#[derive(Debug, Parser)]
#[command(
    name = "qt-load",
    version,
    about = "Load generator for QueueTicket: waiting room, seat map, coupon claims and checkout (loopback only)."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Surge benchmark: open N sockets, join, hold, then compare with REST polling.
    Surge(surge::SurgeArgs),
    /// Seat-map benchmark: watchers follow the map while holders hold and release.
    Seats(seats::SeatsArgs),
    /// Coupon-claim storm: buyers claim one campaign's coupons at once; audit the outcome.
    Claims(claims::ClaimsArgs),
    /// Checkout-and-pay benchmark: buyers hold, check out and pay with a mix of outcomes; audit the charges.
    Checkout(checkout::CheckoutArgs),
    /// Run librdkafka's mock cluster; print its bootstrap servers; stop when stdin closes.
    KafkaMock(kafkamock::KafkaMockArgs),
    /// One guest buyer: hello, join, and what the server pushes.
    Smoke(smoke::SmokeArgs),
    /// A worker process of `surge`, `seats`, `claims` or `checkout`, driven over stdin/stdout.
    #[command(hide = true)]
    Worker {
        /// The benchmark whose commands it serves.
        bench: Bench,
    },
}

/// The benchmarks whose coordinators start workers (`Commands::BENCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    Surge,
    Seats,
    Claims,
    Checkout,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The mock cluster runs on librdkafka's own threads; no runtime needed.
    if let Cmd::KafkaMock(args) = &cli.command {
        return kafkamock::run(args);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    match cli.command {
        Cmd::Surge(args) => rt.block_on(surge::run(args)),
        Cmd::Seats(args) => rt.block_on(seats::run(args)),
        Cmd::Claims(args) => rt.block_on(claims::run(args)),
        Cmd::Checkout(args) => rt.block_on(checkout::run(args)),
        Cmd::KafkaMock(_) => unreachable!("handled above"),
        Cmd::Smoke(args) => rt.block_on(smoke::run(args)),
        Cmd::Worker { bench: Bench::Surge } => worker::run::<surge::worker::SurgeWorker>(rt),
        Cmd::Worker { bench: Bench::Seats } => worker::run::<seats::worker::SeatsWorker>(rt),
        Cmd::Worker { bench: Bench::Claims } => worker::run::<claims::worker::ClaimsWorker>(rt),
        Cmd::Worker { bench: Bench::Checkout } => worker::run::<checkout::worker::CheckoutWorker>(rt),
    }
}

fn main() {
    // The error chain in one line is what a person at a terminal needs;
    // a backtrace (with RUST_BACKTRACE set) is noise for a load tool.
    if let Err(e) = run(Cli::parse()) {
        eprintln!("qt-load: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::wire::Commands;

    /// The coordinators start `qt-load worker <BENCH>`: each name must
    /// reach its benchmark's worker.
    #[test]
    fn workers_are_started_by_the_names_their_coordinators_use() {
        for (name, bench) in [
            (surge::wire::Command::BENCH, Bench::Surge),
            (seats::wire::Command::BENCH, Bench::Seats),
            (claims::wire::Command::BENCH, Bench::Claims),
            (checkout::wire::Command::BENCH, Bench::Checkout),
        ] {
            let cli = Cli::try_parse_from(["qt-load", "worker", name]).unwrap();
            assert!(matches!(cli.command, Cmd::Worker { bench: b } if b == bench), "{name}");
        }
        assert!(Cli::try_parse_from(["qt-load", "worker"]).is_err());
    }

    /// The shared flags are the same on every benchmark.
    #[test]
    fn every_benchmark_takes_the_shared_flags() {
        let shared = ["--url", "http://127.0.0.1:9", "--event", "e", "--seller", "s", "--secret", "0123456789abcdef"];
        let more = ["--procs", "2", "--source-ips", "127.0.0.2", "--ramp-timeout-s", "9", "--out", "/tmp/x"];
        for cmd in ["surge", "seats", "claims", "checkout"] {
            let args = ["qt-load", cmd].into_iter().chain(shared).chain(more);
            let run = match Cli::try_parse_from(args).unwrap().command {
                Cmd::Surge(a) => a.run,
                Cmd::Seats(a) => a.run,
                Cmd::Claims(a) => a.run,
                Cmd::Checkout(a) => a.run,
                other => panic!("{other:?}"),
            };
            assert_eq!((run.url.as_str(), run.event.as_str(), run.seller.as_str()), ("http://127.0.0.1:9", "e", "s"));
            assert_eq!((run.procs, run.source_ips.as_str(), run.ramp_timeout_s), (2, "127.0.0.2", 9));
            assert_eq!(run.out, std::path::PathBuf::from("/tmp/x"));
        }
    }
}
