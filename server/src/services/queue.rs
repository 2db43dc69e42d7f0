//! Waiting-room use cases: join, status, leave, and the admission check
//! every later step (holds, checkout, payment) starts with.

use std::sync::Arc;

use qt_protocol::frames::{Admitted, QueueView};
use qt_protocol::rest::QueueReply;

use super::catalog::Catalog;
use super::notices::{PeerId, QueueNotices};
use crate::auth::Auth;
use crate::clock::{Clock, rfc3339};
use crate::domain::event::Event;
use crate::domain::events::Cause;
use crate::domain::queue::eta;
use crate::domain::{EventId, UserId};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::StoreResult;
use crate::store::seats::SeatStore;
use crate::store::waiting::{JoinOutcome, Lease, PlaceStatus, StatusBatch, WaitingRoom};

/// Where a buyer stands: in line, or admitted until a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Waiting(QueueView),
    Admitted { view: Admitted, until_ms: i64 },
}

impl Place {
    pub fn into_reply(self) -> QueueReply {
        match self {
            Place::Waiting(v) => QueueReply::Queue(v),
            Place::Admitted { view, .. } => QueueReply::Admitted(view),
        }
    }
}

pub struct QueueService {
    pub room: Arc<dyn WaitingRoom>,
    pub seats: Arc<dyn SeatStore>,
    pub catalog: Arc<Catalog>,
    pub clock: Clock,
    /// Signs admission passes.
    pub auth: Arc<Auth>,
    pub notices: Arc<dyn QueueNotices>,
    pub metrics: Arc<Metrics>,
}

impl QueueService {
    /// The `queue` message for `position` at `now_ms`; before the on-sale
    /// time the ETA counts from the on-sale time.
    pub fn queue_view(&self, id: &EventId, event: &Event, position: u64, waiting: u64, now_ms: i64) -> QueueView {
        let stats = self.catalog.stats(id, &event.queue);
        let eta = eta(position, &stats, &event.queue, now_ms);
        QueueView {
            event: id.to_string(),
            position,
            waiting: waiting.max(position),
            eta_s: eta.eta_s,
            eta_low_s: eta.low_s,
            eta_high_s: eta.high_s,
            // While paused nobody is admitted: the current rate is zero, and
            // the ETA says how long once admissions resume.
            rate_per_min: if event.queue.paused { 0 } else { stats.per_min.round() as u64 },
            paused: event.queue.paused,
        }
    }

    pub fn admitted_view(&self, user: &str, id: &EventId, until_ms: i64) -> Admitted {
        let rules = self.catalog.get(id).map(|e| e.queue).unwrap_or_default();
        Admitted {
            event: id.to_string(),
            pass: self.auth.sign_pass(user, id, until_ms),
            expires_at: rfc3339(until_ms),
            max_seats_per_buyer: rules.max_seats_per_buyer,
            hold_s: rules.hold_s,
        }
    }

    fn admitted(&self, user: &str, id: &EventId, until_ms: i64) -> Place {
        Place::Admitted { view: self.admitted_view(user, id, until_ms), until_ms }
    }

    /// Joins the line (or finds the buyer's existing place or admission).
    pub async fn join(&self, user: &UserId, event: &str) -> AppResult<(EventId, Place)> {
        let (id, e) = self.catalog.find(event)?;
        let now = self.clock.now_ms();
        let outcome = self.room.join(&id, user, now).await?.ok_or(AppError::NotFound("event"))?;
        self.metrics.joins.inc();
        let place = match outcome {
            JoinOutcome::Waiting { position, waiting } => {
                Place::Waiting(self.queue_view(&id, &e, position, waiting, now))
            }
            JoinOutcome::Admitted { until_ms } => self.admitted(user, &id, until_ms),
        };
        Ok((id, place))
    }

    /// Where the buyer stands now; polling it keeps the place alive the way
    /// an open socket does.
    pub async fn status(&self, user: &UserId, event: &str) -> AppResult<Place> {
        let (id, e) = self.catalog.find(event)?;
        let now = self.clock.now_ms();
        let batch = self.refresh(&id, std::slice::from_ref(user), now).await?;
        match batch.statuses.first() {
            Some(PlaceStatus::Waiting { position }) => {
                Ok(Place::Waiting(self.queue_view(&id, &e, *position, batch.waiting, now)))
            }
            Some(PlaceStatus::Admitted { until_ms }) => Ok(self.admitted(user, &id, *until_ms)),
            _ => Err(AppError::NotFound("place in line")),
        }
    }

