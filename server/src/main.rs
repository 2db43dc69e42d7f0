//! The `queueticket` binary: parses flags and runs the server or a command.

use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use jsonwebtoken::Algorithm;
use queueticket::auth::{Claims, Role, unix_now_s};
use queueticket::config::{Cli, Command, PgSandboxArgs, TokenArgs};
use queueticket::gateway::sandbox::{self, Sandbox, SandboxSettings};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
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

/// Completes on ctrl-c or, on Unix, SIGTERM.
async fn shutdown_signal() {
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
}

/// How long the sandbox lets open requests finish after a stop signal.
const SANDBOX_DRAIN: Duration = Duration::from_secs(10);

/// `queueticket pg-sandbox`: the payment sandbox alone, at the root and at
/// /pg-sandbox, until ctrl-c or SIGTERM.
async fn pg_sandbox(cli: &Cli, args: &PgSandboxArgs) -> anyhow::Result<()> {
    let cfg = &cli.server;
    let secret = args.secret_key.as_ref().unwrap_or(&cfg.pg_secret_key);
    anyhow::ensure!(!secret.0.is_empty(), "the sandbox secret key must not be empty");
    let settings =
        SandboxSettings { slow_ms: args.slow_ms.unwrap_or(cfg.pg_sandbox_slow_ms), ..SandboxSettings::default() };
    let path = (!args.memory).then(|| cfg.data_dir.join(sandbox::DB_FILE));
    let ledger = Sandbox::open(path.as_deref(), &secret.0, settings)
        .await
        .with_context(|| format!("failed to open the sandbox ledger {path:?}"))?;
    let listener = queueticket::app::bind(cfg.listen).with_context(|| format!("failed to listen on {}", cfg.listen))?;
    let addr = listener.local_addr().context("the listener has no address")?;
    let ledger_at = path.as_ref().map_or_else(|| "memory".to_owned(), |p| p.display().to_string());
    info!(%addr, ledger = %ledger_at, slow_ms = settings.slow_ms,
        "payment sandbox listening; base URL http://{addr} or http://{addr}{}", sandbox::MOUNT);
    let stop = CancellationToken::new();
    let serving = axum::serve(listener, sandbox::standalone_router(Arc::new(ledger)))
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served.context("the payment sandbox failed")?,
        () = shutdown_signal() => {
            stop.cancel();
            match tokio::time::timeout(SANDBOX_DRAIN, &mut serving).await {
                Ok(served) => served.context("the payment sandbox failed")?,
                Err(_) => warn!("requests still open {} s after the signal; stopping anyway", SANDBOX_DRAIN.as_secs()),
            }
        }
    }
    info!("payment sandbox stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = &cli.command {
        println!("{}", mint(&cli, args)?);
        return Ok(());
    }
    init_logs(&cli.server.log_format);
    if let Some(Command::PgSandbox(args)) = &cli.command {
        return pg_sandbox(&cli, args).await;
    }
    let listener = queueticket::app::bind(cli.server.listen)
        .with_context(|| format!("failed to listen on {}", cli.server.listen))?;
    queueticket::run(listener, cli.server, shutdown_signal()).await.context("the server failed")?;
    Ok(())
}
