//! What both benchmarks share, and nothing that is one benchmark's own:
//! the command-line flags, the coordinator's side of a run (where the load
//! goes, the seller's settings, the worker processes), the worker side of
//! the pipe, the wire between them, opening sockets and minting tokens,
//! the HTTP/1.1 client, the server's `/metrics`, this machine's figures,
//! distributions, and the reports' frame and HTML page.
//!
//! Layers run one way: `surge`, `seats` and `claims` use this module; it
//! never names any of them.

pub mod args;
pub mod coordinator;
pub mod host;
pub mod http1;
pub mod net;
pub mod page;
pub mod procs;
pub mod report;
pub mod server;
pub mod sockets;
pub mod stats;
pub mod tokens;
pub mod wire;
pub mod worker;
