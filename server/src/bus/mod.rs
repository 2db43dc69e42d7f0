//! The seat-diff bus: how every node hears of every seat change. One
//! publisher per event at a time (the relay on the event's lease holder)
//! keeps each event's diffs in version order; consumers apply them by
//! version, skip duplicates and resync on gaps, so delivery only has to be
//! at least once.

pub mod kafka;
pub mod memory;

use async_trait::async_trait;
use thiserror::Error;

use crate::store::seats::SeatDiff;

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
    //! to every subscriber that subscribed before they were published.

    use std::time::Duration;

    use super::{BusEvent, SeatBus};
    use crate::domain::seats::SeatStatus;
    use crate::store::seats::{Cause, SeatDiff};

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

    pub async fn run<B: SeatBus>(bus: &B) {
        let mut a = bus.subscribe().await.unwrap();
        let mut b = bus.subscribe().await.unwrap();
        // A consumer group needs a moment to get its partitions; publish a
        // probe until it arrives, then the real sequence.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        'ready: for sub in [&mut a, &mut b] {
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
        let sent: Vec<SeatDiff> = (1..=50).flat_map(|v| [diff("e1", v), diff("e2", v)]).collect();
        for chunk in sent.chunks(7) {
            bus.publish(chunk).await.unwrap();
        }
        for sub in [&mut a, &mut b] {
            let mut got: Vec<SeatDiff> = Vec::new();
            while got.len() < sent.len() {
                let next = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.expect("diffs arrive");
                if let Some(BusEvent::Diff(d)) = next
                    && d.event != "probe"
                {
                    got.push(d);
                }
            }
            for event in ["e1", "e2"] {
                let versions: Vec<u64> = got.iter().filter(|d| d.event == event).map(|d| d.version).collect();
                assert_eq!(versions, (1..=50).collect::<Vec<_>>(), "{event} in order, nothing lost or doubled");
            }
            assert_eq!(got.iter().find(|d| d.event == "e1"), sent.first());
        }
    }
}
