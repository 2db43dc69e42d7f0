//! Error codes and the one error body: the `error` frame on the socket,
//! `{"error": …}` over REST.

use serde::{Deserialize, Serialize};

/// Error codes of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    NotAdmitted,
    SeatUnavailable,
    HoldLimit,
    SoldOut,
    AlreadyClaimed,
    NotActive,
    OrderExpired,
    PaymentDeclined,
    RateLimited,
    Unavailable,
    Internal,
    /// The request clashes with what exists (an id taken, an object in use).
    Conflict,
}

/// What went wrong, with the details some codes carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// `seat_unavailable`: the seats that are taken; `not_found` for seat
    /// ids: the unknown ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<Vec<String>>,
    /// `hold_limit`: seats per buyer, and how many the buyer holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<u32>,
    /// `bad_request` from a validation: each field that is wrong, and what
    /// is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), seats: None, max: None, held: None, fields: None }
    }
}

/// A REST error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}
