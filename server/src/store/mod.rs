//! Storage ports and their adapters. Each port is a trait the domain-facing
//! code calls; each adapter (in-process memory, Redis, SQL) implements one,
//! and one contract suite per port runs against every adapter.

pub mod coupons;
pub mod journal;
pub mod outbox;
mod redis_reply;
pub mod seats;
pub mod sql;
pub mod waiting;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("sql: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("sql migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not what we wrote: {0}")]
    Corrupt(String),
    /// A store's own worker cannot take the request now; retry shortly.
    #[error("{0}")]
    Busy(&'static str),
    /// The coupon claim log (Kafka) refused or timed out a request.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl StoreError {
    /// Whether the backing service is out of reach (as opposed to a bug or
    /// bad data), so the client is told to retry rather than given up on.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Redis(e) => {
                e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped()
            }
            Self::Sql(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => true,
            Self::Busy(_) => true,
            // Configuration errors surface when a client is made, at start.
            Self::Kafka(e) => !matches!(
                e,
                rdkafka::error::KafkaError::ClientConfig(..) | rdkafka::error::KafkaError::ClientCreation(_)
            ),
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How long a Redis reply may take. redis-rs gives up after 500 ms by
/// default; under a surge a hold script may still be queued behind others,
/// and a client told "unavailable" for a hold that did happen would be left
/// with a hold it does not know of.
const REDIS_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A self-reconnecting, multiplexed Redis connection.
pub async fn redis_connection(url: &str) -> StoreResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT));
    Ok(redis::aio::ConnectionManager::new_with_config(redis::Client::open(url)?, config).await?)
}
