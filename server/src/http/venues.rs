//! Venue routes, scoped to the token's seller (another seller's venue is
//! `not_found`, exactly like a missing one) or, for an admin, to all.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use qt_protocol::error::ErrorResponse;
use qt_protocol::venues::{NewVenue, VenueDetail, VenuePage, VenueSummary};

use super::coupons::{PageQuery, scope};
use super::parse_field_json;
use crate::auth::{AuthError, Role};
use crate::edge::Caller;
use crate::error::{AppError, AppResult};
use crate::services::coupons::PAGE_DEFAULT;
use crate::services::venues::{VenueBody, VenueService};

/// Largest venue body: 100,000 seats of JSON fit.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct CsvVenueQuery {
    /// With a CSV body: the venue's id (`[a-z0-9-]{1,64}`; generated when absent).
    id: Option<String>,
    /// With a CSV body: the venue's name.
    name: Option<String>,
}

/// The venue a request body describes: JSON, or CSV with `?id=&name=`.
async fn venue_body(query: CsvVenueQuery, req: Request) -> AppResult<VenueBody> {
    let essence = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let csv = essence == "text/csv";
    if !csv && essence != "application/json" {
        return Err(AppError::BadRequest("expected a body with `Content-Type: application/json` or `text/csv`".into()));
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| AppError::BadRequest(format!("the body must be at most {} MiB", MAX_BODY >> 20)))?;
    if !csv {
        return parse_field_json(&bytes).map(VenueBody::Json);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| AppError::BadRequest("the CSV must be UTF-8".into()))?;
    Ok(VenueBody::Csv { text: text.to_owned(), id: query.id, name: query.name.unwrap_or_default() })
}

/// Creates a venue with its seats: JSON, or `text/csv` with a header line
/// `section,row,number,x,y` (an `id` column allowed) and `?id=`, `?name=`.
///
/// Every wrong field is named in `error.fields` (`seats[12].id`,
/// `csv line 7`); nothing is stored then.
#[utoipa::path(
    post,
    path = "/api/v1/seller/venues",
    operation_id = "create_venue",
    tag = "seller",
    security(("bearer" = [])),
    params(CsvVenueQuery),
    request_body(content(
        (NewVenue = "application/json"),
        (String = "text/csv"),
    )),
    responses(
        (status = 201, description = "The venue", body = VenueSummary),
        (
            status = 400,
            description = "`bad_request`: not JSON or CSV, an unknown field, or invalid values (`error.fields` names each)",
            body = ErrorResponse,
        ),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 409, description = "`conflict`: a venue with this id exists", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn create(
    State(venues): State<Arc<VenueService>>,
    Caller(who): Caller,
    Query(query): Query<CsvVenueQuery>,
    req: Request,
) -> AppResult<(StatusCode, Json<VenueSummary>)> {
    // An admin creates for the seller its token names, if any.
    let seller = match (who.role, &who.seller) {
        (Role::Admin, Some(seller)) => seller.clone(),
        (Role::Admin, None) => return Err(AuthError::WrongRole.into()),
        _ => who.require_seller()?.to_owned(),
    };
    let body = venue_body(query, req).await?;
    Ok((StatusCode::CREATED, Json(venues.create(&seller, &body).await?)))
}

/// The caller's venues, by id, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/seller/venues",
    operation_id = "list_venues",
    tag = "seller",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of venues", body = VenuePage),
        (status = 400, description = "`bad_request`: a bad `limit` or `after`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn list(
    State(venues): State<Arc<VenueService>>,
    Caller(who): Caller,
    Query(q): Query<PageQuery>,
) -> AppResult<Json<VenuePage>> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    Ok(Json(venues.list(scope(&who)?, limit, q.after.as_deref()).await?))
}

/// A venue with its seats.
#[utoipa::path(
    get,
    path = "/api/v1/seller/venues/{venue}",
    operation_id = "get_venue",
    tag = "seller",
    security(("bearer" = [])),
    params(("venue" = String, Path, description = "Venue id")),
    responses(
        (status = 200, description = "The venue", body = VenueDetail),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such venue, or another seller's", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn get(
    State(venues): State<Arc<VenueService>>,
    Caller(who): Caller,
    Path(venue): Path<String>,
) -> AppResult<Json<VenueDetail>> {
    Ok(Json(venues.get(scope(&who)?, &venue).await?))
}

/// Replaces a venue's name and seats (JSON, or CSV with `?name=`) while
/// no event uses it.
#[utoipa::path(
    put,
    path = "/api/v1/seller/venues/{venue}",
    operation_id = "replace_venue",
    tag = "seller",
    security(("bearer" = [])),
    params(("venue" = String, Path, description = "Venue id"), CsvVenueQuery),
    request_body(content(
        (NewVenue = "application/json"),
        (String = "text/csv"),
    )),
    responses(
        (status = 200, description = "The venue now", body = VenueSummary),
        (status = 400, description = "`bad_request`: invalid values (`error.fields` names each)", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such venue, or another seller's", body = ErrorResponse),
        (status = 409, description = "`conflict`: an event uses the venue", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn replace(
    State(venues): State<Arc<VenueService>>,
    Caller(who): Caller,
    Path(venue): Path<String>,
    Query(query): Query<CsvVenueQuery>,
    req: Request,
) -> AppResult<Json<VenueSummary>> {
    let scope = scope(&who)?;
    let body = venue_body(query, req).await?;
    Ok(Json(venues.replace(scope, &venue, &body).await?))
}

/// Removes a venue and its seats while no event uses it.
#[utoipa::path(
    delete,
    path = "/api/v1/seller/venues/{venue}",
    operation_id = "delete_venue",
    tag = "seller",
    security(("bearer" = [])),
    params(("venue" = String, Path, description = "Venue id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such venue, or another seller's", body = ErrorResponse),
        (status = 409, description = "`conflict`: an event uses the venue", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn delete(
    State(venues): State<Arc<VenueService>>,
    Caller(who): Caller,
    Path(venue): Path<String>,
) -> AppResult<StatusCode> {
    venues.delete(scope(&who)?, &venue).await?;
    Ok(StatusCode::NO_CONTENT)
}
