//! `qt-load seats`, the seat-map benchmark: watchers follow one event's
//! live map while admitted buyers hold and release seats at a set rate; it
//! reports hold and release latency, diff delay to the watchers, what the
//! fan-out cost the server, and whether every watcher's map ended equal to
//! the store's.
//!
//! - `coordinator`: the flags and the phases, run from the main process;
//!   `probe`: the bus check before the run.
//! - `wire`: what the coordinator and its workers say to each other.
//! - `worker`: a worker process's side; its `crowd` of `watchers` and
//!   `holders`.
//! - `layout`: the compact seat map; `scan`: the fast reader of `seats`
//!   diffs.
//! - `figures`: what the run measured, as the report's figures; `report`:
//!   those figures as text, JSON and HTML.

pub mod coordinator;
mod crowd;
mod figures;
mod holders;
mod layout;
mod probe;
mod report;
mod scan;
mod watchers;
pub mod wire;
pub mod worker;

pub use coordinator::{SeatsArgs, run};
