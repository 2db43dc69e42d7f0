//! Integration tests: the real server on random ports, driven over real
//! WebSockets and HTTP, against the in-process and the Redis waiting room.

mod cluster;
mod common;
mod identity;
mod protocol;
mod seats;
mod waiting_room;