    /// The places of many buyers at once (which keeps waiting places
    /// alive), noting the measured admission rate that comes with them.
    pub async fn refresh(&self, id: &EventId, users: &[UserId], now_ms: i64) -> StoreResult<StatusBatch> {
        let batch = self.room.status(id, users, now_ms).await?;
        if let Some(stats) = batch.stats {
            self.catalog.set_stats(id, stats);
        }
        Ok(batch)
    }

    /// Gives up the buyer's place or admission and any seats they hold, and
    /// tells their other sockets here (all but `except`, which answers the
    /// request itself).
    pub async fn leave(&self, user: &UserId, event: &str, except: Option<PeerId>) -> AppResult<EventId> {
        let (id, _) = self.catalog.find(event)?;
        self.room.leave(&id, user).await?;
        self.seats.release_all(&id, user, Cause::Released).await?;
        self.notices.left(&id, user, except);
        Ok(id)
    }

    /// One admission step of the lease holder: ends the windows that are
    /// over (telling their sockets here at once, before anything below can
    /// fail, and releasing their holds), expires holds, drops ghosts and
    /// admits the head of the line. The number admitted, or `None` when
    /// the lease was no longer ours (nothing changed).
    pub async fn admission_step(&self, id: &EventId, lease: Lease, now_ms: i64, max: u64) -> StoreResult<Option<u64>> {
        let out = self.room.tick(id, lease, now_ms, max).await?;
        if out.fenced {
            return Ok(None);
        }
        for user in &out.expired {
            self.notices.window_ended(id, user, now_ms);
        }
        for user in &out.expired {
            self.seats.release_all(id, user, Cause::WindowEnded).await?;
        }
        self.seats.expire(id, now_ms, max).await?;
        self.metrics.admitted.add(out.admitted.len() as u64);
        self.metrics.dropped_ghosts.add(out.dropped.len() as u64);
        // Sockets here hear of their admission now; other nodes' sockets on
        // their next status refresh.
        for (user, until_ms) in &out.admitted {
            self.notices.admitted(id, user, *until_ms, &|| self.admitted_view(user, id, *until_ms));
        }
        Ok(Some(out.admitted.len() as u64))
    }

