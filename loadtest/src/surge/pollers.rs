//! The polling crowd of one worker process: buyers the way the waiting
//! rooms we replace serve them. Each holds one keep-alive HTTP/1.1
//! connection, joins with `POST …/queue` once, then asks `GET …/queue` on a
//! fixed interval (start jittered over one interval, like real clients that
//! arrived at different times) until told to stop.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::time::{MissedTickBehavior, timeout};

use crate::common::http1::{self, Conn};
use crate::common::net::{self, io_category};
use crate::common::sockets::{Place, Tasks};
use crate::common::stats::tally;
use crate::common::tokens::Minter;
use crate::surge::wire::{PollReady, PollReport, PollSpec};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Pollers {
    counters: Rc<RefCell<PollReport>>,
    count: u64,
    tasks: Tasks,
}

impl Pollers {
    pub fn start(spec: &PollSpec) -> anyhow::Result<Self> {
        let b = &spec.buyers;
        b.check(0)?;
        anyhow::ensure!(spec.interval_ms >= 100, "poll interval below 100 ms");
        let counters = Rc::new(RefCell::new(PollReport::default()));
        let gate = Rc::new(Semaphore::new(b.max_inflight.max(1)));
        let path = format!("/api/v1/events/{}/queue", b.event);
        let interval = Duration::from_millis(spec.interval_ms);
        let mut tasks = Tasks::default();
        tasks.spawn_each(b, &Minter::new(&b.secret), |place, token| {
            let counters = counters.clone();
            let poller = token.map(|token| Poller {
                counters: counters.clone(),
                // A fixed, even spread of first polls over one interval.
                jitter: Duration::from_millis(place.index.wrapping_mul(2_654_435_761) % spec.interval_ms),
                place,
                // Built once: every poll writes the same bytes.
                post: http1::request("POST", &b.host, &path, Some(&token), None),
                get: http1::request("GET", &b.host, &path, Some(&token), None),
                gate: gate.clone(),
                interval,
            });
            async move {
                match poller {
                    Ok(p) => p.run().await,
                    Err(_) => {
                        let mut c = counters.borrow_mut();
                        c.failed += 1;
                        tally(&mut c.faults.errors, "token");
                    }
                }
            }
        });
        Ok(Self { counters, count: b.count, tasks })
    }

    /// Waits until every poller joined or failed, or `deadline` passed.
    pub async fn ramp(&self, deadline: Duration) -> PollReady {
        let end = Instant::now() + deadline;
        loop {
            {
                let c = self.counters.borrow();
                if c.ready + c.failed >= self.count || Instant::now() >= end {
                    return PollReady { ready: c.ready, failed: c.failed, errors: c.faults.errors.clone() };
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every poller and returns the figures.
    pub async fn stop(self) -> PollReport {
        let _ = self.tasks.end(REQUEST_TIMEOUT + Duration::from_secs(2)).await;
        std::mem::take(&mut *self.counters.borrow_mut())
    }
}

struct Poller {
    counters: Rc<RefCell<PollReport>>,
    place: Place,
    post: Vec<u8>,
    get: Vec<u8>,
    gate: Rc<Semaphore>,
    interval: Duration,
    jitter: Duration,
}

impl Poller {
    async fn connect(&self) -> Result<Conn, &'static str> {
        match timeout(CONNECT_TIMEOUT, net::connect_from(self.place.source, self.place.server)).await {
            Ok(Ok(stream)) => Ok(Conn::new(stream)),
            Ok(Err(e)) => Err(io_category(&e)),
            Err(_) => Err("connect: timed out"),
        }
    }

    /// One request: whether it succeeded (2xx), and whether the connection
    /// is still usable afterwards.
    async fn call(&self, conn: &mut Conn, request: &[u8], is_post: bool) -> (bool, bool) {
        let started = Instant::now();
        let status = match timeout(REQUEST_TIMEOUT, conn.roundtrip(request)).await {
            Ok(Ok(resp)) => resp.status,
            Ok(Err(_)) | Err(_) => {
                let mut c = self.counters.borrow_mut();
                c.faults.io_errors += 1;
                tally(&mut c.faults.errors, "poll: connection failed or timed out");
                return (false, false);
            }
        };
        let us = started.elapsed().as_micros() as u64;
        let mut c = self.counters.borrow_mut();
        let ok = (200..300).contains(&status);
        if ok {
            c.ok += 1;
            if is_post { &mut c.post_us } else { &mut c.get_us }.record(us);
        } else {
            c.faults.bad_status += 1;
            tally(
                &mut c.faults.errors,
                match status {
                    429 => "poll: 429 rate limited",
                    401 | 403 => "poll: refused token",
                    404 => "poll: 404 (place gone?)",
                    _ => "poll: other status",
                },
            );
        }
        (ok, conn.is_open())
    }

    async fn run(mut self) {
        let Ok(permit) = self.gate.acquire().await else { return };
        let mut conn = match self.connect().await {
            Ok(conn) => conn,
            Err(why) => {
                let mut c = self.counters.borrow_mut();
                c.failed += 1;
                tally(&mut c.faults.errors, why);
                return;
            }
        };
        let post = std::mem::take(&mut self.post);
        let (joined, usable) = self.call(&mut conn, &post, true).await;
        {
            let mut c = self.counters.borrow_mut();
            if !joined {
                c.failed += 1;
                return;
            }
            c.ready += 1;
        }
        drop(permit);
        let mut conn = usable.then_some(conn);
        let start = tokio::time::Instant::now() + self.jitter;
        let mut tick = tokio::time::interval_at(start, self.interval);
        // A late poll is not followed by a burst of catch-up polls.
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.place.stop.changed() => return,
                _ = tokio::time::sleep_until(self.place.deadline) => return,
                _ = tick.tick() => {}
            }
            let mut live = match conn.take() {
                Some(live) => live,
                None => match self.connect().await {
                    Ok(fresh) => {
                        self.counters.borrow_mut().faults.reconnects += 1;
                        fresh
                    }
                    Err(why) => {
                        tally(&mut self.counters.borrow_mut().faults.errors, why);
                        continue;
                    }
                },
            };
            if self.call(&mut live, &self.get, false).await.1 {
                conn = Some(live);
            }
        }
    }
}
