//! `qt-load smoke`: one guest buyer, the way a browser would do it, for a
//! human to watch: get a guest token, open the socket, print `hello`, join
//! the event and print what the server says for a few seconds.

use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use qt_protocol::rest::GuestToken;
use qt_protocol::{ClientMsg, Req};
use tokio_tungstenite::tungstenite::Message;

use crate::common::http1;
use crate::common::net::Target;

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// The server; must be on 127.0.0.0/8.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, default_value = "demo-live")]
    pub event: String,
    /// How long to listen after joining.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

pub async fn run(a: SmokeArgs) -> anyhow::Result<()> {
    ensure!((1..=600).contains(&a.seconds), "--seconds must be 1..=600");
    let target = Target::parse(&a.url)?;
    let (status, body) =
        http1::fetch(target.addr, "POST", "/api/v1/guest", None, None, Duration::from_secs(10)).await?;
    ensure!(status == 201, "POST /api/v1/guest answered {status}: {}", String::from_utf8_lossy(&body));
    let guest: GuestToken = serde_json::from_slice(&body).context("the guest reply is not a guest token")?;
    println!("guest user {}", guest.user);

    let url = format!("{}/ws?token={}", target.ws_base(), guest.token);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url.as_str()))
        .await
        .context("the WebSocket upgrade timed out")?
        .context("the WebSocket upgrade failed")?;
    let join = ClientMsg::Join { event: a.event.clone() }.to_frame(Some(&Req::Int(1)));
    let mut joined = false;
    let until = tokio::time::Instant::now() + Duration::from_secs(a.seconds);
    loop {
        let msg = tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                println!("<- {text}");
                // Join once the server said hello, as a browser would.
                if !joined {
                    println!("-> {join}");
                    ws.send(Message::text(join.clone())).await.context("cannot send join")?;
                    joined = true;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                println!("<- close {frame:?}");
                return Ok(());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("the socket failed"),
            None => return Ok(()),
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(())
}
