//! Redis waiting room for many nodes: sorted sets per event, every
//! check-and-set in one Lua script, keys hash-tagged by event so a cluster
//! keeps each event's keys on one shard. Statuses of all of a node's local
//! waiters come back in one script call per tick, never one round trip per
//! buyer.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};

use super::{JoinOutcome, Lease, PlaceStatus, StatusBatch, TickOutcome, WaitingRoom};
use crate::domain::UserId;
use crate::domain::queue::{QueueSettings, RateStats};
use crate::store::StoreResult;
use crate::store::redis_reply::{corrupt, int};

struct Scripts {
    join: Script,
    status: Script,
    tick: Script,
    lease: Script,
    release: Script,
    leave: Script,
}

/// Key names of one event's queue.
struct Keys {
    wait: String,
    seen: String,
    active: String,
    cfg: String,
    bucket: String,
    seq: String,
    lease: String,
    fence: String,
    stats: String,
}

pub struct RedisWaitingRoom {
    conn: ConnectionManager,
    prefix: String,
    scripts: Scripts,
}

fn strings(v: Value) -> StoreResult<Vec<UserId>> {
    let list: Vec<String> = redis::from_redis_value(v).map_err(corrupt)?;
    Ok(list.into_iter().map(UserId::from).collect())
}

fn parse_settings(map: &HashMap<String, String>) -> StoreResult<QueueSettings> {
    let get = |k: &str| -> StoreResult<i64> {
        map.get(k).ok_or_else(|| corrupt(format!("queue settings lack {k}")))?.parse::<i64>().map_err(corrupt)
    };
    let small = |k: &str| -> StoreResult<u32> { u32::try_from(get(k)?).map_err(corrupt) };
    Ok(QueueSettings {
        rate_per_min: small("rate_per_min")?,
        max_active: small("max_active")?,
        window_s: small("window_s")?,
        grace_s: small("grace_s")?,
        paused: get("paused")? != 0,
        hold_s: small("hold_s")?,
        max_seats_per_buyer: small("max_seats_per_buyer")?,
        on_sale_at_ms: get("on_sale_at_ms")?,
    })
}

impl RedisWaitingRoom {
    /// Connects (retrying in the background after a drop) and loads nothing
    /// eagerly: scripts are sent by hash and loaded on first use.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        Ok(Self::with_connection(crate::store::redis_connection(url).await?, prefix))
    }

    pub fn with_connection(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            scripts: Scripts {
                join: Script::new(include_str!("lua/join.lua")),
                status: Script::new(include_str!("lua/status.lua")),
                tick: Script::new(include_str!("lua/tick.lua")),
                lease: Script::new(include_str!("lua/lease.lua")),
                release: Script::new(include_str!("lua/release.lua")),
                leave: Script::new(include_str!("lua/leave.lua")),
            },
        }
    }

    fn keys(&self, event: &str) -> Keys {
        let base = format!("{}:q:{{{}}}", self.prefix, event);
        Keys {
            wait: format!("{base}:wait"),
            seen: format!("{base}:seen"),
            active: format!("{base}:active"),
            cfg: format!("{base}:cfg"),
            bucket: format!("{base}:bucket"),
            seq: format!("{base}:seq"),
            lease: format!("{base}:lease"),
            fence: format!("{base}:fence"),
            stats: format!("{base}:stats"),
        }
    }
}

#[async_trait]
impl WaitingRoom for RedisWaitingRoom {
    async fn configure(&self, event: &str, s: &QueueSettings) -> StoreResult<()> {
        let k = self.keys(event);
        let fields: [(&str, i64); 8] = [
            ("rate_per_min", s.rate_per_min.into()),
            ("max_active", s.max_active.into()),
            ("window_s", s.window_s.into()),
            ("grace_s", s.grace_s.into()),
            ("paused", i64::from(s.paused)),
            ("hold_s", s.hold_s.into()),
            ("max_seats_per_buyer", s.max_seats_per_buyer.into()),
            ("on_sale_at_ms", s.on_sale_at_ms),
        ];
        let () = self.conn.clone().hset_multiple(&k.cfg, &fields).await?;
        Ok(())
    }

    async fn settings(&self, event: &str) -> StoreResult<Option<QueueSettings>> {
        let map: HashMap<String, String> = self.conn.clone().hgetall(self.keys(event).cfg).await?;
        if map.is_empty() {
            return Ok(None);
        }
        parse_settings(&map).map(Some)
    }

