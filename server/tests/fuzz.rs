//! Fuzzing of the REST bodies, as property tests on stable Rust (proptest)
//! against one real server in this process: arbitrary bytes and JSON,
//! near-valid queue-settings patches, odd content types, odd query strings
//! and odd path segments (percent-encoding included), on every route that
//! takes a body, a query or a path parameter, with that route's own methods.
//!
//! Properties: no 5xx and always an answer; every 4xx is
//! `{"error": {"code", "message"}}` (JSON, a protocol code, the status that
//! code maps to); a refused `PATCH …/queue` changes nothing, an accepted one
//! changes exactly what it names, and a well-formed one is accepted exactly
//! when every value is in its documented range.
//!
//! The default run is bounded (64 cases per route). For hours:
//!
//! ```text
//! QT_FUZZ_CASES=10000000 cargo test -p queueticket --release --test fuzz
//! ```
//!
//! A failure prints the shrunk request; nothing is persisted to the tree.
//! Method-not-allowed, huge URIs and header floods are out of scope here.

use std::fmt;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;
use qt_protocol::{Claims, Role};
use queueticket::config::{Secret, ServerConfig};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

#[path = "../src/arbitrary.rs"]
mod arbitrary;
use arbitrary::Shape;

const EVENT: &str = "demo-live";
const WAIT: Duration = Duration::from_secs(10);

/// Cases per property: `QT_FUZZ_CASES`, or 64.
fn config() -> Config {
    let cases = std::env::var("QT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    Config { cases, failure_persistence: None, ..Config::default() }
}

// ---------------------------------------------------------------- server

/// One server for the whole run, on its own runtime.
struct Server {
    rt: Runtime,
    /// The server's data directory. A static is never dropped, so it stays
    /// after the run, under the target directory's `tmp/` (which
    /// `cargo clean` empties) rather than the system's.
    _data_dir: tempfile::TempDir,
    addr: SocketAddr,
    buyer: String,
    seller: String,
    other_seller: String,
    admin: String,
    expired: String,
    foreign: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let dir = tempfile::Builder::new()
            .prefix("qt-fuzz-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary directory");
        let secret = format!("fuzz-secret-{:032x}", rand::random::<u128>());
        let mut cfg = ServerConfig::for_data_dir(dir.path().to_path_buf());
        cfg.jwt_secret = Some(Secret(secret.clone()));
        cfg.demo = Some(true);
        cfg.guest = Some(true);
        cfg.guest_per_min = 1_000_000;
        cfg.ws_upgrades_per_min = 1_000_000;
        let listener =
            rt.block_on(async { queueticket::app::bind("127.0.0.1:0".parse().expect("addr")) }).expect("bind");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(queueticket::app::run(listener, cfg, std::future::pending()));
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + WAIT;
            while !matches!(send(addr, &Request::get("/healthz")).await, Ok(r) if r.status == 200) {
                assert!(tokio::time::Instant::now() < deadline, "server did not become ready");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let raw = |claims: Value, key: &str| {
            let key = jsonwebtoken::EncodingKey::from_secret(key.as_bytes());
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("mint")
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let mint = |sub: &str, role: Role, seller: Option<&str>| {
            let claims = Claims {
                sub: sub.into(),
                role,
                exp: now + 86_400,
                iat: Some(now),
                nbf: None,
                seller: seller.map(Into::into),
            };
            raw(serde_json::to_value(claims).expect("claims"), &secret)
        };
        Server {
            rt,
            _data_dir: dir,
            addr,
            buyer: mint("fuzz-buyer", Role::Buyer, None),
            seller: mint("demo-admin", Role::Seller, Some("demo")),
            other_seller: mint("other-admin", Role::Seller, Some("other")),
            admin: mint("root", Role::Admin, None),
            expired: raw(json!({"sub": "late", "role": "buyer", "exp": 1}), &secret),
            foreign: raw(json!({"sub": "x", "role": "buyer", "exp": 4_000_000_000u64}), "another-secret-of-16+"),
        }
    })
}

// ------------------------------------------------------------ the client

/// One HTTP/1.1 request, written out exactly as generated: odd bytes,
/// odd headers and chunking are the point, so no HTTP client library here.
#[derive(Clone)]
struct Request {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Request {
    fn get(target: &str) -> Self {
        Self { method: "GET", target: target.into(), headers: vec![], body: vec![], chunked: false }
    }

    fn bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let mut out = if self.chunked {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            let mut out = head.into_bytes();
            for chunk in self.body.chunks(7) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            return out;
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
            head.into_bytes()
        };
        out.extend_from_slice(&self.body);
        out
    }
}

/// Shows the request as it went on the wire (the shrunk input on failure).
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.target)?;
        for (name, value) in &self.headers {
            let value = if name.eq_ignore_ascii_case("authorization") && value.len() > 40 {
                format!("{}…", &value[..40])
            } else {
                value.clone()
            };
            write!(f, " | {name}: {value}")?;
        }
        if self.chunked {
            write!(f, " | (chunked)")?;
        }
        write!(f, " | body {:?}", String::from_utf8_lossy(&self.body))
    }
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// The connection was reset before the whole answer was read.
    reset: bool,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] {:?}", self.status, self.content_type, String::from_utf8_lossy(&self.body))
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
async fn send(addr: SocketAddr, req: &Request) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&req.bytes(addr)).await?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.map_err(std::io::Error::other)?;
    // A server that answers without reading a large body closes with bytes
    // unread, and the kernel resets the connection: the answer may be cut.
    let reset = matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    if !reset {
        read?;
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Ok(Reply { status, content_type: header("content-type").unwrap_or_default(), body, reset })
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = s.windows(2).position(|w| w == b"\r\n") {
        let n = std::str::from_utf8(&s[..end]).ok().and_then(|v| usize::from_str_radix(v.trim(), 16).ok());
        let rest = &s[end + 2..];
        match n {
            Some(n) if n > 0 && rest.len() >= n => {
                out.extend_from_slice(&rest[..n]);
                s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
            }
            _ => break,
        }
    }
    out
}

