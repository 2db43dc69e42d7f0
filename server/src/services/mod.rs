//! Use cases shared by the transports: what a join, a status or a leave
//! means, independent of whether it came over the socket or REST.

pub mod catalog;
pub mod feed;
pub mod queue;
pub mod seatmap;
pub mod seats;
