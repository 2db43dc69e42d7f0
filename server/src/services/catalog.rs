//! This node's cached view of the catalogue: events with their tiers and
//! live queue settings, and the latest measured admission rates. Refreshed
//! from SQL and the waiting-room store by the `catalog-refresh` worker.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::domain::EventId;
use crate::domain::event::Event;
use crate::domain::queue::{QueueSettings, RateStats};
use crate::domain::seats::SeatLayout;

#[derive(Default)]
pub struct Catalog {
    events: RwLock<HashMap<EventId, Arc<Event>>>,
    stats: RwLock<HashMap<EventId, RateStats>>,
    /// Seat layouts by venue, loaded on first use.
    layouts: RwLock<HashMap<String, Arc<SeatLayout>>>,
}

impl Catalog {
    pub fn replace_all(&self, events: Vec<Event>) {
        let map = events.into_iter().map(|e| (EventId::from(e.id.as_str()), Arc::new(e))).collect();
        *self.events.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    pub fn get(&self, id: &str) -> Option<Arc<Event>> {
        self.events.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// The id as an interned `EventId`, if the event exists.
    pub fn id(&self, id: &str) -> Option<EventId> {
        self.events.read().unwrap_or_else(|p| p.into_inner()).get_key_value(id).map(|(k, _)| k.clone())
    }

    pub fn all(&self) -> Vec<Arc<Event>> {
        let mut all: Vec<_> = self.events.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| (a.starts_at_ms, &a.id).cmp(&(b.starts_at_ms, &b.id)));
        all
    }

    pub fn ids(&self) -> Vec<EventId> {
        self.events.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Applies live queue settings (from a PATCH here or another node).
    pub fn set_queue(&self, id: &str, settings: QueueSettings) {
        let mut events = self.events.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events.get_mut(id)
            && e.queue != settings
        {
            Arc::make_mut(e).queue = settings;
        }
    }

    pub fn layout(&self, venue: &str) -> Option<Arc<SeatLayout>> {
        self.layouts.read().unwrap_or_else(|p| p.into_inner()).get(venue).cloned()
    }

    pub fn set_layout(&self, venue: &str, layout: Arc<SeatLayout>) {
        self.layouts.write().unwrap_or_else(|p| p.into_inner()).insert(venue.to_owned(), layout);
    }

    pub fn set_stats(&self, id: &EventId, stats: RateStats) {
        self.stats.write().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), stats);
    }

    /// The admission rate to base ETAs on: measured when known, else what
    /// the settings promise.
    pub fn stats(&self, id: &str, settings: &QueueSettings) -> RateStats {
        self.stats
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or_else(|| RateStats::expected(settings))
    }
}