/// Bodies the server may leave unread (answering first) without the kernel
/// resetting the connection under the answer.
const SMALL_BODY: usize = 8 * 1024;

/// Sends `req`; `None` when a large unread body got the answer cut off by a
/// reset, which says nothing about the server's answer.
fn call(req: &Request) -> Result<Option<Reply>, TestCaseError> {
    let s = server();
    let r = s.rt.block_on(send(s.addr, req)).map_err(|e| TestCaseError::fail(format!("no answer ({e}) to {req:?}")))?;
    if r.reset && req.body.len() > SMALL_BODY {
        return Ok(None);
    }
    if r.reset {
        return Err(TestCaseError::fail(format!("connection reset under the answer to {req:?}\n→ {r:?}")));
    }
    Ok(Some(r))
}

// ------------------------------------------------------------ the checks

/// The protocol's error codes and the status each one answers with.
const CODES: &[(&str, u16)] = &[
    ("bad_request", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("not_found", 404),
    ("not_admitted", 403),
    ("seat_unavailable", 409),
    ("hold_limit", 409),
    ("sold_out", 409),
    ("already_claimed", 409),
    ("not_active", 422),
    ("order_expired", 422),
    ("payment_declined", 402),
    ("rate_limited", 429),
    ("unavailable", 503),
    ("internal", 500),
];

/// What every answer must be: never 5xx, every 4xx a protocol error body.
fn check(req: &Request, r: &Reply) -> Result<(), TestCaseError> {
    prop_assert!((200..500).contains(&r.status), "status {} for {:?}\n→ {:?}", r.status, req, r);
    if r.status < 400 {
        return Ok(());
    }
    let fail = |why: &str| TestCaseError::fail(format!("{why} for {req:?}\n→ {r:?}"));
    if !r.content_type.starts_with("application/json") {
        return Err(fail("error is not JSON"));
    }
    let v: Value = serde_json::from_slice(&r.body).map_err(|_| fail("error body does not parse"))?;
    let top = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| fail("not {\"error\": …}"))?;
    let err = top.get("error").and_then(Value::as_object).ok_or_else(|| fail("not {\"error\": {…}}"))?;
    let code = err.get("code").and_then(Value::as_str).ok_or_else(|| fail("no string `code`"))?;
    let status = CODES.iter().find(|(c, _)| *c == code).map(|(_, s)| *s).ok_or_else(|| fail("unknown code"))?;
    if status != r.status {
        return Err(fail(&format!("code `{code}` is HTTP {status}")));
    }
    let message = err.get("message").and_then(Value::as_str).ok_or_else(|| fail("no string `message`"))?;
    if message.trim().is_empty() {
        return Err(fail("empty message"));
    }
    // Parser messages may quote the input; they are cut short.
    if message.chars().count() > queueticket::error::MAX_MESSAGE_CHARS + 1 {
        return Err(fail("a message longer than the cap"));
    }
    Ok(())
}

