//! The surge benchmark's side of a worker process: its sockets (`crowd`)
//! and, after them, its polling buyers (`pollers`), walked through the
//! phases by the coordinator's commands.

use std::rc::Rc;
use std::time::Duration;

use crate::common::wire::Closed;
use crate::common::worker::{self, Serve, answer, fail};
use crate::surge::crowd::Crowd;
use crate::surge::pollers::Pollers;
use crate::surge::wire::{Answer, Command};

#[derive(Default)]
pub struct SurgeWorker {
    crowd: Option<Rc<Crowd>>,
    pollers: Option<Rc<Pollers>>,
}

impl Serve for SurgeWorker {
    type Command = Command;

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::OpenSockets(spec) => {
                let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                worker::launch(&mut self.crowd, Crowd::start(&spec), move |c| async move {
                    Answer::Joined(c.ramp(deadline).await)
                });
            }
            Command::HoldStart => {
                if let Some(c) = &self.crowd {
                    c.hold_start();
                }
            }
            Command::HoldEnd => match &self.crowd {
                Some(c) => answer(Answer::Held(c.hold_end())),
                None => fail("hold_end without sockets"),
            },
            Command::CloseSockets => match self.crowd.take().map(Rc::try_unwrap) {
                Some(Ok(c)) => worker::closed(c.close().await),
                Some(Err(_)) => fail("close_sockets while the ramp is still running"),
                None => worker::closed(Closed::default()),
            },
            Command::StartPolling(spec) => {
                let deadline = Duration::from_millis(spec.ramp_deadline_ms);
                worker::launch(&mut self.pollers, Pollers::start(&spec), move |p| async move {
                    Answer::PollReady(p.ramp(deadline).await)
                });
            }
            Command::StopPolling => match self.pollers.take().map(Rc::try_unwrap) {
                Some(Ok(p)) => answer(Answer::Polled(p.stop().await)),
                Some(Err(_)) => fail("stop_polling while the ramp is still running"),
                None => fail("stop_polling without pollers"),
            },
        }
    }

    async fn finish(self) {
        if let Some(Ok(c)) = self.crowd.map(Rc::try_unwrap) {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
        }
        if let Some(Ok(p)) = self.pollers.map(Rc::try_unwrap) {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.stop()).await;
        }
    }
}
