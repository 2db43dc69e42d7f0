//! One buyer socket from `hello` to close: reads requests and answers them,
//! and writes what the hub queued for it. One task per socket; a write that
//! cannot complete in time ends the socket rather than the server's memory.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tracing::debug;

use super::hub::Peer;
use super::outbox::{CLOSE_POLICY, CLOSE_RESTART, Kill, Next};
use super::protocol::{self, ClientMsg, Closing, Hello, Left, Pong, Req, encode, error_frame};
use crate::app::Ctx;
use crate::auth::Identity;
use crate::clock::rfc3339;
use crate::domain::EventId;
use crate::error::AppError;
use crate::limits::{FrameBudget, Verdict};
use crate::services::queue::QueueReply;
use crate::services::seats::UnwatchedView;

/// A write the client does not take within this time closes the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Buyers reconnect after a restart with jitter around this delay.
const RECONNECT_AFTER_MS: u64 = 2_000;

struct Session {
    ctx: Arc<Ctx>,
    who: Identity,
    peer: Arc<Peer>,
    /// Events this socket joined, to leave the hub cleanly on close.
    joined: Vec<EventId>,
    /// Events this socket watches.
    watching: Vec<EventId>,
    budget: FrameBudget,
}

async fn close(ws: &mut WebSocket, kill: Kill) {
    let frame = CloseFrame { code: kill.code, reason: kill.reason.into() };
    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Close(Some(frame)))).await;
}

pub async fn run(ctx: Arc<Ctx>, who: Identity, mut ws: WebSocket) {
    ctx.metrics.sockets_open.inc();
    let peer = Peer::new(ctx.cfg.ws_outbox);
    let budget = ctx.limits.per_socket();
    ctx.hub.connect(&who.user, &peer);
    let mut s = Session { ctx: ctx.clone(), who, peer, joined: Vec::new(), watching: Vec::new(), budget };
    let hello = encode(&Hello { user: &s.who.user, server_time: rfc3339(ctx.clock.now_ms()), protocol: 1 }, None);
    if s.send(&mut ws, hello.into()).await {
        s.serve(&mut ws).await;
    }
    s.leave_hub();
    ctx.metrics.sockets_open.dec();
}