fn json_of(req: &Request, r: &Reply) -> Result<Value, TestCaseError> {
    serde_json::from_slice(&r.body)
        .map_err(|e| TestCaseError::fail(format!("{e}: success not JSON for {req:?}\n→ {r:?}")))
}

// ------------------------------------------------------------ strategies

fn arb_json() -> impl Strategy<Value = Value> {
    arbitrary::arb_json(Shape { depth: 4, size: 32, width: 6 }, any::<String>().boxed(), None)
}

/// The settings a patch may name, with their documented ranges.
const SETTINGS: &[(&str, u32, u32)] = &[
    ("rate_per_min", 1, 1_000_000),
    ("max_active", 1, 1_000_000),
    ("window_s", 10, 86_400),
    ("grace_s", 5, 3_600),
    ("hold_s", 10, 3_600),
    ("max_seats_per_buyer", 1, 100),
];

/// A value for a setting: mostly in or near its range, sometimes the wrong
/// type altogether.
fn setting_value(min: u32, max: u32) -> impl Strategy<Value = Value> {
    let (min, max) = (i64::from(min), i64::from(max));
    prop_oneof![
        4 => (min..=max).prop_map(Value::from),
        2 => prop::sample::select(vec![min - 1, min, max, max + 1, 0, -1, i64::from(u32::MAX), i64::from(u32::MAX) + 1])
            .prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => (min..=max).prop_map(|n| json!(n as f64)),
        1 => prop_oneof![Just(json!(0.5)), Just(json!(-0.0)), Just(json!(1e300))],
        1 => (min..=max).prop_map(|n| json!(n.to_string())),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => arb_json(),
    ]
}

fn paused_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => prop::sample::select(vec![json!("true"), json!(0), json!(1), json!([true]), json!({})]),
        1 => arb_json(),
    ]
}

/// Near-valid patches: known fields (wrong types and ranges included) and
/// now and then an unknown one.
fn patch_object() -> impl Strategy<Value = Map<String, Value>> {
    let field = prop_oneof![
        8 => prop::sample::select(SETTINGS).prop_flat_map(|(k, min, max)| (Just(k.to_owned()), setting_value(min, max))),
        2 => (Just("paused".to_owned()), paused_value()),
        1 => (
            prop_oneof![
                prop::sample::select(vec!["on_sale_at_ms", "RATE_PER_MIN", "rate", "", "paused ", "seller", "id"])
                    .prop_map(String::from),
                any::<String>(),
            ],
            arb_json()
        ),
    ];
    prop::collection::vec(field, 0..5).prop_map(|f| f.into_iter().collect())
}

/// What an accepted patch must leave, or `None` if it must be refused.
fn apply(before: &Value, patch: &Map<String, Value>) -> Option<Value> {
    let mut after = before.clone();
    for (k, v) in patch {
        if v.is_null() {
            if SETTINGS.iter().any(|(s, ..)| s == k) || k == "paused" {
                continue; // null is "leave as it is"
            }
            return None;
        }
        if k == "paused" {
            after[k] = Value::Bool(v.as_bool()?);
            continue;
        }
        let (_, min, max) = SETTINGS.iter().find(|(s, ..)| s == k)?;
        let n = v.as_u64().filter(|n| (u64::from(*min)..=u64::from(*max)).contains(n))?;
        after[k] = json!(n);
    }
    Some(after)
}

/// A body: how it is written, and the patch it means when it is one.
#[derive(Debug, Clone)]
enum Body {
    /// A JSON object of (near-)settings, written out as is.
    Patch(Map<String, Value>),
    /// Anything else, as bytes.
    Raw(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Patch(m) => Value::Object(m.clone()).to_string().into_bytes(),
            Body::Raw(b) => b.clone(),
        }
    }
}

