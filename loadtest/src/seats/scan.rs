//! A hand-written scanner for the frames a seat-map watcher receives
//! thousands of times a second: it finds a frame's `type`, reads a `seats`
//! diff's `version` and `changes` straight out of the bytes, borrowing the
//! seat ids, and allocates nothing but the caller's output vector. What it
//! reads is the shared `qt_protocol::frames::Seats` (its statuses are the
//! shared `SeatStatus`); the tests hold it to what `qt_protocol::encode`
//! writes. It accepts any key order and whitespace, skips fields it does
//! not know, and refuses anything that is not one well-formed JSON object;
//! a string with escapes where we need its value (a seat id, a status, the
//! type) is refused too (the server never sends one there), so the caller
//! can fall back to serde_json. It knows nothing about sockets or maps.
//!
//! Why not serde: every watcher of a worker receives every diff, and full
//! parsing into `Seats` (an owned `String` per seat id) costs several
//! times the scan; a worker scans each distinct frame once, but the
//! `type` and `version` peeks run for every watcher.

use qt_protocol::frames::SeatStatus;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("malformed JSON at byte {0}")]
    Malformed(usize),
    #[error("an escaped string where a plain one was expected")]
    Escaped,
    #[error("not a `seats` frame")]
    NotSeats,
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("unknown seat status {0:?}")]
    Status(String),
}

/// A seat's status by its wire name (`SeatStatus`'s serde name).
pub fn status_of(name: &str) -> Option<SeatStatus> {
    match name {
        "free" => Some(SeatStatus::Free),
        "held" => Some(SeatStatus::Held),
        "sold" => Some(SeatStatus::Sold),
        _ => None,
    }
}

/// One `seats` frame: its version and its changes as (seat id, status),
/// in frame order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff<'a> {
    pub version: u64,
    pub changes: Vec<(&'a str, SeatStatus)>,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { b: text.as_bytes(), i: 0 }
    }

    fn err(&self) -> ScanError {
        ScanError::Malformed(self.i)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), ScanError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    /// Skips a string whose opening quote is next; returns its raw content
    /// and whether it had escapes.
    fn raw_string(&mut self) -> Result<(&'a str, bool), ScanError> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.b.get(self.i) {
                None => return Err(self.err()),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.i += 2;
                }
                Some(c) if *c < 0x20 => return Err(self.err()),
                Some(_) => self.i += 1,
            }
        }
        // The input is a `&str` and quotes are ASCII: slicing between them
        // stays on character boundaries.
        let raw = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.err())?;
        self.i += 1;
        Ok((raw, escaped))
    }

    /// A string we need the value of: escapes refused.
    fn string(&mut self) -> Result<&'a str, ScanError> {
        match self.raw_string()? {
            (s, false) => Ok(s),
            (_, true) => Err(ScanError::Escaped),
        }
    }

    fn u64(&mut self) -> Result<u64, ScanError> {
        self.ws();
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.b.get(self.i) {
            v = v.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or_else(|| self.err())?;
            self.i += 1;
        }
        if self.i == start { Err(self.err()) } else { Ok(v) }
    }

    /// Skips any JSON value.
    fn skip(&mut self) -> Result<(), ScanError> {
        match self.peek().ok_or_else(|| self.err())? {
            b'"' => self.raw_string().map(drop),
            b'{' | b'[' => self.skip_nested(),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.b.get(self.i) {
                    self.i += 1;
                }
                if self.i == start { Err(self.err()) } else { Ok(()) }
            }
            _ => {
                for word in [&b"true"[..], b"false", b"null"] {
                    if self.b[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Ok(());
                    }
                }
                Err(self.err())
            }
        }
    }

    /// Skips an object or array, counting brackets and stepping over strings.
    fn skip_nested(&mut self) -> Result<(), ScanError> {
        let mut depth = 0usize;
        loop {
            match self.b.get(self.i) {
                None => return Err(self.err()),
                Some(b'"') => {
                    self.raw_string()?;
                    continue;
                }
                Some(b'{' | b'[') => depth += 1,
                Some(b'}' | b']') => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
            self.i += 1;
        }
    }

    /// Walks the comma-separated items between `open` and `close`, handing
    /// each to `item`, which must consume it.
    fn sequence(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), ScanError>,
    ) -> Result<(), ScanError> {
        self.eat(open)?;
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err()),
            }
        }
    }

    /// Walks an object's members, handing each key to `member`, which must
    /// consume the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Result<(), ScanError>) -> Result<(), ScanError> {
        self.sequence(b'{', b'}', |c| {
            let (key, _) = c.raw_string()?;
            c.eat(b':')?;
            member(c, key)
        })
    }

    fn end(&mut self) -> Result<(), ScanError> {
        if self.peek().is_none() { Ok(()) } else { Err(self.err()) }
    }
}

