//! In-process bus for embedded mode: a broadcast channel.

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{BusError, BusEvent, SeatBus, Subscription};
use crate::domain::events::SeatDiff;

/// Diffs buffered for a subscriber that falls behind before it is told it
/// lost some.
const CAPACITY: usize = 16_384;

pub struct MemoryBus {
    tx: broadcast::Sender<SeatDiff>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self { tx: broadcast::channel(CAPACITY).0 }
    }
}

#[async_trait]
impl SeatBus for MemoryBus {
    async fn publish(&self, diffs: &[SeatDiff]) -> Result<(), BusError> {
        for d in diffs {
            // No subscriber yet is fine: nobody watches.
            let _ = self.tx.send(d.clone());
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(MemorySubscription { rx: self.tx.subscribe() }))
    }
}

struct MemorySubscription {
    rx: broadcast::Receiver<SeatDiff>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<BusEvent> {
        match self.rx.recv().await {
            Ok(d) => Some(BusEvent::Diff(d)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(BusEvent::Lost),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
