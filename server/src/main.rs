//! The `queueticket` binary: parses flags and runs the server or a command.

use anyhow::Context;
use clap::Parser;
use jsonwebtoken::Algorithm;
use queueticket::auth::{Claims, Role, unix_now_s};
use queueticket::config::{Cli, Command, TokenArgs};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logs(format: &str) {
    let filter = EnvFilter::try_from_env("QT_LOG").unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn mint(cli: &Cli, args: &TokenArgs) -> anyhow::Result<String> {
    if args.role == Role::Seller && args.seller.is_none() {
        anyhow::bail!("a seller token needs --seller SELLER_ID");
    }
    let auth = queueticket::app::build_auth(&cli.server).context("failed to load the signing keys")?;
    let now = unix_now_s();
    let claims = Claims {
        sub: args.sub.clone(),
        role: args.role,
        exp: now + args.ttl_s,
        iat: Some(now),
        nbf: None,
        seller: args.seller.clone(),
    };
    let alg = if args.rs256 { Algorithm::RS256 } else { Algorithm::HS256 };
    auth.mint(&claims, alg).context("failed to sign the token (RS256 needs --jwt-private-key)")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = &cli.command {
        println!("{}", mint(&cli, args)?);
        return Ok(());
    }
    init_logs(&cli.server.log_format);
    let listener = queueticket::app::bind(cli.server.listen)
        .with_context(|| format!("failed to listen on {}", cli.server.listen))?;
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::mem::drop(ctrl_c.await),
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    };
    queueticket::run(listener, cli.server, shutdown).await.context("the server failed")?;
    Ok(())
}
