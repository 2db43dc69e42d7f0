//! The checkout benchmark's side of a worker process: its crowd of buyers
//! (`crowd`), walked through set-up, the buy and the listing by the
//! coordinator's commands.

use std::rc::Rc;
use std::time::Duration;

use crate::checkout::crowd::CheckoutCrowd;
use crate::checkout::wire::{Answer, Command};
use crate::common::wire::Closed;
use crate::common::worker::{self, Serve, answer, fail};

#[derive(Default)]
pub struct CheckoutWorker {
    crowd: Option<Rc<CheckoutCrowd>>,
}

impl Serve for CheckoutWorker {
    type Command = Command;

    async fn handle(&mut self, cmd: Command) {
        let Some(c) = self.crowd.clone() else {
            return match cmd {
                Command::Open(spec) => {
                    let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                    worker::launch(&mut self.crowd, CheckoutCrowd::start(&spec), move |c| async move {
                        Answer::Ready(Box::new(c.ramp(deadline).await))
                    });
                }
                Command::CloseSockets => worker::closed(Closed::default()),
                _ => fail("no buyers are set up"),
            };
        };
        match cmd {
            Command::Open(_) => fail("the buyers are set up already"),
            // Answered from tasks, so that stdin (and the coordinator's
            // end) is still read meanwhile.
            Command::Go { at_unix_us, rate_per_s, late_ms, final_timeout_ms } => {
                tokio::task::spawn_local(async move {
                    answer(Answer::Bought(Box::new(c.go(at_unix_us, rate_per_s, late_ms, final_timeout_ms).await)))
                });
            }
            Command::List { timeout_ms } => {
                tokio::task::spawn_local(async move { answer(Answer::Listed(c.list(timeout_ms).await)) });
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
