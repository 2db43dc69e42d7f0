//! Integration tests: the real server on random ports, driven over real
//! WebSockets and HTTP, against the in-process and the Redis adapters.

/// Runs each named scenario once per waiting-room and seat adapter:
/// in-process, and Redis under a fresh key prefix (purged afterwards).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = crate::common::Backend::redis().await;
                    super::$name(backend.clone()).await;
                    if let crate::common::Backend::Redis(prefix) = backend {
                        crate::common::purge_redis(&prefix).await;
                    }
                }
            )*
        }
    };
}

mod cluster;
mod common;
mod coupons;
mod coupons_cluster;
mod hardening;
mod identity;
mod openapi;
mod orders;
mod orders_cluster;
mod protocol;
mod seats;
mod statements;
mod venues;
mod waiting_room;
