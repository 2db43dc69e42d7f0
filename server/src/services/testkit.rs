//! The services on the memory adapters, for their unit tests: the demo
//! catalogue in a throwaway SQLite file, and ports that record what they
//! were told (for orders, a payment gateway that answers from a script).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use qt_protocol::frames::Admitted;
use qt_protocol::orders::OrderView;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::catalog::Catalog;
use super::coupons::CouponService;
use super::notices::{LiveMaps, PeerId, QueueNotices};
use super::orders::{OrderService, PaymentTimings};
use super::queue::QueueService;
use super::seats::SeatService;
use super::settings::SettingsService;
use crate::auth::Auth;
use crate::bus::orders::{MemoryOrderBus, OrderEvent};
use crate::clock::Clock;
use crate::domain::event::Event;
use crate::domain::queue::QueueSettings;
use crate::domain::seats::{SeatLayout, SeatStatus};
use crate::domain::{EventId, UserId, demo};
use crate::error::AppResult;
use crate::gateway::{Approval, Declined, Gateway, Lookup, Outcome};
use crate::metrics::Metrics;
use crate::store::coupons::memory::MemoryCouponClaims;
use crate::store::seats::memory::MemorySeatStore;
use crate::store::seats::{SeatStore, Snapshot};
use crate::store::sql::{OrderRecord, OutboxRow, SqlStore};
use crate::store::waiting::WaitingRoom;
use crate::store::waiting::memory::MemoryWaitingRoom;
use crate::workers::outbox::OrderEffects;

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
    kit_seeded(settings, 0).await
}

/// As [`kit`], with the demo seeded at `seeded_ms`: its show is 30 days
/// later and buyers may refund until a day before it (seeded at 0, that
/// time is long past).
pub async fn kit_seeded(settings: QueueSettings, seeded_ms: i64) -> Kit {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("qt.db").display());
    let sql = SqlStore::connect(&url).await.expect("sqlite");
    sql.seed_demo(seeded_ms).await.expect("demo");
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

// ---------------------------------------------------------------- orders

/// One call the scripted gateway received, in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCall {
    Confirm { payment_key: String, order: String, amount: i64 },
    Lookup { order: String },
    Cancel { payment_key: String, reason: String, idempotency_key: String },
}

/// What the scripted gateway does with a confirm.
#[derive(Debug, Clone)]
pub enum ConfirmWith {
    /// Charges the amount asked and says so; a confirm for an order it
    /// charged already replays that charge (the idempotency key).
    Approve,
    /// As `Approve`, after this long (beyond the answer wait).
    Slow(Duration),
    /// Charges this amount instead of the one asked, and says so.
    Charge(i64),
    /// Charges the amount asked but answers with this amount (a garbled
    /// reply); its record is right.
    Misreport(i64),
    /// A final refusal with this code; nothing charged.
    Decline(&'static str),
    /// No answer, and nothing charged.
    Unknown,
    /// Charges the amount asked, but the answer is lost.
    Lost,
}

/// What the scripted gateway does with a lookup by order id.
#[derive(Debug, Clone)]
pub enum LookupWith {
    /// Answers from the charges it recorded.
    Records,
    NotFound,
    Unknown,
}

/// What the scripted gateway does with a cancel.
#[derive(Debug, Clone)]
pub enum CancelWith {
    /// Cancels the charge with that payment key, as Toss does: a charge
    /// it does not have is `NOT_FOUND_PAYMENT`, one cancelled already
    /// `ALREADY_CANCELED_PAYMENT`.
    Refund,
    /// A final refusal with this code; nothing changes.
    Decline(&'static str),
    /// No answer, and nothing changes.
    Unknown,
}

/// A charge the scripted gateway took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub payment_key: String,
    pub order: String,
    pub amount: i64,
    /// `DONE`, or `CANCELED` once refunded.
    pub status: &'static str,
}

impl Charge {
    fn approval(&self) -> Approval {
        Approval {
            payment_key: self.payment_key.clone(),
            order_id: self.order.clone(),
            amount: self.amount,
            status: self.status.to_owned(),
            approved_at: Some("2025-01-01T00:00:00Z".into()),
        }
    }
}

/// A [`Gateway`] that answers each kind of call from a queue of scripted
/// outcomes (once a queue is empty: approve, answer from its records,
/// refund), records every call and keeps the charges it took.
#[derive(Default)]
pub struct ScriptedGateway {
    confirms: Mutex<VecDeque<ConfirmWith>>,
    lookups: Mutex<VecDeque<LookupWith>>,
    cancels: Mutex<VecDeque<CancelWith>>,
    calls: Mutex<Vec<GatewayCall>>,
    charges: Mutex<Vec<Charge>>,
}

impl ScriptedGateway {
    pub fn on_confirm(&self, with: ConfirmWith) -> &Self {
        self.confirms.lock().push_back(with);
        self
    }

