//! A write-through journal of in-process store state in SQLite, so the
//! embedded stores survive a restart (a SIGKILL included). It owns the
//! state database and its one writer task; it never decides what a store's
//! state is, and never does I/O under a store's lock.
//!
//! A store applies a change in memory and, in the same critical section,
//! appends the rows that change: upserts and deletes of its current state
//! (never an ever-growing log of operations). One writer task takes
//! everything appended so far, writes it in one transaction (group commit)
//! and wakes every caller whose rows it carried; a call answers only then,
//! so a crash loses only changes whose callers got no answer. The writer is
//! a thread of its own with a synchronous connection: a commit is one
//! hand-off, not one per statement as through an async driver's worker.
//!
//! Order: a commit always covers everything appended before the last row it
//! carries, so once a change is committed every change appended before it,
//! by any store sharing the journal, is too. Rows for the same key are
//! coalesced within a commit: the last one appended wins.
//!
//! A failed commit fails the calls whose rows it carried (with
//! [`StoreError::Busy`], which clients are told to retry), but their
//! changes stay applied in memory and their rows stay queued: the next
//! commit (at once when more rows arrive, else shortly) writes them again.
//! Rows are whole current state, so writing them late is right and the
//! database converges to memory. Until then a crash loses those changes;
//! a caller told "failed" may find its change applied, as after a Redis
//! reply that timed out.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::watch;
use tracing::{error, warn};

use super::{StoreError, StoreResult};

/// How long a commit waits for the database's write lock (held only by a
/// checkpoint or a load) before its calls are failed.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after a failed commit before its rows are written again.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How often the WAL is copied into the database, beside the writer: a
/// checkpoint inside a commit (SQLite's default) would hold every caller
/// of that commit through its fsyncs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Most rows one statement writes (64 rows of at most 15 columns stay
/// below SQLite's oldest limit of 999 parameters). Smaller remainders go
/// in power-of-two statements, so each table uses a handful of distinct
/// statements that the connection keeps prepared.
const CHUNK: usize = 64;
const MAX_COLUMNS: usize = 999 / CHUNK;

/// A table of current state: its name, the columns of its primary key, and
/// the others. Names are the journal's own constants, never input.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub key: &'static [&'static str],
    pub values: &'static [&'static str],
}

/// A column value.
#[derive(Debug, Clone)]
pub enum Value {
    Int(i64),
    Real(f64),
    Text(String),
    Null,
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Int(i) => i.hash(state),
            Value::Real(f) => f.to_bits().hash(state),
            Value::Text(s) => s.hash(state),
            Value::Null => {}
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Null => ValueRef::Null,
        }))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One row's new state: its values, or gone.
#[derive(Debug, Clone)]
pub struct Row {
    table: &'static Table,
    key: Vec<Value>,
    values: Option<Vec<Value>>,
}

impl Row {
    pub fn upsert(table: &'static Table, key: Vec<Value>, values: Vec<Value>) -> Self {
        debug_assert_eq!(key.len(), table.key.len(), "key of {}", table.name);
        debug_assert_eq!(values.len(), table.values.len(), "values of {}", table.name);
        Self { table, key, values: Some(values) }
    }

    pub fn delete(table: &'static Table, key: Vec<Value>) -> Self {
        debug_assert_eq!(key.len(), table.key.len(), "key of {}", table.name);
        Self { table, key, values: None }
    }
}

/// A place in the journal: rows appended up to here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The journal. Cheap to clone; the writer stops once every clone is
/// dropped and what was appended is committed.
#[derive(Clone)]
pub struct Journal {
    handle: Arc<Handle>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let progress = *self.shared().progress.borrow();
        f.debug_struct("Journal").field("durable", &progress.durable).field("failed", &progress.failed).finish()
    }
}

/// Tells the writer to finish when the last clone goes.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

struct Shared {
    /// For loads at start, DDL and checkpoints; the writer has its own.
    pool: SqlitePool,
    /// Rows appended and not yet taken by the writer.
    queue: Mutex<Queue>,
    /// Rings when rows are appended or the journal is closed.
    wake: Condvar,
    /// How far commits got, for the callers waiting on them.
    progress: watch::Sender<Progress>,
    /// Whatever must outlive the database (a test's temporary directory).
    _keep: Option<Box<dyn Send + Sync>>,
}

#[derive(Default)]
struct Queue {
    /// The ticket of the last append.
    last: u64,
    rows: Vec<Row>,
    closed: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Every append up to this ticket is committed.
    durable: u64,
    /// The last ticket of a commit that failed; appends after `durable` up
    /// to here are failed calls (their rows are retried).
    failed: u64,
}

