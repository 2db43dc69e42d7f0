//! Venues in the SQL store as sellers manage them: created with their
//! seats in one transaction, listed, replaced and removed only while no
//! event uses them.

use sqlx::{AnyConnection, Row};

use super::{BadCursor, SqlStore};
use crate::domain::event::{Seat, Venue};
use crate::store::StoreResult;

/// A venue with its seat count and sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueRecord {
    pub venue: Venue,
    pub seats: u64,
    pub sections: Vec<String>,
}

/// What a change of a venue found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenueChange {
    Done,
    /// No such venue.
    Missing,
    /// An event uses it.
    InUse,
}

impl SqlStore {
    /// Stores a new venue with its seats, all or nothing; `false` (nothing
    /// written) when its id is taken.
    pub async fn create_venue(&self, venue: &Venue, seats: &[Seat], now_ms: i64) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let taken = sqlx::query("SELECT 1 AS one FROM venues WHERE id = $1")
            .bind(&venue.id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            return Ok(false);
        }
        if let Err(e) = Self::insert_venue_in(&mut tx, venue, seats, now_ms).await {
            drop(tx);
            // Another request took the id meanwhile (Postgres); any other
            // refusal (a seat id twice) is an error.
            return match self.venue(&venue.id).await? {
                Some(_) => Ok(false),
                None => Err(e),
            };
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn venue_record(conn: &mut AnyConnection, row: &sqlx::any::AnyRow) -> StoreResult<VenueRecord> {
        let venue = Venue { id: row.try_get("id")?, seller_id: row.try_get("seller_id")?, name: row.try_get("name")? };
        let counts = sqlx::query(
            "SELECT section, COUNT(*) AS n FROM seats WHERE venue_id = $1 GROUP BY section ORDER BY section",
        )
        .bind(&venue.id)
        .fetch_all(&mut *conn)
        .await?;
        let mut seats = 0u64;
        let mut sections = Vec::with_capacity(counts.len());
        for r in &counts {
            seats += u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0);
            sections.push(r.try_get("section")?);
        }
        Ok(VenueRecord { venue, seats, sections })
    }

