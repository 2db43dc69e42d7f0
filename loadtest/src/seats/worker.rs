//! The seat-map benchmark's side of a worker process: its crowd of
//! watchers and holders (`crowd`), walked through set-up, holding,
//! settling and the final check by the coordinator's commands.

use std::rc::Rc;
use std::time::Duration;

use crate::common::wire::Closed;
use crate::common::worker::{self, Serve, answer, fail};
use crate::seats::crowd::SeatCrowd;
use crate::seats::layout::from_letters;
use crate::seats::wire::{Answer, Command};

#[derive(Default)]
pub struct SeatsWorker {
    crowd: Option<Rc<SeatCrowd>>,
}

impl Serve for SeatsWorker {
    type Command = Command;

    async fn handle(&mut self, cmd: Command) {
        let Some(c) = self.crowd.clone() else {
            return match cmd {
                Command::Open(spec) => {
                    let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                    worker::launch(&mut self.crowd, SeatCrowd::start(&spec), move |c| async move {
                        Answer::Ready(c.ramp(deadline).await)
                    });
                }
                Command::CloseSockets => worker::closed(Closed::default()),
                _ => fail("no seat sockets are open"),
            };
        };
        match cmd {
            Command::Open(_) => fail("the seat sockets are open already"),
            Command::Start { rate_per_s } => c.start_holding(rate_per_s),
            // Answered from a task so that stdin (and the coordinator's
            // end) is still read while holders drain.
            Command::Stop => {
                tokio::task::spawn_local(async move { answer(Answer::Stopped(c.stop_holding().await)) });
            }
            Command::Probe { version } => answer(Answer::At(c.probe(version))),
            Command::Verify { version, status } => match from_letters(&status) {
                Some(truth) => answer(Answer::Verified(c.verify(version, &truth))),
                None => fail("the store's map has an unknown status letter"),
            },
            Command::CloseSockets => {
                drop(c);
                match self.crowd.take().map(Rc::try_unwrap) {
                    Some(Ok(c)) => worker::closed(c.close().await),
                    _ => fail("close_sockets while the ramp is still running"),
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
