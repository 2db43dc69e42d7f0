//! Fuzzing of the socket decoder, as property tests on stable Rust
//! (proptest): arbitrary text, arbitrary JSON, near-valid messages of every
//! known `type`, and valid messages that must round-trip.
//!
//! Properties: `protocol::parse` never panics; every rejection is a client
//! error (4xx code, never `internal`/`unavailable`) with a message; its
//! `error` frame is one JSON object with `type`, `code`, `message`, and
//! `req` exactly when the input carried one readable request id (a string
//! or an integer in `i64` range, the only `req` key of a JSON object);
//! `parse_req`, which answers frames that are not read, finds the same
//! `req`; valid messages of every type decode to what they say.
//!
//! The default run is bounded (256 cases per property). For hours:
//!
//! ```text
//! QT_FUZZ_CASES=10000000 cargo test -p queueticket --release --lib ws::fuzz
//! ```
//!
//! A failure prints the shrunk input; nothing is persisted to the tree.

use proptest::prelude::*;
use proptest::test_runner::Config;
use qt_protocol::client::KNOWN_TYPES;
use qt_protocol::{ClientMsg, Format, Req};
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value, json};

use super::protocol::{parse, parse_req};
use super::render::error_frame;
use crate::arbitrary::Shape;
use crate::error::{ErrorCode, HttpStatus};

/// Cases per property: `QT_FUZZ_CASES`, or 256.
fn config() -> Config {
    let cases = std::env::var("QT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    Config { cases, failure_persistence: None, ..Config::default() }
}

const TYPES: &[&str] = KNOWN_TYPES;

const FIELDS: &[&str] = &[
    "type",
    "req",
    "event",
    "seats",
    "count",
    "tier",
    "section",
    "format",
    "campaign",
    "coupon",
    "order",
    "payment_key",
];

// ---------------------------------------------------------------- oracle

/// The top level of a frame as a client would read it: every key in order,
/// so that a repeated `req` or `type` shows. Values other than `req` are
/// only checked for syntax.
#[derive(Default)]
struct TopLevel {
    reqs: Vec<Value>,
    types: usize,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut top = TopLevel::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "req" => top.reqs.push(map.next_value()?),
                        "type" => {
                            map.next_value::<IgnoredAny>()?;
                            top.types += 1;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(V)
    }
}

/// The `req` a reply to `text` must echo, as the client wrote it: the one
/// `req` of a JSON object, when it is a string or an `i64` integer. A
/// repeated `req` is ambiguous and echoes nothing.
fn expected_req(text: &str) -> Option<Value> {
    let top: TopLevel = serde_json::from_str(text).ok()?;
    match top.reqs.as_slice() {
        [v @ Value::String(_)] => Some(v.clone()),
        [v @ Value::Number(n)] if n.is_i64() => Some(v.clone()),
        _ => None,
    }
}

/// Everything a decoded frame must satisfy, whatever the input.
fn check(text: &str) -> Result<Option<ClientMsg>, TestCaseError> {
    let (req, result) = parse(text);
    let want_req = expected_req(text);
    let got_req = req.as_ref().map(|r| serde_json::to_value(r).unwrap());
    prop_assert_eq!(&got_req, &want_req, "req read from the frame");
    prop_assert_eq!(&parse_req(text), &req, "parse_req reads the req parse reads");
    match result {
        Ok(msg) => {
            let v: Value =
                serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("accepted non-JSON: {e}")))?;
            let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
            prop_assert!(TYPES.contains(&kind), "accepted a frame whose type is {:?}", v.get("type"));
            Ok(Some(msg))
        }
        Err(err) => {
            let code = err.code();
            prop_assert!(code.status().is_client_error(), "{code:?} for {err}");
            prop_assert!(!matches!(code, ErrorCode::Internal | ErrorCode::Unavailable));
            let message = err.public_message();
            prop_assert!(!message.trim().is_empty(), "empty message");
            prop_assert!(
                message.chars().count() <= crate::error::MAX_MESSAGE_CHARS + 1,
                "a message of {} characters",
                message.chars().count()
            );

            let frame = error_frame(&err, req.as_ref());
            let v: Value =
                serde_json::from_str(&frame).map_err(|e| TestCaseError::fail(format!("frame {frame}: {e}")))?;
            let obj = v.as_object().ok_or_else(|| TestCaseError::fail(format!("frame not an object: {frame}")))?;
            prop_assert_eq!(&obj["type"], "error");
            prop_assert_eq!(&obj["code"], &json!(code));
            prop_assert!(obj["code"].is_string());
            prop_assert_eq!(obj["message"].as_str(), Some(message.as_str()));
            prop_assert_eq!(obj.get("req"), got_req.as_ref(), "frame echoes the req");
            for key in obj.keys() {
                prop_assert!(["type", "code", "message", "req", "seats", "max", "held"].contains(&key.as_str()));
            }
            Ok(None)
        }
    }
}

