//! Tokens minted here with the server's HS256 secret, so that thousands of
//! buyers need no trip through the rate-limited guest endpoint. The claims
//! are the wire contract's own type (`qt_protocol::Claims`).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use qt_protocol::{Claims, Role};

/// Tokens outlive any run by far; the server allows 5 s of clock skew.
const TTL_S: u64 = 6 * 3_600;

pub struct Minter {
    key: EncodingKey,
    header: Header,
    now_s: u64,
}

impl Minter {
    pub fn new(secret: &str) -> Self {
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { key: EncodingKey::from_secret(secret.as_bytes()), header: Header::new(Algorithm::HS256), now_s }
    }

    fn mint(&self, sub: &str, role: Role, seller: Option<&str>) -> anyhow::Result<String> {
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            exp: self.now_s + TTL_S,
            iat: Some(self.now_s),
            nbf: None,
            seller: seller.map(str::to_owned),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("failed to sign a token")
    }

    pub fn buyer(&self, user: &str) -> anyhow::Result<String> {
        self.mint(user, Role::Buyer, None)
    }

    pub fn seller(&self, user: &str, seller: &str) -> anyhow::Result<String> {
        self.mint(user, Role::Seller, Some(seller))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation, decode};

    use super::*;

    #[test]
    fn tokens_carry_the_contract_claims() {
        let secret = "0123456789abcdef0123";
        let m = Minter::new(secret);
        let key = DecodingKey::from_secret(secret.as_bytes());
        let validation = Validation::new(Algorithm::HS256);
        let token = m.seller("ops", "demo").unwrap();
        let c = decode::<serde_json::Value>(&token, &key, &validation).unwrap().claims;
        assert_eq!(
            (c["sub"].as_str(), c["role"].as_str(), c["seller"].as_str()),
            (Some("ops"), Some("seller"), Some("demo"))
        );
        assert!(c["exp"].as_u64().unwrap() > c["iat"].as_u64().unwrap());
        let typed = decode::<Claims>(&token, &key, &validation).unwrap().claims;
        assert_eq!((typed.role, typed.seller.as_deref()), (Role::Seller, Some("demo")));
        let buyer = m.buyer("b-1").unwrap();
        let c = decode::<serde_json::Value>(&buyer, &key, &validation).unwrap().claims;
        assert!(c.get("seller").is_none());
        assert_eq!(decode::<Claims>(&buyer, &key, &validation).unwrap().claims.role, Role::Buyer);
    }
}