    pub fn on_lookup(&self, with: LookupWith) -> &Self {
        self.lookups.lock().push_back(with);
        self
    }

    pub fn on_cancel(&self, with: CancelWith) -> &Self {
        self.cancels.lock().push_back(with);
        self
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<GatewayCall> {
        self.calls.lock().clone()
    }

    /// The confirms so far.
    pub fn confirms(&self) -> Vec<GatewayCall> {
        self.calls().into_iter().filter(|c| matches!(c, GatewayCall::Confirm { .. })).collect()
    }

    /// The cancels so far.
    pub fn cancels(&self) -> Vec<GatewayCall> {
        self.calls().into_iter().filter(|c| matches!(c, GatewayCall::Cancel { .. })).collect()
    }

    /// Every charge taken, `CANCELED` once refunded.
    pub fn charges(&self) -> Vec<Charge> {
        self.charges.lock().clone()
    }

    /// Charges `amount` for the order unless it has a charge already; the
    /// charge as recorded.
    fn charge(&self, payment_key: &str, order: &str, amount: i64) -> Charge {
        let mut charges = self.charges.lock();
        if let Some(done) = charges.iter().find(|c| c.order == order) {
            return done.clone();
        }
        let charge = Charge { payment_key: payment_key.into(), order: order.into(), amount, status: "DONE" };
        charges.push(charge.clone());
        charge
    }
}

/// A scripted refusal; its message never names its code.
pub const DECLINE_MESSAGE: &str = "refused by the scripted gateway";

fn declined(code: &str) -> Outcome {
    Outcome::Declined(Declined { code: code.into(), message: DECLINE_MESSAGE.into() })
}

#[async_trait]
impl Gateway for ScriptedGateway {
    async fn confirm(&self, payment_key: &str, order_id: &str, amount: i64) -> Outcome {
        self.calls.lock().push(GatewayCall::Confirm {
            payment_key: payment_key.into(),
            order: order_id.into(),
            amount,
        });
        let with = self.confirms.lock().pop_front().unwrap_or(ConfirmWith::Approve);
        match with {
            ConfirmWith::Approve => Outcome::Approved(self.charge(payment_key, order_id, amount).approval()),
            ConfirmWith::Slow(wait) => {
                tokio::time::sleep(wait).await;
                Outcome::Approved(self.charge(payment_key, order_id, amount).approval())
            }
            ConfirmWith::Charge(other) => Outcome::Approved(self.charge(payment_key, order_id, other).approval()),
            ConfirmWith::Misreport(other) => {
                let mut approval = self.charge(payment_key, order_id, amount).approval();
                approval.amount = other;
                Outcome::Approved(approval)
            }
            ConfirmWith::Decline(code) => declined(code),
            ConfirmWith::Unknown => Outcome::Unknown("scripted: no answer".into()),
            ConfirmWith::Lost => {
                self.charge(payment_key, order_id, amount);
                Outcome::Unknown("scripted: the answer was lost".into())
            }
        }
    }

    async fn lookup(&self, order_id: &str) -> Lookup {
        self.calls.lock().push(GatewayCall::Lookup { order: order_id.into() });
        let with = self.lookups.lock().pop_front().unwrap_or(LookupWith::Records);
        match with {
            LookupWith::Records => match self.charges.lock().iter().find(|c| c.order == order_id) {
                Some(c) => Lookup::Found(c.approval()),
                None => Lookup::NotFound,
            },
            LookupWith::NotFound => Lookup::NotFound,
            LookupWith::Unknown => Lookup::Unknown("scripted: no answer".into()),
        }
    }

