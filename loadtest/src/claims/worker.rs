//! The claims benchmark's side of a worker process: its crowd of buyers
//! (`crowd`), walked through set-up, the storm and the listing by the
//! coordinator's commands.

use std::rc::Rc;
use std::time::Duration;

use crate::claims::crowd::ClaimCrowd;
use crate::claims::wire::{Answer, Command};
use crate::common::wire::Closed;
use crate::common::worker::{self, Serve, answer, fail};

#[derive(Default)]
pub struct ClaimsWorker {
    crowd: Option<Rc<ClaimCrowd>>,
}

impl Serve for ClaimsWorker {
    type Command = Command;

    async fn handle(&mut self, cmd: Command) {
        let Some(c) = self.crowd.clone() else {
            return match cmd {
                Command::Open(spec) => {
                    let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                    worker::launch(&mut self.crowd, ClaimCrowd::start(&spec), move |c| async move {
                        Answer::Ready(c.ramp(deadline).await)
                    });
                }
                Command::CloseSockets => worker::closed(Closed::default()),
                _ => fail("no claim sockets are open"),
            };
        };
        match cmd {
            Command::Open(_) => fail("the claim sockets are open already"),
            // Answered from tasks, so that stdin (and the coordinator's
            // end) is still read meanwhile.
            Command::Fire { at_unix_us, timeout_ms } => {
                tokio::task::spawn_local(async move {
                    answer(Answer::Stormed(Box::new(c.storm(at_unix_us, timeout_ms).await)))
                });
            }
            Command::List { timeout_ms, concurrency } => {
                tokio::task::spawn_local(async move { answer(Answer::Listed(c.list(timeout_ms, concurrency).await)) });
            }
            Command::CloseSockets => {
                drop(c);
                match self.crowd.take().map(Rc::try_unwrap) {
                    Some(Ok(c)) => worker::closed(c.close().await),
                    _ => fail("close_sockets while a phase is still running"),
                }
            }
        }
    }

    async fn finish(self) {
        if let Some(Ok(c)) = self.crowd.map(Rc::try_unwrap) {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
        }
    }
}
