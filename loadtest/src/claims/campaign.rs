//! The storm's campaign as its seller makes and reads it
//! (`/api/v1/seller/campaigns`), and a buyer's own coupons over REST
//! (`GET /api/v1/me/coupons`), in the shared wire types.

use std::time::Duration;

use anyhow::{Context, ensure};
use qt_protocol::coupons::{CampaignView, FundedBy, MyCoupons, NewCampaign};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::claims::wire::Listing;
use crate::common::http1;
use crate::common::net::Target;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The campaign runs from a minute ago (claimable at once, whatever the
/// clocks) for a day.
const STARTED_S: i64 = 60;
const LASTS_S: i64 = 86_400;

/// A fixed 10.00 off, funded by the seller, `stock` coupons (`None`:
/// unlimited), claimable from now.
pub fn new_campaign(id: &str, stock: Option<u64>, now: OffsetDateTime) -> anyhow::Result<NewCampaign> {
    let at = |s: i64| (now + time::Duration::seconds(s)).replace_nanosecond(0).unwrap_or(now).format(&Rfc3339);
    Ok(NewCampaign {
        id: Some(id.to_owned()),
        name: format!("qt-load storm {id}"),
        kind: "fixed".into(),
        value: 1_000,
        max_discount: None,
        min_spend: None,
        stock: Some(stock.map(i64::try_from).transpose().context("--stock is too large")?),
        starts_at: at(-STARTED_S)?,
        ends_at: at(LASTS_S)?,
        events: None,
        tiers: None,
        funded_by: FundedBy { seller: 100, platform: 0 },
    })
}

/// The seller's side of the server.
pub struct Seller {
    pub target: Target,
    pub token: String,
}

impl Seller {
    async fn call(&self, method: &str, path: &str, body: Option<&str>, want: u16) -> anyhow::Result<CampaignView> {
        let (status, reply) =
            http1::fetch(self.target.addr, method, path, Some(&self.token), body, CALL_TIMEOUT).await?;
        ensure!(status == want, "{method} {path} answered {status}: {}", String::from_utf8_lossy(&reply));
        serde_json::from_slice(&reply).with_context(|| format!("{method} {path} did not answer a campaign"))
    }

    pub async fn create(&self, c: &NewCampaign) -> anyhow::Result<CampaignView> {
        let body = serde_json::to_string(c)?;
        self.call("POST", "/api/v1/seller/campaigns", Some(&body), 201).await
    }

    pub async fn get(&self, id: &str) -> anyhow::Result<CampaignView> {
        self.call("GET", &format!("/api/v1/seller/campaigns/{id}"), None, 200).await
    }
}

/// Buyer `index`'s coupons of `campaign`, as `GET /api/v1/me/coupons`
/// lists them with its `token`.
pub async fn rest_listing(target: &Target, token: &str, index: u64, campaign: &str) -> anyhow::Result<Listing> {
    let path = "/api/v1/me/coupons";
    let (status, body) = http1::fetch(target.addr, "GET", path, Some(token), None, CALL_TIMEOUT).await?;
    ensure!(status == 200, "GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
    let mine: MyCoupons = serde_json::from_slice(&body).with_context(|| format!("GET {path} is not a list"))?;
    let ids = mine.items.into_iter().filter(|c| c.campaign == campaign).map(|c| c.coupon).collect();
    Ok(Listing { index, ids })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_campaign_is_claimable_now_and_serialises_as_the_api_wants() {
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let c = new_campaign("storm-1", Some(300), now).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["id"], "storm-1");
        assert_eq!(
            (v["kind"].as_str(), v["value"].as_i64(), v["stock"].as_i64()),
            (Some("fixed"), Some(1_000), Some(300))
        );
        assert_eq!(v["funded_by"], serde_json::json!({"seller": 100, "platform": 0}));
        assert_eq!(
            (v["starts_at"].as_str(), v["ends_at"].as_str()),
            (Some("2030-03-17T17:45:40Z"), Some("2030-03-18T17:46:40Z"))
        );
        let unlimited = serde_json::to_value(new_campaign("s", None, now).unwrap()).unwrap();
        assert!(unlimited["stock"].is_null());
    }
}