/// The top-level member `key`, read by `value`, reading the frame no
/// further than it.
fn peek<'a, T>(
    text: &'a str,
    key: &'static str,
    value: impl FnOnce(&mut Cursor<'a>) -> Result<T, ScanError>,
) -> Result<T, ScanError> {
    let mut c = Cursor::new(text);
    c.eat(b'{')?;
    loop {
        let (name, _) = c.raw_string()?;
        c.eat(b':')?;
        if name == key {
            return value(&mut c);
        }
        c.skip()?;
        match c.peek() {
            Some(b',') => c.i += 1,
            _ => return Err(ScanError::Missing(key)),
        }
    }
}

/// The frame's top-level `type`, without reading the rest of a large frame
/// when `type` comes first (the server puts it first).
pub fn frame_type(text: &str) -> Result<&str, ScanError> {
    peek(text, "type", Cursor::string)
}

/// The top-level `version`, reading no further than it (for cache keys).
pub fn peek_version(text: &str) -> Result<u64, ScanError> {
    peek(text, "version", Cursor::u64)
}

/// Reads a whole `seats` frame.
pub fn scan_seats(text: &str) -> Result<Diff<'_>, ScanError> {
    let mut c = Cursor::new(text);
    let (mut kind, mut version) = (None, None);
    let mut changes = Vec::new();
    let mut saw_changes = false;
    c.object(|c, key| match key {
        "type" => {
            kind = Some(c.string()?);
            Ok(())
        }
        "version" => {
            version = Some(c.u64()?);
            Ok(())
        }
        "changes" => {
            saw_changes = true;
            c.sequence(b'[', b']', |c| {
                let (mut id, mut status) = (None, None);
                c.object(|c, key| match key {
                    "id" => {
                        id = Some(c.string()?);
                        Ok(())
                    }
                    "status" => {
                        let s = c.string()?;
                        status = Some(status_of(s).ok_or_else(|| ScanError::Status(s.to_owned()))?);
                        Ok(())
                    }
                    _ => c.skip(),
                })?;
                changes.push((id.ok_or(ScanError::Missing("id"))?, status.ok_or(ScanError::Missing("status"))?));
                Ok(())
            })
        }
        _ => c.skip(),
    })?;
    c.end()?;
    match kind {
        Some("seats") => {}
        Some(_) => return Err(ScanError::NotSeats),
        None => return Err(ScanError::Missing("type")),
    }
    if !saw_changes {
        return Err(ScanError::Missing("changes"));
    }
    Ok(Diff { version: version.ok_or(ScanError::Missing("version"))?, changes })
}

#[cfg(test)]
mod tests {
    use qt_protocol::frames::{SeatChange, Seats};
    use qt_protocol::{Req, ServerMsg, encode};

    use super::*;
    use SeatStatus::{Free, Held, Sold};

    const FRAME: &str = r#"{"type":"seats","event":"demo-live","version":42,"changes":[{"id":"A-1-1","status":"held"},{"id":"B-20-24","status":"free"}]}"#;

    #[test]
    fn reads_the_servers_frame() {
        let d = scan_seats(FRAME).unwrap();
        assert_eq!(d, Diff { version: 42, changes: vec![("A-1-1", Held), ("B-20-24", Free)] });
        assert_eq!(frame_type(FRAME), Ok("seats"));
        assert_eq!(peek_version(FRAME), Ok(42));
    }

    #[test]
    fn any_order_whitespace_and_unknown_fields() {
        let text = " {\n \"changes\" : [ { \"note\": {\"a\": [1, \"]}\\\"\"]}, \"status\" : \"sold\", \"id\": \"x\" } ] ,\
                    \"extra\": [true, false, null, -1.5e3], \"version\": 7, \"type\" : \"seats\" } ";
        let d = scan_seats(text).unwrap();
        assert_eq!(d, Diff { version: 7, changes: vec![("x", Sold)] });
        assert_eq!(peek_version(text), Ok(7));
        assert_eq!(frame_type(text), Ok("seats"));
        let empty = r#"{"type":"seats","version":3,"changes":[]}"#;
        assert_eq!(scan_seats(empty).unwrap().changes, vec![]);
    }