/// Text-level damage to a JSON text.
fn damaged(text: String) -> impl Strategy<Value = Vec<u8>> {
    let len = text.len();
    prop_oneof![
        (0..=len).prop_map({
            let t = text.clone();
            move |cut| t.as_bytes()[..cut].to_vec()
        }),
        prop::sample::select(vec!["}", ",", " x", "\u{0}", "{}", "\n\n"]).prop_map({
            let t = text.clone();
            move |s| format!("{t}{s}").into_bytes()
        }),
        prop::sample::select(vec!["\u{feff}", " ", "[", "x"]).prop_map({
            let t = text.clone();
            move |s| format!("{s}{t}").into_bytes()
        }),
        // The same key twice.
        Just(if text.len() > 2 { format!("{},{}", &text[..text.len() - 1], &text[1..]).into_bytes() } else { vec![] }),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(move |(i, b)| {
            let mut v = text.clone().into_bytes();
            if !v.is_empty() {
                let at = i.index(v.len());
                v[at] = b;
            }
            v
        }),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => patch_object().prop_map(Body::Patch),
        2 => patch_object().prop_flat_map(|m| damaged(Value::Object(m).to_string())).prop_map(Body::Raw),
        2 => arb_json().prop_map(|v| Body::Raw(v.to_string().into_bytes())),
        2 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Body::Raw),
        1 => any::<String>().prop_map(|s| Body::Raw(s.into_bytes())),
        1 => prop::sample::select(vec![
            "", " ", "null", "true", "0", "[]", "{}", "\"\"", "{\"rate_per_min\":1e999}",
            "{\"rate_per_min\":123456789012345678901234567890}", "{\"paused\":tru}", "{\"\\u0000\":1}",
            "{\"rate_per_min\":\"\\ud800\"}", "{\"max_active\":-0}", "{\"grace_s\":0x10}", "{'paused':true}",
        ])
        .prop_map(|s| Body::Raw(s.as_bytes().to_vec())),
        1 => (1usize..64, 0usize..5).prop_map(|(depth, n)| {
            Body::Raw(format!("{}{}{}", "[".repeat(depth * 8), n, "]".repeat(depth * 8)).into_bytes())
        }),
        1 => (1_000usize..70_000).prop_map(|n| Body::Raw(format!("{{\"paused\":\"{}\"}}", "é".repeat(n)).into_bytes())),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(Some("application/json".to_owned())),
        4 => prop::sample::select(vec![
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "APPLICATION/JSON",
            "application/vnd.api+json",
            "application/problem+json",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/json",
            "*/*",
            "application/",
            "application",
            "",
            ";",
            "application/json; charset=latin1",
            "application/json; =",
            "\"application/json\"",
        ])
        .prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,40}".prop_map(Some),
    ]
}

/// Who calls: the right role, the wrong one, or nobody believable.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Buyer,
    Seller,
    OtherSeller,
    Admin,
    Nobody,
    Expired,
    Foreign,
    Garbage,
    EmptyBearer,
    Basic,
}

fn who(main: Who) -> impl Strategy<Value = Who> {
    prop_oneof![
        6 => Just(main),
        1 => prop::sample::select(vec![
            Who::Buyer,
            Who::Seller,
            Who::OtherSeller,
            Who::Admin,
            Who::Nobody,
            Who::Expired,
            Who::Foreign,
            Who::Garbage,
            Who::EmptyBearer,
            Who::Basic,
        ]),
    ]
}

fn auth_header(who: Who) -> Option<String> {
    let s = server();
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    match who {
        Who::Buyer => bearer(&s.buyer),
        Who::Seller => bearer(&s.seller),
        Who::OtherSeller => bearer(&s.other_seller),
        Who::Admin => bearer(&s.admin),
        Who::Nobody => None,
        Who::Expired => bearer(&s.expired),
        Who::Foreign => bearer(&s.foreign),
        Who::Garbage => bearer("a.b.c"),
        Who::EmptyBearer => Some("Bearer ".into()),
        Who::Basic => Some("Basic ZGVtbzpkZW1v".into()),
    }
}

