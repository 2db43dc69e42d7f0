//! Coupon routes: a buyer's own coupons, an event's campaigns for its
//! buyers, and the seller's campaign routes, each scoped to the token's
//! seller (another seller's campaign is `not_found`, exactly like one that
//! does not exist) or, for an admin, to every seller.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use qt_protocol::Role;
use qt_protocol::coupons::{CampaignPage, CampaignPatch, CampaignView, MyCoupons, NewCampaign, Offers};
use qt_protocol::error::ErrorResponse;

use super::FieldJson;
use crate::auth::{AuthError, Identity};
use crate::edge::Caller;
use crate::error::AppResult;
use crate::services::coupons::{CouponService, PAGE_DEFAULT, Scope, coupon_view};

/// The buyer's own unused, valid coupons (as the socket's `coupons`).
#[utoipa::path(
    get,
    path = "/api/v1/me/coupons",
    operation_id = "my_coupons",
    tag = "coupons",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The buyer's coupons, oldest claim first", body = MyCoupons),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a buyer's token", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn mine(State(coupons): State<Arc<CouponService>>, Caller(who): Caller) -> AppResult<Json<MyCoupons>> {
    let who = who.require_buyer()?;
    let mine = coupons.mine(&who.user, None).await?;
    Ok(Json(MyCoupons { items: mine.iter().map(|(coupon, c)| coupon_view(coupon, c)).collect() }))
}

/// The event's coupon campaigns that have not ended, with what is left.
///
/// Public: no token needed. Claim one with the socket's `claim_coupon`.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/campaigns",
    operation_id = "event_campaigns",
    tag = "coupons",
    params(("event" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event's campaigns", body = Offers),
        (status = 400, description = "`bad_request`: an event id that is not UTF-8", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such event", body = ErrorResponse),
        (status = 503, description = "`unavailable`: a store cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn offers(State(coupons): State<Arc<CouponService>>, Path(event): Path<String>) -> AppResult<Json<Offers>> {
    Ok(Json(Offers { items: coupons.offers(&event).await? }))
}

/// Whose objects a seller route shows the caller: a seller its own, an
/// admin every seller's.
pub(super) fn scope(who: &Identity) -> AppResult<Scope<'_>> {
    match who.role {
        Role::Admin => Ok(Scope::Admin),
        _ => Ok(Scope::Seller(who.require_seller()?)),
    }
}

/// Creates a coupon campaign for the caller's seller.
///
/// Every wrong field is named in `error.fields`; nothing is stored then.
#[utoipa::path(
    post,
    path = "/api/v1/seller/campaigns",
    operation_id = "create_campaign",
    tag = "seller",
    security(("bearer" = [])),
    request_body = NewCampaign,
    responses(
        (status = 201, description = "The campaign", body = CampaignView),
        (
            status = 400,
            description = "`bad_request`: not JSON, an unknown field, or invalid values (`error.fields` names each)",
            body = ErrorResponse,
        ),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 409, description = "`conflict`: a campaign with this id exists", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn create(
    State(coupons): State<Arc<CouponService>>,
    Caller(who): Caller,
    FieldJson(body): FieldJson<NewCampaign>,
) -> AppResult<(StatusCode, Json<CampaignView>)> {
    // An admin creates for the seller its token names, if any.
    let seller = match (who.role, &who.seller) {
        (Role::Admin, Some(seller)) => seller.as_str(),
        (Role::Admin, None) => return Err(AuthError::WrongRole.into()),
        _ => who.require_seller()?,
    };
    Ok((StatusCode::CREATED, Json(coupons.create(seller, &body).await?)))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Items per page: 50 unless given, at most 500.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

/// The caller's campaigns, by id, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/seller/campaigns",
    operation_id = "list_campaigns",
    tag = "seller",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of campaigns with their figures", body = CampaignPage),
        (status = 400, description = "`bad_request`: a `limit` that is not a number", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn list(
    State(coupons): State<Arc<CouponService>>,
    Caller(who): Caller,
    Query(q): Query<PageQuery>,
) -> AppResult<Json<CampaignPage>> {
    let (items, next) = coupons.list(scope(&who)?, q.limit.unwrap_or(PAGE_DEFAULT), q.after.as_deref()).await?;
    Ok(Json(CampaignPage { items, next }))
}

/// One of the caller's campaigns, with its figures.
#[utoipa::path(
    get,
    path = "/api/v1/seller/campaigns/{campaign}",
    operation_id = "get_campaign",
    tag = "seller",
    security(("bearer" = [])),
    params(("campaign" = String, Path, description = "Campaign id", example = "demo-10-percent")),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 400, description = "`bad_request`: a campaign id that is not UTF-8", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such campaign, or another seller's", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn get(
    State(coupons): State<Arc<CouponService>>,
    Caller(who): Caller,
    Path(campaign): Path<String>,
) -> AppResult<Json<CampaignView>> {
    Ok(Json(coupons.get(scope(&who)?, &campaign).await?))
}

/// Pauses, resumes, extends or restocks a campaign.
///
/// Any subset of `paused`, `ends_at` and `stock` (null: unlimited; never
/// below `issued`). Effective on every node within a second.
#[utoipa::path(
    patch,
    path = "/api/v1/seller/campaigns/{campaign}",
    operation_id = "patch_campaign",
    tag = "seller",
    security(("bearer" = [])),
    params(("campaign" = String, Path, description = "Campaign id", example = "demo-10-percent")),
    request_body = CampaignPatch,
    responses(
        (status = 200, description = "The campaign now", body = CampaignView),
        (
            status = 400,
            description = "`bad_request`: not JSON, an unknown field, or invalid values (`error.fields` names each)",
            body = ErrorResponse,
        ),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such campaign, or another seller's", body = ErrorResponse),
        (status = 503, description = "`unavailable`: a store cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn patch(
    State(coupons): State<Arc<CouponService>>,
    Caller(who): Caller,
    Path(campaign): Path<String>,
    FieldJson(body): FieldJson<CampaignPatch>,
) -> AppResult<Json<CampaignView>> {
    Ok(Json(coupons.patch(scope(&who)?, &campaign, &body).await?))
}