    #[test]
    fn other_frames_are_told_apart_cheaply() {
        let map = r#"{"type":"seatmap","event":"e","version":9,"currency":"KRW","format":"compact","rows":[],"status":"fh","req":1}"#;
        assert_eq!(frame_type(map), Ok("seatmap"));
        assert_eq!(peek_version(map), Ok(9));
        assert_eq!(scan_seats(map), Err(ScanError::NotSeats));
        let held = r#"{"type":"held","event":"e","seats":["A-1-1"],"expires_at":"2026-01-01T00:00:00Z","req":5}"#;
        assert_eq!(frame_type(held), Ok("held"));
        assert_eq!(peek_version(held), Err(ScanError::Missing("version")));
        assert_eq!(frame_type(r#"{"req":1,"type":"error"}"#), Ok("error"));
        assert_eq!(frame_type(r#"{"req":1}"#), Err(ScanError::Missing("type")));
    }

    #[test]
    fn refuses_what_is_not_one_well_formed_frame() {
        for bad in [
            "",
            "[]",
            r#"{"type":"seats","version":1,"changes":[{"id":"a","status":"held"}]"#,
            r#"{"type":"seats","version":1,"changes":[{"id":"a","status":"held"}]} x"#,
            r#"{"type":"seats","version":1,"changes":[{"id":"a","status":"held"},]}"#,
            r#"{"type":"seats","version":-1,"changes":[]}"#,
            r#"{"type":"seats","version":99999999999999999999,"changes":[]}"#,
            r#"{"type":"seats","version":1,"changes":[{"id":"a","status":"held"}"#,
            r#"{"type":"seats","version":1,"changes":[{"id":"a" "status":"held"}]}"#,
            r#"{"type":"seats","version":1,"changes":[],"x":tru}"#,
            "{\"type\":\"seats\",\"version\":1,\"changes\":[],\"x\":\"a\nb\"}",
        ] {
            assert!(matches!(scan_seats(bad), Err(ScanError::Malformed(_))), "{bad:?}: {:?}", scan_seats(bad));
        }
        assert_eq!(scan_seats(r#"{"type":"seats","changes":[]}"#), Err(ScanError::Missing("version")));
        assert_eq!(scan_seats(r#"{"type":"seats","version":1}"#), Err(ScanError::Missing("changes")));
        assert_eq!(
            scan_seats(r#"{"type":"seats","version":1,"changes":[{"id":"a"}]}"#),
            Err(ScanError::Missing("status"))
        );
        assert_eq!(
            scan_seats(r#"{"type":"seats","version":1,"changes":[{"id":"a","status":"gone"}]}"#),
            Err(ScanError::Status("gone".into()))
        );
        assert_eq!(
            scan_seats(r#"{"type":"seats","version":1,"changes":[{"id":"a\"b","status":"held"}]}"#),
            Err(ScanError::Escaped)
        );
    }

    #[test]
    fn agrees_with_serde_on_a_large_frame() {
        let changes: Vec<SeatChange> = (0..500)
            .map(|i| SeatChange { id: format!("C-{}-{}", i % 20 + 1, i % 24 + 1), status: [Free, Held, Sold][i % 3] })
            .collect();
        let text = encode(
            &ServerMsg::Seats(Seats { event: "demo-live".into(), version: 123_456, changes: changes.clone() }),
            None,
        );
        let d = scan_seats(&text).unwrap();
        assert_eq!(d.version, 123_456);
        assert_eq!(d.changes.len(), 500);
        for (got, want) in d.changes.iter().zip(&changes) {
            assert_eq!(got.0, want.id);
            assert_eq!(got.1, want.status);
        }
    }

    /// Whatever the shared types encode, the scanner reads back exactly.
    #[test]
    fn reads_back_what_the_shared_types_encode() {
        let diff = Seats {
            event: "e \"quoted\" ünïcode".into(),
            version: 77,
            changes: vec![
                SeatChange { id: "A-1-1".into(), status: Held },
                SeatChange { id: "Ü-2-3".into(), status: Sold },
                SeatChange { id: "box".into(), status: Free },
            ],
        };
        for req in [None, Some(Req::Int(5))] {
            let text = encode(&ServerMsg::Seats(diff.clone()), req.as_ref());
            let d = scan_seats(&text).unwrap();
            let read: Vec<SeatChange> =
                d.changes.iter().map(|&(id, status)| SeatChange { id: id.to_owned(), status }).collect();
            assert_eq!((d.version, read), (diff.version, diff.changes.clone()), "{text}");
            assert_eq!((frame_type(&text), peek_version(&text)), (Ok("seats"), Ok(77)));
        }
        let map = crate::seats::layout::tests::one_row(12, "hf");
        let text = encode(&ServerMsg::Seatmap(map), Some(&Req::Int(1)));
        assert_eq!((frame_type(&text), peek_version(&text)), (Ok("seatmap"), Ok(12)));
        assert_eq!(scan_seats(&text), Err(ScanError::NotSeats));
        for status in [Free, Held, Sold] {
            let name = serde_json::to_value(status).unwrap();
            assert_eq!(status_of(name.as_str().unwrap()), Some(status), "the scanner's names are serde's");
        }
    }
}
