//! `qt-load kafka-mock`: librdkafka's in-process mock cluster as a stand-in
//! Kafka broker for benchmarks on a machine without one. It listens on real
//! loopback TCP ports, so a server in another process can use it; it
//! prints its bootstrap servers as the first line on stdout and runs until
//! killed or until its stdin closes (so a script that dies takes it along).
//! Not a Kafka: no persistence, no admin API, one process's memory.

use std::io::{Read, Write};

use anyhow::{Context, ensure};
use clap::Args;
use rdkafka::mocking::MockCluster;

#[derive(Debug, Args)]
pub struct KafkaMockArgs {
    /// Topics to create (repeat the flag for more, e.g. the seat diffs and
    /// the coupon claims).
    #[arg(long = "topic", default_value = "qt.seat-diffs")]
    pub topics: Vec<String>,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub brokers: i32,
}

pub fn run(a: &KafkaMockArgs) -> anyhow::Result<()> {
    ensure!((1..=16).contains(&a.brokers), "--brokers must be 1..=16");
    ensure!((1..=1_000).contains(&a.partitions), "--partitions must be 1..=1000");
    let cluster = MockCluster::new(a.brokers).context("cannot start librdkafka's mock cluster")?;
    for topic in &a.topics {
        cluster
            .create_topic(topic, a.partitions, a.brokers.min(3))
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    let servers = cluster.bootstrap_servers();
    ensure!(
        servers.split(',').all(|s| s.starts_with("127.") || s.starts_with("localhost")),
        "the mock cluster is not on loopback: {servers}"
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{servers}").and_then(|()| out.flush()).context("cannot print the bootstrap servers")?;
    }
    eprintln!(
        "kafka-mock: {} broker(s) at {servers}, topics {} ({} partitions each)",
        a.brokers,
        a.topics.join(", "),
        a.partitions
    );
    // Until stdin closes (or we are killed); what arrives on it is ignored.
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin().lock();
    while stdin.read(&mut sink).is_ok_and(|n| n > 0) {}
    eprintln!("kafka-mock: stdin closed; stopping");
    drop(cluster);
    Ok(())
}
