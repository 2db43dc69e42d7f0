//! Identity: verifying buyer and seller JWTs (HS256 with the server secret,
//! RS256 with a configured public key), minting guest and operator tokens,
//! and signing admission passes bound to one user and one event.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::UserId;

/// Audience of admission passes, so that a pass never passes for a login.
const PASS_AUDIENCE: &str = "queueticket-pass";
/// Clock skew tolerated between the token's issuer and us.
const LEEWAY_S: u64 = 5;

pub use qt_protocol::{Claims, Role};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PassClaims {
    sub: String,
    event: String,
    aud: String,
    exp: u64,
    iat: u64,
}

/// Who is calling, once their token checked out.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub role: Role,
    pub seller: Option<String>,
}

impl Identity {
    /// Only buyers use the buyer surface: what a buyer does there (a place
    /// in line, holds, orders) is theirs, and operators act over REST.
    pub fn require_buyer(self) -> Result<Self, AuthError> {
        match self.role {
            Role::Buyer => Ok(self),
            Role::Seller | Role::Admin => Err(AuthError::WrongRole),
        }
    }

    /// The seller this caller acts for.
    pub fn require_seller(&self) -> Result<&str, AuthError> {
        match (self.role, &self.seller) {
            (Role::Seller, Some(seller)) => Ok(seller),
            _ => Err(AuthError::WrongRole),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("this token's role may not do that")]
    WrongRole,
}

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("the JWT secret must be at least 16 bytes")]
    ShortSecret,
    #[error("cannot read the RSA key: {0}")]
    Rsa(#[from] jsonwebtoken::errors::Error),
}

/// Signing and verification keys, built once at start-up.
pub struct Auth {
    hs_encode: EncodingKey,
    hs_decode: DecodingKey,
    rs_decode: Option<DecodingKey>,
    rs_encode: Option<EncodingKey>,
}

pub fn unix_now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_S;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

impl Auth {
    pub fn new(secret: &[u8], rsa_public_pem: Option<&[u8]>, rsa_private_pem: Option<&[u8]>) -> Result<Self, KeyError> {
        if secret.len() < 16 {
            return Err(KeyError::ShortSecret);
        }
        Ok(Self {
            hs_encode: EncodingKey::from_secret(secret),
            hs_decode: DecodingKey::from_secret(secret),
            rs_decode: rsa_public_pem.map(DecodingKey::from_rsa_pem).transpose()?,
            rs_encode: rsa_private_pem.map(EncodingKey::from_rsa_pem).transpose()?,
        })
    }