    async fn cancel(&self, payment_key: &str, reason: &str, idempotency_key: &str) -> Outcome {
        self.calls.lock().push(GatewayCall::Cancel {
            payment_key: payment_key.into(),
            reason: reason.into(),
            idempotency_key: idempotency_key.into(),
        });
        let with = self.cancels.lock().pop_front().unwrap_or(CancelWith::Refund);
        match with {
            CancelWith::Refund => {
                let mut charges = self.charges.lock();
                match charges.iter_mut().find(|c| c.payment_key == payment_key) {
                    None => declined("NOT_FOUND_PAYMENT"),
                    Some(c) if c.status == "CANCELED" => declined("ALREADY_CANCELED_PAYMENT"),
                    Some(c) => {
                        c.status = "CANCELED";
                        Outcome::Approved(c.approval())
                    }
                }
            }
            CancelWith::Decline(code) => declined(code),
            CancelWith::Unknown => Outcome::Unknown("scripted: no answer".into()),
        }
    }
}

/// How an order kit is set up.
#[derive(Debug, Clone, Copy)]
pub struct OrderSetup {
    /// Whether the demo's refund policy still lets buyers refund (it is
    /// seeded now rather than at 0).
    pub refunds: bool,
    /// The event's hold time: an order's seats are kept about twice this.
    pub hold_s: u32,
    /// The shopping window: checkout extends no hold past it.
    pub window_s: u32,
    /// How long `pay` waits for the gateway before answering `pending`.
    pub answer_wait: Duration,
    /// After this long the reconciler gives up a payment the gateway has
    /// never heard of.
    pub give_up_after_ms: i64,
}

impl Default for OrderSetup {
    fn default() -> Self {
        Self {
            refunds: true,
            hold_s: demo_settings(false).hold_s,
            window_s: 3_600,
            answer_wait: Duration::from_secs(10),
            give_up_after_ms: 3_600_000,
        }
    }
}

/// The order service on the memory adapters: the demo (open, with its two
/// coupon campaigns) in a throwaway SQLite, the memory seat store and
/// waiting room, coupons on the in-process claims (their writer running),
/// and the scripted gateway. Payments are in doubt at once (the
/// reconciler's in-doubt time is 0).
pub struct OrderKit {
    pub base: Kit,
    /// The demo's queue settings (and every event's [`OrderKit::add_event`] adds).
    pub settings: QueueSettings,
    pub sql: SqlStore,
    pub orders: Arc<OrderService>,
    pub coupons: Arc<CouponService>,
    pub gateway: Arc<ScriptedGateway>,
    /// The outbox consumer, applied by hand ([`OrderKit::deliver`]).
    pub effects: OrderEffects,
    /// Stops the coupon writer with the kit.
    _stop: DropGuard,
}

/// The demo's amount-off campaign (10,000 off from 50,000, seller-funded).
pub const FIXED_OFF: &str = "demo-10000-off";
/// The demo's percentage campaign (10% up to 30,000, funded half and half).
pub const PERCENT_OFF: &str = "demo-10-percent";

pub async fn order_kit(setup: OrderSetup) -> OrderKit {
    let now = Clock::system().now_ms();
    // Every buyer of a test admitted at once.
    let settings =
        QueueSettings { hold_s: setup.hold_s, window_s: setup.window_s, rate_per_min: 60_000, ..demo_settings(false) };
    let base = kit_seeded(settings, if setup.refunds { now } else { 0 }).await;
    let sql = base.settings.sql.clone();
    let catalog = base.settings.catalog.clone();
    let clock = base.queue.clock;
    let metrics = base.queue.metrics.clone();
    for c in demo::campaigns(now) {
        assert!(sql.insert_campaign(&c).await.expect("campaign"), "campaign {} is new", c.id);
    }
    let (claims, writer) = MemoryCouponClaims::new(sql.clone(), metrics.coupon_claims_refused_by_db.clone());
    let stop = CancellationToken::new();
    tokio::spawn(Arc::new(writer).run(stop.clone()));
    let coupons = Arc::new(CouponService::new(sql.clone(), Arc::new(claims), catalog.clone(), clock, metrics.clone()));
    coupons.reload().await.expect("campaigns");
    let gateway = Arc::new(ScriptedGateway::default());
    let orders = Arc::new(OrderService {
        sql: sql.clone(),
        seats: base.store.clone(),
        catalog,
        queue: base.queue.clone(),
        coupons: coupons.clone(),
        gateway: gateway.clone(),
        clock,
        metrics,
        outbox_written: Arc::new(Notify::new()),
        timings: PaymentTimings {
            answer_wait: setup.answer_wait,
            in_doubt_after_ms: 0,
            give_up_after_ms: setup.give_up_after_ms,
        },
        payments: TaskTracker::new(),
        refund_backoff: Default::default(),
    });
    let effects = OrderEffects {
        sql: sql.clone(),
        seats: base.store.clone(),
        bus: Arc::new(MemoryOrderBus::default()),
        clock,
        shutdown: stop.clone(),
    };
    OrderKit { base, settings, sql, orders, coupons, gateway, effects, _stop: stop.drop_guard() }
}

impl OrderKit {
    pub fn now(&self) -> i64 {
        self.orders.clock.now_ms()
    }

