//! The seat-diff bus: how every node hears of every seat change. One
//! publisher per event at a time (the relay on the event's lease holder)
//! keeps each event's diffs in version order; consumers apply them by
//! version, skip duplicates and resync on gaps, so delivery only has to be
//! at least once.

pub mod kafka;
pub mod memory;
pub mod orders;

use async_trait::async_trait;
use thiserror::Error;

use crate::domain::events::SeatDiff;

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    Diff(SeatDiff),
    /// Diffs may have been missed (the consumer lagged or reconnected):
    /// every replica must check itself against the store.
    Lost,
}

#[derive(Debug, Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot encode a diff: {0}")]
    Encode(#[from] serde_json::Error),
    /// The bus did not take the events in time; the caller tries again.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

#[async_trait]
pub trait SeatBus: Send + Sync + 'static {
    /// Publishes diffs in order; returns once the bus has them all.
    async fn publish(&self, diffs: &[SeatDiff]) -> Result<(), BusError>;

    /// This node's subscription to every event's diffs.
    async fn subscribe(&self) -> Result<Box<dyn Subscription>, BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next event; `None` once the bus is gone.
    async fn next(&mut self) -> Option<BusEvent>;
}

#[cfg(test)]
pub mod contract_tests {
    //! What every bus must do: deliver each event's diffs in publish order
    //! to every subscriber that subscribed before they were published. Each
    //! scenario is its own test per bus (`seat_bus_contract!`): in process,
    //! and Kafka on librdkafka's mock cluster.

    use std::time::Duration;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;

    use super::kafka::KafkaBus;
    use super::memory::MemoryBus;
    use super::{BusEvent, SeatBus, Subscription};
    use crate::domain::events::{Cause, SeatDiff};
    use crate::domain::seats::SeatStatus;

