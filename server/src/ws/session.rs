//! One buyer socket from `hello` to close: reads requests and answers them,
//! and writes what the hub queued for it. One task per socket; a write that
//! cannot complete in time ends the socket rather than the server's memory.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use qt_protocol::coupons::Coupons;
use qt_protocol::frames::{Closing, Hello, Left, LeftReason, Unwatched};
use qt_protocol::orders::Orders;
use qt_protocol::{ClientMsg, PROTOCOL_VERSION, Req, ServerMsg, encode};
use tracing::debug;

use super::Sockets;
use super::hub::Peer;
use super::outbox::{CLOSE_POLICY, CLOSE_RESTART, Kill, Next};
use super::protocol;
use super::render::{error_frame, push};
use crate::auth::Identity;
use crate::clock::rfc3339;
use crate::domain::EventId;
use crate::error::AppError;
use crate::limits::{FrameBudget, Verdict};
use crate::services::coupons::coupon_view;
use crate::services::queue::Place;

/// A write the client does not take within this time closes the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The `orders` message lists this many of the buyer's latest orders.
const ORDERS_ON_SOCKET: u32 = 50;
/// Buyers reconnect after a restart with jitter around this delay.
const RECONNECT_AFTER_MS: u64 = 2_000;

struct Session {
    ctx: Arc<Sockets>,
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

pub async fn run(ctx: Arc<Sockets>, who: Identity, mut ws: WebSocket) {
    ctx.metrics.sockets_open.inc();
    let peer = Peer::new(ctx.outbox_capacity);
    let budget = ctx.limits.per_socket();
    ctx.hub.connect(&who.user, &peer);
    let mut s = Session { ctx: ctx.clone(), who, peer, joined: Vec::new(), watching: Vec::new(), budget };
    let hello =
        Hello { user: s.who.user.to_string(), server_time: rfc3339(ctx.clock.now_ms()), protocol: PROTOCOL_VERSION };
    let hello = encode(&ServerMsg::Hello(hello), None);
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
                    let bye = Closing { reason: "server shutting down".into(), reconnect_after_ms: RECONNECT_AFTER_MS };
                    let bye = encode(&ServerMsg::Closing(bye), None);
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
        let reply = |msg: ServerMsg| Ok(vec![encode(&msg, req)]);
        match msg {
            ClientMsg::Ping => reply(ServerMsg::Pong),
            ClientMsg::Join { event } => {
                let (id, place) = self.ctx.queue.join(&user, &event).await?;
                // Waiting or admitted, the hub tells this socket what comes
                // next: admission, or the end of the window.
                match &place {
                    Place::Waiting(view) => {
                        self.ctx.hub.add_waiter(&id, &user, &self.peer, view.position, self.ctx.clock.now_ms())
                    }
                    Place::Admitted { until_ms, .. } => self.ctx.hub.add_admitted(&id, &user, &self.peer, *until_ms),
                }
                if !self.joined.contains(&id) {
                    self.joined.push(id);
                }
                reply(match place {
                    Place::Waiting(view) => ServerMsg::Queue(view),
                    Place::Admitted { view, .. } => ServerMsg::Admitted(view),
                })
            }
            ClientMsg::Leave { event } => {
                let id = self.ctx.queue.leave(&user, &event, Some(self.peer.id)).await?;
                self.joined.retain(|e| e != &id);
                reply(ServerMsg::Left(Left { event: id.to_string(), reason: LeftReason::Left }))
            }
            ClientMsg::Watch { event, format } => {
                // The snapshot answering this request goes through the
                // socket's queue, ahead of the diffs that follow it. An
                // event dropped as idle between the two calls is rare;
                // loading it again is the whole remedy.
                let mut watched = None;
                for _ in 0..2 {
                    let (id, _) = self.ctx.seats.go_live(&event).await?;
                    if self.ctx.feed.watch(&id, &self.peer, format, req) {
                        watched = Some(id);
                        break;
                    }
                }
                let id = watched.ok_or(AppError::Unavailable)?;
                // "Its own held message tells it which are its own": after
                // the snapshot, the buyer's current holds.
                if let Some(own) = self.ctx.seats.own_holds(&user, &id).await? {
                    self.peer.outbox.push_or_kill(push(&ServerMsg::Held(own)));
                }
                if !self.watching.contains(&id) {
                    self.watching.push(id);
                }
                Ok(Vec::new())
            }
            ClientMsg::Unwatch { event } => {
                let (id, _) = self.ctx.catalog.find(&event)?;
                self.ctx.feed.unwatch(&id, self.peer.id, self.ctx.clock.now_ms());
                self.watching.retain(|e| e != &id);
                reply(ServerMsg::Unwatched(Unwatched { event: id.to_string() }))
            }
            ClientMsg::Hold { event, seats } => {
                reply(ServerMsg::Held(self.ctx.seats.hold(&user, &event, &seats).await?))
            }
            ClientMsg::HoldBest { event, count, tier, section } => {
                let held = self.ctx.seats.hold_best(&user, &event, count, tier.as_deref(), section.as_deref()).await?;
                reply(ServerMsg::Held(held))
            }
            ClientMsg::Release { event, seats } => {
                reply(ServerMsg::Released(self.ctx.seats.release(&user, &event, &seats).await?))
            }
            // The order calls' futures are large and rare: boxed, they do not
            // grow every idle socket's task by their size.
            ClientMsg::Checkout { event, coupon } => {
                let order = Box::pin(self.ctx.orders.checkout(&user, &event, coupon.as_deref())).await?;
                reply(ServerMsg::Order(order))
            }
            ClientMsg::Pay { order, payment_key } => {
                reply(ServerMsg::Payment(Box::pin(self.ctx.orders.pay(&user, &order, &payment_key)).await?))
            }
            ClientMsg::CancelOrder { order } => {
                reply(ServerMsg::Order(Box::pin(self.ctx.orders.cancel(&user, &order)).await?))
            }
            ClientMsg::Orders { event } => {
                let page = Box::pin(self.ctx.orders.mine(&user, event.as_deref(), ORDERS_ON_SOCKET, None)).await?;
                reply(ServerMsg::Orders(Orders { event, orders: page.items }))
            }
            ClientMsg::ClaimCoupon { campaign } => {
                let (coupon, campaign) = self.ctx.coupons.claim(&user, &campaign).await?;
                reply(ServerMsg::Coupon(coupon_view(&coupon, &campaign)))
            }
            ClientMsg::Coupons { event } => {
                let mine = self.ctx.coupons.mine(&user, event.as_deref()).await?;
                let coupons = mine.iter().map(|(coupon, c)| coupon_view(coupon, c)).collect();
                reply(ServerMsg::Coupons(Coupons { event, coupons }))
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
