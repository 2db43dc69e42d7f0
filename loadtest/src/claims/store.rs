//! The books after the storm, read where the server keeps them: the
//! campaign's coupons and its row in the database (the SQLite file in
//! embedded mode, Postgres in distributed mode, both through sqlx's Any
//! driver, read only), and its live counts in Redis. Read-only, bounded.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

use crate::claims::audit::{DbView, RedisView};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A database URL without credentials or query, for reports.
pub fn describe_db(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    format!("{scheme}://{}", rest.split('?').next().unwrap_or_default())
}

/// `sqlite://PATH` opened read-only; other URLs as given.
fn read_only(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=ro")
    } else {
        url.to_owned()
    }
}

/// Every coupon of `campaign`, and its row's `issued` and `stock`.
pub async fn read_db(url: &str, campaign: &str) -> anyhow::Result<DbView> {
    let kind = match url.split(':').next() {
        Some("sqlite") => "sqlite",
        Some("postgres" | "postgresql") => "postgres",
        _ => bail!("--db must be sqlite://PATH or postgres://…, not {}", describe_db(url)),
    };
    sqlx::any::install_default_drivers();
    let read = async {
        let pool = AnyPoolOptions::new().max_connections(1).connect(&read_only(url)).await?;
        let rows = sqlx::query("SELECT user_id, id FROM coupons WHERE campaign_id = $1")
            .bind(campaign)
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("user_id")?, r.try_get::<String, _>("id")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let row = sqlx::query("SELECT issued, stock FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_optional(&pool)
            .await?;
        let (campaign_issued, campaign_stock) = match row {
            Some(r) => (Some(r.try_get::<i64, _>("issued")?), r.try_get::<Option<i64>, _>("stock")?),
            None => (None, None),
        };
        pool.close().await;
        Ok::<_, sqlx::Error>(DbView { kind: kind.into(), rows, campaign_issued, campaign_stock })
    };
    tokio::time::timeout(CALL_TIMEOUT, read)
        .await
        .context("the database did not answer in time")?
        .with_context(|| format!("cannot read the coupons of {campaign} from {}", describe_db(url)))
}

/// The campaign's `issued` counter and `claims` hash names: the adapter's
/// hash-tagged form first (`{prefix}:coupon:{<campaign>}:…`), then the
/// plain one.
pub fn redis_keys(prefix: &str, campaign: &str) -> [(String, String); 2] {
    [format!("{prefix}:coupon:{{{campaign}}}"), format!("{prefix}:coupon:{campaign}")]
        .map(|base| (format!("{base}:issued"), format!("{base}:claims")))
}

/// The campaign's counts under the first key form that exists (an empty
/// view, under the first form, when none does).
pub async fn read_redis(url: &str, prefix: &str, campaign: &str) -> anyhow::Result<RedisView> {
    let read = async {
        let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        for (issued_key, claims_key) in redis_keys(prefix, campaign) {
            let issued: Option<i64> = redis::cmd("GET").arg(&issued_key).query_async(&mut conn).await?;
            let claims: HashMap<String, String> = redis::cmd("HGETALL").arg(&claims_key).query_async(&mut conn).await?;
            if issued.is_some() || !claims.is_empty() {
                return Ok(RedisView { issued_key, issued, claims: claims.into_iter().collect() });
            }
        }
        let [(issued_key, _), _] = redis_keys(prefix, campaign);
        Ok::<_, redis::RedisError>(RedisView { issued_key, ..RedisView::default() })
    };
    tokio::time::timeout(CALL_TIMEOUT, read)
        .await
        .context("Redis did not answer in time")?
        .with_context(|| format!("cannot read the counts of {campaign} from Redis"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert_eq!(describe_db("postgres://u:pw@127.0.0.1:5432/qt_x?sslmode=off"), "postgres://127.0.0.1:5432/qt_x");
        assert_eq!(describe_db("sqlite:///tmp/d/queueticket.db?mode=ro"), "sqlite:///tmp/d/queueticket.db");
        assert_eq!(read_only("sqlite:///tmp/q.db"), "sqlite:///tmp/q.db?mode=ro");
        assert_eq!(read_only("sqlite:///tmp/q.db?x=1"), "sqlite:///tmp/q.db?x=1&mode=ro");
        assert_eq!(read_only("postgres://h/db"), "postgres://h/db");
        let [(tagged, claims), (plain, _)] = redis_keys("qtload-ab", "storm-1");
        assert_eq!(
            (tagged.as_str(), claims.as_str()),
            ("qtload-ab:coupon:{storm-1}:issued", "qtload-ab:coupon:{storm-1}:claims")
        );
        assert_eq!(plain, "qtload-ab:coupon:storm-1:issued");
    }

    /// The SQLite file as the server's migration lays it out, read back.
    #[tokio::test]
    async fn reads_a_campaigns_coupons_from_sqlite() {
        let dir = std::env::temp_dir().join(format!("qt-load-claims-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(1).connect(&format!("{url}?mode=rwc")).await.unwrap();
        for q in [
            "CREATE TABLE campaigns (id TEXT PRIMARY KEY, stock BIGINT, issued BIGINT NOT NULL DEFAULT 0)",
            "CREATE TABLE coupons (id TEXT PRIMARY KEY, campaign_id TEXT NOT NULL, user_id TEXT NOT NULL, \
             claimed_ms BIGINT NOT NULL, used_ms BIGINT)",
            "INSERT INTO campaigns VALUES ('s', 300, 2), ('u', NULL, 0)",
            "INSERT INTO coupons VALUES ('cp-1', 's', 'u-1', 1, NULL), ('cp-2', 's', 'u-2', 1, NULL), \
             ('cp-3', 'other', 'u-1', 1, NULL)",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let mut v = read_db(&url, "s").await.unwrap();
        v.rows.sort();
        assert_eq!(v.kind, "sqlite");
        assert_eq!(v.rows, [("u-1".to_owned(), "cp-1".to_owned()), ("u-2".into(), "cp-2".into())]);
        assert_eq!((v.campaign_issued, v.campaign_stock), (Some(2), Some(300)));
        let u = read_db(&url, "u").await.unwrap();
        assert_eq!((u.rows.len(), u.campaign_issued, u.campaign_stock), (0, Some(0), None));
        let none = read_db(&url, "nope").await.unwrap();
        assert_eq!(none.campaign_issued, None);
        assert!(read_db("mysql://x", "s").await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
