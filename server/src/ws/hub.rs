//! This node's registry of joined sockets: which local sockets joined which
//! event as which buyer, and what each last heard. A buyer's entry lives
//! while they wait and, once admitted, until their shopping window ends, so
//! that its sockets hear of the end. The position pushes (`pushes.rs`) ask
//! the store for all their places in one batch per event and push through
//! here. No lock is
//! held across an `.await`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use parking_lot::{Mutex, MutexGuard};
use qt_protocol::ServerMsg;
use qt_protocol::frames::{Admitted, LeftReason};

use super::outbox::{Outbox, PushError};
use super::render;
use crate::domain::queue::{LastPush, should_push};
use crate::domain::{EventId, UserId};
use crate::services::notices::{PeerId, QueueNotices};
use crate::store::waiting::PlaceStatus;

/// One open socket, shared by its session and the hub.
pub struct Peer {
    pub id: u64,
    pub outbox: Outbox,
}

static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

impl Peer {
    pub fn new(outbox_capacity: usize) -> Arc<Self> {
        Arc::new(Self { id: NEXT_PEER.fetch_add(1, Ordering::Relaxed), outbox: Outbox::new(outbox_capacity) })
    }
}

/// Where a registered buyer stands, as far as their sockets here were told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// In line; the position last pushed.
    Waiting(Option<LastPush>),
    /// Told `admitted`, with the window ending at this time.
    Admitted { until_ms: i64 },
}

struct Waiter {
    peers: Vec<Arc<Peer>>,
    stage: Stage,
}

impl Waiter {
    fn add_peer(&mut self, peer: &Arc<Peer>) {
        if !self.peers.iter().any(|p| p.id == peer.id) {
            self.peers.push(peer.clone());
        }
    }

    fn tell_all(&self, frame: &Utf8Bytes) {
        for p in &self.peers {
            p.outbox.push_or_kill(frame.clone());
        }
    }
}

/// What a buyer's local sockets are to be told after a status refresh.
pub enum News<'a> {
    Position(u64),
    Admitted {
        user: &'a UserId,
        until_ms: i64,
    },
    /// The place (or an admission that still had time) is gone: left
    /// elsewhere, or dropped after the grace.
    Gone,
    /// The shopping window these sockets were admitted to has ended.
    WindowEnded,
}

/// How the pushes of one delivery went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub positions: u64,
    pub skipped_full: u64,
}

#[derive(Default)]
pub struct Hub {
    events: Mutex<HashMap<EventId, HashMap<UserId, Waiter>>>,
    /// Every open socket here by buyer, for news meant for one buyer.
    connections: Mutex<HashMap<UserId, Vec<Arc<Peer>>>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<EventId, HashMap<UserId, Waiter>>> {
        self.events.lock()
    }

    pub fn connect(&self, user: &UserId, peer: &Arc<Peer>) {
        self.connections.lock().entry(user.clone()).or_default().push(peer.clone());
    }

    pub fn disconnect(&self, user: &str, peer_id: u64) {
        let mut conns = self.connections.lock();
        if let Some(peers) = conns.get_mut(user) {
            peers.retain(|p| p.id != peer_id);
            if peers.is_empty() {
                conns.remove(user);
            }
        }
    }

    /// Whether `user` has a socket on this node.
    pub fn is_connected(&self, user: &str) -> bool {
        self.connections.lock().contains_key(user)
    }

    /// Queues a frame that must arrive to every socket of `user` here.
    pub fn tell(&self, user: &str, frame: impl FnOnce() -> Utf8Bytes) {
        let conns = self.connections.lock();
        if let Some(peers) = conns.get(user) {
            let frame = frame();
            for p in peers {
                p.outbox.push_or_kill(frame.clone());
            }
        }
    }

    /// Registers a socket as waiting; `position` is what its join reply said.
    /// The store has the buyer in line, so an admission this node still
    /// remembered for them is over.
    pub fn add_waiter(&self, event: &EventId, user: &UserId, peer: &Arc<Peer>, position: u64, now_ms: i64) {
        let mut events = self.lock();
        let waiter = events
            .entry(event.clone())
            .or_default()
            .entry(user.clone())
            .or_insert_with(|| Waiter { peers: Vec::with_capacity(1), stage: Stage::Waiting(None) });
        waiter.add_peer(peer);
        waiter.stage = Stage::Waiting(Some(LastPush { position, at_ms: now_ms }));
    }

