//! Sellers' live queue settings and the node's catalogue upkeep. SQL is the
//! record; the waiting-room store is where every node's admitter reads the
//! settings each tick; the catalogue caches them for views.

use std::sync::Arc;

use tracing::{info, warn};

use super::catalog::Catalog;
use crate::domain::event::Event;
use crate::domain::queue::{QueuePatch, QueueSettings};
use crate::error::{AppError, AppResult};
use crate::store::StoreResult;
use crate::store::sql::SqlStore;
use crate::store::waiting::WaitingRoom;

pub struct SettingsService {
    pub sql: SqlStore,
    pub room: Arc<dyn WaitingRoom>,
    pub catalog: Arc<Catalog>,
}

impl SettingsService {
    /// The seller's events, from the record.
    pub async fn seller_events(&self, seller: &str) -> AppResult<Vec<Event>> {
        Ok(self.sql.seller_events(seller).await?)
    }

    /// The live settings of one of the seller's events; another seller's
    /// event is `not_found`, exactly like one that does not exist.
    pub async fn of(&self, seller: &str, event: &str) -> AppResult<QueueSettings> {
        let e = self.catalog.get(event).filter(|e| e.seller_id == seller).ok_or(AppError::NotFound("event"))?;
        Ok(self.room.settings(&e.id).await?.unwrap_or(e.queue))
    }

    /// Changes settings live: saved to SQL, then to the waiting-room store
    /// and this node's cache. Bad values change nothing.
    pub async fn patch(&self, seller: &str, event: &str, patch: &QueuePatch) -> AppResult<QueueSettings> {
        let next = self.of(seller, event).await?.apply(patch)?;
        if !self.sql.update_queue_settings(seller, event, &next).await? {
            return Err(AppError::NotFound("event"));
        }
        self.room.configure(event, &next).await?;
        self.catalog.set_queue(event, next);
        info!(%event, %seller, ?next, "queue settings changed");
        Ok(next)
    }

    /// At start: the catalogue from SQL, and every event's settings into
    /// the waiting-room store.
    pub async fn load(&self) -> StoreResult<()> {
        self.catalog.reload().await?;
        for e in self.catalog.all() {
            self.room.configure(&e.id, &e.queue).await?;
        }
        Ok(())
    }

    /// Live settings from the waiting-room store (another node may have
    /// changed them); an event the store does not know yet gets its
    /// settings from the record.
    pub async fn refresh(&self) {
        for id in self.catalog.ids() {
            match self.room.settings(&id).await {
                Ok(Some(settings)) => self.catalog.set_queue(&id, settings),
                Ok(None) => {
                    if let Some(e) = self.catalog.get(&id)
                        && let Err(err) = self.room.configure(&id, &e.queue).await
                    {
                        warn!(event = %id, error = %err, "could not configure queue");
                    }
                }
                Err(e) => warn!(event = %id, error = %e, "queue settings refresh failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::demo::{EVENT_ID, SELLER_ID};
    use crate::error::ErrorCode;
    use crate::services::testkit::{demo_settings, kit};

    #[tokio::test]
    async fn a_patch_reaches_the_record_the_store_and_the_cache() {
        let k = kit(demo_settings(true)).await;
        let patch: QueuePatch =
            serde_json::from_value(serde_json::json!({"rate_per_min": 6, "paused": false})).unwrap();
        let next = k.settings.patch(SELLER_ID, EVENT_ID, &patch).await.unwrap();
        assert_eq!((next.rate_per_min, next.paused), (6, false));
        assert_eq!(k.settings.room.settings(EVENT_ID).await.unwrap(), Some(next));
        assert_eq!(k.settings.catalog.get(EVENT_ID).unwrap().queue, next);
        let recorded = k.settings.sql.event(EVENT_ID).await.unwrap().unwrap();
        assert_eq!(recorded.queue, next);
        assert_eq!(k.settings.of(SELLER_ID, EVENT_ID).await.unwrap(), next);
    }

    #[tokio::test]
    async fn bad_values_and_other_sellers_change_nothing() {
        let k = kit(demo_settings(true)).await;
        let before = k.settings.of(SELLER_ID, EVENT_ID).await.unwrap();
        let recorded = k.settings.sql.event(EVENT_ID).await.unwrap().unwrap().queue;
        let bad: QueuePatch = serde_json::from_value(serde_json::json!({"rate_per_min": 0})).unwrap();
        let err = k.settings.patch(SELLER_ID, EVENT_ID, &bad).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        let fine: QueuePatch = serde_json::from_value(serde_json::json!({"paused": false})).unwrap();
        let err = k.settings.patch("another-seller", EVENT_ID, &fine).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotFound);
        assert_eq!(k.settings.of(SELLER_ID, EVENT_ID).await.unwrap(), before);
        assert_eq!(k.settings.sql.event(EVENT_ID).await.unwrap().unwrap().queue, recorded);
        assert!(k.settings.seller_events("another-seller").await.unwrap().is_empty());
        assert_eq!(k.settings.seller_events(SELLER_ID).await.unwrap().len(), 1);
    }
}