impl Journal {
    /// Opens (creating) the state database at `path` and starts its writer.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::open_keeping(path, None).await
    }

    /// A journal in a fresh temporary directory, removed when it closes.
    #[cfg(test)]
    pub async fn temporary() -> Self {
        let dir = tempfile::Builder::new().prefix("qt-state-").tempdir().expect("a temporary directory");
        let path = dir.path().join("state.db");
        Self::open_keeping(&path, Some(Box::new(dir))).await.expect("a state database")
    }

    async fn open_keeping(path: &Path, keep: Option<Box<dyn Send + Sync>>) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Readers never block the writer; a commit is durable against a
            // crash of the process (power loss may lose the last commits).
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(LOCK_TIMEOUT)
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let path = path.to_owned();
        let writer = tokio::task::spawn_blocking(move || writer_connection(&path))
            .await
            .map_err(|_| StoreError::Busy("the state database did not open"))??;
        let shared = Arc::new(Shared {
            pool,
            queue: Mutex::default(),
            wake: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
            _keep: keep,
        });
        let behind = shared.clone();
        std::thread::Builder::new()
            .name("qt-journal".to_owned())
            .spawn(move || write_behind(&behind, writer))
            .map_err(|_| StoreError::Busy("the state journal could not start its writer"))?;
        tokio::spawn(checkpoints(shared.clone()));
        Ok(Self { handle: Arc::new(Handle { shared }) })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Runs a store's `CREATE TABLE IF NOT EXISTS` statements.
    pub async fn create_tables(&self, ddl: &[&str]) -> StoreResult<()> {
        for statement in ddl {
            sqlx::query(statement).execute(&self.shared().pool).await?;
        }
        Ok(())
    }

    /// The database, for a store to load its state from at start.
    pub fn pool(&self) -> &SqlitePool {
        &self.shared().pool
    }

    /// Queues `rows` for the next commit; call it in the critical section
    /// that made the change, so the journal's order is the store's. `None`
    /// when there is nothing to write.
    pub fn append(&self, rows: Vec<Row>) -> Option<Ticket> {
        if rows.is_empty() {
            return None;
        }
        let ticket = {
            let mut queue = self.shared().queue.lock();
            queue.last += 1;
            if queue.rows.is_empty() {
                queue.rows = rows;
            } else {
                queue.rows.extend(rows);
            }
            Ticket(queue.last)
        };
        self.shared().wake.notify_one();
        Some(ticket)
    }

    /// Everything appended so far.
    pub fn barrier(&self) -> Ticket {
        Ticket(self.shared().queue.lock().last)
    }

    /// Waits until `ticket` is committed; an error when the commit that
    /// carried it failed (its rows are retried: see the module docs).
    pub async fn committed(&self, ticket: Ticket) -> StoreResult<()> {
        let mut progress = self.shared().progress.subscribe();
        let reached = progress.wait_for(|p| p.durable >= ticket.0 || p.failed >= ticket.0).await.map(|p| *p);
        match reached {
            Ok(p) if p.durable >= ticket.0 => Ok(()),
            _ => Err(StoreError::Busy("the state database did not commit the change")),
        }
    }
}

/// Coalesced rows: by table and key, the last state appended.
type Pending = HashMap<(&'static str, Vec<Value>), (&'static Table, Option<Vec<Value>>)>;

/// The writer's own connection: the same settings as the pool's, and a
/// statement cache large enough for every table's few statement sizes.
fn writer_connection(path: &Path) -> StoreResult<Connection> {
    let open = || -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(LOCK_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(conn)
    };
    open().map_err(|e| {
        error!(error = %e, path = %path.display(), "the state database's writer could not open it");
        StoreError::Busy("the state database did not open")
    })
}

