//! The bus probe the seat-map coordinator runs before the benchmark: one
//! buyer joins, watches, holds and releases a seat until both changes
//! arrive as `seats` diffs and its map is at the store's version. Proof
//! that the relay, the bus and the feed work before the run counts on them
//! (a Kafka consumer group needs a few seconds after start-up). Frames are
//! the shared wire types.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use qt_protocol::{ClientMsg, Envelope, Format, Req, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

use crate::common::server::Server;
use crate::common::sockets::{self, Ws};
use crate::common::tokens::Minter;
use crate::seats::coordinator::{Plan, store_map};

/// How long the bus may take to deliver the probe's diffs (Kafka's consumer
/// group assignment takes a few seconds after the server starts).
const BUS_PROBE_TIMEOUT: Duration = Duration::from_secs(60);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a request and returns its reply; pushes that arrive meanwhile go
/// to `pushes`.
async fn ask(ws: &mut Ws, msg: ClientMsg, req: i64, pushes: &mut Vec<Envelope>) -> anyhow::Result<ServerMsg> {
    let frame = msg.to_frame(Some(&Req::Int(req)));
    let reply = tokio::time::timeout(REPLY_TIMEOUT, sockets::request(ws, frame.into(), req, |f| pushes.push(f)))
        .await
        .context("no reply in time")?
        .map_err(|lost| anyhow!("the probe socket: {}", lost.as_str()))?;
    Ok(reply.msg)
}

/// Seat versions a watcher follows from frames: `seats` frames only count
/// when they continue its version (the bus delivered them); a pushed
/// `seatmap` resets it (the server resynced).
fn follow(version: &mut u64, bus_changes: &mut u64, frame: &ServerMsg) {
    match frame {
        ServerMsg::Seats(diff) => {
            let n = diff.changes.len() as u64;
            if diff.version == *version + n {
                *version = diff.version;
                *bus_changes += n;
            }
        }
        ServerMsg::Seatmap(map) => *version = map.version,
        _ => {}
    }
}

/// Holds and releases `seat` as one watching buyer until both changes came
/// over the bus; how long that took, in ms.
pub async fn probe_bus(plan: &Plan, server: &Server, minter: &Minter, event: &str, seat: &str) -> anyhow::Result<f64> {
    let token = minter.buyer(&format!("{}probe", plan.user_prefix))?;
    let url = format!("{}/ws?token={token}", plan.reach.target.ws_base());
    let source = plan.reach.sources.first().copied().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    let mut ws = tokio::time::timeout(REPLY_TIMEOUT, sockets::open(source, plan.reach.target.addr, &url))
        .await
        .context("the probe's upgrade timed out")?
        .map_err(|why| anyhow!("the probe's upgrade failed: {why}"))?;
    let mut pushes = Vec::new();
    let started = Instant::now();
    let outcome = async {
        let joined = ask(&mut ws, ClientMsg::Join { event: event.into() }, 1, &mut pushes).await?;
        if !matches!(joined, ServerMsg::Admitted(_)) {
            bail!("the probe buyer was not admitted at once: {joined:?}");
        }
        let watch = ClientMsg::Watch { event: event.into(), format: Format::Compact };
        let ServerMsg::Seatmap(map) = ask(&mut ws, watch, 2, &mut pushes).await? else {
            bail!("the probe's `watch` was not answered with a seat map");
        };
        let mut version = map.version;
        let mut req = 10;
        let until = Instant::now() + BUS_PROBE_TIMEOUT;
        while Instant::now() < until {
            let mut bus_changes = 0;
            for hold in [true, false] {
                req += 1;
                let (event, seats) = (event.to_owned(), vec![seat.to_owned()]);
                let msg = if hold { ClientMsg::Hold { event, seats } } else { ClientMsg::Release { event, seats } };
                if let ServerMsg::Error(e) = ask(&mut ws, msg, req, &mut pushes).await? {
                    bail!(
                        "the probe's {} of {seat} failed: {:?} {}",
                        if hold { "hold" } else { "release" },
                        e.code,
                        e.message
                    );
                }
            }
            // Give the diffs up to 2 s, following what arrives.
            let round = Instant::now() + Duration::from_secs(2);
            loop {
                for p in pushes.drain(..) {
                    follow(&mut version, &mut bus_changes, &p.msg);
                }
                let store = store_map(server, event).await?.version;
                if bus_changes >= 2 && version == store {
                    return Ok(started.elapsed().as_secs_f64() * 1_000.0);
                }
                if Instant::now() >= round {
                    break;
                }
                if let Ok(Some(Ok(Message::Text(t)))) =
                    tokio::time::timeout(Duration::from_millis(100), ws.next()).await
                    && let Some(frame) = sockets::read(&t)
                {
                    pushes.push(frame);
                }
            }
            eprintln!("  no diffs yet (version {version}); trying again");
        }
        bail!("seat diffs did not reach a watcher within {BUS_PROBE_TIMEOUT:?}: is the bus working?")
    }
    .await;
    let _ = ask(&mut ws, ClientMsg::Leave { event: event.into() }, 3, &mut pushes).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    outcome
}

#[cfg(test)]
mod tests {
    use qt_protocol::frames::{Held, SeatChange, SeatStatus, Seats};

    use super::*;

    fn seats(version: u64, status: SeatStatus) -> ServerMsg {
        ServerMsg::Seats(Seats { event: "e".into(), version, changes: vec![SeatChange { id: "a".into(), status }] })
    }

    #[test]
    fn the_probe_counts_only_diffs_that_continue_its_version() {
        let (mut v, mut n) = (10, 0);
        follow(&mut v, &mut n, &seats(11, SeatStatus::Held));
        assert_eq!((v, n), (11, 1));
        follow(&mut v, &mut n, &seats(13, SeatStatus::Free));
        assert_eq!((v, n), (11, 1), "a gap is not delivery");
        let map = crate::seats::layout::tests::one_row(13, "");
        follow(&mut v, &mut n, &ServerMsg::Seatmap(map));
        assert_eq!((v, n), (13, 1), "a pushed map resets the version but proves no diff");
        let held = Held { event: "e".into(), seats: vec!["a".into()], expires_at: "t".into(), version: None };
        follow(&mut v, &mut n, &ServerMsg::Held(held));
        assert_eq!((v, n), (13, 1));
    }
}
