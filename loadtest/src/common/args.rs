//! The command-line flags every benchmark takes, written once and
//! flattened into each (`#[command(flatten)]`): which server and event,
//! the seller who owns it, the token secret, the worker processes and
//! their source addresses, how long set-up may take and where the
//! reports go. Validated here, once.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use clap::Args;

use crate::common::coordinator::Reach;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server under test; must be on 127.0.0.0/8.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Event under test.
    #[arg(long, default_value = "demo-live")]
    pub event: String,
    /// Seller id that owns the event (for its queue settings).
    #[arg(long, default_value = "demo")]
    pub seller: String,
    // --secret, --secret-file
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Worker processes; each may hold at most `ulimit -n` sockets.
    #[arg(long, default_value_t = 4)]
    pub procs: usize,
    /// Local addresses to connect from, e.g. 127.0.0.2-127.0.0.9,127.0.0.20.
    #[arg(long, default_value = "127.0.0.2-127.0.0.9")]
    pub source_ips: String,
    /// Give up on sockets (or pollers) not set up after this long.
    #[arg(long, default_value_t = 120)]
    pub ramp_timeout_s: u64,
    /// Directory for the JSON and HTML reports.
    #[arg(long, default_value = "loadtest/reports")]
    pub out: PathBuf,
}

impl RunArgs {
    /// Checks the shared flags and reads where the load goes, where it
    /// comes from, and the secret.
    pub fn reach(&self) -> anyhow::Result<Reach> {
        ensure!((1..=64).contains(&self.procs), "--procs must be 1..=64");
        ensure!((5..=3_600).contains(&self.ramp_timeout_s), "--ramp-timeout-s must be 5..=3600");
        Reach::parse(&self.url, &self.source_ips, &self.secret)
    }
}

/// Where the benchmarks' coordinators get the secret.
#[derive(Debug, Args)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_missing_secrets_are_refused() {
        assert!(load_secret(Some("short"), None).is_err());
        assert!(load_secret(None, None).is_err());
        assert_eq!(load_secret(Some(" 0123456789abcdef \n"), None).unwrap(), "0123456789abcdef");
    }
}