// ------------------------------------------------------------ strategies

fn arb_json() -> impl Strategy<Value = Value> {
    let shape = Shape { depth: 6, size: 64, width: 8 };
    crate::arbitrary::arb_json(shape, key().boxed(), Some(prop::sample::select(TYPES).prop_map(Value::from).boxed()))
}

/// Object keys: mostly the protocol's own names, sometimes anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(FIELDS).prop_map(String::from), 1 => any::<String>()]
}

/// Long strings, up to past the socket's 64 KiB frame limit.
fn long_string() -> impl Strategy<Value = String> {
    (prop::sample::select(vec!["a", "é", "\u{1F3AB}", "\"", "\\", "\u{0}", " "]), 1_000usize..70_000)
        .prop_map(|(s, n)| s.repeat(n))
}

/// A JSON value written out, including numbers no `Value` holds.
fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => arb_json().prop_map(|v| v.to_string()),
        3 => prop::sample::select(vec![
            "-0", "0", "1", "-1", "1.0", "0.5", "-1.5", "1e2", "1E+2", "1e-7", "1e999", "-1e999", "4294967295",
            "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "-9223372036854775809", "18446744073709551615", "18446744073709551616",
            "123456789012345678901234567890123456789", "null", "true", "false", "[]", "{}", "\"\"", "\"full\"",
            "\"compact\"", "\"FULL\"", "\"best\"", "[\"A-1-1\"]", "[\"A-1-1\",\"A-1-1\"]", "[1,2]", "[null]",
            "{\"event\":\"e\"}", "\"\\u0000\"", "\"\\ud83c\\udfab\"", "\"\\ud800\"", "\"\\u00e9\"",
        ])
        .prop_map(String::from),
        1 => long_string().prop_map(|s| Value::String(s).to_string()),
        1 => (1usize..200).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => (1usize..200).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
    ]
}

/// A `req` of every shape: valid ones and wrong ones.
fn raw_req() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| Value::from(f).to_string()),
        raw_value(),
    ]
}

/// The fields of a valid message of `kind`, as (key, raw JSON value).
fn valid_fields(kind: &'static str) -> BoxedStrategy<Vec<(String, String)>> {
    let s = || any::<String>().prop_map(|s| Value::String(s).to_string());
    let seats = || prop::collection::vec(any::<String>(), 0..5).prop_map(|v| json!(v).to_string());
    let f = |k: &str, v: String| (k.to_owned(), v);
    match kind {
        "join" | "leave" | "unwatch" => s().prop_map(move |e| vec![f("event", e)]).boxed(),
        "watch" => (s(), prop::option::of(prop::sample::select(vec!["\"full\"", "\"compact\""])))
            .prop_map(move |(e, fmt)| {
                let mut v = vec![f("event", e)];
                v.extend(fmt.map(|x| f("format", x.into())));
                v
            })
            .boxed(),
        "hold" | "release" => (s(), seats()).prop_map(move |(e, st)| vec![f("event", e), f("seats", st)]).boxed(),
        "hold_best" => (s(), any::<u32>(), prop::option::of(s()), prop::option::of(s()))
            .prop_map(move |(e, c, t, sec)| {
                let mut v = vec![f("event", e), f("count", c.to_string())];
                v.extend(t.map(|t| f("tier", t)));
                v.extend(sec.map(|x| f("section", x)));
                v
            })
            .boxed(),
        "claim_coupon" => s().prop_map(move |c| vec![f("campaign", c)]).boxed(),
        "coupons" => prop::option::of(s()).prop_map(move |e| e.map(|e| f("event", e)).into_iter().collect()).boxed(),
        "checkout" => (s(), prop::option::of(s()))
            .prop_map(move |(e, c)| {
                let mut v = vec![f("event", e)];
                v.extend(c.map(|c| f("coupon", c)));
                v
            })
            .boxed(),
        "pay" => (s(), s()).prop_map(move |(o, k)| vec![f("order", o), f("payment_key", k)]).boxed(),
        _ => Just(vec![]).boxed(),
    }
}

