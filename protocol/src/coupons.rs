//! Coupons on the wire: the `coupon` and `coupons` messages, the buyer's
//! `GET /api/v1/me/coupons`, a buyer's view of an event's campaigns and the
//! seller's campaign routes (`/api/v1/seller/campaigns`).

use serde::{Deserialize, Deserializer, Serialize};

/// One claimed coupon: the `coupon` message, and each item of `coupons`
/// and `GET /api/v1/me/coupons`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CouponView {
    /// The coupon's id (checkout names it).
    pub coupon: String,
    pub campaign: String,
    /// The campaign's name (an addition).
    pub name: String,
    /// `fixed` (an amount off) or `percent`.
    #[schema(example = "fixed")]
    pub kind: String,
    /// The amount off (`fixed`, minor units) or the percentage (`percent`).
    pub value: i64,
    /// Most a discount may be, in minor units; null for no cap.
    pub max_discount: Option<i64>,
    /// Least subtotal, in minor units, the coupon needs.
    pub min_spend: i64,
    /// When the coupon stops being usable (its campaign's end).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When the buyer claimed it (an addition).
    #[schema(format = DateTime)]
    pub claimed_at: String,
    /// The events it applies to; null for every event of the seller (an
    /// addition).
    pub events: Option<Vec<String>>,
    /// The tiers it applies to; null for every tier (an addition).
    pub tiers: Option<Vec<String>>,
}

/// The `coupons` message: the buyer's own unused, valid coupons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Coupons {
    /// Present when the request named an event: only coupons for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub coupons: Vec<CouponView>,
}

/// `GET /api/v1/me/coupons`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MyCoupons {
    pub items: Vec<CouponView>,
}

/// Who pays for a campaign's discounts, in percent; the two sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FundedBy {
    #[schema(minimum = 0, maximum = 100)]
    pub seller: i64,
    #[schema(minimum = 0, maximum = 100)]
    pub platform: i64,
}

/// `POST /api/v1/seller/campaigns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// `[a-z0-9-]{1,64}`; generated when absent.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub id: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `fixed` or `percent`.
    #[schema(example = "fixed", pattern = "^(fixed|percent)$")]
    pub kind: String,
    /// The amount off (`fixed`, minor units, at least 1) or the percentage
    /// (`percent`, 1 to 100).
    #[schema(minimum = 1, maximum = 10_000_000_000_000_i64)]
    pub value: i64,
    /// Most a discount may be (minor units); absent or null for no cap.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10_000_000_000_000_i64)]
    pub max_discount: Option<i64>,
    /// Least subtotal the coupon needs (minor units); 0 when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10_000_000_000_000_i64)]
    pub min_spend: Option<i64>,
    /// How many coupons there are; null for unlimited. Required, so that
    /// leaving it out is never an unlimited campaign by mistake.
    #[serde(deserialize_with = "present")]
    #[schema(minimum = 1, maximum = 100_000_000, value_type = Option<i64>, required = true)]
    pub stock: Option<Option<i64>>,
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// After `starts_at`; coupons expire then.
    #[schema(format = DateTime)]
    pub ends_at: String,
    /// Events of the seller it applies to; absent for all of them.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Tiers it applies to; absent for all.
    #[serde(default)]
    pub tiers: Option<Vec<String>>,
    pub funded_by: FundedBy,
}

/// `PATCH /api/v1/seller/campaigns/{campaign}`: any subset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignPatch {
    #[serde(default)]
    pub paused: Option<bool>,
    /// A new end, after `starts_at` (extends or shortens the campaign).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// A new stock, never below `issued`; null for unlimited.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub stock: Option<Option<i64>>,
}

/// A field that is present, even as null (`Some(None)`), apart from an
/// absent one (`None`, from `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?))
}

/// A campaign as its seller sees it, with its figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub seller: String,
    pub name: String,
    #[schema(example = "fixed")]
    pub kind: String,
    pub value: i64,
    pub max_discount: Option<i64>,
    pub min_spend: i64,
    /// Null for unlimited.
    pub stock: Option<i64>,
    #[schema(format = DateTime)]
    pub starts_at: String,
    #[schema(format = DateTime)]
    pub ends_at: String,
    pub events: Option<Vec<String>>,
    pub tiers: Option<Vec<String>>,
    pub funded_by: FundedBy,
    pub paused: bool,
    /// Claimable now: started, not ended, not paused, stock left.
    pub active: bool,
    /// Coupons claimed so far.
    pub issued: i64,
    /// Coupons used in a paid order.
    pub used: i64,
    /// Coupons left to claim; null for unlimited.
    pub remaining: Option<i64>,
}

/// A page of a seller list: `next` is the cursor of the following page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignPage {
    pub items: Vec<CampaignView>,
    pub next: Option<String>,
}

/// A campaign as buyers see it on an event page
/// (`GET /api/v1/events/{event}/campaigns`, an addition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OfferView {
    pub id: String,
    pub name: String,
    #[schema(example = "percent")]
    pub kind: String,
    pub value: i64,
    pub max_discount: Option<i64>,
    pub min_spend: i64,
    pub stock: Option<i64>,
    pub remaining: Option<i64>,
    #[schema(format = DateTime)]
    pub starts_at: String,
    #[schema(format = DateTime)]
    pub ends_at: String,
    pub tiers: Option<Vec<String>>,
    /// Claimable now.
    pub active: bool,
}

/// `GET /api/v1/events/{event}/campaigns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Offers {
    pub items: Vec<OfferView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_tells_absent_stock_from_null_stock() {
        let absent: CampaignPatch = serde_json::from_str(r#"{"paused":true}"#).unwrap();
        assert_eq!(absent.stock, None);
        let unlimited: CampaignPatch = serde_json::from_str(r#"{"stock":null}"#).unwrap();
        assert_eq!(unlimited.stock, Some(None));
        let some: CampaignPatch = serde_json::from_str(r#"{"stock":5}"#).unwrap();
        assert_eq!(some.stock, Some(Some(5)));
        assert!(serde_json::from_str::<CampaignPatch>(r#"{"stok":5}"#).is_err(), "unknown fields refused");
    }
}
