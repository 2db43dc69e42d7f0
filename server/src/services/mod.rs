//! Use cases, each a struct holding exactly the ports it needs, built in
//! `app.rs`. The socket and REST handlers call them; nothing here knows a
//! socket, an HTTP request or JSON. What must reach sockets goes through
//! the ports in `notices`, which the socket layer implements.

pub mod catalog;
pub mod coupons;
pub mod notices;
pub mod orders;

pub mod queue;
pub mod seatmap;
pub mod seats;
pub mod settings;
pub mod settlement;
#[cfg(test)]
pub(crate) mod testkit;
pub mod venues;