/// One change to a valid message.
#[derive(Debug, Clone)]
enum Mutation {
    Remove(prop::sample::Index),
    Replace(prop::sample::Index, String),
    Add(String, String),
    Repeat(prop::sample::Index),
    Req(String),
    Type(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let weird_type = prop_oneof![
        raw_value(),
        prop::sample::select(vec![
            "\"JOIN\"",
            "\"Join\"",
            "\" join\"",
            "\"join \"",
            "\"join\\u0000\"",
            "\"holdBest\"",
            "\"hold-best\"",
            "\"\"",
            "\"error\"",
            "\"pong\"",
            "\"hello\"",
        ])
        .prop_map(String::from),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
    ];
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        (any::<prop::sample::Index>(), raw_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        (key(), raw_value()).prop_map(|(k, v)| Mutation::Add(k, v)),
        any::<prop::sample::Index>().prop_map(Mutation::Repeat),
        raw_req().prop_map(Mutation::Req),
        weird_type.prop_map(Mutation::Type),
    ]
}

/// A text-level change after the fields are written out.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    Append(String),
    Prepend(String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        1 => prop::sample::select(vec!["}", ",", " ", "\n", "x", "{}", "]", "\u{0}", "// c"])
            .prop_map(|s| Damage::Append(s.into())),
        1 => prop::sample::select(vec![" ", "\t\r\n", "\u{feff}", "\u{a0}", "[", "x"])
            .prop_map(|s| Damage::Prepend(s.into())),
    ]
}

/// Near-valid frames: a valid message of a known type, then a few wrong
/// fields, missing ones, extra ones, odd `req`s and `type`s.
fn near_valid() -> impl Strategy<Value = String> {
    prop::sample::select(TYPES)
        .prop_flat_map(|kind| {
            (Just(kind), valid_fields(kind), prop::collection::vec(mutation(), 0..4), any::<bool>(), damage())
        })
        .prop_map(|(kind, fields, mutations, req_first, damage)| {
            let mut fields: Vec<(String, String)> = fields;
            let ty = ("type".to_owned(), Value::from(kind).to_string());
            if req_first {
                fields.push(ty);
            } else {
                fields.insert(0, ty);
            }
            for m in mutations {
                match m {
                    Mutation::Remove(i) if !fields.is_empty() => {
                        fields.remove(i.index(fields.len()));
                    }
                    Mutation::Replace(i, v) if !fields.is_empty() => {
                        let at = i.index(fields.len());
                        fields[at].1 = v;
                    }
                    Mutation::Repeat(i) if !fields.is_empty() => {
                        let f = fields[i.index(fields.len())].clone();
                        fields.push(f);
                    }
                    Mutation::Add(k, v) => fields.push((k, v)),
                    Mutation::Req(v) => fields.push(("req".into(), v)),
                    Mutation::Type(v) => match fields.iter_mut().find(|(k, _)| k == "type") {
                        Some(f) => f.1 = v,
                        None => fields.push(("type".into(), v)),
                    },
                    _ => {}
                }
            }
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", Value::from(k.as_str()))).collect();
            let text = format!("{{{}}}", body.join(","));
            match damage {
                Damage::None => text,
                Damage::Truncate(i) => {
                    let mut cut = i.index(text.len());
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text[..cut].to_owned()
                }
                Damage::Append(s) => text + &s,
                Damage::Prepend(s) => s + &text,
            }
        })
}