/// Characters a request target may carry as they are.
const PCHARS: &str = "[A-Za-z0-9._~!$&'()*+,;=:@-]";

fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A path segment for `{event}`: the real event, spelled oddly or not, and
/// every kind of stranger.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(EVENT.to_owned()),
        1 => Just(percent_encode(EVENT.as_bytes())),
        2 => prop::string::string_regex(&format!("{PCHARS}{{1,40}}")).unwrap(),
        2 => prop::collection::vec(any::<u8>(), 1..24).prop_map(|b| percent_encode(&b)),
        1 => "\\PC{1,12}".prop_map(|s| percent_encode(s.as_bytes())),
        1 => (1usize..200).prop_map(|n| "e".repeat(n)),
        2 => prop::sample::select(vec![
            ".", "..", "%2F", "%2e%2e", "%00", "%", "%G0", "%FF", "%C0%AF", "%ED%A0%80", "a%", "demo-live%00",
            "demo-live%20", "%20demo-live", "DEMO-LIVE", "demo-live;x", "demo-live%3Fx", "demo-live%2Fqueue", "demo",
            "demo-hall", "~", "@", "%E2%80%AE", "%EF%BB%BFdemo-live",
        ])
        .prop_map(String::from),
    ]
}

/// Percent-decodes a segment the way the router does, for the model.
fn decoded(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(byte) =
                b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A query string (without `?`), or none.
fn query() -> impl Strategy<Value = Option<String>> {
    let value = prop_oneof![
        prop::sample::select(vec![
            "full",
            "compact",
            "FULL",
            "Compact",
            "",
            "full%20",
            "full+",
            "%66ull",
            "compact%00",
            "x"
        ])
        .prop_map(String::from),
        prop::string::string_regex(&format!("{PCHARS}{{0,20}}")).unwrap(),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| percent_encode(&b)),
    ];
    let key = prop_oneof![
        4 => Just("format".to_owned()),
        1 => prop::sample::select(vec!["Format", "format[]", "format%5B%5D", "%66ormat", "f", "", "event", "token"])
            .prop_map(String::from),
        1 => prop::string::string_regex("[A-Za-z0-9_.~-]{0,12}").unwrap(),
    ];
    let pair = prop_oneof![
        4 => (key.clone(), value).prop_map(|(k, v)| format!("{k}={v}")),
        1 => key.prop_map(|k| k),
        1 => prop::sample::select(vec!["=", "&", "==", "=x", "%", "%FF=%FF", "+", "a=b=c", "format=full&format=full"])
            .prop_map(String::from),
    ];
    prop::option::of(prop::collection::vec(pair, 0..3).prop_map(|p| p.join("&")))
}

/// A request to `path` with a generated body, content type, query and caller.
fn request(
    method: &'static str,
    path: String,
    who: Who,
    body: &Body,
    ctype: Option<String>,
    query: Option<String>,
    chunked: bool,
) -> Request {
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut headers = vec![];
    if let Some(a) = auth_header(who) {
        headers.push(("Authorization", a));
    }
    if let Some(c) = ctype {
        headers.push(("Content-Type", c));
    }
    Request { method, target, headers, body: body.bytes(), chunked }
}

