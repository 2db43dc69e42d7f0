//! Redis seat store for many nodes: a hash of taken seats' status codes, a
//! hash of their holders, an expiry zset, a set per buyer, a version counter
//! and a stream as the change log, all hash-tagged by event. Every
//! multi-seat check-and-set is one Lua script that also bumps the version
//! and appends to the log.
//!
//! A taken seat's state is a code and flags, nothing else: `h` a hold, `hc`
//! a hold checked out for an order (already extended), `hx` a hold that was
//! checked out and no longer is (extended once, never again), `s` sold. The
//! first letter is the seat's status. The holder hash names the buyer of a
//! hold or a sale; only holds sit in the expiry zset and the buyer's set.
//!
//! No key or value joins a user or seat id with a separator it may contain
//! (design invariant 8): holders are compared whole, a buyer's set is keyed
//! by the hex of the user id's bytes, and the log lists seats as JSON.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};

use super::{Cause, Held, HoldRefused, LOG_START, LogEntry, Released, SeatDiff, SeatStore, Snapshot, Sold};
use crate::domain::UserId;
use crate::domain::seats::SeatStatus;
use crate::store::StoreResult;
use crate::store::redis_reply::{corrupt, int, text};

/// Approximate length the change log is trimmed to.
const LOG_MAXLEN: u64 = 100_000;

struct Keys {
    state: String,
    holder: String,
    expiry: String,
    version: String,
    log: String,
    relay: String,
    relayed: String,
    /// Prefix of the per-buyer held-seat sets; the user id follows as hex.
    held_prefix: String,
    /// Prefix of the per-buyer sets of the layout before (raw user id),
    /// which only expiry still cleans up.
    legacy_user_prefix: String,
}

