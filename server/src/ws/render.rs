//! Frames as text: every server → client message is a typed value from
//! `qt_protocol`, encoded here (with the `req` it answers).

use axum::extract::ws::Utf8Bytes;
use qt_protocol::frames::{Left, LeftReason, Seats};
use qt_protocol::{Req, ServerMsg, encode};

use crate::domain::seats::SeatChange;
use crate::error::AppError;

/// A push (no `req`), ready for an outbox.
pub fn push(msg: &ServerMsg) -> Utf8Bytes {
    encode(msg, None).into()
}

/// An `error` frame.
pub fn error_frame(err: &AppError, req: Option<&Req>) -> String {
    encode(&ServerMsg::Error(err.body()), req)
}

pub fn left(event: &str, reason: LeftReason) -> Utf8Bytes {
    push(&ServerMsg::Left(Left { event: event.to_owned(), reason }))
}

/// A `seats` diff frame.
pub fn seats_frame(event: &str, version: u64, changes: Vec<SeatChange>) -> String {
    encode(&ServerMsg::Seats(Seats { event: event.to_owned(), version, changes }), None)
}