/// Text made of JSON's own tokens in any order, to walk the parser's edges.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\"",
        "\"type\"",
        "\"req\"",
        "\"event\"",
        "\"join\"",
        "\"ping\"",
        "\"hold_best\"",
        "\"count\"",
        "1",
        "-1",
        "1e999",
        "0.5",
        "null",
        "true",
        "false",
        "\\",
        "\\u",
        "\\ud800",
        "\u{0}",
        "é",
        "\u{feff}",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// `None` written as an absent field or as null.
fn opt(v: &Option<String>, null: bool) -> Option<Value> {
    match v {
        Some(s) => Some(json!(s)),
        None if null => Some(Value::Null),
        None => None,
    }
}

/// A valid message of a known type: its JSON and what it must decode to.
fn valid_msg() -> impl Strategy<Value = (Value, ClientMsg)> {
    let s = any::<String>;
    let seats = || prop::collection::vec(any::<String>(), 0..5);
    prop_oneof![
        s().prop_map(|event| (json!({"type": "join", "event": event}), ClientMsg::Join { event })),
        s().prop_map(|event| (json!({"type": "leave", "event": event}), ClientMsg::Leave { event })),
        s().prop_map(|event| (json!({"type": "unwatch", "event": event}), ClientMsg::Unwatch { event })),
        (s(), 0..3u8).prop_map(|(event, f)| {
            let (json, format) = match f {
                0 => (json!({"type": "watch", "event": event}), Format::Full),
                1 => (json!({"type": "watch", "event": event, "format": "full"}), Format::Full),
                _ => (json!({"type": "watch", "event": event, "format": "compact"}), Format::Compact),
            };
            (json, ClientMsg::Watch { event, format })
        }),
        (s(), seats()).prop_map(|(event, seats)| {
            (json!({"type": "hold", "event": event, "seats": seats}), ClientMsg::Hold { event, seats })
        }),
        (s(), seats()).prop_map(|(event, seats)| {
            (json!({"type": "release", "event": event, "seats": seats}), ClientMsg::Release { event, seats })
        }),
        (s(), any::<u32>(), prop::option::of(s()), prop::option::of(s()), any::<bool>()).prop_map(
            |(event, count, tier, section, null)| {
                let mut m = Map::new();
                m.insert("type".into(), "hold_best".into());
                m.insert("event".into(), json!(event));
                m.insert("count".into(), json!(count));
                m.extend(opt(&tier, null).map(|v| ("tier".to_owned(), v)));
                m.extend(opt(&section, !null).map(|v| ("section".to_owned(), v)));
                (Value::Object(m), ClientMsg::HoldBest { event, count, tier, section })
            }
        ),
        s().prop_map(|campaign| (
            json!({"type": "claim_coupon", "campaign": campaign}),
            ClientMsg::ClaimCoupon { campaign }
        )),
        (prop::option::of(s()), any::<bool>()).prop_map(|(event, null)| {
            let mut m = Map::new();
            m.insert("type".into(), "coupons".into());
            m.extend(opt(&event, null).map(|v| ("event".to_owned(), v)));
            (Value::Object(m), ClientMsg::Coupons { event })
        }),
        (s(), prop::option::of(s()), any::<bool>()).prop_map(|(event, coupon, null)| {
            let mut m = Map::new();
            m.insert("type".into(), "checkout".into());
            m.insert("event".into(), json!(event));
            m.extend(opt(&coupon, null).map(|v| ("coupon".to_owned(), v)));
            (Value::Object(m), ClientMsg::Checkout { event, coupon })
        }),
        (s(), s()).prop_map(|(order, payment_key)| {
            (json!({"type": "pay", "order": order, "payment_key": payment_key}), ClientMsg::Pay { order, payment_key })
        }),
        Just((json!({"type": "ping"}), ClientMsg::Ping)),
    ]
}

