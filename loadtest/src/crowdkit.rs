//! What the crowds of a worker process (`crowd`, `seatcrowd`, `pollers`)
//! share: the WebSocket client's buffer sizes, a bounded polite close,
//! progress reports while the sockets are being set up, and ending every
//! buyer's task by a deadline.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig};

use crate::wire::Report;

/// A polite close waits this long for the server's close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

pub type Ws = WebSocketStream<TcpStream>;

/// Server frames ship a few hundred bytes; tungstenite's default 128 KiB
/// read buffer per socket would make the load generator the memory hog.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Polite close, bounded: sends ours, reads until the server's.
pub async fn polite_close(ws: &mut Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        ws.close(None).await?;
        while let Some(msg) = ws.next().await {
            msg?;
        }
        Ok::<_, tungstenite::Error>(())
    })
    .await;
}

/// A crowd's set-up so far: sockets connected, set up (joined, watching or
/// admitted) and failed, and whether every socket is through (set up,
/// failed or otherwise settled).
pub struct RampState {
    pub connected: u64,
    pub joined: u64,
    pub failed: u64,
    pub through: bool,
}

/// Reports progress about once a second until `state` says every socket is
/// through or `deadline` passed.
pub async fn ramp(deadline: Duration, emit: impl Fn(&Report), state: impl Fn() -> RampState) {
    let end = Instant::now() + deadline;
    let mut last_emit = Instant::now();
    loop {
        let RampState { connected, joined, failed, through } = state();
        if through || Instant::now() >= end {
            return;
        }
        if last_emit.elapsed() >= Duration::from_secs(1) {
            emit(&Report::Progress { connected, joined, failed });
            last_emit = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for every buyer's task until `deadline` and aborts the rest; how
/// many ended on their own and how many were cut off, as `Closed`.
pub async fn end_tasks(tasks: Vec<JoinHandle<()>>, deadline: tokio::time::Instant) -> Report {
    let total = tasks.len() as u64;
    let mut forced = 0;
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
            forced += 1;
        }
    }
    Report::Closed { closed: total - forced, forced }
}
