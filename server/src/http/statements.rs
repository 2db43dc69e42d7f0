//! Settlement statement routes, scoped to the token's seller (another
//! seller's statement is `not_found`, exactly like a missing one) or, for
//! an admin, to all.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use qt_protocol::error::ErrorResponse;
use qt_protocol::statements::{NewStatement, Statement, StatementPage};

use super::FieldJson;
use super::coupons::{PageQuery, scope};
use crate::edge::Caller;
use crate::error::AppResult;
use crate::services::coupons::PAGE_DEFAULT;
use crate::services::settlement::SettlementService;

/// Makes the statement of a period (of one event, or all the seller's),
/// or answers the one made before for the same event and period.
#[utoipa::path(
    post,
    path = "/api/v1/seller/statements",
    operation_id = "create_statement",
    tag = "seller",
    security(("bearer" = [])),
    request_body = NewStatement,
    responses(
        (status = 201, description = "The new statement", body = Statement),
        (status = 200, description = "The statement made before for this event and period", body = Statement),
        (
            status = 400,
            description = "`bad_request`: not JSON, an unknown field, or invalid values (`error.fields` names each)",
            body = ErrorResponse,
        ),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such event, or another seller's", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn create(
    State(settlement): State<Arc<SettlementService>>,
    Caller(who): Caller,
    FieldJson(body): FieldJson<NewStatement>,
) -> AppResult<(StatusCode, Json<Statement>)> {
    let (statement, created) = settlement.create(scope(&who)?, &body).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(statement)))
}

/// The caller's statements, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/seller/statements",
    operation_id = "list_statements",
    tag = "seller",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of statements", body = StatementPage),
        (status = 400, description = "`bad_request`: a bad `limit` or `after`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn list(
    State(settlement): State<Arc<SettlementService>>,
    Caller(who): Caller,
    Query(q): Query<PageQuery>,
) -> AppResult<Json<StatementPage>> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    Ok(Json(settlement.list(scope(&who)?, limit, q.after.as_deref()).await?))
}

/// A statement; its lines as CSV (one per sale and per refund) with
/// `Accept: text/csv`, or when the id is followed by `.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/seller/statements/{statement}",
    operation_id = "get_statement",
    tag = "seller",
    security(("bearer" = [])),
    params(("statement" = String, Path, description = "Statement id, or the id and `.csv` for its lines as CSV")),
    responses(
        (status = 200, description = "The statement", content(
            (Statement = "application/json"),
            (String = "text/csv"),
        )),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such statement, or another seller's", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn get(
    State(settlement): State<Arc<SettlementService>>,
    Caller(who): Caller,
    Path(statement): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/csv")));
    match statement.strip_suffix(".csv") {
        Some(id) => csv(&settlement, scope(&who)?, id).await,
        None if wants_csv => csv(&settlement, scope(&who)?, &statement).await,
        None => Ok(Json(settlement.get(scope(&who)?, &statement).await?).into_response()),
    }
}

async fn csv(
    settlement: &SettlementService,
    scope: crate::services::coupons::Scope<'_>,
    id: &str,
) -> AppResult<Response> {
    let body = settlement.csv(scope, id).await?;
    let name = format!("attachment; filename=\"{id}.csv\"");
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, name)], body)
        .into_response())
}

/// Closes a statement: its figures never change again, and later refunds
/// fall into a later statement. Closing a closed one answers it.
#[utoipa::path(
    post,
    path = "/api/v1/seller/statements/{statement}/close",
    operation_id = "close_statement",
    tag = "seller",
    security(("bearer" = [])),
    params(("statement" = String, Path, description = "Statement id")),
    responses(
        (status = 200, description = "The closed statement", body = Statement),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such statement, or another seller's", body = ErrorResponse),
        (status = 409, description = "`conflict`: the ledger kept changing; try again", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn close(
    State(settlement): State<Arc<SettlementService>>,
    Caller(who): Caller,
    Path(statement): Path<String>,
) -> AppResult<Json<Statement>> {
    Ok(Json(settlement.close(scope(&who)?, &statement).await?))
}