    async fn join(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<JoinOutcome>> {
        let k = self.keys(event);
        let reply: Vec<i64> = self
            .scripts
            .join
            .key(&k.wait)
            .key(&k.seen)
            .key(&k.active)
            .key(&k.cfg)
            .key(&k.bucket)
            .key(&k.seq)
            .arg(user)
            .arg(now_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.as_slice() {
            [0] => Ok(None),
            [1, position, waiting] => {
                Ok(Some(JoinOutcome::Waiting { position: *position as u64, waiting: *waiting as u64 }))
            }
            [2, until_ms] => Ok(Some(JoinOutcome::Admitted { until_ms: *until_ms })),
            other => Err(corrupt(format!("join reply {other:?}"))),
        }
    }

    async fn leave(&self, event: &str, user: &str) -> StoreResult<bool> {
        let k = self.keys(event);
        let removed: i64 = self
            .scripts
            .leave
            .key(&k.wait)
            .key(&k.seen)
            .key(&k.active)
            .arg(user)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(removed > 0)
    }

    async fn status(&self, event: &str, users: &[UserId], now_ms: i64) -> StoreResult<StatusBatch> {
        let k = self.keys(event);
        let mut call = self.scripts.status.key(&k.wait);
        call.key(&k.seen).key(&k.active).key(&k.stats).arg(now_ms);
        for u in users {
            call.arg(&**u);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let mut it = reply.into_iter();
        let waiting = int(&it.next().ok_or_else(|| corrupt("empty status reply"))?)? as u64;
        let stats: Vec<Option<f64>> =
            redis::from_redis_value(it.next().ok_or_else(|| corrupt("status reply lacks stats"))?).map_err(corrupt)?;
        let stats = match stats.as_slice() {
            [Some(per_min), Some(low_per_min), Some(high_per_min)] => {
                Some(RateStats { per_min: *per_min, low_per_min: *low_per_min, high_per_min: *high_per_min })
            }
            _ => None,
        };
        let statuses = it
            .map(|v| {
                Ok(match int(&v)? {
                    0 => PlaceStatus::Gone,
                    p if p > 0 => PlaceStatus::Waiting { position: p as u64 },
                    neg => PlaceStatus::Admitted { until_ms: -neg },
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        if statuses.len() != users.len() {
            return Err(corrupt("status reply length"));
        }
        Ok(StatusBatch { waiting, stats, statuses })
    }

    async fn admission(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<i64>> {
        let until: Option<f64> = self.conn.clone().zscore(self.keys(event).active, user).await?;
        Ok(until.map(|u| u as i64).filter(|&u| u > now_ms))
    }

    async fn acquire_lease(&self, event: &str, node: &str, now_ms: i64, ttl_ms: i64) -> StoreResult<Option<Lease>> {
        let k = self.keys(event);
        let token: Option<u64> = self
            .scripts
            .lease
            .key(&k.lease)
            .key(&k.fence)
            .arg(node)
            .arg(now_ms)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(token.map(|token| Lease { token }))
    }

    async fn release_lease(&self, event: &str, node: &str, lease: Lease) -> StoreResult<()> {
        let k = self.keys(event);
        let _: i64 =
            self.scripts.release.key(&k.lease).arg(node).arg(lease.token).invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn tick(&self, event: &str, lease: Lease, now_ms: i64, max_batch: u64) -> StoreResult<TickOutcome> {
        let k = self.keys(event);
        let reply: Vec<Value> = self
            .scripts
            .tick
            .key(&k.wait)
            .key(&k.seen)
            .key(&k.active)
            .key(&k.cfg)
            .key(&k.bucket)
            .key(&k.lease)
            .arg(lease.token)
            .arg(now_ms)
            .arg(max_batch)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut it = reply.into_iter();
        let mut next = || it.next().ok_or_else(|| corrupt("short tick reply"));
        if int(&next()?)? == 0 {
            return Ok(TickOutcome { fenced: true, ..TickOutcome::default() });
        }
        let expired = strings(next()?)?;
        let dropped = strings(next()?)?;
        let admitted = strings(next()?)?;
        let until_ms = int(&next()?)?;
        let waiting = int(&next()?)? as u64;
        let active = int(&next()?)? as u64;
        Ok(TickOutcome {
            fenced: false,
            admitted: admitted.into_iter().map(|u| (u, until_ms)).collect(),
            dropped,
            expired,
            waiting,
            active,
        })
    }

    async fn publish_stats(&self, event: &str, stats: &RateStats) -> StoreResult<()> {
        let fields =
            [("per_min", stats.per_min), ("low_per_min", stats.low_per_min), ("high_per_min", stats.high_per_min)];
        let () = self.conn.clone().hset_multiple(self.keys(event).stats, &fields).await?;
        Ok(())
    }
}
