//! QueueTicket: a real-time ticket on-sale server. One WebSocket per buyer
//! carries the whole journey; sellers use REST. See `docs/architecture.md`.

pub mod app;
#[cfg(test)]
mod arbitrary;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod domain;
pub mod edge;
pub mod error;
pub mod faults;
pub mod gateway;
pub mod http;
#[cfg(test)]
mod layers;
pub mod limits;
pub mod metrics;
pub mod services;
pub mod store;
#[cfg(test)]
pub(crate) mod testsupport;
pub mod workers;
pub mod ws;

pub use app::{StartError, run};
pub use config::ServerConfig;
