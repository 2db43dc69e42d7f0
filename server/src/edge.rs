//! What both transports read off a request before any use case runs: the
//! bearer token, the verified caller, and the client's address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::auth::{Auth, AuthError, Identity};
use crate::error::AppError;

/// The bearer token of an `Authorization` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The verified caller of a REST request.
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Arc<Auth>: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or(AuthError::Missing)?;
        Ok(Caller(Arc::<Auth>::from_ref(state).verify(token)?))
    }
}

/// The client's address, for per-address limits: the peer, or behind a
/// trusted proxy the address it appended to X-Forwarded-For.
pub fn client_ip(trust_forwarded_for: bool, headers: &HeaderMap, peer: &SocketAddr) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer.ip()
}