/// The writer thread: commits what has been appended, in groups, until the
/// journal is closed and everything appended is committed.
fn write_behind(shared: &Arc<Shared>, mut conn: Connection) {
    let _stopped = Stopped(shared.clone());
    let mut pending: Pending = HashMap::new();
    let mut statements = Statements::default();
    loop {
        let (rows, upto, closed) = {
            let mut queue = shared.queue.lock();
            while queue.rows.is_empty() && pending.is_empty() && !queue.closed {
                shared.wake.wait(&mut queue);
            }
            (std::mem::take(&mut queue.rows), queue.last, queue.closed)
        };
        if rows.is_empty() && pending.is_empty() {
            break;
        }
        for row in rows {
            pending.insert((row.table.name, row.key), (row.table, row.values));
        }
        match write(&mut conn, &pending, &mut statements) {
            Ok(()) => {
                pending.clear();
                shared.progress.send_modify(|p| p.durable = upto);
            }
            Err(e) => {
                warn!(rows = pending.len(), error = %e, "a state commit failed; its calls fail and its rows are retried");
                shared.progress.send_modify(|p| p.failed = upto);
                if closed {
                    error!(rows = pending.len(), "the state journal closed with rows it could not commit");
                    break;
                }
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}

/// Fails every call still waiting, or yet to wait, once the writer is gone
/// (closed, or its task ended some other way), rather than leave them
/// waiting for ever.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.progress.send_modify(|p| p.failed = u64::MAX);
    }
}

/// Copies committed pages from the WAL into the database now and then,
/// without blocking the writer (a passive checkpoint), until the writer
/// has stopped; then closes the pool.
async fn checkpoints(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = shared.progress.subscribe();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = progress.wait_for(|p| p.failed == u64::MAX) => break,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&shared.pool).await {
            warn!(error = %e, "a state checkpoint failed; the next one will catch up");
        }
    }
    shared.pool.close().await;
}

/// Writes `pending` in one transaction.
fn write(conn: &mut Connection, pending: &Pending, statements: &mut Statements) -> rusqlite::Result<()> {
    type Split<'a> = (&'static Table, Vec<(&'a [Value], &'a [Value])>, Vec<&'a [Value]>);
    let mut by_table: HashMap<&'static str, Split<'_>> = HashMap::new();
    for ((name, key), (table, values)) in pending {
        let (_, upserts, deletes) = by_table.entry(name).or_insert_with(|| (table, Vec::new(), Vec::new()));
        match values {
            Some(values) => upserts.push((key, values)),
            None => deletes.push(key),
        }
    }
    // IMMEDIATE: the write lock is taken (or waited for) up front, never
    // on a read's upgrade half-way through.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (table, upserts, deletes) in by_table.values() {
        let mut rest: &[&[Value]] = deletes;
        while !rest.is_empty() {
            let n = chunk_len(rest.len());
            let (chunk, more) = rest.split_at(n);
            tx.prepare_cached(statements.delete(table, n))?
                .execute(params_from_iter(chunk.iter().flat_map(|key| key.iter())))?;
            rest = more;
        }
        let mut rest: &[(&[Value], &[Value])] = upserts;
        while !rest.is_empty() {
            let n = chunk_len(rest.len());
            let (chunk, more) = rest.split_at(n);
            tx.prepare_cached(statements.upsert(table, n))?
                .execute(params_from_iter(chunk.iter().flat_map(|(key, values)| key.iter().chain(values.iter()))))?;
            rest = more;
        }
    }
    tx.commit()
}

/// How many of `left` rows the next statement writes.
fn chunk_len(left: usize) -> usize {
    if left >= CHUNK { CHUNK } else { 1 << left.ilog2() }
}

/// Statement texts by table, kind and row count, built once.
#[derive(Default)]
struct Statements {
    texts: HashMap<(&'static str, bool, usize), String>,
}

impl Statements {
    fn upsert(&mut self, table: &Table, rows: usize) -> &str {
        self.texts.entry((table.name, true, rows)).or_insert_with(|| {
            let columns: Vec<&str> = table.key.iter().chain(table.values.iter()).copied().collect();
            assert!(columns.len() <= MAX_COLUMNS, "{} has too many columns for one statement", table.name);
            let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
            let action = if table.values.is_empty() {
                "NOTHING".to_owned()
            } else {
                let sets: Vec<String> = table.values.iter().map(|c| format!("\"{c}\" = excluded.\"{c}\"")).collect();
                format!("UPDATE SET {}", sets.join(", "))
            };
            format!(
                "INSERT INTO \"{}\" ({}) VALUES {} ON CONFLICT ({}) DO {action}",
                table.name,
                quoted(&columns),
                vec![tuple; rows].join(", "),
                quoted(table.key),
            )
        })
    }