    /// The end of the buyer's shopping window for `event`, or `not_admitted`.
    pub async fn require_admission(&self, user: &UserId, event: &str) -> AppResult<(EventId, i64)> {
        let (id, _) = self.catalog.find(event)?;
        match self.room.admission(&id, user, self.clock.now_ms()).await? {
            Some(until_ms) => Ok((id, until_ms)),
            None => Err(AppError::NotAdmitted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::demo::EVENT_ID;
    use crate::services::testkit::{demo_settings, kit};

    #[tokio::test]
    async fn buyers_join_in_order_and_a_second_join_keeps_the_place() {
        let k = kit(demo_settings(true)).await;
        for (n, user) in ["a", "b", "c"].into_iter().enumerate() {
            let (_, place) = k.queue.join(&UserId::from(user), EVENT_ID).await.unwrap();
            let Place::Waiting(view) = place else { panic!("{place:?}") };
            assert_eq!(view.position, n as u64 + 1);
            assert!(view.paused);
            assert_eq!(view.rate_per_min, 0, "nobody gets in while paused");
        }
        let (_, again) = k.queue.join(&UserId::from("b"), EVENT_ID).await.unwrap();
        assert!(matches!(again, Place::Waiting(QueueView { position: 2, waiting: 3, .. })), "{again:?}");
        assert_eq!(k.queue.metrics.joins.get(), 4);
    }

    #[tokio::test]
    async fn an_open_queue_admits_at_once_with_a_pass_and_the_hold_rules() {
        let settings = demo_settings(false);
        let k = kit(settings).await;
        let user = UserId::from("a");
        let (id, place) = k.queue.join(&user, EVENT_ID).await.unwrap();
        let Place::Admitted { view, until_ms } = place else { panic!("{place:?}") };
        assert_eq!(view.max_seats_per_buyer, settings.max_seats_per_buyer);
        assert_eq!(view.hold_s, settings.hold_s);
        assert!(until_ms > k.queue.clock.now_ms());
        assert!(k.queue.auth.verify_pass(&view.pass, "a", &id).is_ok());
        assert!(k.queue.auth.verify_pass(&view.pass, "b", &id).is_err(), "the pass is the buyer's own");
        assert_eq!(k.queue.require_admission(&user, &id).await.unwrap(), (id.clone(), until_ms));
        assert!(matches!(k.queue.status(&user, &id).await.unwrap(), Place::Admitted { .. }));
    }

    #[tokio::test]
    async fn leaving_gives_up_the_place_tells_the_other_sockets_and_is_not_admitted() {
        let k = kit(demo_settings(true)).await;
        let user = UserId::from("a");
        let (id, _) = k.queue.join(&user, EVENT_ID).await.unwrap();
        assert_eq!(k.queue.leave(&user, &id, Some(7)).await.unwrap(), id);
        assert_eq!(*k.told.0.lock(), vec![format!("left {id} a except Some(7)")]);
        assert!(matches!(k.queue.status(&user, &id).await, Err(AppError::NotFound(_))));
        assert!(matches!(k.queue.require_admission(&user, &id).await, Err(AppError::NotAdmitted)));
    }

    #[tokio::test]
    async fn an_unknown_event_is_not_found_and_changes_nothing() {
        let k = kit(demo_settings(true)).await;
        let user = UserId::from("a");
        assert!(matches!(k.queue.join(&user, "no-such-event").await, Err(AppError::NotFound("event"))));
        assert!(matches!(k.queue.leave(&user, "no-such-event", None).await, Err(AppError::NotFound("event"))));
        assert!(k.told.0.lock().is_empty());
        assert_eq!(k.queue.metrics.joins.get(), 0);
    }

    #[tokio::test]
    async fn an_admission_step_admits_the_head_ends_windows_and_frees_their_seats() {
        let k = kit(demo_settings(true)).await;
        let id = EventId::from(EVENT_ID);
        for user in ["a", "b"] {
            k.queue.join(&UserId::from(user), EVENT_ID).await.unwrap();
        }
        let now = k.queue.clock.now_ms();
        let lease = k.queue.room.acquire_lease(&id, "n1", now, 3_000).await.unwrap().unwrap();
        assert_eq!(k.queue.admission_step(&id, lease, now, 100).await.unwrap(), Some(0), "paused: nobody");
        k.settings
            .patch(crate::domain::demo::SELLER_ID, EVENT_ID, &serde_json::from_str(r#"{"paused":false}"#).unwrap())
            .await
            .unwrap();
        assert_eq!(k.queue.admission_step(&id, lease, now, 100).await.unwrap(), Some(2));
        assert_eq!(*k.told.0.lock(), vec![format!("admitted {id} a"), format!("admitted {id} b")]);
        assert_eq!(k.queue.metrics.admitted.get(), 2);
        k.seats.hold(&UserId::from("a"), EVENT_ID, &["A-1-1".into()]).await.unwrap();
        let (_, until) = k.queue.require_admission(&UserId::from("a"), EVENT_ID).await.unwrap();
        k.told.0.lock().clear();
        let later = until + 1;
        let lease = k.queue.room.acquire_lease(&id, "n1", later, 3_000).await.unwrap().unwrap();
        assert_eq!(k.queue.admission_step(&id, lease, later, 100).await.unwrap(), Some(0));
        let told = k.told.0.lock().clone();
        assert!(told.contains(&format!("window_ended {id} a")), "{told:?}");
        assert!(k.store.snapshot(EVENT_ID).await.unwrap().taken.is_empty(), "the window's holds end with it");
        let stale = Lease { token: lease.token - 1 };
        assert_eq!(
            k.queue.admission_step(&id, stale, later, 100).await.unwrap(),
            None,
            "a stale lease changes nothing"
        );
    }
}
