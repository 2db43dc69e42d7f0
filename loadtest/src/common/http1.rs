//! A tiny HTTP/1.1 client over one keep-alive `TcpStream`: write a
//! prebuilt request, read the status line, headers and a `Content-Length`
//! (or chunked) body. It exists so that thousands of polling buyers cost
//! the load generator one buffer each and no allocation per request; it is
//! not a general client (no redirects, no TLS, no pipelining, no 1xx).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest status line plus headers we accept.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body we accept (`/metrics` and JSON replies are far smaller).
const MAX_BODY: usize = 8 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("response too large")]
    TooLarge,
    #[error("connection closed before the response was complete")]
    Closed,
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body runs to the end of the connection.
    UntilClose,
}

/// A parsed status line and the headers we care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of status line and headers, including the blank line.
    pub len: usize,
    pub framing: Framing,
    /// Whether the server will keep the connection open afterwards.
    pub keep_alive: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` while it is
/// incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Error> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Err(Error::TooLarge) } else { Ok(None) };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| Error::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(Error::Malformed("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (200..600).contains(s))
        .ok_or(Error::Malformed("bad status code"))?;
    let mut framing = Framing::UntilClose;
    let mut keep_alive = version != "HTTP/1.0";
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Error::Malformed("header without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<usize>().map_err(|_| Error::Malformed("bad content-length"))?;
            if n > MAX_BODY {
                return Err(Error::TooLarge);
            }
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
            if framing != Framing::Chunked {
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().ends_with("chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    // 204 and 304 never have a body whatever the headers say.
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Some(Head { status, len: end + 4, framing, keep_alive }))
}

/// Decodes a complete chunked body from the start of `buf` into `out`,
/// returning how many bytes of `buf` it used; `Ok(None)` while incomplete.
pub fn decode_chunked(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, Error> {
    out.clear();
    let mut at = 0;
    loop {
        let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| Error::Malformed("chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| Error::Malformed("chunk size"))?;
        if out.len() + size > MAX_BODY {
            return Err(Error::TooLarge);
        }
        at += eol + 2;
        if size == 0 {
            // Trailers (rare) end with an empty line like the head does.
            let Some(end) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
            if end == 0 {
                return Ok(Some(at + 2));
            }
            let Some(trailers) = buf[at..].windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
            return Ok(Some(at + trailers + 4));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(Error::Malformed("chunk not followed by CRLF"));
        }
        at += size + 2;
    }
}

/// Serialises one request. Built once per connection and reused, so the
/// request path costs no formatting per poll.
pub fn request(method: &str, host: &str, path: &str, bearer: Option<&str>, json_body: Option<&str>) -> Vec<u8> {
    let mut s = String::with_capacity(256 + bearer.map_or(0, str::len) + json_body.map_or(0, str::len));
    let _ = write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(token) = bearer {
        let _ = write!(s, "Authorization: Bearer {token}\r\n");
    }
    match json_body {
        Some(body) => {
            let _ = write!(s, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
        None if method == "POST" || method == "PATCH" || method == "PUT" => s.push_str("Content-Length: 0\r\n\r\n"),
        None => s.push_str("\r\n"),
    }
    s.into_bytes()
}

/// A response borrowed from the connection's buffers until the next call.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Decoded body of a chunked response.
    chunked: Vec<u8>,
    /// Bytes of `buf` that belong to the previous response.
    consumed: usize,
    open: bool,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Self { stream, buf: Vec::with_capacity(1024), chunked: Vec::new(), consumed: 0, open: true }
    }

    /// Whether the server left the connection usable for another request.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Sends `request` and reads its response.
    pub async fn roundtrip(&mut self, request: &[u8]) -> Result<Response<'_>, Error> {
        if !self.open {
            return Err(Error::Closed);
        }
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.stream.write_all(request).await?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if !self.fill().await? {
                return Err(Error::Closed);
            }
        };
        self.open = head.keep_alive;
        match head.framing {
            Framing::Length(n) => {
                while self.buf.len() < head.len + n {
                    if !self.fill().await? {
                        return Err(Error::Closed);
                    }
                }
                self.consumed = head.len + n;
                Ok(Response { status: head.status, body: &self.buf[head.len..head.len + n] })
            }
            Framing::Chunked => loop {
                if let Some(used) = decode_chunked(&self.buf[head.len..], &mut self.chunked)? {
                    self.consumed = head.len + used;
                    return Ok(Response { status: head.status, body: &self.chunked });
                }
                if !self.fill().await? {
                    return Err(Error::Closed);
                }
            },
            Framing::UntilClose => {
                while self.fill().await? {
                    if self.buf.len() > head.len + MAX_BODY {
                        return Err(Error::TooLarge);
                    }
                }
                self.open = false;
                self.consumed = self.buf.len();
                Ok(Response { status: head.status, body: &self.buf[head.len..] })
            }
        }
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, Error> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(4096);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }
}

/// One request on a fresh connection, for the coordinator's occasional
/// calls (metrics, settings): status and owned body.
pub async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json_body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    use anyhow::Context;
    let run = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn::new(stream);
        let req = request(method, &addr.to_string(), path, bearer, json_body);
        let resp = conn.roundtrip(&req).await?;
        Ok::<_, Error>((resp.status, resp.body.to_vec()))
    };
    tokio::time::timeout(timeout, run)
        .await
        .with_context(|| format!("{method} {path} timed out after {timeout:?}"))?
        .with_context(|| format!("{method} {path} failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_content_length_response() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(head, Head { status: 200, len: raw.len() - 2, framing: Framing::Length(2), keep_alive: true });
    }

    #[test]
    fn incomplete_head_waits_for_more() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n").unwrap(), None);
        assert_eq!(parse_head(b"").unwrap(), None);
    }

    #[test]
    fn refuses_garbage_and_oversized_heads() {
        assert!(matches!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"), Err(Error::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n"), Err(Error::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"), Err(Error::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"), Err(Error::Malformed(_))));
        assert!(matches!(parse_head(&vec![b'a'; MAX_HEAD + 1]), Err(Error::TooLarge)));
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n"), Err(Error::TooLarge)));
    }

    #[test]
    fn connection_close_and_http10_end_keep_alive() {
        let h = parse_head(b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.unwrap().unwrap().keep_alive);
        let h = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
    }

    #[test]
    fn chunked_wins_over_length_and_decodes() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(raw).unwrap().unwrap().framing, Framing::Chunked);
        let mut out = Vec::new();
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\nNEXT";
        assert_eq!(decode_chunked(body, &mut out).unwrap(), Some(body.len() - 4));
        assert_eq!(out, b"Wikipedia");
        assert_eq!(decode_chunked(b"4\r\nWiki\r\n", &mut out).unwrap(), None, "no last chunk yet");
        assert_eq!(decode_chunked(b"4\r\nWi", &mut out).unwrap(), None);
        assert_eq!(decode_chunked(b"0\r\nX-Trailer: 1\r\n\r\n", &mut out).unwrap(), Some(19));
        assert!(decode_chunked(b"zz\r\n", &mut out).is_err());
        assert!(decode_chunked(b"2\r\nabXY", &mut out).is_err());
    }

    #[test]
    fn builds_requests() {
        let r = request("GET", "127.0.0.1:8080", "/x", Some("t0k"), None);
        assert_eq!(r, b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer t0k\r\n\r\n");
        let r = request("POST", "h", "/q", None, None);
        assert!(r.ends_with(b"Content-Length: 0\r\n\r\n"));
        let r = String::from_utf8(request("PATCH", "h", "/s", None, Some(r#"{"paused":true}"#))).unwrap();
        assert!(r.ends_with("Content-Length: 15\r\n\r\n{\"paused\":true}"), "{r}");
    }

    #[tokio::test]
    async fn keep_alive_roundtrips_against_a_scripted_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            // First answer arrives in two pieces, the second one chunked.
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b"ngth: 5\r\n\r\nhello").await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno!\r\n0\r\n\r\n")
                .await
                .unwrap();
        });
        let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
        let req = request("GET", "h", "/", None, None);
        let r = conn.roundtrip(&req).await.unwrap();
        assert_eq!((r.status, r.body), (200, &b"hello"[..]));
        let r = conn.roundtrip(&req).await.unwrap();
        assert_eq!((r.status, r.body), (404, &b"no!"[..]));
        server.await.unwrap();
        assert!(matches!(conn.roundtrip(&req).await, Err(Error::Closed | Error::Io(_))));
    }
}
