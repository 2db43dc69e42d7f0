//! REST routes and the extractors they share. Handlers parse, call a
//! service, and shape the answer; the rules live in `services` and `domain`.

mod coupons;
mod events;
pub mod guard;
mod guest;
mod meta;
mod orders;
mod seller;
pub mod serve;
pub mod state;
mod statements;
mod venues;
mod web;

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::AppError;
pub use state::AppState;

/// The frame of the OpenAPI document. Its REST paths come from [`api`],
/// which registers each route together with its operation; the socket's
/// upgrade is listed here, as it is served beside them.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "QueueTicket API",
        version = "1",
        description = "REST surface of QueueTicket; the wire contract is docs/protocol.md. \
            Buyers normally use the WebSocket at `/ws`; these routes serve clients that cannot hold a \
            socket, and sellers.\n\n\
            Every error is `{\"error\": {\"code\", \"message\"}}` with the protocol's error code and \
            the matching status. Besides those listed per operation, any request may be answered 405 \
            (with `Allow`), 408 (a body still arriving after 30 s), 414 (a target over 8 KiB), 431 \
            (over 100 headers or 32 KiB of them) or 500 (`internal`).\n\n\
            Money is an integer amount in the minor unit of the event's currency. Times are RFC 3339 UTC \
            strings unless a name ends in `_ms` (milliseconds) or `_s` (seconds).",
    ),
    paths(crate::ws::upgrade),
    modifiers(&BearerJwt),
    tags(
        (name = "identity", description = "Tokens for anonymous buyers"),
        (name = "events", description = "Public event listing and seat maps"),
        (name = "queue", description = "The waiting room, for clients that poll"),
        (name = "coupons", description = "Buyers' coupons and events' campaigns"),
        (name = "orders", description = "Buyers' orders"),
        (name = "seller", description = "A seller's own events and campaigns, scoped to the token's seller"),
        (name = "socket", description = "The buyer WebSocket"),
        (name = "meta", description = "Health, metrics and this document"),
    ),
)]
struct ApiDoc;

/// The `bearer` scheme the operations' `security` names.
struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("A login JWT (`sub`, `role`, `exp`; `seller` for sellers), HS256 or RS256"))
            .build();
        doc.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every REST route, each registered with its operation in the document:
/// a route added any other way is missing from it (a test checks both
/// directions against the served router).
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::health))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(guest::issue))
        .routes(routes!(events::list))
        .routes(routes!(events::detail))
        .routes(routes!(events::seatmap))
        .routes(routes!(events::join_queue, events::queue_status, events::leave_queue))
        .routes(routes!(seller::events))
        .routes(routes!(seller::queue_settings, seller::patch_queue))
        .routes(routes!(coupons::mine))
        .routes(routes!(coupons::offers))
        .routes(routes!(coupons::create, coupons::list))
        .routes(routes!(coupons::get, coupons::patch))
        .routes(routes!(orders::mine))
        .routes(routes!(orders::of_seller))
        .routes(routes!(orders::refund))
        .routes(routes!(venues::create, venues::list))
        .routes(routes!(venues::get, venues::replace, venues::delete))
        .routes(routes!(statements::create, statements::list))
        .routes(routes!(statements::get))
        .routes(routes!(statements::close))
}

/// The OpenAPI document of the REST routes, as `/api/v1/openapi.json`
/// serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

pub fn router(state: AppState) -> Router {
    let request_timeout = Some(Duration::from_secs(state.cfg.http_request_timeout_s));
    Router::new()
        .route("/", get(web::index))
        // Any other file of web/. The routes below match first; a path that
        // names no file gets the fallback's JSON 404, whatever the method.
        .route("/{*path}", axum::routing::any(web::asset))
        .merge(api())
        .route("/ws", get(crate::ws::upgrade))
        .fallback(|| async { AppError::NotFound("route") })
        // A request body trickled in slowly holds its connection no longer.
        .layer(axum::middleware::from_fn_with_state(guard::GuardLimits { request_timeout }, guard::guard))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The operator listener of `--metrics-listen`: `/metrics` for anyone who
/// can reach that address, and `/healthz`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(meta::metrics_open))
        .route("/healthz", get(meta::health))
        .fallback(|| async { AppError::NotFound("route") })
        .layer(axum::middleware::from_fn_with_state(guard::GuardLimits { request_timeout: None }, guard::guard))
        .with_state(state)
}

/// JSON bodies whose type errors name the field: `bad_request` with
/// `error.fields` = {path: what is wrong}.
pub struct FieldJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for FieldJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let essence = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        if !essence.is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")))
        {
            return Err(AppError::BadRequest("expected a body with `Content-Type: application/json`".into()));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AppError::BadRequest(format!("cannot read the body: {e}")))?;
        parse_field_json(&bytes).map(FieldJson)
    }
}

/// A JSON body whose type errors name the field (see [`FieldJson`]).
pub(super) fn parse_field_json<T: DeserializeOwned>(bytes: &[u8]) -> crate::error::AppResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let why = e.inner().to_string();
            // serde names a missing field in its message, at the path
            // of the object that lacks it; an unknown field's path
            // already ends with its name.
            let missing = why.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
            let path = match (e.path().to_string(), missing) {
                (p, Some(name)) if p.is_empty() || p == "." => name.to_owned(),
                (p, Some(name)) => format!("{p}.{name}"),
                (p, None) => p,
            };
            // Syntax errors and a wrong top level have no field to name.
            if path.is_empty() || path == "." || e.inner().is_syntax() || e.inner().is_eof() {
                return Err(AppError::BadRequest(format!("invalid JSON body: {why}")));
            }
            let why = why.split(" at line ").next().unwrap_or(&why).to_owned();
            let fields = std::collections::BTreeMap::from([(path, why)]);
            return Err(AppError::Invalid(crate::domain::coupons::FieldErrors(fields)));
        }
    };
    de.end().map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// JSON bodies whose every rejection is our `bad_request`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(AppError::BadRequest(e.body_text())),
            Err(e) => Err(AppError::BadRequest(e.body_text())),
        }
    }
}