    /// Registers a socket whose join was answered `admitted` (window ending
    /// at `until_ms`), so that it hears when the window ends. A buyer still
    /// registered as waiting stays so: the `admitted` push reaches this
    /// socket too.
    pub fn add_admitted(&self, event: &EventId, user: &UserId, peer: &Arc<Peer>, until_ms: i64) {
        let mut events = self.lock();
        let waiter = events
            .entry(event.clone())
            .or_default()
            .entry(user.clone())
            .or_insert_with(|| Waiter { peers: Vec::with_capacity(1), stage: Stage::Admitted { until_ms } });
        waiter.add_peer(peer);
        if let Stage::Admitted { until_ms: known } = &mut waiter.stage {
            *known = until_ms;
        }
    }

    /// Forgets one socket; the buyer stops being reported present here once
    /// no local socket of theirs is left.
    pub fn remove_peer(&self, event: &str, user: &str, peer_id: u64) {
        let mut events = self.lock();
        let Some(users) = events.get_mut(event) else { return };
        if let Some(w) = users.get_mut(user) {
            w.peers.retain(|p| p.id != peer_id);
            if w.peers.is_empty() {
                users.remove(user);
            }
        }
        if users.is_empty() {
            events.remove(event);
        }
    }

    /// Every event with local sockets that joined it (waiting or admitted),
    /// with their buyers.
    pub fn joined_users(&self) -> Vec<(EventId, Vec<UserId>)> {
        self.lock().iter().map(|(e, users)| (e.clone(), users.keys().cloned().collect())).collect()
    }

    /// Buyers waiting in line on this node's sockets.
    pub fn waiting_count(&self) -> usize {
        self.lock().values().flat_map(HashMap::values).filter(|w| matches!(w.stage, Stage::Waiting(_))).count()
    }

