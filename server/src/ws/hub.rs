//! This node's registry of waiting sockets: which local sockets wait for
//! which event as which buyer, and what each last heard. The notifier asks
//! the store for all their places in one batch per event and pushes through
//! here. No lock is held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;

use super::outbox::{Outbox, PushError};
use crate::domain::queue::{LastPush, should_push};
use crate::domain::{EventId, UserId};
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

struct Waiter {
    peers: Vec<Arc<Peer>>,
    last: Option<LastPush>,
}

/// What a buyer's local sockets are to be told after a status refresh.
pub enum News<'a> {
    Position(u64),
    Admitted { user: &'a UserId, until_ms: i64 },
    Gone,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, HashMap<UserId, Waiter>>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn connect(&self, user: &UserId, peer: &Arc<Peer>) {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).entry(user.clone()).or_default().push(peer.clone());
    }

    pub fn disconnect(&self, user: &str, peer_id: u64) {
        let mut conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(peers) = conns.get_mut(user) {
            peers.retain(|p| p.id != peer_id);
            if peers.is_empty() {
                conns.remove(user);
            }
        }
    }

    /// Queues a frame that must arrive to every socket of `user` here.
    pub fn tell(&self, user: &str, frame: impl FnOnce() -> Utf8Bytes) {
        let conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(peers) = conns.get(user) {
            let frame = frame();
            for p in peers {
                p.outbox.push_or_kill(frame.clone());
            }
        }
    }

    /// Registers a socket as waiting; `position` is what its join reply said.
    pub fn add_waiter(&self, event: &EventId, user: &UserId, peer: &Arc<Peer>, position: u64, now_ms: i64) {
        let mut events = self.lock();
        let waiter = events
            .entry(event.clone())
            .or_default()
            .entry(user.clone())
            .or_insert_with(|| Waiter { peers: Vec::with_capacity(1), last: None });
        if !waiter.peers.iter().any(|p| p.id == peer.id) {
            waiter.peers.push(peer.clone());
        }
        waiter.last = Some(LastPush { position, at_ms: now_ms });
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

    /// Every event with local waiters, with their buyers.
    pub fn waiting_users(&self) -> Vec<(EventId, Vec<UserId>)> {
        self.lock().iter().map(|(e, users)| (e.clone(), users.keys().cloned().collect())).collect()
    }

    pub fn waiting_count(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    /// Given fresh statuses, tells each buyer's sockets what changed:
    /// positions when due, admissions and losses always (those buyers leave
    /// the registry). `render` turns news into a frame. Frames are queued
    /// under the registry lock, so a stale position can never be queued
    /// after the `admitted` the admitter queued through [`Hub::take_user`].
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
            match *status {
                PlaceStatus::Waiting { position } => {
                    let Some(w) = waiters.get_mut(user) else { continue };
                    if !should_push(w.last, position, now_ms, tick_ms) {
                        continue;
                    }
                    w.last = Some(LastPush { position, at_ms: now_ms });
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
                PlaceStatus::Admitted { until_ms } => {
                    if let Some(w) = waiters.remove(user) {
                        let frame = render(News::Admitted { user, until_ms });
                        for p in &w.peers {
                            p.outbox.push_or_kill(frame.clone());
                        }
                    }
                }
                PlaceStatus::Gone => {
                    if let Some(w) = waiters.remove(user) {
                        let frame = render(News::Gone);
                        for p in &w.peers {
                            let _ = p.outbox.push(frame.clone());
                        }
                    }
                }
            }
        }
        if waiters.is_empty() {
            events.remove(event);
        }
        pushed
    }

    /// Removes a buyer's waiting entry and queues `frame` (which must
    /// arrive) to each of their sockets here, except `skip`.
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(hub.waiting_users().is_empty());
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
            [PlaceStatus::Waiting { position: 99 }, PlaceStatus::Admitted { until_ms: 9 }, PlaceStatus::Gone];
        let render = |n: News<'_>| -> Utf8Bytes {
            match n {
                News::Position(p) => format!("pos {p}").into(),
                News::Admitted { user, until_ms } => format!("admitted {user} {until_ms}").into(),
                News::Gone => "gone".into(),
            }
        };
        let pushed = hub.deliver("e", &users, &statuses, 100, 500, render);
        assert_eq!(pushed.positions, 0, "a small move is not pushed at once");
        assert_eq!(hub.waiting_count(), 1, "admitted and gone buyers leave the registry");
        let pushed = hub.deliver("e", &users[..1], &statuses[..1], 2_000, 500, render);
        assert_eq!(pushed.positions, 1, "periodic push");
        // A buyer taken by the admitter gets nothing stale afterwards.
        hub.take_user_and_tell("e", "a", None, || "admitted a".into());
        assert_eq!(hub.deliver("e", &users[..1], &statuses[..1], 9_000, 500, render), Pushed::default());
    }

    #[tokio::test]
    async fn frames_arrive_in_the_order_they_were_decided() {
        let hub = Hub::default();
        let e: EventId = "e".into();
        let u: UserId = "u".into();
        let p = Peer::new(8);
        hub.add_waiter(&e, &u, &p, 5, 0);
        hub.deliver("e", std::slice::from_ref(&u), &[PlaceStatus::Waiting { position: 1 }], 1, 500, |_| "queue".into());
        hub.take_user_and_tell("e", "u", None, || "admitted".into());
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
}
