//! What tests need of the local Redis and Postgres, shared by the unit
//! tests (a module of the library under `cfg(test)`) and the integration
//! tests (included by path): one clear line when a service is down, and a
//! fresh Postgres database per test. Uses no item of the crate, so it
//! compiles in both.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::sync::OnceCell;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Test databases are named `<prefix>_<unix seconds>_<random>`; ones older
/// than this were left by failed runs and are dropped.
const STALE_AFTER_S: u64 = 3_600;

fn unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Fails the test with one line naming Redis and how to start it, unless
/// Redis answers a `PING`. Checked once per test binary.
pub async fn require_redis() {
    static CHECKED: OnceCell<Result<(), String>> = OnceCell::const_new();
    let checked = CHECKED
        .get_or_init(|| async {
            let ping = async {
                let mut conn = ::redis::Client::open(REDIS_URL)?.get_multiplexed_async_connection().await?;
                ::redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            match tokio::time::timeout(Duration::from_secs(3), ping).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in 3 s".to_owned()),
            }
        })
        .await;
    if let Err(why) = checked {
        panic!("Redis is not reachable at {REDIS_URL} ({why}); start it with scripts/services.sh");
    }
}

/// A fresh, empty Postgres database (on `DATABASE_URL`'s server).
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    /// A database named after `prefix`; the test fails with one clear line
    /// if Postgres is not up.
    pub async fn create(prefix: &str) -> Self {
        let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        let mut conn = postgres_admin(&admin, prefix).await;
        let name = format!("{prefix}_{}_{:08x}", unix_s(), rand::random::<u32>());
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create a test database");
        let _ = conn.close().await;
        let options = PgConnectOptions::from_str(&admin).expect("DATABASE_URL is a Postgres URL");
        let url = options.database(&name).to_url_lossy().to_string();
        Self { url, admin, name }
    }

    /// Drops the database. Tests call it once they passed; a failed test
    /// leaves its database to look at, until it is stale.
    pub async fn finish(self) {
        let prefix = self.name.rsplitn(3, '_').nth(2).unwrap_or("qt").to_owned();
        let mut conn = postgres_admin(&self.admin, &prefix).await;
        let _ = conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str()).await;
        let _ = conn.close().await;
    }
}

/// A connection to the maintenance database, or the test fails with one
/// line naming Postgres and how to start it. The first call in a test
/// binary also drops stale test databases of `prefix`.
async fn postgres_admin(admin: &str, prefix: &str) -> PgConnection {
    static SWEPT: OnceCell<Result<(), String>> = OnceCell::const_new();
    let at = PgConnectOptions::from_str(admin)
        .map(|o| format!("{}:{}", o.get_host(), o.get_port()))
        .unwrap_or_else(|_| "DATABASE_URL".to_owned());
    let connect = || async {
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(admin)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in 5 s".to_owned()),
        }
    };
    let swept = SWEPT
        .get_or_init(|| async {
            let mut conn = connect().await?;
            let pattern = format!("{}\\_%", prefix.replace('_', "\\_"));
            let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                .bind(pattern)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
            for name in names {
                let born = name.rsplit('_').nth(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(u64::MAX);
                if born.saturating_add(STALE_AFTER_S) < unix_s() {
                    let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                }
            }
            let _ = conn.close().await;
            Ok(())
        })
        .await;
    let ready = match swept {
        Ok(()) => connect().await,
        Err(e) => Err(e.clone()),
    };
    ready.unwrap_or_else(|why| panic!("Postgres is not reachable at {at} ({why}); start it with scripts/services.sh"))
}
