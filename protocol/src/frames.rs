//! Server → client messages. Each is a struct; `ServerMsg` tags them with
//! their `type`. A reply to a request carries its `req` beside the message
//! (`encode`, `Envelope`).

use serde::{Deserialize, Serialize};

use crate::client::Req;
use crate::coupons::{CouponView, Coupons};
use crate::error::ErrorBody;
use crate::orders::{OrderView, Orders, PaymentView};

/// Every message a server sends on the buyer socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Hello(Hello),
    Queue(QueueView),
    Admitted(Admitted),
    Left(Left),
    Pong,
    Closing(Closing),
    Error(ErrorBody),
    Seatmap(Seatmap),
    Seats(Seats),
    Held(Held),
    Released(Released),
    HoldExpired(HoldExpired),
    Unwatched(Unwatched),
    Coupon(CouponView),
    Coupons(Coupons),
    Order(OrderView),
    Payment(PaymentView),
    Orders(Orders),
}

impl ServerMsg {
    /// The message's `type`, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMsg::Hello(_) => "hello",
            ServerMsg::Queue(_) => "queue",
            ServerMsg::Admitted(_) => "admitted",
            ServerMsg::Left(_) => "left",
            ServerMsg::Pong => "pong",
            ServerMsg::Closing(_) => "closing",
            ServerMsg::Error(_) => "error",
            ServerMsg::Seatmap(_) => "seatmap",
            ServerMsg::Seats(_) => "seats",
            ServerMsg::Held(_) => "held",
            ServerMsg::Released(_) => "released",
            ServerMsg::HoldExpired(_) => "hold_expired",
            ServerMsg::Unwatched(_) => "unwatched",
            ServerMsg::Coupon(_) => "coupon",
            ServerMsg::Coupons(_) => "coupons",
            ServerMsg::Order(_) => "order",
            ServerMsg::Payment(_) => "payment",
            ServerMsg::Orders(_) => "orders",
        }
    }
}

/// A message with the request id it answers, as it travels.
#[derive(Serialize)]
struct Outgoing<'a, T: Serialize> {
    #[serde(flatten)]
    msg: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    req: Option<&'a Req>,
}

/// The text of a frame: the message and, answering a request, its `req`.
pub fn encode<T: Serialize>(msg: &T, req: Option<&Req>) -> String {
    // Wire types are plain structs, enums and maps: serializing cannot fail.
    serde_json::to_string(&Outgoing { msg, req }).unwrap_or_default()
}

/// A received frame: the message and the `req` it answers, if any.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Envelope {
    #[serde(flatten)]
    pub msg: ServerMsg,
    #[serde(default)]
    pub req: Option<Req>,
}

/// `hello`: the first frame on every socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub user: String,
    pub server_time: String,
    pub protocol: u32,
}

/// `queue`: where the buyer stands and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueView {
    pub event: String,
    pub position: u64,
    pub waiting: u64,
    pub eta_s: u64,
    pub eta_low_s: u64,
    pub eta_high_s: u64,
    /// The current (measured) admission rate.
    pub rate_per_min: u64,
    /// Admissions are paused by the seller; the ETA assumes they resume.
    pub paused: bool,
}

/// `admitted`: the pass and the end of the shopping window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Admitted {
    pub event: String,
    pub pass: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Hold rules of the event, so a client can say them up front (additions).
    pub max_seats_per_buyer: u32,
    pub hold_s: u32,
}

/// Why a buyer's place is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// The buyer gave it up, on this or another socket.
    Left,
    /// Dropped after the grace, as seen by a status refresh.
    Gone,
    /// The shopping window ended.
    WindowEnded,
}

/// `left`: the buyer's place (or admission) is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    pub event: String,
    pub reason: LeftReason,
}

/// `closing`: the server restarts; reconnect after about this long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    pub reason: String,
    pub reconnect_after_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeatStatus {
    Free,
    Held,
    Sold,
}

impl SeatStatus {
    /// The letter of a seat in a compact snapshot's `status`.
    pub fn code(self) -> char {
        match self {
            SeatStatus::Free => 'f',
            SeatStatus::Held => 'h',
            SeatStatus::Sold => 's',
        }
    }

    pub fn from_code(c: char) -> Option<Self> {
        match c {
            'f' => Some(SeatStatus::Free),
            'h' => Some(SeatStatus::Held),
            's' => Some(SeatStatus::Sold),
            _ => None,
        }
    }
}

/// A price tier; seats name their tier by `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tier {
    pub id: String,
    pub name: String,
    /// In the minor unit of the event's currency.
    pub price: i64,
}

/// `seatmap`: every seat of the event at `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Seatmap {
    pub event: String,
    pub version: u64,
    pub currency: String,
    pub tiers: Vec<Tier>,
    #[serde(flatten)]
    pub seats: SeatmapSeats,
}

/// The seats of a `seatmap`, in the form the watcher asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SeatmapSeats {
    /// `"format": "compact"`: rows, then one status letter per seat in row
    /// order.
    Compact {
        format: CompactFormat,
        rows: Vec<CompactRow>,
        status: String,
    },
    Full {
        seats: Vec<MapSeat>,
    },
}

/// The `format` value of a compact snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompactFormat {
    Compact,
}

/// A seat of the full snapshot form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapSeat {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: i64,
    pub x: i64,
    pub y: i64,
    pub tier: String,
    pub status: SeatStatus,
}

