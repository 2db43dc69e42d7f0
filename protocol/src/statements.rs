//! Settlement statements on the wire: `POST /api/v1/seller/statements`,
//! their reads and the close.

use serde::{Deserialize, Serialize};

/// A statement's period: `from` inclusive, `to` exclusive (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStatement {
    /// One event of the seller's, or every event when absent.
    #[serde(default)]
    pub event: Option<String>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatementStatus {
    /// Its figures follow the ledger until it is closed.
    Open,
    /// Its figures never change again.
    Closed,
}

impl StatementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementStatus::Open => "open",
            StatementStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<StatementStatus> {
        [StatementStatus::Open, StatementStatus::Closed].into_iter().find(|st| st.as_str() == s)
    }
}

/// A statement: what the seller is owed for the period, in minor units;
/// `net = gross - discounts_seller - fees + fee_clawbacks - refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Statement {
    pub id: String,
    pub seller: String,
    pub event: Option<String>,
    pub from: String,
    pub to: String,
    pub status: StatementStatus,
    pub currency: String,
    /// Orders paid in the period.
    pub orders: i64,
    /// Tickets sold less tickets refunded.
    pub tickets: i64,
    /// Ticket prices of the orders paid, before any discount.
    pub gross: i64,
    pub discounts_seller: i64,
    /// Paid to the seller by the platform: does not lower `net`.
    pub discounts_platform: i64,
    pub fees: i64,
    pub fee_clawbacks: i64,
    pub refunds: i64,
    pub net: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementPage {
    pub items: Vec<Statement>,
    pub next: Option<String>,
}
