//! The one error type the transports speak, and its mapping to the
//! protocol's error codes: HTTP statuses for REST, `error` frames for the
//! socket. Internal causes are logged here and never shown to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::auth::AuthError;
use crate::domain::coupons::FieldErrors;
use crate::domain::queue::InvalidSetting;
use crate::domain::seats::HoldRequestError;
use crate::store::StoreError;

/// Longest error message a client is sent, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

pub use qt_protocol::ErrorCode;
use qt_protocol::error::{ErrorBody, ErrorResponse};

/// The HTTP status of each error code.
pub trait HttpStatus {
    fn status(self) -> StatusCode;
}

impl HttpStatus for ErrorCode {
    fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::NotAdmitted => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::SeatUnavailable | Self::HoldLimit | Self::SoldOut | Self::AlreadyClaimed | Self::Conflict => {
                StatusCode::CONFLICT
            }
            Self::NotActive | Self::OrderExpired => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("not admitted to this event; join its waiting room first")]
    NotAdmitted,
    #[error("too many requests; slow down")]
    RateLimited,
    #[error(transparent)]
    InvalidSetting(#[from] InvalidSetting),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("temporarily unavailable; retry shortly")]
    Unavailable,
    #[error("seats not available: {}", .0.join(", "))]
    SeatUnavailable(Vec<String>),
    #[error("not enough free seats left for that request")]
    NoSeatsLeft,
    #[error("at most {max} seats per buyer for this event; you hold {held}")]
    HoldLimit { held: u32, max: u32 },
    #[error(transparent)]
    HoldRequest(#[from] HoldRequestError),
    #[error("every coupon of this campaign has been claimed")]
    CouponSoldOut,
    #[error("you already have a coupon from this campaign")]
    AlreadyClaimed,
    #[error("{0}")]
    NotActive(String),
    #[error(transparent)]
    Invalid(#[from] FieldErrors),
    #[error("{0}")]
    Conflict(String),
    #[error("this order has expired; check out again")]
    OrderExpired,
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) | Self::InvalidSetting(_) => ErrorCode::BadRequest,
            Self::Auth(AuthError::WrongRole) => ErrorCode::Forbidden,
            Self::Auth(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::NotAdmitted => ErrorCode::NotAdmitted,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::Store(e) if e.is_unavailable() => ErrorCode::Unavailable,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::Store(_) => ErrorCode::Internal,
            Self::SeatUnavailable(_) => ErrorCode::SeatUnavailable,
            Self::NoSeatsLeft => ErrorCode::SoldOut,
            Self::HoldLimit { .. } | Self::HoldRequest(HoldRequestError::TooMany(_)) => ErrorCode::HoldLimit,
            Self::HoldRequest(HoldRequestError::Unknown(_)) => ErrorCode::NotFound,
            Self::HoldRequest(_) => ErrorCode::BadRequest,
            Self::CouponSoldOut => ErrorCode::SoldOut,
            Self::AlreadyClaimed => ErrorCode::AlreadyClaimed,
            Self::NotActive(_) => ErrorCode::NotActive,
            Self::Invalid(_) => ErrorCode::BadRequest,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::OrderExpired => ErrorCode::OrderExpired,
        }
    }

    /// The text a client may see; internal causes stay in the log. Parser
    /// messages may quote the input, so it is cut to a bounded length.
    pub fn public_message(&self) -> String {
        let mut text = self.message_text();
        if let Some((cut, _)) = text.char_indices().nth(MAX_MESSAGE_CHARS) {
            text.truncate(cut);
            text.push('…');
        }
        text
    }

    fn message_text(&self) -> String {
        match self.code() {
            ErrorCode::Internal => {
                tracing::error!(error = %self, "internal error");
                "internal error".into()
            }
            ErrorCode::Unavailable => {
                tracing::warn!(error = %self, "backing store unavailable");
                "temporarily unavailable; retry shortly".into()
            }
            _ => self.to_string(),
        }
    }

    /// The body of an `error` frame or response.
    pub fn body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code(), self.public_message());
        match self {
            Self::SeatUnavailable(seats) | Self::HoldRequest(HoldRequestError::Unknown(seats)) => {
                body.seats = Some(seats.clone());
            }
            Self::HoldLimit { held, max } => {
                body.max = Some(*max);
                body.held = Some(*held);
            }
            Self::HoldRequest(HoldRequestError::TooMany(max)) => body.max = Some(*max),
            Self::Invalid(FieldErrors(fields)) => body.fields = Some(fields.clone()),
            _ => {}
        }
        body
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.code().status();
        (status, axum::Json(ErrorResponse { error: self.body() })).into_response()
    }
}

pub type AppResult<T> = Result<T, AppError>;
