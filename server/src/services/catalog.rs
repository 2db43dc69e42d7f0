//! This node's cached view of the catalogue: events with their tiers and
//! live queue settings, seat layouts by venue, and the latest measured
//! admission rates. Events are read on every request and change rarely, so
//! they sit behind an `ArcSwap`: readers never wait for a writer.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::RwLock;

use crate::domain::EventId;
use crate::domain::event::Event;
use crate::domain::queue::{QueueSettings, RateStats};
use crate::domain::seats::SeatLayout;
use crate::error::{AppError, AppResult};
use crate::store::StoreResult;
use crate::store::sql::SqlStore;

type Events = HashMap<EventId, Arc<Event>>;

pub struct Catalog {
    sql: SqlStore,
    events: ArcSwap<Events>,
    stats: RwLock<HashMap<EventId, RateStats>>,
    /// Seat layouts by venue, loaded on first use.
    layouts: RwLock<HashMap<String, Arc<SeatLayout>>>,
}

impl Catalog {
    pub fn new(sql: SqlStore) -> Self {
        Self {
            sql,
            events: ArcSwap::from_pointee(HashMap::new()),
            stats: RwLock::new(HashMap::new()),
            layouts: RwLock::new(HashMap::new()),
        }
    }

    /// Reloads every event from SQL, the record.
    pub async fn reload(&self) -> StoreResult<()> {
        self.replace_all(self.sql.events().await?);
        Ok(())
    }

    fn replace_all(&self, events: Vec<Event>) {
        let map = events.into_iter().map(|e| (EventId::from(e.id.as_str()), Arc::new(e))).collect();
        self.events.store(Arc::new(map));
    }

    pub fn get(&self, id: &str) -> Option<Arc<Event>> {
        self.events.load().get(id).cloned()
    }

    /// The event and its interned id, or `not_found`.
    pub fn find(&self, id: &str) -> AppResult<(EventId, Arc<Event>)> {
        self.events.load().get_key_value(id).map(|(k, e)| (k.clone(), e.clone())).ok_or(AppError::NotFound("event"))
    }

    pub fn all(&self) -> Vec<Arc<Event>> {
        let mut all: Vec<_> = self.events.load().values().cloned().collect();
        all.sort_by(|a, b| (a.starts_at_ms, &a.id).cmp(&(b.starts_at_ms, &b.id)));
        all
    }

    pub fn ids(&self) -> Vec<EventId> {
        self.events.load().keys().cloned().collect()
    }

    /// Applies live queue settings (from a PATCH here or another node).
    pub fn set_queue(&self, id: &str, settings: QueueSettings) {
        if self.get(id).is_none_or(|e| e.queue == settings) {
            return;
        }
        self.events.rcu(|events| {
            let mut next = Events::clone(events);
            if let Some(e) = next.get_mut(id) {
                Arc::make_mut(e).queue = settings;
            }
            next
        });
    }

    /// The seat layout of an event's venue, loaded once per node.
    pub async fn layout(&self, event: &Event) -> AppResult<Arc<SeatLayout>> {
        if let Some(layout) = self.layouts.read().get(&event.venue_id).cloned() {
            return Ok(layout);
        }
        let layout = Arc::new(SeatLayout::new(self.sql.venue_seats(&event.venue_id).await?));
        self.layouts.write().insert(event.venue_id.clone(), layout.clone());
        Ok(layout)
    }

    pub fn set_stats(&self, id: &EventId, stats: RateStats) {
        self.stats.write().insert(id.clone(), stats);
    }

    /// The admission rate to base ETAs on: measured when known, else what
    /// the settings promise.
    pub fn stats(&self, id: &str, settings: &QueueSettings) -> RateStats {
        self.stats.read().get(id).copied().unwrap_or_else(|| RateStats::expected(settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::demo;
    use crate::services::testkit::{demo_settings, kit};

    #[tokio::test]
    async fn events_are_found_by_id_and_live_settings_replace_the_cached_ones() {
        let k = kit(demo_settings(true)).await;
        let catalog = &k.settings.catalog;
        let (id, e) = catalog.find(demo::EVENT_ID).unwrap();
        assert_eq!((&*id, e.queue.paused), (demo::EVENT_ID, true));
        assert!(matches!(catalog.find("nope"), Err(AppError::NotFound("event"))));
        let open = demo_settings(false);
        catalog.set_queue(demo::EVENT_ID, open);
        assert_eq!(catalog.get(demo::EVENT_ID).unwrap().queue, open);
        // A reader holding the old event keeps a consistent copy.
        assert!(e.queue.paused);
        catalog.set_queue("nope", open);
        assert_eq!(catalog.ids(), vec![id]);
    }

    #[tokio::test]
    async fn a_layout_is_loaded_once_and_rates_fall_back_to_the_promise() {
        let k = kit(demo_settings(true)).await;
        let catalog = &k.settings.catalog;
        let e = catalog.get(demo::EVENT_ID).unwrap();
        let first = catalog.layout(&e).await.unwrap();
        assert_eq!(first.len(), demo::seats().len());
        assert!(Arc::ptr_eq(&first, &catalog.layout(&e).await.unwrap()), "cached, not reloaded");
        let promised = RateStats::expected(&e.queue);
        assert_eq!(catalog.stats(demo::EVENT_ID, &e.queue), promised);
        let measured = RateStats { per_min: 42.0, ..promised };
        catalog.set_stats(&EventId::from(demo::EVENT_ID), measured);
        assert_eq!(catalog.stats(demo::EVENT_ID, &e.queue), measured);
    }
}
