//! Order routes: a buyer's own orders, and a seller's orders and refunds,
//! scoped to the token's seller (another seller's order is `not_found`,
//! exactly like one that does not exist) or, for an admin, to all.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use qt_protocol::error::ErrorResponse;
use qt_protocol::orders::{OrderPage, OrderView, RefundRequest};

use super::FieldJson;
use super::coupons::scope;
use crate::edge::Caller;
use crate::error::AppResult;
use crate::services::coupons::PAGE_DEFAULT;
use crate::services::orders::OrderService;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct OrdersQuery {
    /// Only this event's orders.
    event: Option<String>,
    /// Items per page: 50 unless given, at most 500.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// The buyer's orders, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/me/orders",
    operation_id = "my_orders",
    tag = "orders",
    security(("bearer" = [])),
    params(OrdersQuery),
    responses(
        (status = 200, description = "A page of the buyer's orders", body = OrderPage),
        (status = 400, description = "`bad_request`: a bad `limit` or `after`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a buyer's token", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn mine(
    State(orders): State<Arc<OrderService>>,
    Caller(who): Caller,
    Query(q): Query<OrdersQuery>,
) -> AppResult<Json<OrderPage>> {
    let who = who.require_buyer()?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    Ok(Json(orders.mine(&who.user, q.event.as_deref(), limit, q.after.as_deref()).await?))
}

/// The caller's orders, newest first, optionally of one event.
#[utoipa::path(
    get,
    path = "/api/v1/seller/orders",
    operation_id = "seller_orders",
    tag = "seller",
    security(("bearer" = [])),
    params(OrdersQuery),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "`bad_request`: a bad `limit` or `after`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn of_seller(
    State(orders): State<Arc<OrderService>>,
    Caller(who): Caller,
    Query(q): Query<OrdersQuery>,
) -> AppResult<Json<OrderPage>> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    Ok(Json(orders.of_seller(scope(&who)?, q.event.as_deref(), limit, q.after.as_deref()).await?))
}

/// Refunds a paid order through the gateway; its seats go back on sale.
///
/// Answers the order: `refunded`, or still `paid` while the gateway has not
/// confirmed the refund (it is retried until it has; the buyer is told).
#[utoipa::path(
    post,
    path = "/api/v1/seller/orders/{order}/refund",
    operation_id = "refund_order",
    tag = "seller",
    security(("bearer" = [])),
    params(("order" = String, Path, description = "Order id")),
    request_body = RefundRequest,
    responses(
        (status = 200, description = "The order now", body = OrderView),
        (
            status = 400,
            description = "`bad_request`: not JSON, or a bad `reason` (`error.fields` names it)",
            body = ErrorResponse,
        ),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such order, or another seller's", body = ErrorResponse),
        (status = 409, description = "`conflict`: the order is not paid", body = ErrorResponse),
        (status = 503, description = "`unavailable`: a store cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn refund(
    State(orders): State<Arc<OrderService>>,
    Caller(who): Caller,
    Path(order): Path<String>,
    FieldJson(body): FieldJson<RefundRequest>,
) -> AppResult<Json<OrderView>> {
    Ok(Json(orders.seller_refund(scope(&who)?, &order, &body.reason).await?))
}
