//! A hand-written scanner for the frames a seat-map watcher receives
//! thousands of times a second: it finds a frame's `type`, reads a `seats`
//! diff's `version` and `changes` straight out of the bytes, borrowing the
//! seat ids, and allocates nothing but the caller's output vector. It
//! accepts any key order and whitespace, skips fields it does not know, and
//! refuses anything that is not one well-formed JSON object; a string with
//! escapes where we need its value (a seat id, a status, the type) is
//! refused too (the server never sends one there), so the caller can fall
//! back to serde_json. It knows nothing about sockets or maps.

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

/// A seat's status as one letter, as in compact snapshots: `f`, `h`, `s`.
pub fn status_code(status: &str) -> Option<u8> {
    match status {
        "free" => Some(b'f'),
        "held" => Some(b'h'),
        "sold" => Some(b's'),
        _ => None,
    }
}

/// One `seats` frame: its version and its changes as (seat id, status
/// letter), in frame order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff<'a> {
    pub version: u64,
    pub changes: Vec<(&'a str, u8)>,
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

    /// Walks an object's members, handing each key to `member`, which must
    /// consume the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Result<(), ScanError>) -> Result<(), ScanError> {
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            let (key, _) = self.raw_string()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err()),
            }
        }
    }

    fn end(&mut self) -> Result<(), ScanError> {
        if self.peek().is_none() { Ok(()) } else { Err(self.err()) }
    }
}

/// The frame's top-level `type`, without reading the rest of a large frame
/// when `type` comes first (the server puts it first).
pub fn frame_type(text: &str) -> Result<&str, ScanError> {
    let mut c = Cursor::new(text);
    c.eat(b'{')?;
    loop {
        let (key, _) = c.raw_string()?;
        c.eat(b':')?;
        if key == "type" {
            return c.string();
        }
        c.skip()?;
        match c.peek() {
            Some(b',') => c.i += 1,
            _ => return Err(ScanError::Missing("type")),
        }
    }
}

/// The top-level `version`, reading no further than it (for cache keys).
pub fn peek_version(text: &str) -> Result<u64, ScanError> {
    let mut c = Cursor::new(text);
    c.eat(b'{')?;
    loop {
        let (key, _) = c.raw_string()?;
        c.eat(b':')?;
        if key == "version" {
            return c.u64();
        }
        c.skip()?;
        match c.peek() {
            Some(b',') => c.i += 1,
            _ => return Err(ScanError::Missing("version")),
        }
    }
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
            c.eat(b'[')?;
            if c.peek() == Some(b']') {
                c.i += 1;
                return Ok(());
            }
            loop {
                let (mut id, mut status) = (None, None);
                c.object(|c, key| match key {
                    "id" => {
                        id = Some(c.string()?);
                        Ok(())
                    }
                    "status" => {
                        let s = c.string()?;
                        status = Some(status_code(s).ok_or_else(|| ScanError::Status(s.to_owned()))?);
                        Ok(())
                    }
                    _ => c.skip(),
                })?;
                changes.push((id.ok_or(ScanError::Missing("id"))?, status.ok_or(ScanError::Missing("status"))?));
                match c.peek() {
                    Some(b',') => c.i += 1,
                    Some(b']') => {
                        c.i += 1;
                        return Ok(());
                    }
                    _ => return Err(c.err()),
                }
            }
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
    use super::*;

    const FRAME: &str = r#"{"type":"seats","event":"demo-live","version":42,"changes":[{"id":"A-1-1","status":"held"},{"id":"B-20-24","status":"free"}]}"#;

    #[test]
    fn reads_the_servers_frame() {
        let d = scan_seats(FRAME).unwrap();
        assert_eq!(d, Diff { version: 42, changes: vec![("A-1-1", b'h'), ("B-20-24", b'f')] });
        assert_eq!(frame_type(FRAME), Ok("seats"));
        assert_eq!(peek_version(FRAME), Ok(42));
    }

    #[test]
    fn any_order_whitespace_and_unknown_fields() {
        let text = " {\n \"changes\" : [ { \"note\": {\"a\": [1, \"]}\\\"\"]}, \"status\" : \"sold\", \"id\": \"x\" } ] ,\
                    \"extra\": [true, false, null, -1.5e3], \"version\": 7, \"type\" : \"seats\" } ";
        let d = scan_seats(text).unwrap();
        assert_eq!(d, Diff { version: 7, changes: vec![("x", b's')] });
        assert_eq!(peek_version(text), Ok(7));
        assert_eq!(frame_type(text), Ok("seats"));
        let empty = r#"{"type":"seats","version":3,"changes":[]}"#;
        assert_eq!(scan_seats(empty).unwrap().changes, vec![]);
    }

    #[test]
    fn other_frames_are_told_apart_cheaply() {
        let map = r#"{"type":"seatmap","event":"e","version":9,"format":"compact","rows":[],"status":"fh","req":1}"#;
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
        let changes: Vec<serde_json::Value> = (0..500)
            .map(|i| {
                let status = ["free", "held", "sold"][i % 3];
                serde_json::json!({"id": format!("C-{}-{}", i % 20 + 1, i % 24 + 1), "status": status})
            })
            .collect();
        let text = serde_json::json!({"type": "seats", "event": "demo-live", "version": 123_456, "changes": changes})
            .to_string();
        let d = scan_seats(&text).unwrap();
        assert_eq!(d.version, 123_456);
        assert_eq!(d.changes.len(), 500);
        for (got, want) in d.changes.iter().zip(&changes) {
            assert_eq!(got.0, want["id"].as_str().unwrap());
            assert_eq!(Some(got.1), status_code(want["status"].as_str().unwrap()));
        }
    }
}
