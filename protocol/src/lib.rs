//! The QueueTicket wire contract as types (`docs/protocol.md`): what a
//! buyer's socket sends and receives, the REST bodies, the error codes and
//! the token claims. The server, its integration tests and `qt-load` all
//! speak through these types, so none of them can drift from the others.
//!
//! Pure data: serde, no I/O, no server types.

pub mod client;
pub mod coupons;
pub mod error;
pub mod frames;
pub mod orders;
pub mod rest;
pub mod statements;
pub mod token;
pub mod venues;

pub use client::{ClientMsg, Format, ParseError, Req};
pub use error::ErrorCode;
pub use frames::{Envelope, ServerMsg, encode};
pub use token::{Claims, Role};

/// The protocol version a server announces in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
