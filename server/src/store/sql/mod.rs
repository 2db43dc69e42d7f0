//! The SQL store: the catalogue (sellers, venues, seats, events, tiers) and,
//! in later issues, orders, payments, coupons and settlements. One code path
//! through sqlx's `Any` driver serves SQLite (embedded) and Postgres
//! (distributed); the migrations are portable SQL.

mod coupons;
mod orders;
mod statements;
mod venues;

pub use coupons::{CampaignRecord, NotUpdated, Recorded};
pub use orders::{BadCursor, Completed, Inserted, LedgerEntry, OrderRecord, OutboxRow, PaymentState, Transition};
pub use statements::{HistoryEntry, StatementRecord};
pub use venues::{VenueChange, VenueRecord};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Executor, FromRow, Row};

use super::StoreResult;
use crate::domain::event::{Event, Seat, Tier, Venue};
use crate::domain::queue::QueueSettings;

static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Rows per multi-row INSERT: well under SQLite's bind-parameter limit.
const INSERT_CHUNK: usize = 400;

/// Connections of an embedded (SQLite) store: one writes, these read.
const SQLITE_READERS: u32 = 3;

#[derive(Clone)]
pub struct SqlStore {
    /// Reads.
    pool: AnyPool,
    /// Writes and every transaction. On SQLite a pool of one connection:
    /// writers queue for it in the process instead of taking turns at the
    /// database's lock by sleeping and polling (its busy handler), which
    /// under load spent more time asleep than writing. On Postgres the
    /// same pool as `pool`.
    writer: AnyPool,
}

#[derive(FromRow)]
struct EventRow {
    id: String,
    seller_id: String,
    venue_id: String,
    name: String,
    starts_at_ms: i64,
    on_sale_at_ms: i64,
    currency: String,
    rate_per_min: i64,
    max_active: i64,
    window_s: i64,
    grace_s: i64,
    paused: i64,
    hold_s: i64,
    max_seats_per_buyer: i64,
    refund_until_ms: Option<i64>,
}

const EVENT_COLUMNS: &str = "id, seller_id, venue_id, name, starts_at_ms, on_sale_at_ms, currency, rate_per_min, \
     max_active, window_s, grace_s, paused, hold_s, max_seats_per_buyer, refund_until_ms";

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl EventRow {
    fn into_event(self, tiers: Vec<Tier>) -> Event {
        Event {
            queue: QueueSettings {
                rate_per_min: clamp_u32(self.rate_per_min),
                max_active: clamp_u32(self.max_active),
                window_s: clamp_u32(self.window_s),
                grace_s: clamp_u32(self.grace_s),
                paused: self.paused != 0,
                hold_s: clamp_u32(self.hold_s),
                max_seats_per_buyer: clamp_u32(self.max_seats_per_buyer),
                on_sale_at_ms: self.on_sale_at_ms,
            },
            id: self.id,
            seller_id: self.seller_id,
            venue_id: self.venue_id,
            name: self.name,
            starts_at_ms: self.starts_at_ms,
            currency: self.currency,
            tiers,
            refund_until_ms: self.refund_until_ms,
        }
    }
}

/// `($1, $2, …), ($n, …)` for `rows` rows of `cols` parameters.
fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the live queue settings, in the column order both the insert and
/// the update use.
fn bind_settings<'q>(query: AnyQuery<'q>, s: &QueueSettings) -> AnyQuery<'q> {
    query
        .bind(i64::from(s.rate_per_min))
        .bind(i64::from(s.max_active))
        .bind(i64::from(s.window_s))
        .bind(i64::from(s.grace_s))
        .bind(i64::from(s.paused))
        .bind(i64::from(s.hold_s))
        .bind(i64::from(s.max_seats_per_buyer))
}