    /// Given fresh statuses, tells each buyer's sockets what changed:
    /// positions when due, admissions always (those buyers stay registered
    /// until their window ends), and the loss of a place or the end of a
    /// window always (those buyers leave the registry). `render` turns news
    /// into a frame. Frames are queued under the registry lock, so a stale
    /// position can never be queued after the `admitted` the admitter queued
    /// through [`Hub::admit`].
    pub fn deliver(
        &self,
        event: &str,
        users: &[UserId],
        statuses: &[PlaceStatus],
        now_ms: i64,
        tick_ms: i64,
        mut render: impl FnMut(News<'_>) -> Utf8Bytes,
    ) -> Pushed {
        let mut pushed = Pushed::default();
        let mut events = self.lock();
        let Some(waiters) = events.get_mut(event) else { return pushed };
        for (user, status) in users.iter().zip(statuses) {
            let Some(w) = waiters.get_mut(user) else { continue };
            match (w.stage, *status) {
                (Stage::Waiting(last), PlaceStatus::Waiting { position }) => {
                    if !should_push(last, position, now_ms, tick_ms) {
                        continue;
                    }
                    w.stage = Stage::Waiting(Some(LastPush { position, at_ms: now_ms }));
                    let frame = render(News::Position(position));
                    for p in &w.peers {
                        match p.outbox.push(frame.clone()) {
                            Ok(()) => pushed.positions += 1,
                            // the next periodic push carries the news
                            Err(PushError::Full) => pushed.skipped_full += 1,
                            Err(PushError::Closed) => {}
                        }
                    }
                }
                (Stage::Waiting(_), PlaceStatus::Admitted { until_ms }) => {
                    w.stage = Stage::Admitted { until_ms };
                    w.tell_all(&render(News::Admitted { user, until_ms }));
                }
                (Stage::Waiting(_), PlaceStatus::Gone) => {
                    if let Some(w) = waiters.remove(user) {
                        let frame = render(News::Gone);
                        for p in &w.peers {
                            let _ = p.outbox.push(frame.clone());
                        }
                    }
                }
                (Stage::Admitted { .. }, PlaceStatus::Admitted { until_ms }) => {
                    w.stage = Stage::Admitted { until_ms };
                }
                // A position fetched just before the admission: stale.
                (Stage::Admitted { until_ms }, PlaceStatus::Waiting { .. }) if now_ms < until_ms => {}
                // Not admitted any more: the window ended on the server
                // clock, or the admission was given up elsewhere before.
                (Stage::Admitted { until_ms }, PlaceStatus::Waiting { .. } | PlaceStatus::Gone) => {
                    if let Some(w) = waiters.remove(user) {
                        let news = if now_ms >= until_ms { News::WindowEnded } else { News::Gone };
                        w.tell_all(&render(news));
                    }
                }
            }
        }
        if waiters.is_empty() {
            events.remove(event);
        }
        pushed
    }

    /// The admitter let `user` in: their waiting sockets here are told
    /// (`frame` must arrive) and stay registered until the window ends.
    /// Nothing happens if a status refresh told them first.
    pub fn admit(&self, event: &str, user: &str, until_ms: i64, frame: impl FnOnce() -> Utf8Bytes) {
        let mut events = self.lock();
        let Some(w) = events.get_mut(event).and_then(|users| users.get_mut(user)) else { return };
        if matches!(w.stage, Stage::Waiting(_)) {
            w.stage = Stage::Admitted { until_ms };
            w.tell_all(&frame());
        }
    }

    /// The admitter ended `user`'s window at `now_ms`: their admitted
    /// sockets here are told (`frame` must arrive) and leave the registry.
    /// Nothing happens to a buyer registered as waiting again, or admitted
    /// to a window that is still open, or already told.
    pub fn end_window(&self, event: &str, user: &str, now_ms: i64, frame: impl FnOnce() -> Utf8Bytes) {
        let mut events = self.lock();
        let Some(users) = events.get_mut(event) else { return };
        let ended =
            users.get(user).is_some_and(|w| matches!(w.stage, Stage::Admitted { until_ms } if until_ms <= now_ms));
        if !ended {
            return;
        }
        let Some(w) = users.remove(user) else { return };
        if users.is_empty() {
            events.remove(event);
        }
        w.tell_all(&frame());
    }

    /// Removes a buyer's entry (waiting or admitted) and queues `frame`
    /// (which must arrive) to each of their sockets here, except `skip`.
    pub fn take_user_and_tell(&self, event: &str, user: &str, skip: Option<u64>, frame: impl FnOnce() -> Utf8Bytes) {
        let mut events = self.lock();
        let Some(users) = events.get_mut(event) else { return };
        let Some(w) = users.remove(user) else { return };
        if users.is_empty() {
            events.remove(event);
        }
        let frame = frame();
        for p in w.peers.iter().filter(|p| Some(p.id) != skip) {
            p.outbox.push_or_kill(frame.clone());
        }
    }
}

impl QueueNotices for Hub {
    fn admitted(&self, event: &EventId, user: &UserId, until_ms: i64, view: &dyn Fn() -> Admitted) {
        self.admit(event, user, until_ms, || render::push(&ServerMsg::Admitted(view())));
    }

    fn window_ended(&self, event: &EventId, user: &UserId, now_ms: i64) {
        self.end_window(event, user, now_ms, || render::left(event, LeftReason::WindowEnded));
    }

    fn left(&self, event: &EventId, user: &UserId, except: Option<PeerId>) {
        self.take_user_and_tell(event, user, except, || render::left(event, LeftReason::Left));
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::super::outbox::Next;
    use super::*;

    /// The frames queued for `p` so far.
    fn drain(p: &Peer) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(Next::Send(f)) = p.outbox.next().now_or_never() {
            got.push(f.to_string());
        }
        got
    }

    fn render(n: News<'_>) -> Utf8Bytes {
        match n {
            News::Position(p) => format!("pos {p}").into(),
            News::Admitted { user, until_ms } => format!("admitted {user} {until_ms}").into(),
            News::Gone => "gone".into(),
            News::WindowEnded => "window_ended".into(),
        }
    }

    #[test]
    fn two_sockets_of_one_buyer_share_an_entry_and_outlive_each_other() {
        let hub = Hub::default();
        let (e, u): (EventId, UserId) = ("e".into(), "u".into());
        let (a, b) = (Peer::new(4), Peer::new(4));
        hub.add_waiter(&e, &u, &a, 5, 0);
        hub.add_waiter(&e, &u, &b, 5, 0);
        hub.add_waiter(&e, &u, &b, 5, 0);
        assert_eq!(hub.waiting_count(), 1);
        hub.remove_peer("e", "u", a.id);
        assert_eq!(hub.waiting_count(), 1, "the other tab keeps the buyer present");
        hub.remove_peer("e", "u", b.id);
        assert_eq!(hub.waiting_count(), 0);
        assert!(hub.joined_users().is_empty());
    }