    fn delete(&mut self, table: &Table, rows: usize) -> &str {
        self.texts.entry((table.name, false, rows)).or_insert_with(|| {
            let tuple = format!("({})", vec!["?"; table.key.len()].join(", "));
            format!(
                "DELETE FROM \"{}\" WHERE ({}) IN (VALUES {})",
                table.name,
                quoted(table.key),
                vec![tuple; rows].join(", ")
            )
        })
    }
}

fn quoted(columns: &[&str]) -> String {
    columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    static PAIRS: Table = Table { name: "pairs", key: &["a", "b"], values: &["n", "x", "s"] };
    static FLAGS: Table = Table { name: "flags", key: &["k"], values: &[] };
    const DDL: &[&str] = &[
        "CREATE TABLE IF NOT EXISTS pairs (a TEXT NOT NULL, b INTEGER NOT NULL, n INTEGER, x REAL, s TEXT, \
         PRIMARY KEY (a, b))",
        "CREATE TABLE IF NOT EXISTS flags (k TEXT PRIMARY KEY)",
    ];

    fn pair(a: &str, b: i64, n: i64) -> Row {
        Row::upsert(&PAIRS, vec![a.into(), b.into()], vec![n.into(), Value::Real(0.5), None::<i64>.into()])
    }

    async fn pairs(j: &Journal) -> Vec<(String, i64, i64)> {
        sqlx::query_as("SELECT a, b, n FROM pairs ORDER BY a, b").fetch_all(j.pool()).await.unwrap()
    }

    #[test]
    fn chunks_are_full_or_powers_of_two() {
        let mut left = 203;
        let mut sizes = Vec::new();
        while left > 0 {
            let n = chunk_len(left);
            sizes.push(n);
            left -= n;
        }
        assert_eq!(sizes, vec![64, 64, 64, 8, 2, 1]);
    }

    #[tokio::test]
    async fn rows_upsert_delete_and_coalesce_in_order() {
        let j = Journal::temporary().await;
        j.create_tables(DDL).await.unwrap();
        // Many rows, so several statement sizes are used.
        let rows: Vec<Row> = (0..203).map(|i| pair("k|1", i, i)).collect();
        let t = j.append(rows).unwrap();
        j.committed(t).await.unwrap();
        assert_eq!(pairs(&j).await.len(), 203);
        // Later rows for the same key win; a delete then an upsert leaves
        // the upsert; ids with separators stay whole.
        let a = j.append(vec![
            pair("k|1", 0, 100),
            pair("k|1", 0, 101),
            Row::delete(&PAIRS, vec!["k|1".into(), 1i64.into()]),
        ]);
        let b = j.append(vec![
            Row::delete(&PAIRS, vec!["k|1".into(), 2i64.into()]),
            pair("k|1", 2, 7),
            pair("k", 1, 5),
            Row::upsert(&FLAGS, vec!["on".into()], vec![]),
        ]);
        assert!(a < b);
        assert!(j.append(Vec::new()).is_none());
        j.committed(b.unwrap()).await.unwrap();
        j.committed(a.unwrap()).await.unwrap();
        let got = pairs(&j).await;
        assert_eq!(got.len(), 203);
        assert_eq!(got[0], ("k".into(), 1, 5));
        assert_eq!(got[1], ("k|1".into(), 0, 101));
        assert_eq!(got[2], ("k|1".into(), 2, 7));
        let flags: Vec<(String,)> = sqlx::query_as("SELECT k FROM flags").fetch_all(j.pool()).await.unwrap();
        assert_eq!(flags, vec![("on".to_owned(),)]);
    }

    /// A commit that fails fails its callers, and its rows are written by
    /// the next commit that can be.
    #[tokio::test]
    async fn a_failed_commit_fails_its_calls_and_is_retried() {
        let j = Journal::temporary().await;
        j.create_tables(DDL).await.unwrap();
        sqlx::query("DROP TABLE pairs").execute(j.pool()).await.unwrap();
        let t = j.append(vec![pair("a", 1, 1)]).unwrap();
        assert!(matches!(j.committed(t).await, Err(StoreError::Busy(_))));
        j.create_tables(DDL).await.unwrap();
        let t = j.append(vec![pair("b", 2, 2)]).unwrap();
        j.committed(t).await.unwrap();
        assert_eq!(pairs(&j).await, vec![("a".into(), 1, 1), ("b".into(), 2, 2)]);
    }

    /// Rows appended just before the last clone is dropped are committed.
    #[tokio::test]
    async fn closing_commits_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let j = Journal::open(&path).await.unwrap();
        j.create_tables(DDL).await.unwrap();
        let _ = j.append(vec![pair("late", 1, 1)]);
        drop(j);
        // The writer finishes on its own; wait for the file to have it.
        let j = Journal::open(&path).await.unwrap();
        for _ in 0..100 {
            if !pairs(&j).await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pairs(&j).await, vec![("late".into(), 1, 1)]);
    }
}