    pub async fn venue(&self, id: &str) -> StoreResult<Option<VenueRecord>> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT id, seller_id, name FROM venues WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => Ok(Some(Self::venue_record(&mut conn, &row).await?)),
            None => Ok(None),
        }
    }

    /// Venues of `seller` (every seller's when `None`), by id, keyset-paged
    /// (the cursor is the last id).
    pub async fn venues_of(
        &self,
        seller: Option<&str>,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Result<(Vec<VenueRecord>, Option<String>), BadCursor>> {
        if after.is_some_and(str::is_empty) {
            return Ok(Err(BadCursor));
        }
        let mut conditions = Vec::new();
        if seller.is_some() {
            conditions.push(format!("seller_id = ${}", conditions.len() + 1));
        }
        if after.is_some() {
            conditions.push(format!("id > ${}", conditions.len() + 1));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql =
            format!("SELECT id, seller_id, name FROM venues {filter} ORDER BY id LIMIT ${}", conditions.len() + 1);
        let mut q = sqlx::query(&sql);
        if let Some(seller) = seller {
            q = q.bind(seller);
        }
        if let Some(after) = after {
            q = q.bind(after);
        }
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let mut conn = self.pool.acquire().await?;
        // One more than asked: whether there is a next page at all.
        let rows = q.bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1).fetch_all(&mut *conn).await?;
        let more = rows.len() > limit;
        let mut page = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            page.push(Self::venue_record(&mut conn, row).await?);
        }
        let next = if more { page.last().map(|v| v.venue.id.clone()) } else { None };
        Ok(Ok((page, next)))
    }

    /// Whether an event uses the venue; locks the venue's row first, so an
    /// event created meanwhile waits for the change (Postgres) or cannot
    /// start before it (SQLite's one writer).
    async fn venue_in_use(tx: &mut AnyConnection, id: &str) -> StoreResult<Option<bool>> {
        // Postgres: FOR UPDATE conflicts with the key-share lock a new
        // event's foreign key takes (an update of a non-key column would
        // not). SQLite: any write holds the one write lock.
        let lock = if tx.backend_name().eq_ignore_ascii_case("sqlite") {
            "UPDATE venues SET name = name WHERE id = $1 RETURNING id"
        } else {
            "SELECT id FROM venues WHERE id = $1 FOR UPDATE"
        };
        let exists = sqlx::query(lock).bind(id).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Ok(None);
        }
        let used = sqlx::query("SELECT 1 AS one FROM events WHERE venue_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        Ok(Some(used))
    }

    /// Replaces the venue's name and seats while no event uses it.
    pub async fn replace_venue(&self, venue: &Venue, seats: &[Seat]) -> StoreResult<VenueChange> {
        let mut tx = self.writer.begin().await?;
        match Self::venue_in_use(&mut tx, &venue.id).await? {
            None => return Ok(VenueChange::Missing),
            Some(true) => return Ok(VenueChange::InUse),
            Some(false) => {}
        }
        let created: i64 = sqlx::query("SELECT created_ms FROM venues WHERE id = $1")
            .bind(&venue.id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("created_ms")?;
        sqlx::query("DELETE FROM seats WHERE venue_id = $1").bind(&venue.id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM venues WHERE id = $1").bind(&venue.id).execute(&mut *tx).await?;
        Self::insert_venue_in(&mut tx, venue, seats, created).await?;
        tx.commit().await?;
        Ok(VenueChange::Done)
    }

    /// Removes the venue and its seats while no event uses it.
    pub async fn delete_venue(&self, id: &str) -> StoreResult<VenueChange> {
        let mut tx = self.writer.begin().await?;
        match Self::venue_in_use(&mut tx, id).await? {
            None => return Ok(VenueChange::Missing),
            Some(true) => return Ok(VenueChange::InUse),
            Some(false) => {}
        }
        sqlx::query("DELETE FROM seats WHERE venue_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM venues WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(VenueChange::Done)
    }
}

#[cfg(test)]
mod tests {
    //! The venue part of the SQL contract, on SQLite and on Postgres.

    use super::*;
    use crate::domain::demo;
    use crate::store::sql::tests::TestDb;

    const NOW: i64 = 1_700_000_000_000;

    macro_rules! venues_contract {
        ($make:expr) => {
            crate::store::sql::tests::on_each_database!($make;
                a_venue_is_created_once_with_all_its_seats,
                a_venue_in_use_is_neither_replaced_nor_removed,
                pages_cover_every_venue_once,
            );
        };
    }

    mod sqlite {
        venues_contract!(super::TestDb::sqlite());
    }

    mod postgres {
        venues_contract!(super::TestDb::postgres());
    }

    fn seats(n: i64) -> Vec<Seat> {
        (0..n)
            .map(|i| Seat {
                id: format!("S{}-1-{i}", i % 3),
                section: format!("S{}", i % 3),
                row: "1".into(),
                number: i,
                x: i,
                y: 0,
                tier: String::new(),
            })
            .collect()
    }

    fn venue(id: &str, seller: &str) -> Venue {
        Venue { id: id.into(), seller_id: seller.into(), name: format!("Hall {id}") }
    }

    async fn store(db: &TestDb) -> SqlStore {
        let store = db.store().await;
        assert!(store.seed_demo(NOW).await.unwrap());
        store.ensure_seller("s-2", NOW).await.unwrap();
        store
    }

    async fn a_venue_is_created_once_with_all_its_seats(db: &TestDb) {
        let store = store(db).await;
        assert!(store.create_venue(&venue("big", "s-2"), &seats(1_000), NOW).await.unwrap());
        let got = store.venue("big").await.unwrap().unwrap();
        assert_eq!((got.seats, got.sections.clone()), (1_000, vec!["S0".to_owned(), "S1".into(), "S2".into()]));
        assert_eq!(got.venue, venue("big", "s-2"));
        // The id is taken: nothing of the second is written.
        assert!(!store.create_venue(&venue("big", "s-2"), &seats(3), NOW).await.unwrap());
        assert_eq!(store.venue("big").await.unwrap().unwrap().seats, 1_000);
        assert_eq!(store.venue_seats("big").await.unwrap().len(), 1_000);
        // A duplicate seat id fails the whole venue.
        let mut twice = seats(2);
        twice[1].id = twice[0].id.clone();
        assert!(store.create_venue(&venue("dup", "s-2"), &twice, NOW).await.is_err());
        assert!(store.venue("dup").await.unwrap().is_none());
        store.close().await;
    }

    async fn a_venue_in_use_is_neither_replaced_nor_removed(db: &TestDb) {
        let store = store(db).await;
        // The demo event uses the demo hall.
        let hall = demo::event(NOW).venue_id;
        let used = venue(&hall, demo::SELLER_ID);
        assert_eq!(store.replace_venue(&used, &seats(3)).await.unwrap(), VenueChange::InUse);
        assert_eq!(store.delete_venue(&hall).await.unwrap(), VenueChange::InUse);
        assert!(store.venue(&hall).await.unwrap().unwrap().seats > 3);
        assert_eq!(store.delete_venue("none").await.unwrap(), VenueChange::Missing);
        assert_eq!(store.replace_venue(&venue("none", "s-2"), &seats(1)).await.unwrap(), VenueChange::Missing);
        // A free one is replaced whole, then removed with its seats.
        assert!(store.create_venue(&venue("free", "s-2"), &seats(10), NOW).await.unwrap());
        let renamed = Venue { name: "Renamed".into(), ..venue("free", "s-2") };
        assert_eq!(store.replace_venue(&renamed, &seats(4)).await.unwrap(), VenueChange::Done);
        let got = store.venue("free").await.unwrap().unwrap();
        assert_eq!((got.venue.name.as_str(), got.seats), ("Renamed", 4));
        assert_eq!(store.delete_venue("free").await.unwrap(), VenueChange::Done);
        assert!(store.venue("free").await.unwrap().is_none());
        assert!(store.venue_seats("free").await.unwrap().is_empty());
        store.close().await;
    }

    async fn pages_cover_every_venue_once(db: &TestDb) {
        let store = store(db).await;
        for i in 0..5 {
            assert!(store.create_venue(&venue(&format!("v-{i}"), "s-2"), &seats(2), NOW).await.unwrap());
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = store.venues_of(Some("s-2"), 2, after.as_deref()).await.unwrap().unwrap();
            seen.extend(page.into_iter().map(|v| v.venue.id));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (0..5).map(|i| format!("v-{i}")).collect::<Vec<_>>());
        let all = store.venues_of(None, 500, None).await.unwrap().unwrap().0;
        assert_eq!(all.len(), 6, "the demo hall too");
        assert!(store.venues_of(Some("s-2"), 2, Some("")).await.unwrap().is_err());
        store.close().await;
    }
}
