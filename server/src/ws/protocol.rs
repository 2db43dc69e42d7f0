//! Reading client frames: the shared wire types of `qt_protocol`, with
//! their read errors as our `bad_request`.

pub use qt_protocol::client::parse_req;
use qt_protocol::{ClientMsg, Req};

use crate::error::AppError;

/// Parses a text frame. On failure the error still carries the frame's
/// `req` when it had a readable one.
pub fn parse(text: &str) -> (Option<Req>, Result<ClientMsg, AppError>) {
    let (req, msg) = qt_protocol::client::parse(text);
    (req, msg.map_err(|e| AppError::BadRequest(e.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::ws::render::error_frame;

    #[test]
    fn read_errors_are_bad_requests_under_their_req() {
        let (req, r) = parse(r#"{"type":"fly","req":2}"#);
        assert_eq!(req, Some(Req::Int(2)));
        assert_eq!(r.unwrap_err().code(), ErrorCode::BadRequest);
        let e = error_frame(&AppError::NotAdmitted, Some(&Req::Int(9)));
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str(), v["req"].as_i64()),
            (Some("error"), Some("not_admitted"), Some(9))
        );
    }
}
