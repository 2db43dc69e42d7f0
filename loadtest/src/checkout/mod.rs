//! `qt-load checkout`, the checkout-and-pay benchmark: many buyers join an
//! event with its doors open, each holds one or two seats, checks out (some
//! with the best coupon) and pays with a payment key whose prefix makes the
//! sandbox gateway's outcome (`ok`, `flaky`, `decline`, `slow`, `lost`, in
//! a set mix), then waits for the final `payment`. It reports paid orders
//! per second and the latency from `checkout` to the final `paid`, and
//! audits the books: the sandbox's charges against the paid orders, the
//! sold seats against the paid orders' seats, the seller's refunds, and
//! each buyer's own order listing.
//!
//! - `coordinator`: the flags and the phases, run from the main process;
//!   `books`: the sandbox ledger, the seat map, the seller's campaign and
//!   refunds.
//! - `plan`: who pays how and how many seats; `wire`: what the coordinator
//!   and its workers say to each other.
//! - `worker`: a worker process's side; its `crowd` of buyers' sockets.
//! - `audit`: the books held against each other; `figures`: what the run
//!   measured, as the report's figures; `report`: those as text, JSON and
//!   HTML.

mod audit;
mod books;
pub mod coordinator;
mod crowd;
mod figures;
mod plan;
mod report;
pub mod wire;
pub mod worker;

pub use coordinator::{CheckoutArgs, run};