    #[test]
    fn deliver_pushes_when_due_and_hands_over_admitted_and_gone() {
        let hub = Hub::default();
        let e: EventId = "e".into();
        let users: Vec<UserId> = vec!["a".into(), "b".into(), "c".into()];
        let peers: Vec<Arc<Peer>> = (0..3).map(|_| Peer::new(4)).collect();
        for (i, u) in users.iter().enumerate() {
            hub.add_waiter(&e, u, &peers[i], 100 + i as u64, 0);
        }
        let statuses =
            [PlaceStatus::Waiting { position: 99 }, PlaceStatus::Admitted { until_ms: 9_000 }, PlaceStatus::Gone];
        let pushed = hub.deliver("e", &users, &statuses, 100, 500, render);
        assert_eq!(pushed.positions, 0, "a small move is not pushed at once");
        assert_eq!(hub.waiting_count(), 1, "admitted and gone buyers wait no more");
        assert_eq!(drain(&peers[1]), ["admitted b 9000"]);
        assert_eq!(drain(&peers[2]), ["gone"]);
        let joined: Vec<UserId> = hub.joined_users().into_iter().flat_map(|(_, users)| users).collect();
        assert_eq!(joined.len(), 2, "the admitted buyer stays registered until the window ends: {joined:?}");
        let pushed = hub.deliver("e", &users[..1], &statuses[..1], 2_000, 500, render);
        assert_eq!(pushed.positions, 1, "periodic push");
        // A buyer taken by the admitter gets nothing stale afterwards.
        hub.take_user_and_tell("e", "a", None, || "left a".into());
        assert_eq!(hub.deliver("e", &users[..1], &statuses[..1], 3_000, 500, render), Pushed::default());
    }

