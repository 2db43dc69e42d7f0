//! Redis seat store for many nodes: a hash of taken seats, an expiry zset,
//! a set per buyer, a version counter and a stream as the change log, all
//! hash-tagged by event. Every multi-seat check-and-set is one Lua script
//! that also bumps the version and appends to the log.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};

use super::{Cause, Held, HoldRefused, LOG_START, LogEntry, Released, SeatDiff, SeatStore, Snapshot};
use crate::domain::UserId;
use crate::domain::seats::SeatStatus;
use crate::store::StoreResult;
use crate::store::redis_reply::{corrupt, int, text};

/// Approximate length the change log is trimmed to.
const LOG_MAXLEN: u64 = 100_000;

struct Keys {
    state: String,
    expiry: String,
    version: String,
    log: String,
    relay: String,
    relayed: String,
    user_prefix: String,
}

impl Keys {
    fn user(&self, user: &str) -> String {
        format!("{}{user}", self.user_prefix)
    }
}

pub struct RedisSeatStore {
    conn: ConnectionManager,
    prefix: String,
    hold: Script,
    release: Script,
    expire: Script,
    snapshot: Script,
}

/// One stream entry `[id, [field, value, …]]` as a log entry.
fn log_entry(event: &str, entry: Value) -> StoreResult<LogEntry> {
    let Value::Array(mut parts) = entry else { return Err(corrupt("log entry shape")) };
    if parts.len() != 2 {
        return Err(corrupt("log entry shape"));
    }
    let fields = parts.pop().ok_or_else(|| corrupt("log entry shape"))?;
    let cursor = text(&parts[0])?;
    let Value::Array(fields) = fields else { return Err(corrupt("log entry fields")) };
    let (mut version, mut status, mut user, mut cause, mut seats) = (None, None, None, None, None);
    for pair in fields.chunks(2) {
        let [k, v] = pair else { break };
        let v = text(v)?;
        match text(k)?.as_str() {
            "v" => version = v.parse::<u64>().ok(),
            "s" => status = v.chars().next().and_then(SeatStatus::from_code),
            "u" => user = Some(v),
            "k" => cause = Cause::parse(&v),
            "c" => seats = Some(v.split(',').map(str::to_owned).collect()),
            _ => {}
        }
    }
    let missing = || corrupt(format!("log entry {cursor} lacks a field"));
    Ok(LogEntry {
        cursor: cursor.clone(),
        diff: SeatDiff {
            event: event.to_owned(),
            version: version.ok_or_else(missing)?,
            status: status.ok_or_else(missing)?,
            seats: seats.ok_or_else(missing)?,
            user: user.ok_or_else(missing)?,
            cause: cause.ok_or_else(missing)?,
        },
    })
}

impl RedisSeatStore {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            hold: Script::new(include_str!("lua/hold.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            expire: Script::new(include_str!("lua/expire.lua")),
            snapshot: Script::new(include_str!("lua/snapshot.lua")),
        }
    }

    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        Ok(Self::new(crate::store::redis_connection(url).await?, prefix))
    }

    fn keys(&self, event: &str) -> Keys {
        let base = format!("{}:s:{{{}}}", self.prefix, event);
        Keys {
            state: format!("{base}:state"),
            expiry: format!("{base}:expiry"),
            version: format!("{base}:version"),
            log: format!("{base}:log"),
            relay: format!("{base}:relay"),
            relayed: format!("{base}:relayed"),
            user_prefix: format!("{base}:u:"),
        }
    }

    async fn release_with(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        cause: Cause,
        all: bool,
    ) -> StoreResult<Released> {
        let k = self.keys(event);
        let mut call = self.release.key(&k.state);
        call.key(&k.expiry).key(k.user(user)).key(&k.version).key(&k.log);
        call.arg(user).arg(LOG_MAXLEN).arg(cause.as_str()).arg(if all { "all" } else { "some" });
        for s in seats {
            call.arg(s);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let (version, seats) = reply.split_first().ok_or_else(|| corrupt("empty release reply"))?;
        Ok(Released { seats: seats.iter().map(text).collect::<StoreResult<_>>()?, version: int(version)? as u64 })
    }
}

