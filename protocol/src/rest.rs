//! REST bodies shared by the server and its clients.

use serde::{Deserialize, Serialize};

use crate::frames::{Admitted, QueueView, Tier};

/// An event as buyers and sellers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    pub name: String,
    pub seller: String,
    pub venue: String,
    #[schema(format = DateTime)]
    pub starts_at: String,
    #[schema(format = DateTime)]
    pub on_sale_at: String,
    pub currency: String,
    pub tiers: Vec<Tier>,
    /// Whether admissions are paused right now.
    pub paused: bool,
}

/// `POST /api/v1/guest`: a buyer token for an anonymous visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuestToken {
    pub token: String,
    pub user: String,
}

/// The waiting room over REST: the same `queue` or `admitted` message a
/// socket gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueueReply {
    Queue(QueueView),
    Admitted(Admitted),
}
