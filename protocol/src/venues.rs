//! Venues on the wire: the seller's `POST /api/v1/seller/venues` (JSON, or
//! CSV with a `section,row,number,x,y` header), their reads, replacement
//! and removal.

use serde::{Deserialize, Serialize};

/// One seat of a new venue; `id` defaults to `{section}-{row}-{number}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSeat {
    #[serde(default)]
    pub id: Option<String>,
    pub section: String,
    pub row: String,
    pub number: i64,
    /// Map coordinates, in the seat map's units.
    pub x: i64,
    pub y: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVenue {
    /// `[a-z0-9-]{1,64}`; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub seats: Vec<NewSeat>,
}

/// A venue as lists and writes answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VenueSummary {
    pub id: String,
    pub name: String,
    /// How many seats.
    pub seats: u64,
    /// Its sections, by name.
    pub sections: Vec<String>,
}

/// A seat of a stored venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VenueSeat {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: i64,
    pub x: i64,
    pub y: i64,
}

/// The single read of a venue: with its seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VenueDetail {
    pub id: String,
    pub name: String,
    pub sections: Vec<String>,
    pub seats: Vec<VenueSeat>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VenuePage {
    pub items: Vec<VenueSummary>,
    pub next: Option<String>,
}
