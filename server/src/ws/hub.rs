//! This node's registry of waiting sockets: which local sockets wait for
//! which event as which buyer, and what each last heard. The notifier asks
//! the store for all their places in one batch per event and pushes through
//! here. No lock is held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::outbox::Outbox;
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

/// What the notifier must send to one buyer's local sockets.
pub enum Delivery {
    Position { user: UserId, position: u64, peers: Vec<Arc<Peer>> },
    Admitted { user: UserId, until_ms: i64, peers: Vec<Arc<Peer>> },
    Gone { peers: Vec<Arc<Peer>> },
}

#[derive(Default)]
pub struct Hub {
    events: Mutex<HashMap<EventId, HashMap<UserId, Waiter>>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, HashMap<UserId, Waiter>>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Removes a buyer's waiting entry, returning their local sockets.
    pub fn take_user(&self, event: &str, user: &str) -> Vec<Arc<Peer>> {
        let mut events = self.lock();
        let Some(users) = events.get_mut(event) else { return Vec::new() };
        let peers = users.remove(user).map(|w| w.peers).unwrap_or_default();
        if users.is_empty() {
            events.remove(event);
        }
        peers
    }

    /// Every event with local waiters, with their buyers.
    pub fn waiting_users(&self) -> Vec<(EventId, Vec<UserId>)> {
        self.lock().iter().map(|(e, users)| (e.clone(), users.keys().cloned().collect())).collect()
    }

    pub fn waiting_count(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    /// Decides, under one lock, what each buyer must be told given their
    /// fresh statuses: positions when due, admissions and losses always
    /// (those buyers leave the registry).
    pub fn plan(&self, event: &str, users: &[UserId], statuses: &[PlaceStatus], now_ms: i64) -> Vec<Delivery> {
        let mut events = self.lock();
        let Some(waiters) = events.get_mut(event) else { return Vec::new() };
        let mut out = Vec::new();
        for (user, status) in users.iter().zip(statuses) {
            match *status {
                PlaceStatus::Waiting { position } => {
                    let Some(w) = waiters.get_mut(user) else { continue };
                    if should_push(w.last, position, now_ms) {
                        w.last = Some(LastPush { position, at_ms: now_ms });
                        out.push(Delivery::Position { user: user.clone(), position, peers: w.peers.clone() });
                    }
                }
                PlaceStatus::Admitted { until_ms } => {
                    if let Some(w) = waiters.remove(user) {
                        out.push(Delivery::Admitted { user: user.clone(), until_ms, peers: w.peers });
                    }
                }
                PlaceStatus::Gone => {
                    if let Some(w) = waiters.remove(user) {
                        out.push(Delivery::Gone { peers: w.peers });
                    }
                }
            }
        }
        if waiters.is_empty() {
            events.remove(event);
        }
        out
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
    fn plan_pushes_when_due_and_hands_over_admitted_and_gone() {
        let hub = Hub::default();
        let e: EventId = "e".into();
        let users: Vec<UserId> = vec!["a".into(), "b".into(), "c".into()];
        for (i, u) in users.iter().enumerate() {
            hub.add_waiter(&e, u, &Peer::new(4), 100 + i as u64, 0);
        }
        let statuses =
            [PlaceStatus::Waiting { position: 99 }, PlaceStatus::Admitted { until_ms: 9 }, PlaceStatus::Gone];
        let plan = hub.plan("e", &users, &statuses, 100);
        assert_eq!(plan.len(), 2, "a small move is not pushed at once");
        assert!(matches!(&plan[0], Delivery::Admitted { user, until_ms: 9, .. } if &**user == "b"));
        assert!(matches!(&plan[1], Delivery::Gone { .. }));
        assert_eq!(hub.waiting_count(), 1);
        let plan = hub.plan("e", &users[..1], &statuses[..1], 2_000);
        assert!(matches!(&plan[0], Delivery::Position { position: 99, .. }), "periodic push");
    }
}
