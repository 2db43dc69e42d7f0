//! `qt-load claims`, the coupon-claim storm: a fresh campaign with a set
//! stock, then many distinct buyers (some retrying, some on two sockets at
//! once) fire their claims at one moment; it reports claims per second,
//! claim latency and the answers by code, and audits the outcome: no
//! coupon over the stock or twice to a buyer, and no claim lost between
//! what buyers were told, the seller's count, the database, Redis and each
//! buyer's own listing.
//!
//! - `coordinator`: the flags and the phases, run from the main process;
//!   `campaign`: the seller's campaign calls and the REST listing;
//!   `store`: the database and Redis, read for the audit.
//! - `plan`: who fires which claims; `wire`: what the coordinator and its
//!   workers say to each other.
//! - `worker`: a worker process's side; its `crowd` of buyers' sockets.
//! - `audit`: the books held against each other; `figures`: what the run
//!   measured, as the report's figures; `report`: those as text, JSON and
//!   HTML.

mod audit;
mod campaign;
pub mod coordinator;
mod crowd;
mod figures;
mod plan;
mod report;
mod store;
pub mod wire;
pub mod worker;

pub use coordinator::{ClaimsArgs, run};