    /// Another show of the demo seller in the demo hall, on sale with the
    /// kit's settings.
    pub async fn add_event(&self, id: &str) {
        let catalog = &self.base.settings.catalog;
        let demo = catalog.get(demo::EVENT_ID).expect("the demo");
        let e = Event { id: id.into(), name: format!("{} ({id})", demo.name), ..Event::clone(&demo) };
        self.sql.insert_event(&e, self.now()).await.expect("event");
        catalog.reload().await.expect("catalogue");
        for event in [demo::EVENT_ID, id] {
            self.base.queue.room.configure(event, &self.settings).await.expect("settings");
            catalog.set_queue(event, self.settings);
        }
    }

    /// `user`, admitted (the queue is open).
    pub async fn buyer(&self, user: &str) -> UserId {
        let user = UserId::from(user);
        self.base.queue.join(&user, demo::EVENT_ID).await.expect("join");
        user
    }

    /// `user`, admitted and holding `seats`.
    pub async fn holding(&self, user: &str, seats: &[&str]) -> UserId {
        let user = self.buyer(user).await;
        self.hold(&user, seats).await;
        user
    }

    pub async fn hold(&self, user: &UserId, seats: &[&str]) {
        let seats: Vec<String> = seats.iter().map(|s| (*s).to_owned()).collect();
        self.base.seats.hold(user, demo::EVENT_ID, &seats).await.expect("hold");
    }

    /// Releases those of `seats` `user` holds as ordinary holds; which.
    pub async fn release(&self, user: &UserId, seats: &[&str]) -> Vec<String> {
        let seats: Vec<String> = seats.iter().map(|s| (*s).to_owned()).collect();
        self.base.seats.release(user, demo::EVENT_ID, &seats).await.expect("release").seats
    }

    /// The seats `user` holds, checked out or not.
    pub async fn holds_of(&self, user: &str) -> Vec<String> {
        self.base.store.holds_of(demo::EVENT_ID, user).await.expect("holds").0
    }

    /// A coupon of `campaign` for `user`; its id.
    pub async fn claim(&self, user: &str, campaign: &str) -> String {
        self.coupons.claim(user, campaign).await.expect("claim").0.id
    }

    pub async fn checkout(&self, user: &UserId, coupon: Option<&str>) -> AppResult<OrderView> {
        self.orders.checkout(user, demo::EVENT_ID, coupon).await
    }

    /// The order as stored.
    pub async fn order(&self, id: &str) -> OrderRecord {
        self.sql.order(id).await.expect("read").expect("the order exists")
    }

    /// A seat's status in the seat store.
    pub async fn seat(&self, seat: &str) -> SeatStatus {
        let snapshot = self.base.store.snapshot(demo::EVENT_ID).await.expect("snapshot");
        snapshot.taken.iter().find(|(s, _)| s == seat).map_or(SeatStatus::Free, |(_, status)| *status)
    }

    /// The outbox rows not sent yet, oldest first.
    pub async fn unsent(&self) -> Vec<OutboxRow> {
        self.sql.outbox_unsent(1_000).await.expect("outbox")
    }

    /// What the relay does with the in-process bus, by hand: every unsent
    /// outbox row applied by the effects consumer, then marked sent. The
    /// rows' kinds.
    pub async fn deliver(&self) -> Vec<String> {
        let rows = self.unsent().await;
        for row in &rows {
            self.effects.apply(&OrderEvent::from(row)).await.expect("effect");
        }
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        self.sql.mark_sent(&ids, self.now()).await.expect("mark sent");
        rows.into_iter().map(|r| r.kind).collect()
    }

    /// Moves the clock past `ms` at once. The services' clock follows
    /// tokio's, which is paused just for the jump: paused any longer, it
    /// would also leap to the next timer whenever a test waits on SQLite.
    pub async fn jump_past(&self, ms: i64) {
        let ahead = ms - self.now() + 1;
        if let Ok(ahead) = u64::try_from(ahead)
            && ahead > 0
        {
            tokio::time::pause();
            tokio::time::advance(Duration::from_millis(ahead)).await;
            tokio::time::resume();
        }
    }
}
