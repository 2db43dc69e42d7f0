//! Where the checkout audit reads the truth, and the seller's calls around
//! the run: the payment sandbox's ledger (`GET {pg}/v1/charges`, every
//! charge, or order by order when the ledger is larger than one read), the
//! event's seat map (`GET /api/v1/events/{event}/seatmap`), the run's coupon
//! campaign and the seller's refunds (`/api/v1/seller/…`). All in the
//! shared wire types where the contract has them; every call bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use qt_protocol::coupons::{CampaignView, FundedBy, NewCampaign};
use qt_protocol::frames::{SeatStatus, Seatmap};
use qt_protocol::orders::OrderView;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::http1;
use crate::common::net::Target;

const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The most charges one ledger read returns (the sandbox's `MAX_LIMIT`).
pub const LEDGER_LIMIT: usize = 10_000;

/// A base URL on loopback and the path it starts with (no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub target: Target,
    pub path: String,
}

impl Base {
    /// `http://127.0.0.1:18083/pg-sandbox` or `http://127.0.0.1:18090`.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let target = Target::parse(url)?;
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let path = path.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
        Ok(Self { target, path: path.to_owned() })
    }

    pub fn describe(&self) -> String {
        format!("http://{}{}", self.target.host, self.path)
    }
}

/// One charge of the sandbox's audit view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub payment_key: String,
    pub order_id: String,
    pub amount: i64,
    /// `DONE`, or `CANCELED` once refunded.
    pub status: String,
    #[serde(default)]
    pub approved_at: String,
}

#[derive(Deserialize)]
struct Charges {
    charges: Vec<Charge>,
}

/// The ledger as read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ledger {
    pub charges: Vec<Charge>,
    /// Read order by order (the whole ledger did not fit one read): it then
    /// holds only the charges of the orders asked for.
    pub by_order: bool,
}

async fn get_json<T: serde::de::DeserializeOwned>(target: &Target, path: &str) -> anyhow::Result<T> {
    let (status, body) = http1::fetch(target.addr, "GET", path, None, None, CALL_TIMEOUT).await?;
    ensure!(status == 200, "GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).with_context(|| format!("GET {path} did not answer what it should"))
}

/// Every charge of the sandbox; when they fill one read, the charges of
/// `orders` one by one instead.
pub async fn read_ledger(pg: &Base, orders: &[String]) -> anyhow::Result<Ledger> {
    let all: Charges = get_json(&pg.target, &format!("{}/v1/charges?limit={LEDGER_LIMIT}", pg.path)).await?;
    if all.charges.len() < LEDGER_LIMIT {
        return Ok(Ledger { charges: all.charges, by_order: false });
    }
    let mut charges = Vec::new();
    for order in orders {
        let one: Charges =
            get_json(&pg.target, &format!("{}/v1/charges?orderId={order}&limit={LEDGER_LIMIT}", pg.path)).await?;
        charges.extend(one.charges);
    }
    Ok(Ledger { charges, by_order: true })
}

/// The store's seat map: seat id → status.
pub async fn seat_map(server: &Target, event: &str) -> anyhow::Result<(u64, BTreeMap<String, SeatStatus>)> {
    let map: Seatmap = get_json(server, &format!("/api/v1/events/{event}/seatmap")).await?;
    Ok((map.version, map.statuses().into_iter().collect()))
}

/// The event's seller.
pub struct Seller {
    pub target: Target,
    pub token: String,
}

impl Seller {
    async fn call(&self, method: &str, path: &str, body: &str, want: u16) -> anyhow::Result<Vec<u8>> {
        let (status, reply) =
            http1::fetch(self.target.addr, method, path, Some(&self.token), Some(body), CALL_TIMEOUT).await?;
        ensure!(status == want, "{method} {path} answered {status}: {}", String::from_utf8_lossy(&reply));
        Ok(reply)
    }

    /// A fixed `value` off for `event`, unlimited, funded by the seller,
    /// claimable from a minute ago for a day.
    pub async fn create_campaign(&self, id: &str, event: &str, value: i64) -> anyhow::Result<CampaignView> {
        let c = new_campaign(id, event, value, OffsetDateTime::now_utc())?;
        let reply = self.call("POST", "/api/v1/seller/campaigns", &serde_json::to_string(&c)?, 201).await?;
        serde_json::from_slice(&reply).context("POST /api/v1/seller/campaigns did not answer a campaign")
    }

    /// Refunds a paid order; the order as it is afterwards.
    pub async fn refund(&self, order: &str) -> anyhow::Result<OrderView> {
        let path = format!("/api/v1/seller/orders/{order}/refund");
        let reply = self.call("POST", &path, r#"{"reason":"qt-load checkout refund"}"#, 200).await?;
        serde_json::from_slice(&reply).with_context(|| format!("POST {path} did not answer an order"))
    }
}

pub fn new_campaign(id: &str, event: &str, value: i64, now: OffsetDateTime) -> anyhow::Result<NewCampaign> {
    let at = |s: i64| (now + time::Duration::seconds(s)).replace_nanosecond(0).unwrap_or(now).format(&Rfc3339);
    Ok(NewCampaign {
        id: Some(id.to_owned()),
        name: format!("qt-load checkout {id}"),
        kind: "fixed".into(),
        value,
        max_discount: None,
        min_spend: None,
        stock: Some(None),
        starts_at: at(-60)?,
        ends_at: at(86_400)?,
        events: Some(vec![event.to_owned()]),
        tiers: None,
        funded_by: FundedBy { seller: 100, platform: 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_keep_their_path() {
        let b = Base::parse("http://127.0.0.1:18083/pg-sandbox/").unwrap();
        assert_eq!((b.target.host.as_str(), b.path.as_str()), ("127.0.0.1:18083", "/pg-sandbox"));
        assert_eq!(b.describe(), "http://127.0.0.1:18083/pg-sandbox");
        assert_eq!(Base::parse("http://127.0.0.1:9").unwrap().path, "");
        assert!(Base::parse("http://10.0.0.1:9/pg").is_err(), "loopback only");
    }

    #[test]
    fn the_ledger_and_the_campaign_read_and_write_as_the_contract_says() {
        let text = r#"{"charges":[{"paymentKey":"ok-1","orderId":"o-123456","amount":99000,"status":"DONE","approvedAt":"t"}]}"#;
        let c: Charges = serde_json::from_str(text).unwrap();
        assert_eq!((c.charges[0].order_id.as_str(), c.charges[0].amount), ("o-123456", 99_000));
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let v = serde_json::to_value(new_campaign("co-1", "demo-live", 5_000, now).unwrap()).unwrap();
        assert!(v["stock"].is_null() && v.get("stock").is_some(), "unlimited, said so");
        assert_eq!(v["events"], serde_json::json!(["demo-live"]));
        assert_eq!(v["funded_by"], serde_json::json!({"seller": 100, "platform": 0}));
    }
}
