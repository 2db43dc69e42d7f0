//! Wire types of the buyer socket: what clients send, what we push, and how
//! a request id (`req`) rides along on replies.

use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::services::seatmap::Format;

/// A client's request id, echoed on every reply to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Req {
    Int(i64),
    Str(String),
}

/// Client → server messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
        #[serde(default, deserialize_with = "null_is_default")]
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
        tier: Option<String>,
        section: Option<String>,
    },
    Release {
        event: String,
        seats: Vec<String>,
    },
    ClaimCoupon {
        campaign: String,
    },
    Checkout {
        event: String,
        coupon: Option<String>,
    },
    Pay {
        order: String,
        payment_key: String,
    },
    Ping,
}

/// Reads `null` as the field's default, like an absent field.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

const KNOWN_TYPES: &[&str] =
    &["join", "leave", "watch", "unwatch", "hold", "hold_best", "release", "claim_coupon", "checkout", "pay", "ping"];

/// The `req` of a frame, read apart from the rest so that a frame wrong in
/// any other way (a repeated `type` included) is still answered under it.
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

/// Parses a text frame. On failure the error still carries the frame's
/// `req` when it had a readable one.
pub fn parse(text: &str) -> (Option<Req>, Result<ClientMsg, AppError>) {
    let req = match serde_json::from_str::<ReqOf>(text) {
        Ok(r) if is_object(text) => r.req,
        _ => return (None, Err(AppError::BadRequest("malformed JSON: expected one JSON object".into()))),
    };
    let kind = match serde_json::from_str::<TypeOf>(text) {
        Ok(TypeOf { kind: Some(TypeValue::Name(k)) }) => k,
        Ok(TypeOf { kind: Some(_) }) => return (req, Err(AppError::BadRequest("`type` must be a string".into()))),
        Ok(TypeOf { kind: None }) => return (req, Err(AppError::BadRequest("missing field `type`".into()))),
        Err(_) => return (req, Err(AppError::BadRequest("`type` must appear once".into()))),
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return (req, Err(AppError::BadRequest(format!("unknown message type `{shown}`"))));
    }
    let msg = serde_json::from_str::<ClientMsg>(text).map_err(|e| {
        // serde's text names the field and what was wrong; it may quote the
        // input too, which `AppError::public_message` cuts short.
        let detail = e.to_string();
        let detail = detail.split(" at line ").next().unwrap_or("invalid fields");
        AppError::BadRequest(format!("bad `{kind}`: {detail}"))
    });
    (req, msg)
}

/// A reply or push: any serializable message with its `type`, plus the
/// request id when answering one.
#[derive(Serialize)]
pub struct Frame<'a, T: Serialize> {
    #[serde(flatten)]
    pub msg: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub req: Option<&'a Req>,
}

pub fn encode<T: Serialize>(msg: &T, req: Option<&Req>) -> String {
    // Our message types are plain structs and maps: serializing cannot fail.
    serde_json::to_string(&Frame { msg, req }).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "hello")]
pub struct Hello<'a> {
    pub user: &'a str,
    pub server_time: String,
    pub protocol: u32,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "pong")]
pub struct Pong {}

/// `left`: the buyer's place is gone. `reason` is `left` (this buyer gave
/// it up, on this or another socket) or `gone` (dropped after the grace, or
/// the window ended, as seen by a status refresh).
#[derive(Serialize)]
#[serde(tag = "type", rename = "left")]
pub struct Left<'a> {
    pub event: &'a str,
    pub reason: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "closing")]
pub struct Closing<'a> {
    pub reason: &'a str,
    pub reconnect_after_ms: u64,
}

/// An `error` frame.
pub fn error_frame(err: &AppError, req: Option<&Req>) -> String {
    let mut body = err.body();
    body.insert("type".into(), "error".into());
    if let Some(req) = req {
        body.insert("req".into(), serde_json::to_value(req).unwrap_or_default());
    }
    serde_json::Value::Object(body).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn code(text: &str) -> (Option<Req>, ErrorCode) {
        let (req, r) = parse(text);
        (req, r.unwrap_err().code())
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
    }

    #[test]
    fn every_malformed_input_is_a_bad_request_with_its_req() {
        assert_eq!(code("not json"), (None, ErrorCode::BadRequest));
        assert_eq!(code("[1,2]"), (None, ErrorCode::BadRequest));
        assert_eq!(code(r#"{"req":1}"#), (Some(Req::Int(1)), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"type":"fly","req":2}"#), (Some(Req::Int(2)), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"type":5,"req":3}"#), (Some(Req::Int(3)), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"type":"join","req":4}"#), (Some(Req::Int(4)), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"type":"join","event":12}"#), (None, ErrorCode::BadRequest));
        let (_, err) = parse(r#"{"type":"join"}"#);
        assert!(err.unwrap_err().to_string().contains("missing field `event`"));
    }

    #[test]
    fn frames_carry_type_and_req() {
        let f = encode(&Pong {}, Some(&Req::Str("x".into())));
        assert_eq!(f, r#"{"type":"pong","req":"x"}"#);
        let f = encode(&Left { event: "e", reason: "left" }, None);
        assert_eq!(f, r#"{"type":"left","event":"e","reason":"left"}"#);
        let e = error_frame(&AppError::NotAdmitted, Some(&Req::Int(9)));
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "not_admitted");
        assert_eq!(v["req"], 9);
    }
}
