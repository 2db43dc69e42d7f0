//! What use cases tell the buyers' sockets on this node, as ports: the
//! socket layer implements them (rendering and queueing the frames), so
//! services never see a socket.

use std::sync::Arc;

use qt_protocol::frames::Admitted;

use crate::domain::event::Event;
use crate::domain::seats::{SeatLayout, SeatStatus};
use crate::domain::{EventId, UserId};
use crate::store::seats::Snapshot;

/// One socket on this node.
pub type PeerId = u64;

/// Waiting-room news for the sockets of one buyer here.
pub trait QueueNotices: Send + Sync {
    /// The admitter let `user` in; their waiting sockets here hear it.
    /// `view` is made only when a socket here waits for it: signing a pass
    /// for a buyer connected to another node would be thrown away.
    fn admitted(&self, event: &EventId, user: &UserId, until_ms: i64, view: &dyn Fn() -> Admitted);
    /// The window of `user` ended at `now_ms`; their admitted sockets hear
    /// it.
    fn window_ended(&self, event: &EventId, user: &UserId, now_ms: i64);
    /// `user` gave up their place or admission: their sockets here, except
    /// `except`, hear `left`.
    fn left(&self, event: &EventId, user: &UserId, except: Option<PeerId>);
}

/// This node's live replicas of events' seat states.
pub trait LiveMaps: Send + Sync {
    fn is_live(&self, event: &str) -> bool;
    /// Makes an event live from a store snapshot (unless it already is).
    fn install(&self, id: &EventId, event: Arc<Event>, layout: Arc<SeatLayout>, snapshot: &Snapshot, now_ms: i64);
    /// The layout and current seat states, for choosing best seats.
    fn view(&self, event: &str) -> Option<(Arc<SeatLayout>, Vec<SeatStatus>)>;
}