    /// Checks a login token: signature by the key of its algorithm (never the
    /// other algorithm's key), expiry, and a known role.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => &self.hs_decode,
            Algorithm::RS256 => self.rs_decode.as_ref().ok_or(AuthError::Invalid)?,
            _ => return Err(AuthError::Invalid),
        };
        let data = decode::<Claims>(token, key, &validation(header.alg)).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > 128 {
            return Err(AuthError::Invalid);
        }
        // Issued in the future, or after it expires: the issuer's clock or
        // the token is wrong either way.
        if claims.iat.is_some_and(|iat| iat > unix_now_s() + LEEWAY_S || iat > claims.exp) {
            return Err(AuthError::Invalid);
        }
        Ok(Identity { user: claims.sub.into(), role: claims.role, seller: claims.seller })
    }

    /// Mints a login token; RS256 needs the private key to be configured.
    pub fn mint(&self, claims: &Claims, alg: Algorithm) -> Result<String, KeyError> {
        let key = match alg {
            Algorithm::RS256 => self
                .rs_encode
                .as_ref()
                .ok_or(KeyError::Rsa(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into()))?,
            _ => &self.hs_encode,
        };
        Ok(encode(&Header::new(alg), claims, key)?)
    }

    pub fn mint_hs(&self, sub: &str, role: Role, seller: Option<&str>, ttl_s: u64) -> String {
        let now = unix_now_s();
        let claims = Claims {
            sub: sub.into(),
            role,
            exp: now + ttl_s,
            iat: Some(now),
            nbf: None,
            seller: seller.map(Into::into),
        };
        // HMAC signing of a serializable struct cannot fail.
        encode(&Header::new(Algorithm::HS256), &claims, &self.hs_encode).unwrap_or_default()
    }

    /// An admission pass: proof that `user` was admitted to `event`, valid
    /// until the end of the shopping window.
    pub fn sign_pass(&self, user: &str, event: &str, expires_ms: i64) -> String {
        let claims = PassClaims {
            sub: user.into(),
            event: event.into(),
            aud: PASS_AUDIENCE.into(),
            exp: (expires_ms.max(0) as u64).div_ceil(1000),
            iat: unix_now_s(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.hs_encode).unwrap_or_default()
    }

    /// Checks that a pass admits exactly this user to exactly this event.
    pub fn verify_pass(&self, pass: &str, user: &str, event: &str) -> Result<(), AuthError> {
        let mut v = validation(Algorithm::HS256);
        v.set_audience(&[PASS_AUDIENCE]);
        let data = decode::<PassClaims>(pass, &self.hs_decode, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        if data.claims.sub == user && data.claims.event == event { Ok(()) } else { Err(AuthError::Invalid) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const RSA_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/rsa_private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/rsa_public.pem");

    fn auth() -> Auth {
        Auth::new(SECRET, Some(RSA_PUBLIC), Some(RSA_PRIVATE)).unwrap()
    }

    fn claims(role: Role, exp: u64) -> Claims {
        Claims { sub: "u-1".into(), role, exp, iat: None, nbf: None, seller: None }
    }

    #[test]
    fn hs256_and_rs256_tokens_verify() {
        let a = auth();
        let hs = a.mint(&claims(Role::Buyer, unix_now_s() + 60), Algorithm::HS256).unwrap();
        let rs = a.mint(&claims(Role::Seller, unix_now_s() + 60), Algorithm::RS256).unwrap();
        assert_eq!(a.verify(&hs).unwrap().role, Role::Buyer);
        assert_eq!(a.verify(&rs).unwrap().role, Role::Seller);
    }

    #[test]
    fn rs256_is_refused_without_a_public_key() {
        let signer = auth();
        let rs = signer.mint(&claims(Role::Buyer, unix_now_s() + 60), Algorithm::RS256).unwrap();
        let hs_only = Auth::new(SECRET, None, None).unwrap();
        assert_eq!(hs_only.verify(&rs).unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn expired_forged_and_garbage_tokens_fail() {
        let a = auth();
        let expired = a.mint(&claims(Role::Buyer, unix_now_s() - 3_600), Algorithm::HS256).unwrap();
        assert_eq!(a.verify(&expired).unwrap_err(), AuthError::Expired);
        let other = Auth::new(b"another-secret-of-enough-length", None, None).unwrap();
        let forged = other.mint(&claims(Role::Admin, unix_now_s() + 60), Algorithm::HS256).unwrap();
        assert_eq!(a.verify(&forged).unwrap_err(), AuthError::Invalid);
        assert_eq!(a.verify("not.a.jwt").unwrap_err(), AuthError::Invalid);
        assert_eq!(a.verify("").unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn tokens_not_yet_valid_or_issued_in_the_future_fail() {
        let a = auth();
        let now = unix_now_s();
        let later = Claims { nbf: Some(now + 600), ..claims(Role::Buyer, now + 3_600) };
        assert_eq!(a.verify(&a.mint(&later, Algorithm::HS256).unwrap()).unwrap_err(), AuthError::Invalid);
        let from_the_future = Claims { iat: Some(now + 600), ..claims(Role::Buyer, now + 3_600) };
        assert_eq!(a.verify(&a.mint(&from_the_future, Algorithm::HS256).unwrap()).unwrap_err(), AuthError::Invalid);
        let backwards = Claims { iat: Some(now), ..claims(Role::Buyer, now - 1) };
        assert!(a.verify(&a.mint(&backwards, Algorithm::HS256).unwrap()).is_err());
        let valid_now = Claims { nbf: Some(now - 1), iat: Some(now), ..claims(Role::Buyer, now + 60) };
        assert!(a.verify(&a.mint(&valid_now, Algorithm::HS256).unwrap()).is_ok());
    }

    #[test]
    fn a_pass_is_bound_to_user_and_event_and_is_no_login() {
        let a = auth();
        let exp = (unix_now_s() as i64 + 600) * 1000;
        let pass = a.sign_pass("u-1", "e-1", exp);
        assert!(a.verify_pass(&pass, "u-1", "e-1").is_ok());
        assert!(a.verify_pass(&pass, "u-2", "e-1").is_err());
        assert!(a.verify_pass(&pass, "u-1", "e-2").is_err());
        assert!(a.verify(&pass).is_err(), "a pass is not a login token");
        let login = a.mint_hs("u-1", Role::Buyer, None, 60);
        assert!(a.verify_pass(&login, "u-1", "e-1").is_err(), "a login is not a pass");
    }

    #[test]
    fn roles_gate_surfaces() {
        let buyer = Identity { user: "b".into(), role: Role::Buyer, seller: None };
        assert!(buyer.clone().require_buyer().is_ok());
        let admin = Identity { user: "a".into(), role: Role::Admin, seller: None };
        assert_eq!(admin.require_buyer().unwrap_err(), AuthError::WrongRole);
        assert_eq!(buyer.require_seller().unwrap_err(), AuthError::WrongRole);
        let seller = Identity { user: "s".into(), role: Role::Seller, seller: Some("s-1".into()) };
        assert_eq!(seller.require_seller().unwrap(), "s-1");
        assert_eq!(seller.require_buyer().unwrap_err(), AuthError::WrongRole);
        let no_scope = Identity { user: "s".into(), role: Role::Seller, seller: None };
        assert!(no_scope.require_seller().is_err());
    }
}