impl SqlStore {
    /// Connects to `sqlite://PATH?mode=rwc` or `postgres://…` and brings the
    /// schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        install_default_drivers();
        if !url.starts_with("sqlite:") {
            let pool = Self::pool_options(16).connect(url).await?;
            MIGRATOR.run(&pool).await?;
            return Ok(Self { writer: pool.clone(), pool });
        }
        let writer = Self::pool_options(1).connect(url).await?;
        MIGRATOR.run(&writer).await?;
        let pool = Self::pool_options(SQLITE_READERS).connect(url).await?;
        Ok(Self { pool, writer })
    }

    fn pool_options(connections: u32) -> AnyPoolOptions {
        AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        // Readers never block the writer.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // Only outside writers (tools, tests) wait at the
                        // lock: this long, then fail.
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    } else {
                        // Every statement, lock wait and idle transaction is
                        // bounded: a stalled node cannot hold a row forever.
                        conn.execute(
                            "SET statement_timeout = 15000; SET lock_timeout = 10000; \
                             SET idle_in_transaction_session_timeout = 30000",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    pub async fn insert_seller(&self, id: &str, name: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO sellers (id, name, created_ms) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Adds a seller known only from its token, named by its id until it
    /// says otherwise.
    pub async fn ensure_seller(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO sellers (id, name, created_ms) VALUES ($1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Stores a venue with all its seats, all or nothing.
    pub async fn insert_venue(&self, venue: &Venue, seats: &[Seat], now_ms: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        Self::insert_venue_in(&mut tx, venue, seats, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_venue_in(tx: &mut AnyConnection, venue: &Venue, seats: &[Seat], now_ms: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO venues (id, seller_id, name, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(&venue.id)
            .bind(&venue.seller_id)
            .bind(&venue.name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        for chunk in seats.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO seats (venue_id, id, section, row_label, number, x, y, tier) VALUES {}",
                placeholders(chunk.len(), 8)
            );
            let mut q = sqlx::query(&sql);
            for s in chunk {
                q = q
                    .bind(&venue.id)
                    .bind(&s.id)
                    .bind(&s.section)
                    .bind(&s.row)
                    .bind(s.number)
                    .bind(s.x)
                    .bind(s.y)
                    .bind(&s.tier);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    pub async fn venue_seats(&self, venue_id: &str) -> StoreResult<Vec<Seat>> {
        let rows = sqlx::query(
            "SELECT id, section, row_label, number, x, y, tier FROM seats WHERE venue_id = $1 ORDER BY section, number, id",
        )
        .bind(venue_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Seat {
                    id: r.try_get("id")?,
                    section: r.try_get("section")?,
                    row: r.try_get("row_label")?,
                    number: r.try_get("number")?,
                    x: r.try_get("x")?,
                    y: r.try_get("y")?,
                    tier: r.try_get("tier")?,
                })
            })
            .collect()
    }

    /// Stores an event with its tiers, all or nothing.
    pub async fn insert_event(&self, e: &Event, now_ms: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        Self::insert_event_in(&mut tx, e, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_event_in(tx: &mut AnyConnection, e: &Event, now_ms: i64) -> StoreResult<()> {
        let q = &e.queue;
        let sql = format!("INSERT INTO events ({EVENT_COLUMNS}, created_ms) VALUES {}", placeholders(1, 16));
        let insert = sqlx::query(&sql)
            .bind(&e.id)
            .bind(&e.seller_id)
            .bind(&e.venue_id)
            .bind(&e.name)
            .bind(e.starts_at_ms)
            .bind(q.on_sale_at_ms)
            .bind(&e.currency);
        bind_settings(insert, q).bind(e.refund_until_ms).bind(now_ms).execute(&mut *tx).await?;
        for t in &e.tiers {
            sqlx::query("INSERT INTO event_tiers (event_id, id, name, price) VALUES ($1, $2, $3, $4)")
                .bind(&e.id)
                .bind(&t.id)
                .bind(&t.name)
                .bind(t.price)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    async fn with_tiers(&self, rows: Vec<EventRow>) -> StoreResult<Vec<Event>> {
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let tiers =
                sqlx::query("SELECT id, name, price FROM event_tiers WHERE event_id = $1 ORDER BY price DESC, id")
                    .bind(&row.id)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| Ok(Tier { id: r.try_get("id")?, name: r.try_get("name")?, price: r.try_get("price")? }))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
            events.push(row.into_event(tiers));
        }
        Ok(events)
    }

    pub async fn events(&self) -> StoreResult<Vec<Event>> {
        let rows =
            sqlx::query_as::<_, EventRow>(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY starts_at_ms, id"))
                .fetch_all(&self.pool)
                .await?;
        self.with_tiers(rows).await
    }

    pub async fn seller_events(&self, seller: &str) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query_as::<_, EventRow>(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seller_id = $1 ORDER BY starts_at_ms, id"
        ))
        .bind(seller)
        .fetch_all(&self.pool)
        .await?;
        self.with_tiers(rows).await
    }

    pub async fn event(&self, id: &str) -> StoreResult<Option<Event>> {
        let rows = sqlx::query_as::<_, EventRow>(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(self.with_tiers(rows).await?.pop())
    }

    /// Saves an event's queue settings if `seller` owns it; whether it did.
    pub async fn update_queue_settings(&self, seller: &str, event: &str, q: &QueueSettings) -> StoreResult<bool> {
        let update = sqlx::query(
            "UPDATE events SET rate_per_min = $1, max_active = $2, window_s = $3, grace_s = $4, paused = $5, \
             hold_s = $6, max_seats_per_buyer = $7 WHERE id = $8 AND seller_id = $9",
        );
        let done = bind_settings(update, q).bind(event).bind(seller).execute(&self.writer).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Seeds the demo seller, hall and event unless the demo seller exists.
    /// Whether it seeded. Safe when several nodes start at once: the seller
    /// row decides who seeds, inside the same transaction.
    pub async fn seed_demo(&self, now_ms: i64) -> StoreResult<bool> {
        use crate::domain::demo;
        let mut tx = self.writer.begin().await?;
        let claimed =
            sqlx::query("INSERT INTO sellers (id, name, created_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
                .bind(demo::SELLER_ID)
                .bind(demo::SELLER_NAME)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !claimed {
            return Ok(false);
        }
        Self::insert_venue_in(&mut tx, &demo::venue(), &demo::seats(), now_ms).await?;
        Self::insert_event_in(&mut tx, &demo::event(now_ms), now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    //! The contract every SQL backend passes, one test per scenario and
    //! backend (`sql_contract!`): SQLite in a temporary directory, and
    //! Postgres in a database of its own on the test server.

    use tempfile::TempDir;

    use super::*;
    use crate::domain::demo;
    use crate::testsupport::PgDatabase;

    const NOW: i64 = 1_700_000_000_000;

    /// One `#[tokio::test]` per scenario, each on a fresh database from
    /// `$make` (an expression whose value is a future of a `TestDb`); the
    /// coupon part of the contract uses it too.
    macro_rules! on_each_database {
        ($make:expr; $($scenario:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let db = $make.await;
                    super::$scenario(&db).await;
                    db.finish().await;
                }
            )*
        };
    }
    pub(super) use on_each_database;

    macro_rules! sql_contract {
        ($make:expr) => {
            on_each_database!($make;
                an_empty_catalogue_has_no_events,
                the_demo_is_seeded_once_and_reads_back_exactly,
                each_seller_sees_only_its_own_events,
                queue_settings_change_only_for_their_owner,
                a_duplicate_is_refused_and_leaves_nothing_half_written,
                reopening_runs_no_migration_twice_and_keeps_the_data,
            );
        };
    }

    mod sqlite {
        sql_contract!(super::TestDb::sqlite());
    }

    mod postgres {
        use super::*;

        sql_contract!(TestDb::postgres());

        /// Two nodes starting at once on one database: exactly one seeds.
        #[tokio::test]
        async fn concurrent_demo_seeding_seeds_once() {
            let db = TestDb::postgres().await;
            let (a, b) = (db.store().await, db.store().await);
            let (ra, rb) = tokio::join!(a.seed_demo(NOW), b.seed_demo(NOW));
            assert_eq!([ra.unwrap(), rb.unwrap()].iter().filter(|s| **s).count(), 1);
            assert_eq!(a.events().await.unwrap().len(), 1);
            a.close().await;
            b.close().await;
            db.finish().await;
        }
    }

    /// A database for one test, and what keeps it.
    pub(super) struct TestDb {
        url: String,
        keep: Keep,
    }

    enum Keep {
        /// Removed with the directory when the test ends.
        Dir(TempDir),
        /// Dropped when the test passes (a failed one leaves it to look at,
        /// until it is stale).
        Postgres(PgDatabase),
    }

    impl TestDb {
        pub(super) async fn sqlite() -> Self {
            let dir = tempfile::Builder::new().prefix("qt-sql-").tempdir().expect("a temporary directory");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("catalog.db").display());
            Self { url, keep: Keep::Dir(dir) }
        }

        pub(super) async fn postgres() -> Self {
            let db = PgDatabase::create("qt_test").await;
            Self { url: db.url.clone(), keep: Keep::Postgres(db) }
        }

        pub(super) async fn store(&self) -> SqlStore {
            SqlStore::connect(&self.url).await.expect("connect and migrate")
        }

        pub(super) async fn finish(self) {
            match self.keep {
                Keep::Dir(dir) => drop(dir),
                Keep::Postgres(db) => db.finish().await,
            }
        }
    }

    /// The demo and a second seller's event in a venue of its own.
    async fn with_a_second_seller(store: &SqlStore) -> Event {
        assert!(store.seed_demo(NOW).await.unwrap());
        store.insert_seller("s-2", "Other", NOW).await.unwrap();
        let venue = Venue { id: "v-2".into(), seller_id: "s-2".into(), name: "Small room".into() };
        let seats = vec![Seat {
            id: "A-1-1".into(),
            section: "A".into(),
            row: "1".into(),
            number: 1,
            x: 0,
            y: 0,
            tier: "std".into(),
        }];
        store.insert_venue(&venue, &seats, NOW).await.unwrap();
        let mut other = demo::event(NOW);
        other.id = "e-2".into();
        other.seller_id = "s-2".into();
        other.venue_id = "v-2".into();
        other.tiers = vec![Tier { id: "std".into(), name: "Standard".into(), price: 10_000 }];
        store.insert_event(&other, NOW).await.unwrap();
        other
    }

    async fn an_empty_catalogue_has_no_events(db: &TestDb) {
        let store = db.store().await;
        assert!(store.events().await.unwrap().is_empty());
        assert!(store.event("nope").await.unwrap().is_none());
        store.close().await;
    }

    async fn the_demo_is_seeded_once_and_reads_back_exactly(db: &TestDb) {
        let store = db.store().await;
        assert!(store.seed_demo(NOW).await.unwrap());
        assert!(!store.seed_demo(NOW + 1).await.unwrap());
        let events = store.events().await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(&events[0], &demo::event(NOW));
        assert_eq!(store.venue_seats(demo::VENUE_ID).await.unwrap().len(), demo::seats().len());
        let mut want = demo::seats();
        let mut got = store.venue_seats(demo::VENUE_ID).await.unwrap();
        want.sort_by(|a, b| a.id.cmp(&b.id));
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, want, "seats round-trip exactly");
        store.close().await;
    }

    async fn each_seller_sees_only_its_own_events(db: &TestDb) {
        let store = db.store().await;
        let other = with_a_second_seller(&store).await;
        assert_eq!(store.seller_events("s-2").await.unwrap(), vec![other]);
        assert_eq!(store.seller_events(demo::SELLER_ID).await.unwrap().len(), 1);
        store.close().await;
    }

    async fn queue_settings_change_only_for_their_owner(db: &TestDb) {
        let store = db.store().await;
        let other = with_a_second_seller(&store).await;
        let changed = QueueSettings { rate_per_min: 7, paused: true, hold_s: 33, ..other.queue };
        assert!(!store.update_queue_settings(demo::SELLER_ID, "e-2", &changed).await.unwrap());
        assert_eq!(store.event("e-2").await.unwrap().unwrap().queue, other.queue);
        assert!(store.update_queue_settings("s-2", "e-2", &changed).await.unwrap());
        assert_eq!(store.event("e-2").await.unwrap().unwrap().queue, changed);
        store.close().await;
    }

    /// Constraints hold in the database too: a duplicate id is refused and
    /// leaves nothing half-written.
    async fn a_duplicate_is_refused_and_leaves_nothing_half_written(db: &TestDb) {
        let store = db.store().await;
        let other = with_a_second_seller(&store).await;
        assert!(store.insert_event(&other, NOW).await.is_err());
        assert_eq!(store.events().await.unwrap().len(), 2);
        let mut bad = other.clone();
        bad.id = "e-3".into();
        bad.tiers.push(Tier { id: "std".into(), name: "dup".into(), price: 1 });
        assert!(store.insert_event(&bad, NOW).await.is_err(), "duplicate tier");
        assert!(store.event("e-3").await.unwrap().is_none(), "rolled back");
        store.close().await;
    }

    async fn reopening_runs_no_migration_twice_and_keeps_the_data(db: &TestDb) {
        let store = db.store().await;
        with_a_second_seller(&store).await;
        store.close().await;
        let again = db.store().await;
        assert_eq!(again.events().await.unwrap().len(), 2);
        again.close().await;
    }
}
