//! Venues as sellers manage them: created (JSON or CSV) with every seat
//! checked, read, replaced and removed only while no event uses them.

use qt_protocol::venues::{NewVenue, VenueDetail, VenuePage, VenueSeat, VenueSummary};

use super::coupons::{PAGE_MAX, Scope};
use crate::clock::Clock;
use crate::domain::coupons::{FieldErrors, Fields};
use crate::domain::venues::{CheckedVenue, check_csv_venue, check_venue, sections};
use crate::error::{AppError, AppResult};
use crate::store::sql::{BadCursor, SqlStore, VenueChange, VenueRecord};

/// A venue as a request gave it.
pub enum VenueBody {
    Json(NewVenue),
    /// A CSV upload with the venue's id and name from the query.
    Csv {
        text: String,
        id: Option<String>,
        name: String,
    },
}

impl VenueBody {
    fn id(&self) -> Option<&str> {
        match self {
            VenueBody::Json(v) => v.id.as_deref(),
            VenueBody::Csv { id, .. } => id.as_deref(),
        }
    }

    fn check(&self, generated_id: String) -> Result<CheckedVenue, FieldErrors> {
        match self {
            VenueBody::Json(v) => check_venue(v, generated_id),
            VenueBody::Csv { text, id, name } => check_csv_venue(text, id.clone(), name.clone(), generated_id),
        }
    }
}

pub struct VenueService {
    pub sql: SqlStore,
    pub clock: Clock,
}

fn summary(v: &VenueRecord) -> VenueSummary {
    VenueSummary { id: v.venue.id.clone(), name: v.venue.name.clone(), seats: v.seats, sections: v.sections.clone() }
}

fn checked_summary(v: &CheckedVenue) -> VenueSummary {
    VenueSummary { id: v.id.clone(), name: v.name.clone(), seats: v.seats.len() as u64, sections: sections(&v.seats) }
}

impl VenueService {
    /// Stores a new venue of `seller`; every wrong field is named and
    /// nothing is stored then.
    pub async fn create(&self, seller: &str, body: &VenueBody) -> AppResult<VenueSummary> {
        let checked = body.check(format!("v-{:012x}", rand::random::<u64>() >> 16))?;
        let venue = crate::domain::event::Venue {
            id: checked.id.clone(),
            seller_id: seller.to_owned(),
            name: checked.name.clone(),
        };
        let now = self.clock.now_ms();
        self.sql.ensure_seller(seller, now).await?;
        if !self.sql.create_venue(&venue, &checked.seats, now).await? {
            return Err(AppError::Conflict(format!("a venue with id {:?} exists", checked.id)));
        }
        Ok(checked_summary(&checked))
    }

    async fn own(&self, scope: Scope<'_>, id: &str) -> AppResult<VenueRecord> {
        match self.sql.venue(id).await? {
            // Another seller's venue is as absent as a missing one.
            Some(v) if scope.sees(&v.venue.seller_id) => Ok(v),
            _ => Err(AppError::NotFound("venue")),
        }
    }

    pub async fn get(&self, scope: Scope<'_>, id: &str) -> AppResult<VenueDetail> {
        let v = self.own(scope, id).await?;
        let seats = self.sql.venue_seats(id).await?;
        Ok(VenueDetail {
            id: v.venue.id,
            name: v.venue.name,
            sections: v.sections,
            seats: seats
                .into_iter()
                .map(|s| VenueSeat { id: s.id, section: s.section, row: s.row, number: s.number, x: s.x, y: s.y })
                .collect(),
        })
    }

    pub async fn list(&self, scope: Scope<'_>, limit: u32, after: Option<&str>) -> AppResult<VenuePage> {
        let limit = limit.clamp(1, PAGE_MAX);
        let (page, next) = self
            .sql
            .venues_of(scope.seller(), limit, after)
            .await?
            .map_err(|BadCursor| AppError::BadRequest("after: not a cursor this list gave".into()))?;
        Ok(VenuePage { items: page.iter().map(summary).collect(), next })
    }

    /// Replaces the venue's name and seats while no event uses it.
    pub async fn replace(&self, scope: Scope<'_>, id: &str, body: &VenueBody) -> AppResult<VenueSummary> {
        let current = self.own(scope, id).await?;
        if body.id().is_some_and(|named| named != id) {
            let fields = Fields::from([("id".to_owned(), "must be the venue's own id, or absent".to_owned())]);
            return Err(FieldErrors(fields).into());
        }
        let checked = body.check(id.to_owned())?;
        let venue = crate::domain::event::Venue {
            id: id.to_owned(),
            seller_id: current.venue.seller_id,
            name: checked.name.clone(),
        };
        match self.sql.replace_venue(&venue, &checked.seats).await? {
            VenueChange::Done => Ok(checked_summary(&checked)),
            VenueChange::Missing => Err(AppError::NotFound("venue")),
            VenueChange::InUse => Err(AppError::Conflict("an event uses this venue; it cannot change".into())),
        }
    }

    pub async fn delete(&self, scope: Scope<'_>, id: &str) -> AppResult<()> {
        self.own(scope, id).await?;
        match self.sql.delete_venue(id).await? {
            VenueChange::Done => Ok(()),
            VenueChange::Missing => Err(AppError::NotFound("venue")),
            VenueChange::InUse => Err(AppError::Conflict("an event uses this venue; it cannot be removed".into())),
        }
    }
}