impl Session {
    /// Writes a frame; false when the socket is gone or the client has not
    /// taken it within the send time-out (then the socket is given up).
    async fn send(&self, ws: &mut WebSocket, frame: Utf8Bytes) -> bool {
        match tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Text(frame))).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.ctx.metrics.send_timeouts.inc();
                false
            }
        }
    }

    async fn serve(&mut self, ws: &mut WebSocket) {
        loop {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => {
                    let bye = encode(&Closing { reason: "server shutting down", reconnect_after_ms: RECONNECT_AFTER_MS }, None);
                    if self.send(ws, bye.into()).await {
                        close(ws, Kill { code: CLOSE_RESTART, reason: "restarting" }).await;
                    }
                    return;
                }
                next = self.peer.outbox.next() => match next {
                    Next::Send(frame) => if !self.send(ws, frame).await { return },
                    Next::Close(kill) => {
                        self.ctx.metrics.slow_sockets_closed.inc();
                        close(ws, kill).await;
                        return;
                    }
                },
                incoming = ws.recv() => {
                    let msg = match incoming {
                        Some(Ok(Message::Close(_))) | None => return,
                        Some(Ok(msg)) => msg,
                        Some(Err(e)) => {
                            debug!(user = %self.who.user, error = %e, "socket read failed");
                            // Oversized or malformed frames break the protocol: say why.
                            close(ws, Kill { code: CLOSE_POLICY, reason: "frame too large or malformed" }).await;
                            return;
                        }
                    };
                    let reply = match (self.budget.check(), msg) {
                        (Verdict::Close, _) => {
                            self.ctx.metrics.abusive_sockets_closed.inc();
                            close(ws, Kill { code: CLOSE_POLICY, reason: "rate limit exceeded" }).await;
                            return;
                        }
                        (Verdict::Refused, Message::Text(text)) => {
                            vec![error_frame(&AppError::RateLimited, protocol::parse_req(&text).as_ref())]
                        }
                        (Verdict::Refused, _) => Vec::new(),
                        (Verdict::Allowed, Message::Text(text)) => self.handle(&text).await,
                        (Verdict::Allowed, Message::Binary(_)) => {
                            let err = AppError::BadRequest("binary frames are not supported; send JSON text".into());
                            vec![error_frame(&err, None)]
                        }
                        // tungstenite answers pings itself; they only count.
                        (Verdict::Allowed, _) => Vec::new(),
                    };
                    for frame in reply {
                        if !self.send(ws, frame.into()).await { return }
                    }
                }
            }
        }
    }

    /// Answers one text frame with the frames to send back, in order.
    async fn handle(&mut self, text: &str) -> Vec<String> {
        self.ctx.metrics.ws_messages.inc();
        let (req, msg) = protocol::parse(text);
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => return vec![error_frame(&e, req.as_ref())],
        };
        match self.dispatch(msg, req.as_ref()).await {
            Ok(frames) => frames,
            Err(e) => vec![error_frame(&e, req.as_ref())],
        }
    }

    async fn dispatch(&mut self, msg: ClientMsg, req: Option<&Req>) -> Result<Vec<String>, AppError> {
        let user = self.who.user.clone();
        match msg {
            ClientMsg::Ping => Ok(vec![encode(&Pong {}, req)]),
            ClientMsg::Join { event } => {
                let (id, reply) = self.ctx.join_queue(&user, &event).await?;
                // Waiting or admitted, the hub tells this socket what comes
                // next: admission, or the end of the window.
                match &reply {
                    QueueReply::Waiting(view) => {
                        self.ctx.hub.add_waiter(&id, &user, &self.peer, view.position, self.ctx.clock.now_ms())
                    }
                    QueueReply::Admitted(view) => self.ctx.hub.add_admitted(&id, &user, &self.peer, view.until_ms),
                }
                if !self.joined.contains(&id) {
                    self.joined.push(id);
                }
                Ok(vec![encode(&reply, req)])
            }
            ClientMsg::Leave { event } => {
                let id = self.ctx.leave_queue(&user, &event).await?;
                self.ctx.hub.take_user_and_tell(&id, &user, Some(self.peer.id), || {
                    encode(&Left { event: &id, reason: "left" }, None).into()
                });
                self.joined.retain(|e| e != &id);
                Ok(vec![encode(&Left { event: &id, reason: "left" }, req)])
            }
            ClientMsg::Watch { event, format } => {
                // The snapshot answering this request goes through the
                // socket's queue, ahead of the diffs that follow it.
                let id = self.ctx.watch(&self.peer, &event, format, req).await?;
                // "Its own held message tells it which are its own": after
                // the snapshot, the buyer's current holds.
                if let Some(own) = self.ctx.own_holds(&user, &id).await? {
                    self.peer.outbox.push_or_kill(encode(&own, None).into());
                }
                if !self.watching.contains(&id) {
                    self.watching.push(id);
                }
                Ok(Vec::new())
            }
            ClientMsg::Unwatch { event } => {
                let (id, _) = self.ctx.find_event(&event)?;
                self.ctx.feed.unwatch(&id, self.peer.id, self.ctx.clock.now_ms());
                self.watching.retain(|e| e != &id);
                Ok(vec![encode(&UnwatchedView { event: &id }, req)])
            }
            ClientMsg::Hold { event, seats } => Ok(vec![encode(&self.ctx.hold(&user, &event, &seats).await?, req)]),
            ClientMsg::HoldBest { event, count, tier, section } => {
                let held = self.ctx.hold_best(&user, &event, count, tier.as_deref(), section.as_deref()).await?;
                Ok(vec![encode(&held, req)])
            }
            ClientMsg::Release { event, seats } => {
                Ok(vec![encode(&self.ctx.release(&user, &event, &seats).await?, req)])
            }
            ClientMsg::Checkout { event, .. } => {
                self.ctx.require_admission(&user, &event).await?;
                Err(AppError::Forbidden("checkout opens in a later release"))
            }
            ClientMsg::ClaimCoupon { .. } | ClientMsg::Pay { .. } => {
                Err(AppError::Forbidden("not available in this release"))
            }
        }
    }

    fn leave_hub(&self) {
        for id in &self.joined {
            self.ctx.hub.remove_peer(id, &self.who.user, self.peer.id);
        }
        self.ctx.feed.remove_peer(&self.watching, self.peer.id, self.ctx.clock.now_ms());
        self.ctx.hub.disconnect(&self.who.user, self.peer.id);
    }
}
