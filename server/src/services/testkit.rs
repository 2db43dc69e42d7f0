//! The services on the memory adapters, for their unit tests: the demo
//! catalogue in a throwaway SQLite file, and ports that record what they
//! were told.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use qt_protocol::frames::Admitted;

use super::catalog::Catalog;
use super::notices::{LiveMaps, PeerId, QueueNotices};
use super::queue::QueueService;
use super::seats::SeatService;
use super::settings::SettingsService;
use crate::auth::Auth;
use crate::clock::Clock;
use crate::domain::event::Event;
use crate::domain::queue::QueueSettings;
use crate::domain::seats::{SeatLayout, SeatStatus};
use crate::domain::{EventId, UserId, demo};
use crate::metrics::Metrics;
use crate::store::seats::memory::MemorySeatStore;
use crate::store::seats::{SeatStore, Snapshot};
use crate::store::sql::SqlStore;
use crate::store::waiting::WaitingRoom;
use crate::store::waiting::memory::MemoryWaitingRoom;

/// Records what the services told sockets.
#[derive(Default)]
pub struct Told(pub Mutex<Vec<String>>);

impl QueueNotices for Told {
    fn admitted(&self, event: &EventId, user: &UserId, _: i64, _: &dyn Fn() -> Admitted) {
        self.0.lock().push(format!("admitted {event} {user}"));
    }
    fn window_ended(&self, event: &EventId, user: &UserId, _: i64) {
        self.0.lock().push(format!("window_ended {event} {user}"));
    }
    fn left(&self, event: &EventId, user: &UserId, except: Option<PeerId>) {
        self.0.lock().push(format!("left {event} {user} except {except:?}"));
    }
}

/// Replicas that stay as they were installed: what a node's map shows
/// before the diffs of the latest holds arrive.
#[derive(Default)]
pub struct FrozenMaps(Mutex<HashMap<String, MapView>>);

type MapView = (Arc<SeatLayout>, Vec<SeatStatus>);

impl LiveMaps for FrozenMaps {
    fn is_live(&self, event: &str) -> bool {
        self.0.lock().contains_key(event)
    }
    fn install(&self, id: &EventId, _: Arc<Event>, layout: Arc<SeatLayout>, snapshot: &Snapshot, _: i64) {
        let mut status = vec![SeatStatus::Free; layout.len()];
        for (seat, s) in &snapshot.taken {
            if let Some(i) = layout.index_of(seat) {
                status[i] = *s;
            }
        }
        self.0.lock().entry(id.to_string()).or_insert((layout, status));
    }
    fn view(&self, event: &str) -> Option<(Arc<SeatLayout>, Vec<SeatStatus>)> {
        self.0.lock().get(event).cloned()
    }
}

pub struct Kit {
    pub queue: Arc<QueueService>,
    pub seats: SeatService,
    pub settings: SettingsService,
    pub told: Arc<Told>,
    pub store: Arc<dyn SeatStore>,
    _dir: tempfile::TempDir,
}

/// The demo event with these queue settings, on the memory adapters.
pub async fn kit(settings: QueueSettings) -> Kit {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("qt.db").display());
    let sql = SqlStore::connect(&url).await.expect("sqlite");
    sql.seed_demo(0).await.expect("demo");
    let catalog = Arc::new(Catalog::new(sql.clone()));
    let room: Arc<dyn WaitingRoom> = Arc::new(MemoryWaitingRoom::new());
    let setup = SettingsService { sql, room: room.clone(), catalog: catalog.clone() };
    setup.load().await.expect("catalogue");
    room.configure(demo::EVENT_ID, &settings).await.expect("settings");
    catalog.set_queue(demo::EVENT_ID, settings);
    let told = Arc::new(Told::default());
    let store: Arc<dyn SeatStore> = Arc::new(MemorySeatStore::new());
    let metrics = Arc::new(Metrics::default());
    let queue = Arc::new(QueueService {
        room,
        seats: store.clone(),
        catalog: catalog.clone(),
        clock: Clock::system(),
        auth: Arc::new(Auth::new(b"a test secret of some length", None, None).expect("auth")),
        notices: told.clone(),
        metrics: metrics.clone(),
    });
    let seats = SeatService {
        store: store.clone(),
        catalog,
        queue: queue.clone(),
        maps: Arc::new(FrozenMaps::default()),
        clock: Clock::system(),
        metrics,
    };
    Kit { queue, seats, settings: setup, told, store, _dir: dir }
}

/// The demo event's settings, paused or open.
pub fn demo_settings(paused: bool) -> QueueSettings {
    QueueSettings { paused, ..demo::event(0).queue }
}
