//! Client → server messages, and how a server reads them: the `req` first,
//! so that a frame wrong in any other way is still answered under it.

use serde::{Deserialize, Serialize};
use strum::VariantNames;

/// A client's request id, echoed on every reply to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Req {
    Int(i64),
    Str(String),
}

/// Which snapshot form a watcher asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `seats: [{id, section, row, number, x, y, tier, status}]`.
    #[default]
    Full,
    /// `rows: [...]` plus `status`, one letter per seat in row order.
    Compact,
}

/// Client → server messages. `VARIANTS` (from strum) is the list of known
/// `type` names; a test holds it to serde's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ClientMsg {
    Join {
        event: String,
    },
    Leave {
        event: String,
    },
    Watch {
        event: String,
        /// `compact` for the compact snapshot form (an addition); absent or
        /// null is the full form.
        #[serde(default, deserialize_with = "null_is_default", skip_serializing_if = "is_full")]
        format: Format,
    },
    Unwatch {
        event: String,
    },
    Hold {
        event: String,
        seats: Vec<String>,
    },
    HoldBest {
        event: String,
        count: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tier: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        section: Option<String>,
    },
    Release {
        event: String,
        seats: Vec<String>,
    },
    ClaimCoupon {
        campaign: String,
    },
    /// The buyer's own unused, valid coupons; with `event`, only those
    /// that apply to it.
    Coupons {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    Checkout {
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coupon: Option<String>,
    },
    Pay {
        order: String,
        payment_key: String,
    },
    /// Cancels an unpaid order, or refunds a paid one where the event's
    /// refund policy allows.
    CancelOrder {
        order: String,
    },
    /// The buyer's orders (an addition), newest first; with `event`, only
    /// that event's.
    Orders {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    Ping,
}

/// Every known client message `type`, from the enum.
pub const KNOWN_TYPES: &[&str] = <ClientMsg as VariantNames>::VARIANTS;

fn is_full(f: &Format) -> bool {
    *f == Format::Full
}

/// Reads `null` as the field's default, like an absent field.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Why a frame could not be read; the server answers `bad_request` with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// The `req` of a frame, read apart from the rest.
#[derive(Deserialize)]
struct ReqOf {
    req: Option<Req>,
}

/// The `type` of a frame.
#[derive(Deserialize)]
struct TypeOf {
    #[serde(rename = "type")]
    kind: Option<TypeValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TypeValue {
    Name(String),
    /// Anything else, even a number too large for any type.
    Other(serde::de::IgnoredAny),
}

fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Only the request id of a frame, for answering one that will not be read.
pub fn parse_req(text: &str) -> Option<Req> {
    if !is_object(text) {
        return None;
    }
    serde_json::from_str::<ReqOf>(text).ok().and_then(|r| r.req)
}

/// Reads a text frame. On failure the error still comes with the frame's
/// `req` when it had a readable one.
pub fn parse(text: &str) -> (Option<Req>, Result<ClientMsg, ParseError>) {
    let bad = |s: String| Err(ParseError(s));
    let req = match serde_json::from_str::<ReqOf>(text) {
        Ok(r) if is_object(text) => r.req,
        _ => return (None, bad("malformed JSON: expected one JSON object".into())),
    };
    let kind = match serde_json::from_str::<TypeOf>(text) {
        Ok(TypeOf { kind: Some(TypeValue::Name(k)) }) => k,
        Ok(TypeOf { kind: Some(_) }) => return (req, bad("`type` must be a string".into())),
        Ok(TypeOf { kind: None }) => return (req, bad("missing field `type`".into())),
        Err(_) => return (req, bad("`type` must appear once".into())),
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return (req, bad(format!("unknown message type `{shown}`")));
    }
    let msg = serde_json::from_str::<ClientMsg>(text).map_err(|e| {
        // serde's text names the field and what was wrong; it may quote the
        // input too, which the server cuts short.
        let detail = e.to_string();
        let detail = detail.split(" at line ").next().unwrap_or("invalid fields");
        ParseError(format!("bad `{kind}`: {detail}"))
    });
    (req, msg)
}

impl ClientMsg {
    /// The frame as a client sends it, with `req` when given.
    pub fn to_frame(&self, req: Option<&Req>) -> String {
        crate::frames::encode(self, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (Option<Req>, String) {
        let (req, r) = parse(text);
        (req, r.unwrap_err().0)
    }

    #[test]
    fn parses_known_messages_and_keeps_req() {
        let (req, msg) = parse(r#"{"type":"join","event":"e1","req":7}"#);
        assert_eq!(req, Some(Req::Int(7)));
        assert_eq!(msg.unwrap(), ClientMsg::Join { event: "e1".into() });
        let (req, msg) = parse(r#"{"req":"abc","type":"ping"}"#);
        assert_eq!(req, Some(Req::Str("abc".into())));
        assert_eq!(msg.unwrap(), ClientMsg::Ping);
        let (_, msg) = parse(r#"{"type":"hold_best","event":"e","count":2}"#);
        assert_eq!(msg.unwrap(), ClientMsg::HoldBest { event: "e".into(), count: 2, tier: None, section: None });
        let (_, msg) = parse(r#"{"type":"watch","event":"e","format":null}"#);
        assert_eq!(msg.unwrap(), ClientMsg::Watch { event: "e".into(), format: Format::Full });
    }

    #[test]
    fn every_malformed_input_is_refused_with_its_req() {
        assert_eq!(err("not json").0, None);
        assert_eq!(err("[1,2]").0, None);
        assert_eq!(err(r#"{"req":1}"#), (Some(Req::Int(1)), "missing field `type`".into()));
        assert_eq!(err(r#"{"type":"fly","req":2}"#), (Some(Req::Int(2)), "unknown message type `fly`".into()));
        assert_eq!(err(r#"{"type":5,"req":3}"#), (Some(Req::Int(3)), "`type` must be a string".into()));
        assert_eq!(err(r#"{"type":"join","type":"ping","req":4}"#).1, "`type` must appear once");
        assert!(err(r#"{"type":"join"}"#).1.contains("missing field `event`"));
        assert!(err(r#"{"type":"join","event":12}"#).1.starts_with("bad `join`"));
    }

    /// The known types are the enum's variants under serde's names, so a
    /// new message is known by adding it to the enum and nowhere else.
    #[test]
    fn known_types_are_the_serde_names_of_the_variants() {
        let samples = [
            ClientMsg::Join { event: "e".into() },
            ClientMsg::Leave { event: "e".into() },
            ClientMsg::Watch { event: "e".into(), format: Format::Compact },
            ClientMsg::Unwatch { event: "e".into() },
            ClientMsg::Hold { event: "e".into(), seats: vec!["a".into()] },
            ClientMsg::HoldBest { event: "e".into(), count: 2, tier: Some("vip".into()), section: None },
            ClientMsg::Release { event: "e".into(), seats: vec![] },
            ClientMsg::ClaimCoupon { campaign: "c".into() },
            ClientMsg::Coupons { event: Some("e".into()) },
            ClientMsg::Checkout { event: "e".into(), coupon: Some("best".into()) },
            ClientMsg::Pay { order: "o".into(), payment_key: "k".into() },
            ClientMsg::CancelOrder { order: "o".into() },
            ClientMsg::Orders { event: None },
            ClientMsg::Ping,
        ];
        assert_eq!(samples.len(), KNOWN_TYPES.len());
        for (msg, name) in samples.iter().zip(KNOWN_TYPES) {
            let text = msg.to_frame(Some(&Req::Int(1)));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], *name, "{text}");
            assert_eq!(parse(&text), (Some(Req::Int(1)), Ok(msg.clone())), "round trip of {text}");
        }
    }
}
