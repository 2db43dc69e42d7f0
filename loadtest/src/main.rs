//! `qt-load`: load generator for the QueueTicket waiting room.
//!
//! - `surge` is the benchmark: N WebSocket buyers join and wait, then the
//!   same buyers poll over REST; it reports join latency and rate, push
//!   gaps, server RSS per socket and CPU per waiting buyer (push vs poll).
//! - `seats` is the seat-map benchmark: N watchers follow one event's map
//!   while admitted buyers hold and release seats at a set rate; it reports
//!   hold latency, diff delay to watchers, and whether every watcher's map
//!   ends equal to the store's.
//! - `kafka-mock` runs librdkafka's mock cluster, a stand-in broker for
//!   the server's Kafka mode on a machine without Kafka.
//! - `smoke` is one guest buyer for a human to watch.
//! - `worker` (hidden) is a child process of `surge` and `seats`.
//!
//! Every process runs a single-threaded runtime: the server under test
//! shares the machine, so the load generator must stay lean.

mod coordinator;
mod crowd;
mod crowdkit;
mod figures;
mod host;
mod http1;
mod kafkamock;
mod net;
mod pollers;
mod procs;
mod report;
mod seatcrowd;
mod seatlayout;
mod seats;
mod seatscan;
mod seatsreport;
mod server;
mod smoke;
mod stats;
mod surge;
mod tokens;
mod wire;
mod worker;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "qt-load",
    version,
    about = "Load generator for QueueTicket: waiting room and seat map (loopback only)."
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
    /// Run librdkafka's mock cluster; print its bootstrap servers; stop when stdin closes.
    KafkaMock(kafkamock::KafkaMockArgs),
    /// One guest buyer: hello, join, and what the server pushes.
    Smoke(smoke::SmokeArgs),
    /// A worker process of `surge` and `seats`, driven over stdin/stdout.
    #[command(hide = true)]
    Worker,
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
        Cmd::KafkaMock(_) => unreachable!("handled above"),
        Cmd::Smoke(args) => rt.block_on(smoke::run(args)),
        Cmd::Worker => worker::main(rt),
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
