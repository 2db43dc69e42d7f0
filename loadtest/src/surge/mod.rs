//! `qt-load surge`, the waiting-room benchmark: N WebSocket buyers join
//! and wait, then the same buyers poll over REST; it reports join latency
//! and rate, push gaps, server RSS per socket and CPU per waiting buyer
//! (push vs poll).
//!
//! - `coordinator`: the flags and the phases, run from the main process.
//! - `wire`: what the coordinator and its workers say to each other.
//! - `worker`: a worker process's side; its `crowd` of sockets and its
//!   `pollers`.
//! - `figures`: what the phases measured, as the report's figures;
//!   `report`: those figures as text, JSON and HTML.

pub mod coordinator;
mod crowd;
mod figures;
mod pollers;
mod report;
pub mod wire;
pub mod worker;

pub use coordinator::{SurgeArgs, run};
