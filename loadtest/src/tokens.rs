//! Tokens minted here with the server's HS256 secret, so that thousands of
//! buyers need no trip through the rate-limited guest endpoint. The claims
//! are the wire contract's: `sub`, `role`, `exp`, `iat`, and `seller` for
//! sellers.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Tokens outlive any run by far; the server allows 5 s of clock skew.
const TTL_S: u64 = 6 * 3_600;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    seller: Option<&'a str>,
}

pub struct Minter {
    key: EncodingKey,
    header: Header,
    now_s: u64,
}

/// Where the benchmarks' coordinators get the secret: the same two flags
/// in `surge` and `seats`.
#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    /// HS256 secret the server signs tokens with.
    #[arg(long, env = "QT_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// File holding the secret (the server's DATA_DIR/jwt.secret).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
}

impl SecretArgs {
    pub fn load(&self) -> anyhow::Result<String> {
        load_secret(self.secret.as_deref(), self.secret_file.as_deref())
    }
}

/// The secret from `--secret`, or else the file the server generated.
pub fn load_secret(secret: Option<&str>, file: Option<&Path>) -> anyhow::Result<String> {
    let secret = match (secret, file) {
        (Some(s), _) => s.trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the JWT secret from {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!("give --secret or --secret-file DATA_DIR/jwt.secret"),
    };
    ensure!(secret.len() >= 16, "the JWT secret must be at least 16 bytes (the server refuses shorter ones)");
    Ok(secret)
}

impl Minter {
    pub fn new(secret: &str) -> Self {
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { key: EncodingKey::from_secret(secret.as_bytes()), header: Header::new(Algorithm::HS256), now_s }
    }

    fn mint(&self, sub: &str, role: &str, seller: Option<&str>) -> anyhow::Result<String> {
        let claims = Claims { sub, role, exp: self.now_s + TTL_S, iat: self.now_s, seller };
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("failed to sign a token")
    }

    pub fn buyer(&self, user: &str) -> anyhow::Result<String> {
        self.mint(user, "buyer", None)
    }

    pub fn seller(&self, user: &str, seller: &str) -> anyhow::Result<String> {
        self.mint(user, "seller", Some(seller))
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
        let token = m.seller("ops", "demo").unwrap();
        let data = decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        let c = data.claims;
        assert_eq!(
            (c["sub"].as_str(), c["role"].as_str(), c["seller"].as_str()),
            (Some("ops"), Some("seller"), Some("demo"))
        );
        assert!(c["exp"].as_u64().unwrap() > c["iat"].as_u64().unwrap());
        let buyer = m.buyer("b-1").unwrap();
        let c = decode::<serde_json::Value>(
            &buyer,
            &DecodingKey::from_secret(secret.as_bytes()),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap()
        .claims;
        assert!(c.get("seller").is_none());
    }

    #[test]
    fn short_or_missing_secrets_are_refused() {
        assert!(load_secret(Some("short"), None).is_err());
        assert!(load_secret(None, None).is_err());
        assert_eq!(load_secret(Some(" 0123456789abcdef \n"), None).unwrap(), "0123456789abcdef");
    }
}