    #[tokio::test]
    async fn frames_arrive_in_the_order_they_were_decided() {
        let hub = Hub::default();
        let e: EventId = "e".into();
        let u: UserId = "u".into();
        let p = Peer::new(8);
        hub.add_waiter(&e, &u, &p, 5, 0);
        hub.deliver("e", std::slice::from_ref(&u), &[PlaceStatus::Waiting { position: 1 }], 1, 500, |_| "queue".into());
        hub.admit("e", "u", 10_000, || "admitted".into());
        hub.deliver("e", std::slice::from_ref(&u), &[PlaceStatus::Waiting { position: 1 }], 2_000, 500, |_| {
            "stale".into()
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            if let super::super::outbox::Next::Send(f) = p.outbox.next().await {
                got.push(f.to_string());
            }
        }
        assert_eq!(got, vec!["queue", "admitted"]);
    }

    #[test]
    fn an_admitted_buyer_hears_the_end_of_the_window_once_on_every_socket() {
        let hub = Hub::default();
        let (e, u): (EventId, UserId) = ("e".into(), "u".into());
        let (a, b) = (Peer::new(8), Peer::new(8));
        hub.add_waiter(&e, &u, &a, 3, 0);
        hub.add_waiter(&e, &u, &b, 3, 0);
        let me = std::slice::from_ref(&u);
        hub.deliver("e", me, &[PlaceStatus::Admitted { until_ms: 5_000 }], 100, 500, render);
        // Refreshes while the window is open tell nothing new.
        hub.deliver("e", me, &[PlaceStatus::Admitted { until_ms: 5_000 }], 4_999, 500, render);
        assert_eq!(hub.waiting_count(), 0);
        assert_eq!(hub.joined_users().len(), 1);
        // The store says gone once the window has ended on the server clock.
        hub.deliver("e", me, &[PlaceStatus::Gone], 5_000, 500, render);
        for p in [&a, &b] {
            assert_eq!(drain(p), ["admitted u 5000", "window_ended"]);
        }
        assert!(hub.joined_users().is_empty());
        // The admitter's word comes too late: nobody is told twice.
        hub.end_window("e", "u", 5_050, || "window_ended again".into());
        hub.deliver("e", me, &[PlaceStatus::Gone], 5_500, 500, render);
        assert!(drain(&a).is_empty() && drain(&b).is_empty());
    }

    #[test]
    fn the_admitter_admits_and_ends_windows_of_local_sockets() {
        let hub = Hub::default();
        let (e, u): (EventId, UserId) = ("e".into(), "u".into());
        let p = Peer::new(8);
        hub.add_waiter(&e, &u, &p, 1, 0);
        hub.admit("e", "u", 5_000, || "admitted".into());
        // A status refresh that saw the admission as well adds nothing; one
        // fetched just before it is stale and pushes no position.
        let me = std::slice::from_ref(&u);
        hub.deliver("e", me, &[PlaceStatus::Admitted { until_ms: 5_000 }], 10, 500, render);
        hub.deliver("e", me, &[PlaceStatus::Waiting { position: 1 }], 3_000, 500, render);
        // Not before the window's end.
        hub.end_window("e", "u", 4_999, || "too early".into());
        assert_eq!(drain(&p), ["admitted"]);
        hub.end_window("e", "u", 5_000, || "window_ended".into());
        hub.deliver("e", me, &[PlaceStatus::Gone], 5_200, 500, render);
        assert_eq!(drain(&p), ["window_ended"]);
        assert!(hub.joined_users().is_empty());
    }

    #[test]
    fn an_admission_given_up_elsewhere_is_gone_not_ended() {
        let hub = Hub::default();
        let (e, u): (EventId, UserId) = ("e".into(), "u".into());
        let p = Peer::new(8);
        hub.add_waiter(&e, &u, &p, 1, 0);
        hub.admit("e", "u", 5_000, || "admitted".into());
        hub.deliver("e", std::slice::from_ref(&u), &[PlaceStatus::Gone], 1_000, 500, render);
        assert_eq!(drain(&p), ["admitted", "gone"]);
        assert!(hub.joined_users().is_empty());
    }

    #[test]
    fn waiting_again_after_an_admission_is_not_an_ended_window() {
        let hub = Hub::default();
        let (e, u): (EventId, UserId) = ("e".into(), "u".into());
        let p = Peer::new(8);
        hub.add_waiter(&e, &u, &p, 1, 0);
        hub.admit("e", "u", 5_000, || "admitted".into());
        // The window ended and the buyer joined again before anyone here
        // noticed: this socket waits now.
        hub.add_waiter(&e, &u, &p, 7, 5_100);
        hub.end_window("e", "u", 5_150, || "window_ended".into());
        assert_eq!(hub.waiting_count(), 1);
        assert_eq!(drain(&p), ["admitted"]);
        // A socket that missed both hears the window end from the refresh.
        let q = Peer::new(8);
        let v: UserId = "v".into();
        hub.add_waiter(&e, &v, &q, 1, 0);
        hub.admit("e", "v", 5_000, || "admitted".into());
        hub.deliver("e", std::slice::from_ref(&v), &[PlaceStatus::Waiting { position: 4 }], 5_200, 500, render);
        assert_eq!(drain(&q), ["admitted", "window_ended"]);
    }

    #[test]
    fn sockets_admitted_at_join_are_told_when_the_window_ends() {
        let hub = Hub::default();
        let (e, u): (EventId, UserId) = ("e".into(), "u".into());
        let (a, b) = (Peer::new(8), Peer::new(8));
        hub.add_admitted(&e, &u, &a, 5_000);
        hub.add_admitted(&e, &u, &b, 5_000);
        assert_eq!(hub.waiting_count(), 0);
        hub.end_window("e", "u", 5_000, || "window_ended".into());
        assert_eq!(drain(&a), ["window_ended"]);
        assert_eq!(drain(&b), ["window_ended"]);
        // A tab admitted at join while another still waits here: the
        // `admitted` push reaches both.
        let (c, d) = (Peer::new(8), Peer::new(8));
        hub.add_waiter(&e, &u, &c, 1, 6_000);
        hub.add_admitted(&e, &u, &d, 9_000);
        assert_eq!(hub.waiting_count(), 1);
        hub.deliver("e", std::slice::from_ref(&u), &[PlaceStatus::Admitted { until_ms: 9_000 }], 6_100, 500, render);
        assert_eq!(drain(&c), ["admitted u 9000"]);
        assert_eq!(drain(&d), ["admitted u 9000"]);
    }
}
