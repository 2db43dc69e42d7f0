//! The polling crowd of one worker process: buyers the way the waiting
//! rooms we replace serve them. Each holds one keep-alive HTTP/1.1
//! connection, joins with `POST …/queue` once, then asks `GET …/queue` on a
//! fixed interval (start jittered over one interval, like real clients that
//! arrived at different times) until told to stop.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, timeout};

use crate::crowdkit;
use crate::http1::{self, Conn};
use crate::net::io_category;
use crate::stats::Histogram;
use crate::tokens::Minter;
use crate::wire::{PollReport, PollSpec, Report};
use crate::{host, net};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counters {
    ready: u64,
    failed: u64,
    ok: u64,
    bad_status: u64,
    io_errors: u64,
    reconnects: u64,
    errors: BTreeMap<&'static str, u64>,
    post_us: Histogram,
    get_us: Histogram,
}

impl Counters {
    fn error(&mut self, why: &'static str) {
        *self.errors.entry(why).or_default() += 1;
    }
}

pub struct Pollers {
    counters: Rc<RefCell<Counters>>,
    count: u64,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pollers {
    pub fn start(spec: &PollSpec) -> anyhow::Result<Self> {
        let b = &spec.buyers;
        host::check_fd_budget(b.count)?;
        anyhow::ensure!(!b.sources.is_empty(), "no source addresses");
        anyhow::ensure!(spec.interval_ms >= 100, "poll interval below 100 ms");
        let counters = Rc::new(RefCell::new(Counters::default()));
        let (stop, stop_rx) = watch::channel(false);
        let gate = Rc::new(Semaphore::new(b.max_inflight.max(1)));
        let minter = Minter::new(&b.secret);
        let path = format!("/api/v1/events/{}/queue", b.event);
        let interval = Duration::from_millis(spec.interval_ms);
        let life = Duration::from_millis(b.max_life_ms);
        let mut tasks = Vec::with_capacity(b.count as usize);
        for k in 0..b.count {
            let i = b.first + k;
            let token = minter.buyer(&format!("{}{i}", b.user_prefix))?;
            let poller = Poller {
                counters: counters.clone(),
                server: b.server,
                source: b.sources[(i % b.sources.len() as u64) as usize],
                // Built once: every poll writes the same bytes.
                post: http1::request("POST", &b.host, &path, Some(&token), None),
                get: http1::request("GET", &b.host, &path, Some(&token), None),
                gate: gate.clone(),
                stop: stop_rx.clone(),
                interval,
                // A fixed, even spread of first polls over one interval.
                jitter: Duration::from_millis(i.wrapping_mul(2_654_435_761) % spec.interval_ms),
                deadline: tokio::time::Instant::now() + life,
            };
            tasks.push(tokio::task::spawn_local(poller.run()));
        }
        Ok(Self { counters, count: b.count, stop, tasks })
    }

    /// Waits until every poller joined or failed, or `deadline` passed.
    pub async fn ramp(&self, deadline: Duration) -> Report {
        let end = Instant::now() + deadline;
        loop {
            {
                let c = self.counters.borrow();
                if c.ready + c.failed >= self.count || Instant::now() >= end {
                    let errors = c.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
                    return Report::PollReady { ready: c.ready, failed: c.failed, errors };
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every poller and returns the figures.
    pub async fn stop(self) -> PollReport {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(2);
        let _ = crowdkit::end_tasks(self.tasks, deadline).await;
        let mut c = self.counters.borrow_mut();
        PollReport {
            ready: c.ready,
            failed: c.failed,
            post_us: std::mem::take(&mut c.post_us),
            get_us: std::mem::take(&mut c.get_us),
            ok: c.ok,
            bad_status: c.bad_status,
            io_errors: c.io_errors,
            reconnects: c.reconnects,
            errors: c.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }
}

struct Poller {
    counters: Rc<RefCell<Counters>>,
    server: SocketAddr,
    source: Ipv4Addr,
    post: Vec<u8>,
    get: Vec<u8>,
    gate: Rc<Semaphore>,
    stop: watch::Receiver<bool>,
    interval: Duration,
    jitter: Duration,
    deadline: tokio::time::Instant,
}

impl Poller {
    async fn connect(&self) -> Result<Conn, &'static str> {
        match timeout(CONNECT_TIMEOUT, net::connect_from(self.source, self.server)).await {
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
                c.io_errors += 1;
                c.error("poll: connection failed or timed out");
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
            c.bad_status += 1;
            c.error(match status {
                429 => "poll: 429 rate limited",
                401 | 403 => "poll: refused token",
                404 => "poll: 404 (place gone?)",
                _ => "poll: other status",
            });
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
                c.error(why);
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
                _ = self.stop.changed() => return,
                _ = tokio::time::sleep_until(self.deadline) => return,
                _ = tick.tick() => {}
            }
            let mut live = match conn.take() {
                Some(live) => live,
                None => match self.connect().await {
                    Ok(fresh) => {
                        self.counters.borrow_mut().reconnects += 1;
                        fresh
                    }
                    Err(why) => {
                        self.counters.borrow_mut().error(why);
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