#[async_trait]
impl SeatStore for RedisSeatStore {
    async fn hold(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        expires_ms: i64,
        max_per_buyer: u32,
    ) -> StoreResult<Result<Held, HoldRefused>> {
        let k = self.keys(event);
        let mut call = self.hold.key(&k.state);
        call.key(&k.expiry).key(k.user(user)).key(&k.version).key(&k.log);
        call.arg(user).arg(expires_ms).arg(max_per_buyer).arg(LOG_MAXLEN);
        for s in seats {
            call.arg(s);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let (code, rest) = reply.split_first().ok_or_else(|| corrupt("empty hold reply"))?;
        match int(code)? {
            1 => {
                let version = int(rest.first().ok_or_else(|| corrupt("hold reply"))?)? as u64;
                Ok(Ok(Held { expires_ms, version }))
            }
            0 => Ok(Err(HoldRefused::Unavailable(rest.iter().map(text).collect::<StoreResult<_>>()?))),
            2 => Ok(Err(HoldRefused::Limit { held: int(rest.first().ok_or_else(|| corrupt("hold reply"))?)? as u32 })),
            other => Err(corrupt(format!("hold reply code {other}"))),
        }
    }

    async fn release(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<Released> {
        self.release_with(event, user, seats, Cause::Released, false).await
    }

    async fn release_all(&self, event: &str, user: &str, cause: Cause) -> StoreResult<Released> {
        self.release_with(event, user, &[], cause, true).await
    }

    async fn expire(&self, event: &str, now_ms: i64, max: u64) -> StoreResult<Vec<(UserId, Vec<String>)>> {
        let k = self.keys(event);
        let reply: Vec<Value> = self
            .expire
            .key(&k.state)
            .key(&k.expiry)
            .key(&k.version)
            .key(&k.log)
            .arg(now_ms)
            .arg(max)
            .arg(LOG_MAXLEN)
            .arg(&k.user_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::new();
        let mut it = reply.iter();
        while let Some(user) = it.next() {
            let n = int(it.next().ok_or_else(|| corrupt("expire reply"))?)? as usize;
            let seats = it.by_ref().take(n).map(text).collect::<StoreResult<Vec<_>>>()?;
            out.push((UserId::from(text(user)?), seats));
        }
        Ok(out)
    }

    async fn holds_of(&self, event: &str, user: &str) -> StoreResult<(Vec<String>, Option<i64>)> {
        let k = self.keys(event);
        let mut seats: Vec<String> = self.conn.clone().smembers(k.user(user)).await?;
        seats.sort();
        if seats.is_empty() {
            return Ok((seats, None));
        }
        let values: Vec<Option<String>> =
            redis::cmd("HMGET").arg(&k.state).arg(&seats).query_async(&mut self.conn.clone()).await?;
        let earliest = values.iter().flatten().filter_map(|v| v.rsplit('|').next()?.parse::<i64>().ok()).min();
        Ok((seats, earliest))
    }

    async fn snapshot(&self, event: &str) -> StoreResult<Snapshot> {
        let k = self.keys(event);
        let reply: Vec<Value> =
            self.snapshot.key(&k.state).key(&k.version).invoke_async(&mut self.conn.clone()).await?;
        let (version, rest) = reply.split_first().ok_or_else(|| corrupt("empty snapshot"))?;
        let taken = rest
            .chunks(2)
            .map(|pair| match pair {
                [seat, code] => {
                    let code = text(code)?;
                    let status =
                        code.chars().next().and_then(SeatStatus::from_code).ok_or_else(|| corrupt("seat code"))?;
                    Ok((text(seat)?, status))
                }
                _ => Err(corrupt("snapshot pairs")),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Snapshot { version: int(version)? as u64, taken })
    }

    async fn version(&self, event: &str) -> StoreResult<u64> {
        let v: Option<u64> = self.conn.clone().get(self.keys(event).version).await?;
        Ok(v.unwrap_or(0))
    }

    async fn log_after(&self, event: &str, cursor: &str, max: u64) -> StoreResult<Vec<LogEntry>> {
        let k = self.keys(event);
        let reply: Vec<Value> = redis::cmd("XRANGE")
            .arg(&k.log)
            .arg(format!("({cursor}"))
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.conn.clone())
            .await?;
        reply.into_iter().map(|e| log_entry(event, e)).collect()
    }

    async fn relay_cursor(&self, event: &str) -> StoreResult<String> {
        let cursor: Option<String> = self.conn.clone().get(self.keys(event).relay).await?;
        Ok(cursor.unwrap_or_else(|| LOG_START.into()))
    }

    async fn save_relay_cursor(&self, event: &str, cursor: &str, version: u64) -> StoreResult<()> {
        let k = self.keys(event);
        let () = self.conn.clone().mset(&[(k.relay, cursor.to_owned()), (k.relayed, version.to_string())]).await?;
        Ok(())
    }

    async fn relayed_version(&self, event: &str) -> StoreResult<u64> {
        let v: Option<u64> = self.conn.clone().get(self.keys(event).relayed).await?;
        Ok(v.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract() {
        super::super::contract::run_all(|| async {
            let prefix = format!("qt-test-{:016x}", rand::random::<u64>());
            RedisSeatStore::connect("redis://127.0.0.1:6379", &prefix).await.expect("redis at 127.0.0.1:6379")
        })
        .await;
    }
}
