//! What every response passes through on its way out, and what every request
//! is checked for before any handler sees it: one error shape for answers
//! the handlers did not write themselves (axum's rejections, 405, 414, 431),
//! bounded request heads, and the browser security headers.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use qt_protocol::error::{ErrorBody, ErrorResponse};

use crate::error::ErrorCode;

/// Longest request target we read; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request headers, by count and by total size; more get 431.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Longest text of a rejection carried into the error message.
const MAX_MESSAGE_BYTES: usize = 512;

/// What [`guard`] bounds besides the head.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// How long a request with a body may take to arrive and be answered.
    pub request_timeout: Option<Duration>,
}

/// The page may load only its own scripts, styles and sockets, and may not
/// be framed (clickjacking the hold and pay buttons).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Headers every response carries.
fn security_headers() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ]
}

/// Headers a page carries on top: what it may load, and that it may not be
/// framed. JSON answers are no page, and pollers should not pay for them.
fn page_headers() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

fn is_page(res: &Response) -> bool {
    res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
}

/// The protocol's error code for a status a handler did not choose itself.
fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// A JSON error body in the contract's shape, keeping `status`.
pub fn shaped(status: StatusCode, message: &str) -> Response {
    let code = code_for(status);
    let message = if message.trim().is_empty() {
        status.canonical_reason().unwrap_or("request refused").to_lowercase()
    } else {
        message.trim().to_owned()
    };
    (status, axum::Json(ErrorResponse { error: ErrorBody::new(code, message) })).into_response()
}

/// The statuses hyper answers by itself, bodyless, when it cannot parse a
/// request head (so no handler or middleware ever sees it).
const PARSE_ERRORS: [(StatusCode, &str); 3] = [
    (StatusCode::BAD_REQUEST, "malformed HTTP request"),
    (StatusCode::URI_TOO_LONG, "request target too long"),
    (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large"),
];

/// When `head` is one of hyper's own bodyless parse-error replies, the same
/// reply in the contract's shape, as bytes for the wire. The router never
/// writes such a reply itself: every error it sends has a JSON body.
pub fn reshape_parse_error(head: &[u8]) -> Option<Vec<u8>> {
    const LONGEST_HEAD: usize = 256;
    if head.len() > LONGEST_HEAD || !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    if !text.to_ascii_lowercase().contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let code: u16 = text.get(9..12)?.parse().ok()?;
    let (status, message) = PARSE_ERRORS.iter().find(|(s, _)| s.as_u16() == code)?;
    let body = ErrorResponse { error: ErrorBody::new(code_for(*status), *message) };
    let body = serde_json::to_string(&body).ok()?;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for (name, value) in security_headers() {
        out.push_str(&format!("{}: {}\r\n", name, value.to_str().unwrap_or("")));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

fn is_json(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Refuses oversized request heads, gives every error response that is not
/// already JSON the contract's shape (axum's own rejections answer in plain
/// text or with no body at all), and adds the security headers (a page's
/// own on HTML).
pub async fn guard(State(limits): State<GuardLimits>, req: Request, next: Next) -> Response {
    let mut res = checked(req, next, limits.request_timeout).await;
    let page = is_page(&res);
    let headers = res.headers_mut();
    for (name, value) in security_headers() {
        headers.entry(name).or_insert(value);
    }
    if page {
        for (name, value) in page_headers() {
            headers.entry(name).or_insert(value);
        }
    }
    res
}

async fn checked(req: Request, next: Next, request_timeout: Option<Duration>) -> Response {
    let uri = req.uri();
    let target_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if target_len > MAX_URI_BYTES {
        return shaped(StatusCode::URI_TOO_LONG, &format!("request target longer than {MAX_URI_BYTES} bytes"));
    }
    let headers = req.headers();
    let header_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return shaped(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them"),
        );
    }
    // Only a body can be trickled in after the head; a request without one
    // is bounded by the head time-out and by the store calls' own.
    let has_body =
        req.headers().contains_key(header::CONTENT_LENGTH) || req.headers().contains_key(header::TRANSFER_ENCODING);
    let res = match (has_body, request_timeout) {
        (true, Some(limit)) => match tokio::time::timeout(limit, next.run(req)).await {
            Ok(res) => res,
            Err(_) => return shaped(StatusCode::REQUEST_TIMEOUT, "the request took too long to arrive"),
        },
        _ => next.run(req).await,
    };
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&res) {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES * 4).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message: String = text.chars().take(MAX_MESSAGE_BYTES).collect();
    let mut shaped = shaped(status, &message);
    // Keep what the client needs to act on it (Allow on 405, Retry-After).
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            shaped.headers_mut().insert(name, v.clone());
        }
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_parse_errors_get_the_contract_shape() {
        for code in [400, 414, 431] {
            let head = format!("HTTP/1.1 {code} Whatever\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n");
            let out = String::from_utf8(reshape_parse_error(head.as_bytes()).unwrap()).unwrap();
            let (head, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {code} ")), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["error"]["code"], "bad_request");
            assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn everything_else_passes_untouched() {
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n";
        assert!(reshape_parse_error(with_body).is_none());
        let other_status = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(reshape_parse_error(other_status).is_none());
        assert!(reshape_parse_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(reshape_parse_error(&[0x81, 0x05, b'h', b'e', b'l', b'l', b'o']).is_none());
        let partial = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n";
        assert!(reshape_parse_error(partial).is_none());
    }
}
