//! A socket's bounded outbound queue. Pushers never wait: a full queue
//! refuses the frame, and the pusher decides whether to drop it (a periodic
//! position) or close the socket (a frame that must not be lost). Nothing is
//! allocated until the first frame is queued, which keeps idle sockets small.

use std::collections::VecDeque;

use axum::extract::ws::Utf8Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
}

/// Why a socket is being closed from the server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub code: u16,
    pub reason: &'static str,
}

/// Close code 1008: policy violation (e.g. a client too slow to keep up).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code 1012: service restart.
pub const CLOSE_RESTART: u16 = 1012;

#[derive(Default)]
struct State {
    frames: VecDeque<Utf8Bytes>,
    kill: Option<Kill>,
}

/// What the socket's writer should do next.
pub enum Next {
    Send(Utf8Bytes),
    Close(Kill),
}

pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    capacity: usize,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { state: Mutex::new(State::default()), wake: Notify::new(), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    pub fn push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        {
            let mut s = self.lock();
            if s.kill.is_some() {
                return Err(PushError::Closed);
            }
            if s.frames.len() >= self.capacity {
                return Err(PushError::Full);
            }
            s.frames.push_back(frame);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Pushes a frame that must arrive; when the queue is full the socket is
    /// closed instead, and the client's reconnect fetches state afresh.
    pub fn push_or_kill(&self, frame: Utf8Bytes) {
        if self.push(frame) == Err(PushError::Full) {
            self.kill(Kill { code: CLOSE_POLICY, reason: "too slow: reconnect to resync" });
        }
    }

    /// Asks the writer to close the socket after what is already queued is
    /// dropped; the first reason wins.
    pub fn kill(&self, kill: Kill) {
        self.lock().kill.get_or_insert(kill);
        self.wake.notify_one();
    }

    /// Waits for the next frame or for a kill. Cancel-safe: a frame is only
    /// taken out of the queue in the same poll that returns it.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut s = self.lock();
                if let Some(kill) = s.kill {
                    return Next::Close(kill);
                }
                if let Some(frame) = s.frames.pop_front() {
                    if s.frames.is_empty() && s.frames.capacity() > 8 {
                        // a burst is over; give its memory back
                        s.frames = VecDeque::new();
                    }
                    return Next::Send(frame);
                }
            }
            self.wake.notified().await;
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_order_and_killable() {
        let o = Outbox::new(2);
        o.push("a".into()).unwrap();
        o.push("b".into()).unwrap();
        assert_eq!(o.push("c".into()), Err(PushError::Full));
        assert!(matches!(o.next().await, Next::Send(f) if f.as_str() == "a"));
        assert!(matches!(o.next().await, Next::Send(f) if f.as_str() == "b"));
        o.push("d".into()).unwrap();
        o.push("e".into()).unwrap();
        o.push_or_kill("f".into());
        assert!(matches!(o.next().await, Next::Close(k) if k.code == CLOSE_POLICY));
        assert_eq!(o.push("g".into()), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_push() {
        let o = std::sync::Arc::new(Outbox::new(4));
        let o2 = o.clone();
        let writer = tokio::spawn(async move {
            match o2.next().await {
                Next::Send(f) => f.to_string(),
                Next::Close(_) => "closed".into(),
            }
        });
        tokio::task::yield_now().await;
        o.push("hello".into()).unwrap();
        assert_eq!(writer.await.unwrap(), "hello");
        assert_eq!(o.queued(), 0);
    }
}