/// Lowercase hex of the bytes: injective, and no separator can appear in
/// it. `expire.lua` computes the same.
fn hex(id: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(id.len() * 2);
    for b in id.bytes() {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

impl Keys {
    fn held(&self, user: &str) -> String {
        format!("{}{}", self.held_prefix, hex(user))
    }
}

pub struct RedisSeatStore {
    conn: ConnectionManager,
    prefix: String,
    hold: Script,
    release: Script,
    expire: Script,
    holds: Script,
    snapshot: Script,
    checkout: Script,
    uncheckout: Script,
    retake: Script,
    sell: Script,
    unsell: Script,
}

/// Seats as strings, the rest of a reply.
fn texts(values: &[Value]) -> StoreResult<Vec<String>> {
    values.iter().map(text).collect()
}

/// `{user, n, seat × n, user, …}` as seats by user.
fn by_user(reply: &[Value], what: &str) -> StoreResult<Vec<(UserId, Vec<String>)>> {
    let mut out = Vec::new();
    let mut it = reply.iter();
    while let Some(user) = it.next() {
        let n = usize::try_from(int(it.next().ok_or_else(|| corrupt(what))?)?).map_err(corrupt)?;
        let seats = it.by_ref().take(n).map(text).collect::<StoreResult<Vec<_>>>()?;
        if seats.len() != n {
            return Err(corrupt(what));
        }
        out.push((UserId::from(text(user)?), seats));
    }
    Ok(out)
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
            "j" => seats = Some(serde_json::from_str::<Vec<String>>(&v).map_err(corrupt)?),
            // Entries of the layout before listed seats joined by ','.
            "c" if seats.is_none() => seats = Some(v.split(',').map(str::to_owned).collect()),
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
            holds: Script::new(include_str!("lua/holds.lua")),
            snapshot: Script::new(include_str!("lua/snapshot.lua")),
            checkout: Script::new(include_str!("lua/checkout.lua")),
            uncheckout: Script::new(include_str!("lua/uncheckout.lua")),
            retake: Script::new(include_str!("lua/retake.lua")),
            sell: Script::new(include_str!("lua/sell.lua")),
            unsell: Script::new(include_str!("lua/unsell.lua")),
        }
    }

    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        Ok(Self::new(crate::store::redis_connection(url).await?, prefix))
    }

    fn keys(&self, event: &str) -> Keys {
        Self::keys_for(&self.prefix, event)
    }

    /// The event id sits raw inside the hash tag: every key of the event
    /// ends in a fixed name (or the hex of a user id), none containing '}',
    /// so no two events' keys can meet however their ids are spelled.
    fn keys_for(prefix: &str, event: &str) -> Keys {
        let base = format!("{prefix}:s:{{{event}}}");
        Keys {
            state: format!("{base}:state"),
            holder: format!("{base}:holder"),
            expiry: format!("{base}:expiry"),
            version: format!("{base}:version"),
            log: format!("{base}:log"),
            relay: format!("{base}:relay"),
            relayed: format!("{base}:relayed"),
            held_prefix: format!("{base}:held:"),
            legacy_user_prefix: format!("{base}:u:"),
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
        call.key(&k.holder).key(&k.expiry).key(k.held(user)).key(&k.version).key(&k.log);
        call.arg(user).arg(LOG_MAXLEN).arg(cause.as_str()).arg(if all { "all" } else { "some" });
        for s in seats {
            call.arg(s);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let (version, seats) = reply.split_first().ok_or_else(|| corrupt("empty release reply"))?;
        Ok(Released { seats: texts(seats)?, version: int(version)? as u64 })
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
        call.key(&k.holder).key(&k.expiry).key(k.held(user)).key(&k.version).key(&k.log);
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
            0 => Ok(Err(HoldRefused::Unavailable(texts(rest)?))),
            2 => Ok(Err(HoldRefused::Limit { held: int(rest.first().ok_or_else(|| corrupt("hold reply"))?)? as u32 })),
            other => Err(corrupt(format!("hold reply code {other}"))),
        }
    }

    async fn checkout(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        until_ms: i64,
    ) -> StoreResult<Result<i64, Vec<String>>> {
        let k = self.keys(event);
        let mut call = self.checkout.key(&k.state);
        call.key(&k.holder).key(&k.expiry).arg(user).arg(until_ms);
        for s in seats {
            call.arg(s);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let (code, rest) = reply.split_first().ok_or_else(|| corrupt("empty checkout reply"))?;
        match int(code)? {
            1 => Ok(Ok(int(rest.first().ok_or_else(|| corrupt("checkout reply"))?)?)),
            0 => Ok(Err(texts(rest)?)),
            other => Err(corrupt(format!("checkout reply code {other}"))),
        }
    }

    async fn uncheckout(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<()> {
        let k = self.keys(event);
        let mut call = self.uncheckout.key(&k.state);
        call.key(&k.holder).arg(user);
        for s in seats {
            call.arg(s);
        }
        let _changed: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn retake(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        until_ms: i64,
    ) -> StoreResult<Result<Held, Vec<String>>> {
        let k = self.keys(event);
        let mut call = self.retake.key(&k.state);
        call.key(&k.holder).key(&k.expiry).key(k.held(user)).key(&k.version).key(&k.log);
        call.arg(user).arg(until_ms).arg(LOG_MAXLEN);
        for s in seats {
            call.arg(s);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let (code, rest) = reply.split_first().ok_or_else(|| corrupt("empty retake reply"))?;
        match (int(code)?, rest) {
            (1, [version, expires_ms]) => Ok(Ok(Held { expires_ms: int(expires_ms)?, version: int(version)? as u64 })),
            (0, taken) => Ok(Err(texts(taken)?)),
            (other, _) => Err(corrupt(format!("retake reply code {other}"))),
        }
    }

    async fn sell(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<Sold> {
        let k = self.keys(event);
        let mut call = self.sell.key(&k.state);
        call.key(&k.holder).key(&k.expiry).key(&k.version).key(&k.log);
        call.arg(user).arg(LOG_MAXLEN).arg(&k.held_prefix).arg(&k.legacy_user_prefix);
        for s in seats {
            call.arg(s);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let [version, n, rest @ ..] = reply.as_slice() else { return Err(corrupt("sell reply")) };
        let n = usize::try_from(int(n)?).map_err(corrupt)?;
        if rest.len() < n {
            return Err(corrupt("sell reply"));
        }
        let (sold, overruled) = rest.split_at(n);
        Ok(Sold { seats: texts(sold)?, version: int(version)? as u64, overruled: by_user(overruled, "sell reply")? })
    }

    async fn unsell(&self, event: &str, seats: &[String]) -> StoreResult<Released> {
        let k = self.keys(event);
        let mut call = self.unsell.key(&k.state);
        call.key(&k.holder).key(&k.version).key(&k.log).arg(LOG_MAXLEN);
        for s in seats {
            call.arg(s);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let (version, seats) = reply.split_first().ok_or_else(|| corrupt("empty unsell reply"))?;
        Ok(Released { seats: texts(seats)?, version: int(version)? as u64 })
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
            .key(&k.holder)
            .key(&k.expiry)
            .key(&k.version)
            .key(&k.log)
            .arg(now_ms)
            .arg(max)
            .arg(LOG_MAXLEN)
            .arg(&k.held_prefix)
            .arg(&k.legacy_user_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        by_user(&reply, "expire reply")
    }

    async fn holds_of(&self, event: &str, user: &str) -> StoreResult<(Vec<String>, Option<i64>)> {
        let k = self.keys(event);
        let reply: Vec<Value> = self
            .holds
            .key(&k.holder)
            .key(&k.expiry)
            .key(k.held(user))
            .key(&k.state)
            .arg(user)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut seats = Vec::with_capacity(reply.len() / 2);
        let mut earliest: Option<i64> = None;
        for pair in reply.chunks(2) {
            let [seat, ms] = pair else { return Err(corrupt("holds reply pairs")) };
            let ms = text(ms)?.parse::<f64>().map_err(corrupt)? as i64;
            earliest = Some(earliest.map_or(ms, |e| e.min(ms)));
            seats.push(text(seat)?);
        }
        seats.sort();
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
    use crate::store::waiting::contract::REDIS_URL;

    async fn fresh() -> RedisSeatStore {
        crate::store::waiting::contract::require_redis().await;
        let prefix = format!("qt-test-{:016x}", rand::random::<u64>());
        RedisSeatStore::connect(REDIS_URL, &prefix).await.expect("a Redis connection")
    }

    #[test]
    fn buyer_keys_are_the_hex_of_the_whole_user_id() {
        assert_eq!(hex(""), "");
        assert_eq!(hex("auth0|1"), "61757468307c31");
        assert_eq!(hex("ü}"), "c3bc7d");
        let k = RedisSeatStore::keys_for("p", "e");
        assert_eq!(k.held("auth0"), "p:s:{e}:held:6175746830");
        assert_ne!(k.held("auth0"), k.held("auth0|12345"));
    }

    /// A seat's state value is a code and flags only: whatever the ids, no
    /// id is stored beside it, and the holder hash has each id whole.
    #[tokio::test]
    async fn seat_states_are_codes_and_holders_whole_ids() {
        let s = fresh().await;
        let k = s.keys("ev");
        let mut conn = s.conn.clone();
        let (a, b) = ("h|auth0|1", "s,x:{y}");
        s.hold("ev", a, &["1".into(), "2".into(), "3".into()], 5_000, 8).await.unwrap().unwrap();
        s.hold("ev", b, &["4".into()], 5_000, 8).await.unwrap().unwrap();
        s.checkout("ev", a, &["1".into(), "2".into()], 9_000).await.unwrap().unwrap();
        s.uncheckout("ev", a, &["2".into()]).await.unwrap();
        s.sell("ev", b, &["3".into(), "5".into()]).await.unwrap();
        let states: Vec<(String, String)> = conn.hgetall(&k.state).await.unwrap();
        let mut states: Vec<(&str, &str)> = states.iter().map(|(x, y)| (x.as_str(), y.as_str())).collect();
        states.sort();
        assert_eq!(states, vec![("1", "hc"), ("2", "hx"), ("3", "s"), ("4", "h"), ("5", "s")]);
        let holders: Vec<(String, String)> = conn.hgetall(&k.holder).await.unwrap();
        let mut holders: Vec<(&str, &str)> = holders.iter().map(|(x, y)| (x.as_str(), y.as_str())).collect();
        holders.sort();
        assert_eq!(holders, vec![("1", a), ("2", a), ("3", b), ("4", b), ("5", b)]);
        let mut a_set: Vec<String> = conn.smembers(k.held(a)).await.unwrap();
        a_set.sort();
        assert_eq!(a_set, vec!["1", "2"], "the overruled seat left a's set");
        let b_set: Vec<String> = conn.smembers(k.held(b)).await.unwrap();
        assert_eq!(b_set, vec!["4"], "sold seats are in no buyer's set");
        let expiry: Vec<String> = conn.zrange(&k.expiry, 0, -1).await.unwrap();
        assert_eq!(expiry, vec!["4", "1", "2"], "sold seats have no expiry; 1 and 2 were extended");
    }

    /// A hold of the layout before is overruled by a sale like any other:
    /// its buyer is named whole and its old buyer set cleaned up.
    #[tokio::test]
    async fn a_sale_overrules_holds_of_the_layout_before() {
        let s = fresh().await;
        let k = s.keys("ev");
        let mut conn = s.conn.clone();
        let user = "auth0|12345";
        let legacy_set = format!("{}{user}", k.legacy_user_prefix);
        let () = redis::pipe()
            .hset(&k.state, "A-1", format!("h|{user}|5000"))
            .zadd(&k.expiry, "A-1", 5_000)
            .sadd(&legacy_set, "A-1")
            .set(&k.version, 1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(s.checkout("ev", user, &["A-1".to_string()], 9_000).await.unwrap(), Err(vec!["A-1".to_string()]));
        assert_eq!(s.retake("ev", "b", &["A-1".to_string()], 9_000).await.unwrap(), Err(vec!["A-1".to_string()]));
        let sold = s.sell("ev", "b", &["A-1".to_string()]).await.unwrap();
        assert_eq!((sold.version, sold.overruled), (2, vec![(UserId::from(user), vec!["A-1".to_string()])]));
        let left: bool = conn.exists(&legacy_set).await.unwrap();
        assert!(!left, "the old buyer set is cleaned up");
        assert!(s.expire("ev", 5_000, 10).await.unwrap().is_empty());
        assert_eq!(s.snapshot("ev").await.unwrap().taken, vec![("A-1".to_string(), SeatStatus::Sold)]);
    }

    /// Holds written by the layout before (`state` seat → "h|user|ms", the
    /// buyer's set keyed by the raw id, seats joined by ',' in the log)
    /// still show as held, expire on time and read from the log.
    #[tokio::test]
    async fn holds_of_the_layout_before_still_expire() {
        let s = fresh().await;
        let k = s.keys("ev");
        let mut conn = s.conn.clone();
        let user = "auth0|12345";
        let legacy_set = format!("{}{user}", k.legacy_user_prefix);
        let () = redis::pipe()
            .hset(&k.state, "A-1", format!("h|{user}|5000"))
            .zadd(&k.expiry, "A-1", 5_000)
            .sadd(&legacy_set, "A-1")
            .set(&k.version, 1)
            .cmd("XADD")
            .arg(&k.log)
            .arg("*")
            .arg(&["v", "1", "s", "h", "u", user, "k", "held", "c", "A-1"])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(s.snapshot("ev").await.unwrap().taken, vec![("A-1".to_string(), SeatStatus::Held)]);
        assert!(s.hold("ev", "b", &["A-1".to_string()], 9_000, 4).await.unwrap().is_err(), "still taken");
        assert!(s.release("ev", "auth0", &["A-1".to_string()]).await.unwrap().seats.is_empty());
        let expired = s.expire("ev", 5_000, 10).await.unwrap();
        assert_eq!(expired, vec![(UserId::from(user), vec!["A-1".to_string()])]);
        let left: bool = conn.exists(&legacy_set).await.unwrap();
        assert!(!left, "the old buyer set is cleaned up");
        assert!(s.snapshot("ev").await.unwrap().taken.is_empty());
        let log = s.log_after("ev", LOG_START, 10).await.unwrap();
        let seats: Vec<Vec<String>> = log.iter().map(|e| e.diff.seats.clone()).collect();
        assert_eq!(seats, vec![vec!["A-1".to_string()], vec!["A-1".to_string()]]);
        assert_eq!(log[1].diff.version, 2);
    }
}