fn valid_req() -> impl Strategy<Value = Option<Req>> {
    prop_oneof![
        Just(None),
        any::<i64>().prop_map(|n| Some(Req::Int(n))),
        any::<String>().prop_map(|s| Some(Req::Str(s))),
    ]
}

/// Keys no message type knows, to add as extra fields.
fn extra_key() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("not a protocol field", |k| !FIELDS.contains(&k.as_str()))
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_is_answered_cleanly(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn json_token_soup_is_answered_cleanly(text in token_soup()) {
        check(&text)?;
    }

    #[test]
    fn arbitrary_json_is_answered_cleanly(v in arb_json(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        check(&text)?;
    }

    #[test]
    fn arbitrary_objects_with_a_known_type_are_answered_cleanly(
        kind in prop::sample::select(TYPES),
        fields in prop::collection::btree_map(key(), arb_json(), 0..6),
        req in prop::option::of(raw_req()),
    ) {
        let mut m: Map<String, Value> = fields.into_iter().collect();
        m.insert("type".into(), kind.into());
        let mut text = Value::Object(m).to_string();
        if let Some(req) = req {
            text.pop();
            text.push_str(&format!("{}\"req\":{req}}}", if text.len() > 1 { "," } else { "" }));
        }
        check(&text)?;
    }

    #[test]
    fn near_valid_messages_are_answered_cleanly(text in near_valid()) {
        check(&text)?;
    }

    #[test]
    fn valid_messages_round_trip(
        (mut v, want) in valid_msg(),
        req in valid_req(),
        extra in prop::collection::btree_map(extra_key(), arb_json(), 0..3),
        pretty in any::<bool>(),
    ) {
        let obj = v.as_object_mut().unwrap();
        obj.extend(extra);
        if let Some(req) = &req {
            obj.insert("req".into(), serde_json::to_value(req).unwrap());
        }
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        let (got_req, got) = parse(&text);
        prop_assert_eq!(got_req, req);
        match got {
            Ok(msg) => prop_assert_eq!(msg, want),
            Err(e) => prop_assert!(false, "valid message refused: {e}\n{text}"),
        }
        check(&text)?;
    }
}

/// The inputs the strategies reach only by luck, checked every run.
#[test]
fn edge_cases_are_answered_cleanly() {
    let cases = [
        "",
        " ",
        "{",
        "}",
        "{}",
        "[]",
        "null",
        "\"join\"",
        "{\"type\":\"join\",\"event\":\"e\",\"req\":9223372036854775807}",
        "{\"type\":\"join\",\"event\":\"e\",\"req\":9223372036854775808}",
        "{\"type\":\"join\",\"event\":\"e\",\"req\":-0}",
        "{\"type\":\"join\",\"event\":\"e\",\"req\":1.0}",
        "{\"type\":\"join\",\"event\":\"e\",\"req\":\"\"}",
        "{\"type\":\"join\",\"event\":\"e\",\"req\":null}",
        "{\"type\":\"join\",\"event\":\"e\",\"req\":1,\"req\":2}",
        "{\"type\":\"ping\",\"x\":1e999,\"req\":3}",
        "{\"type\":1e999,\"req\":3}",
        "{\"t\\u0079pe\":\"ping\",\"r\\u0065q\":4}",
        "{\"type\":\"hold_best\",\"event\":\"e\",\"count\":4294967296,\"req\":5}",
        "{\"type\":\"hold_best\",\"event\":\"e\",\"count\":-1,\"req\":5}",
        "{\"type\":\"watch\",\"event\":\"e\",\"format\":null}",
        "{\"type\":\"ping\"}  ",
        "\u{feff}{\"type\":\"ping\"}",
        "\u{a0}{\"type\":\"ping\"}",
        "[null, 5]",
        "[\"ping\", 5]",
    ];
    for text in cases {
        if let Err(e) = check(text) {
            panic!("{text:?}: {e}");
        }
    }
    let deep = format!("{{\"type\":\"ping\",\"req\":1,\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    check(&deep).unwrap();
}