    /// One `#[tokio::test]` per scenario, each on a fresh bus from `$make`
    /// (an expression whose value is a future of a `Fixture`). A bus passes
    /// the contract when every one of them passes.
    macro_rules! seat_bus_contract {
        ($make:expr) => {
            $crate::bus::contract_tests::seat_bus_contract!(@each $make;
                every_subscriber_gets_every_diff,
                each_events_diffs_arrive_in_publish_order,
                a_diff_arrives_whole,
            );
        };
        (@each $make:expr; $($scenario:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let fixture = $make.await;
                    $crate::bus::contract_tests::$scenario(&fixture.bus).await;
                }
            )*
        };
    }
    pub(crate) use seat_bus_contract;

    mod memory {
        super::seat_bus_contract!(async { super::Fixture { bus: super::MemoryBus::default(), _keep: () } });
    }

    mod kafka {
        super::seat_bus_contract!(super::kafka_bus());
    }

    /// A bus under test and what must outlive it; fields drop in order.
    struct Fixture<B, K> {
        bus: B,
        _keep: K,
    }

    /// A Kafka bus on a mock cluster of its own.
    async fn kafka_bus() -> Fixture<KafkaBus, MockCluster<'static, DefaultProducerContext>> {
        let cluster = MockCluster::new(3).expect("a mock Kafka cluster");
        cluster.create_topic("qt.test-diffs", 4, 1).expect("the test topic");
        let bus = KafkaBus::connect(&cluster.bootstrap_servers(), "qt.test-diffs", "n1", 0).await.expect("connect");
        Fixture { bus, _keep: cluster }
    }

    fn diff(event: &str, version: u64) -> SeatDiff {
        SeatDiff {
            event: event.into(),
            version,
            status: SeatStatus::Held,
            seats: vec![format!("s{version}")],
            user: "u".into(),
            cause: Cause::Held,
        }
    }

    /// `n` subscriptions, each shown to receive: a consumer group needs a
    /// moment to get its partitions, so a probe is published until every
    /// subscription has seen one.
    async fn ready_subscriptions<B: SeatBus>(bus: &B, n: usize) -> Vec<Box<dyn Subscription>> {
        let mut subs = Vec::with_capacity(n);
        for _ in 0..n {
            subs.push(bus.subscribe().await.unwrap());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        'ready: for sub in &mut subs {
            loop {
                bus.publish(&[diff("probe", 0)]).await.unwrap();
                if let Ok(Some(BusEvent::Diff(d))) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await
                    && d.event == "probe"
                {
                    continue 'ready;
                }
                assert!(tokio::time::Instant::now() < deadline, "subscription never became ready");
            }
        }
        subs
    }

    /// The next `n` diffs of `events` on `sub`, skipping probes and others.
    async fn diffs_of(sub: &mut Box<dyn Subscription>, events: &[&str], n: usize) -> Vec<SeatDiff> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.expect("diffs arrive");
            if let Some(BusEvent::Diff(d)) = next
                && events.contains(&d.event.as_str())
            {
                got.push(d);
            }
        }
        got
    }

    fn versions(got: &[SeatDiff], event: &str) -> Vec<u64> {
        got.iter().filter(|d| d.event == event).map(|d| d.version).collect()
    }

    /// Two subscribers each get all of two events' diffs, sent in chunks:
    /// nothing lost, nothing doubled.
    pub async fn every_subscriber_gets_every_diff<B: SeatBus>(bus: &B) {
        let mut subs = ready_subscriptions(bus, 2).await;
        let sent: Vec<SeatDiff> = (1..=50).flat_map(|v| [diff("all-1", v), diff("all-2", v)]).collect();
        for chunk in sent.chunks(7) {
            bus.publish(chunk).await.unwrap();
        }
        for sub in &mut subs {
            let got = diffs_of(sub, &["all-1", "all-2"], sent.len()).await;
            for event in ["all-1", "all-2"] {
                assert_eq!(versions(&got, event), (1..=50).collect::<Vec<_>>(), "{event}: nothing lost or doubled");
            }
            assert_eq!(got.iter().find(|d| d.event == "all-1"), sent.first());
        }
    }

    /// Each event's diffs arrive in the order they were published, however
    /// the events are interleaved and however many go in one call.
    pub async fn each_events_diffs_arrive_in_publish_order<B: SeatBus>(bus: &B) {
        let mut subs = ready_subscriptions(bus, 1).await;
        let mut sent = Vec::new();
        for v in 1..=30 {
            sent.push(diff("order-1", v));
            if v % 3 == 0 {
                sent.extend((v - 2..=v).map(|w| diff("order-2", w)));
            }
        }
        for (i, chunk) in sent.chunks(5).enumerate() {
            if i % 2 == 0 {
                bus.publish(chunk).await.unwrap();
            } else {
                for d in chunk {
                    bus.publish(std::slice::from_ref(d)).await.unwrap();
                }
            }
        }
        let got = diffs_of(&mut subs[0], &["order-1", "order-2"], sent.len()).await;
        for event in ["order-1", "order-2"] {
            assert_eq!(versions(&got, event), (1..=30).collect::<Vec<_>>(), "{event} in publish order");
        }
    }

    /// A diff comes out exactly as it went in: every field, and seat and
    /// user ids with the characters an adapter might split on.
    pub async fn a_diff_arrives_whole<B: SeatBus>(bus: &B) {
        let mut subs = ready_subscriptions(bus, 1).await;
        let sent = SeatDiff {
            event: "whole".into(),
            version: 7,
            status: SeatStatus::Free,
            seats: vec!["A,1".into(), "B|2".into(), "{c}:3".into(), "ü \\\"q".into()],
            user: "auth0|12345".into(),
            cause: Cause::WindowEnded,
        };
        bus.publish(std::slice::from_ref(&sent)).await.unwrap();
        assert_eq!(diffs_of(&mut subs[0], &["whole"], 1).await, vec![sent]);
    }
}