fn settings() -> Value {
    let req = request(
        "GET",
        format!("/api/v1/seller/events/{EVENT}/queue"),
        Who::Seller,
        &Body::Raw(vec![]),
        None,
        None,
        false,
    );
    let r = call(&req).expect("settings answer").expect("not reset");
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_slice(&r.body).expect("settings JSON")
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(config())]

    /// `POST /api/v1/guest` ignores what it is sent, or refuses it cleanly.
    #[test]
    fn guest(body in body(), ctype in content_type(), query in query(), chunked in any::<bool>()) {
        let req = request("POST", "/api/v1/guest".into(), Who::Nobody, &body, ctype, query, chunked);
        let Some(r) = call(&req)? else { return Ok(()) };
        check(&req, &r)?;
        if r.status < 300 {
            prop_assert_eq!(r.status, 201);
            let v = json_of(&req, &r)?;
            prop_assert!(v["token"].is_string() && v["user"].is_string(), "{:?}", v);
        }
    }

    /// `POST`/`GET`/`DELETE /api/v1/events/{event}/queue`.
    #[test]
    fn queue(
        method in prop::sample::select(vec!["POST", "GET", "DELETE"]),
        seg in segment(),
        who in who(Who::Buyer),
        body in body(),
        ctype in content_type(),
        query in query(),
        chunked in any::<bool>(),
    ) {
        let req = request(method, format!("/api/v1/events/{seg}/queue"), who, &body, ctype, query, chunked);
        let Some(r) = call(&req)? else { return Ok(()) };
        check(&req, &r)?;
        match (method, r.status) {
            ("DELETE", s) if s < 300 => prop_assert_eq!(s, 204),
            (_, s) if s < 300 => {
                prop_assert_eq!(s, 200);
                let v = json_of(&req, &r)?;
                prop_assert!(v["type"] == "queue" || v["type"] == "admitted", "{:?}", v);
            }
            _ => {}
        }
    }

    /// `GET /api/v1/events/{event}/seatmap?format=…`.
    #[test]
    fn seatmap(seg in segment(), query in query(), body in body(), ctype in content_type()) {
        let req = request("GET", format!("/api/v1/events/{seg}/seatmap"), Who::Nobody, &body, ctype, query, false);
        let Some(r) = call(&req)? else { return Ok(()) };
        check(&req, &r)?;
        if r.status < 300 {
            let v = json_of(&req, &r)?;
            prop_assert_eq!(&v["type"], "seatmap");
        }
    }

    /// `GET /api/v1/events/{event}` and `GET /api/v1/seller/events/{event}/queue`.
    #[test]
    fn event_reads(seg in segment(), seller in any::<bool>(), who in who(Who::Seller), query in query(), body in body()) {
        let (path, who) = if seller {
            (format!("/api/v1/seller/events/{seg}/queue"), who)
        } else {
            (format!("/api/v1/events/{seg}"), Who::Nobody)
        };
        let req = request("GET", path, who, &body, None, query, false);
        let Some(r) = call(&req)? else { return Ok(()) };
        check(&req, &r)?;
        if r.status < 300 {
            json_of(&req, &r)?;
        }
    }

    /// `PATCH /api/v1/seller/events/{event}/queue`: a refusal changes
    /// nothing; an acceptance changes exactly the fields named; a well-formed
    /// patch is accepted exactly when the documented ranges allow it.
    #[test]
    fn patch(
        seg in prop_oneof![6 => Just(EVENT.to_owned()), 1 => segment()],
        who in who(Who::Seller),
        body in body(),
        ctype in content_type(),
        query in query(),
        chunked in any::<bool>(),
    ) {
        let before = settings();
        let req = request("PATCH", format!("/api/v1/seller/events/{seg}/queue"), who, &body, ctype.clone(), query, chunked);
        let Some(r) = call(&req)? else { return Ok(()) };
        check(&req, &r)?;
        let after = settings();
        if r.status >= 300 {
            prop_assert_eq!(&after, &before, "refused patch changed the settings: {:?}\n→ {:?}", req, r);
        } else {
            prop_assert_eq!(r.status, 200);
            prop_assert_eq!(&json_of(&req, &r)?, &after, "answer is not the new settings");
        }
        let well_formed = who == Who::Seller
            && decoded(&seg).as_deref() == Some(EVENT)
            && matches!(ctype.as_deref(), Some("application/json" | "application/json; charset=utf-8"));
        if let (true, Body::Patch(patch)) = (well_formed, &body) {
            match apply(&before, patch) {
                Some(want) => {
                    prop_assert_eq!(r.status, 200, "valid patch refused: {:?}\n→ {:?}", req, r);
                    prop_assert_eq!(&after, &want);
                }
                None => prop_assert_eq!(r.status, 400, "invalid patch not refused: {:?}\n→ {:?}", req, r),
            }
        }
        if r.status < 300
            && let Body::Patch(patch) = &body
        {
            for (k, v) in after.as_object().unwrap() {
                if patch.get(k).is_none_or(|v| v.is_null()) {
                    prop_assert_eq!(v, &before[k], "{} changed without being named", k);
                }
            }
        }
    }
}