/// A row of the compact form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CompactRow {
    /// `count` seats numbered from `n0`, at `x0 + i·dx`, ids
    /// `SECTION-ROW-NUMBER`, one tier.
    Run { section: String, row: String, tier: String, y: i64, n0: i64, x0: i64, dx: i64, count: u64 },
    /// An irregular row, its seats spelled out.
    Spelled { section: String, row: String, seats: Vec<RowSeat> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowSeat {
    pub id: String,
    pub number: i64,
    pub x: i64,
    pub y: i64,
    pub tier: String,
}

impl Seatmap {
    /// Every seat id with its status, in the snapshot's order, whatever its
    /// form.
    pub fn statuses(&self) -> Vec<(String, SeatStatus)> {
        match &self.seats {
            SeatmapSeats::Full { seats } => seats.iter().map(|s| (s.id.clone(), s.status)).collect(),
            SeatmapSeats::Compact { rows, status, .. } => {
                let mut ids = Vec::new();
                for row in rows {
                    match row {
                        CompactRow::Run { section, row, n0, count, .. } => {
                            ids.extend((0..*count as i64).map(|k| format!("{section}-{row}-{}", n0 + k)))
                        }
                        CompactRow::Spelled { seats, .. } => ids.extend(seats.iter().map(|s| s.id.clone())),
                    }
                }
                let letters = status.chars().map(|c| SeatStatus::from_code(c).unwrap_or(SeatStatus::Sold));
                ids.into_iter().zip(letters).collect()
            }
        }
    }
}

/// One seat's new status in a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatChange {
    pub id: String,
    pub status: SeatStatus,
}

/// `seats`: the changes that took the map to `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    pub event: String,
    pub version: u64,
    pub changes: Vec<SeatChange>,
}

/// `held`: seats this buyer now holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub event: String,
    pub seats: Vec<String>,
    pub expires_at: String,
    /// The seat-map version right after this hold (an addition): diffs up
    /// to it may still arrive and already include these seats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `released`: the seats given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub event: String,
    pub seats: Vec<String>,
    /// The seat-map version right after the release (an addition).
    pub version: u64,
}

/// `hold_expired`: holds that ended on the server clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldExpired {
    pub event: String,
    pub seats: Vec<String>,
}

/// `unwatched`: no more diffs for this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unwatched {
    pub event: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn round_trip(msg: ServerMsg, req: Option<Req>) -> serde_json::Value {
        let text = encode(&msg, req.as_ref());
        let back: Envelope = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(back, Envelope { msg: msg.clone(), req }, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], msg.kind());
        v
    }

    #[test]
    fn frames_carry_type_and_req_and_read_back() {
        assert_eq!(encode(&ServerMsg::Pong, Some(&Req::Str("x".into()))), r#"{"type":"pong","req":"x"}"#);
        let left = ServerMsg::Left(Left { event: "e".into(), reason: LeftReason::WindowEnded });
        assert_eq!(encode(&left, None), r#"{"type":"left","event":"e","reason":"window_ended"}"#);
        round_trip(left, Some(Req::Int(3)));
        let v = round_trip(ServerMsg::Error(ErrorBody::new(ErrorCode::NotAdmitted, "no")), Some(Req::Int(9)));
        assert_eq!(v["code"], "not_admitted");
        assert_eq!(v["req"], 9);
        round_trip(
            ServerMsg::Held(Held {
                event: "e".into(),
                seats: vec!["A-1-1".into()],
                expires_at: "t".into(),
                version: None,
            }),
            None,
        );
        round_trip(
            ServerMsg::Seats(Seats {
                event: "e".into(),
                version: 4,
                changes: vec![SeatChange { id: "A,1".into(), status: SeatStatus::Held }],
            }),
            None,
        );
    }

    #[test]
    fn both_snapshot_forms_read_back_and_list_the_same_seats() {
        let tiers = vec![Tier { id: "a".into(), name: "A".into(), price: 1000 }];
        let full = Seatmap {
            event: "e".into(),
            version: 2,
            currency: "KRW".into(),
            tiers: tiers.clone(),
            seats: SeatmapSeats::Full {
                seats: ["A-1-1", "A-1-2", "box"]
                    .iter()
                    .zip([SeatStatus::Free, SeatStatus::Held, SeatStatus::Sold])
                    .map(|(id, status)| MapSeat {
                        id: (*id).into(),
                        section: "A".into(),
                        row: "1".into(),
                        number: 1,
                        x: 0,
                        y: 0,
                        tier: "a".into(),
                        status,
                    })
                    .collect(),
            },
        };
        let compact = Seatmap {
            seats: SeatmapSeats::Compact {
                format: CompactFormat::Compact,
                rows: vec![
                    CompactRow::Run {
                        section: "A".into(),
                        row: "1".into(),
                        tier: "a".into(),
                        y: 0,
                        n0: 1,
                        x0: 0,
                        dx: 10,
                        count: 2,
                    },
                    CompactRow::Spelled {
                        section: "B".into(),
                        row: "1".into(),
                        seats: vec![RowSeat { id: "box".into(), number: 1, x: 0, y: 9, tier: "a".into() }],
                    },
                ],
                status: "fhs".into(),
            },
            ..full.clone()
        };
        let v = round_trip(ServerMsg::Seatmap(compact.clone()), Some(Req::Int(1)));
        assert_eq!(v["format"], "compact");
        round_trip(ServerMsg::Seatmap(full.clone()), None);
        assert_eq!(full.statuses(), compact.statuses());
    }
}
