//! The order-event bus: how the outbox relay's announcements (`payment.completed`,
//! `order.refunded`, `order.expired`, `order.failed`, `order.cancelled`)
//! reach the code that acts on them. It owns delivery only: it never reads
//! or writes the store and never decides anything about an order.
//!
//! Two kinds of consumers:
//! - effects (`subscribe_group`): one consumer group per purpose, shared by
//!   the cluster; each event goes to one member, and comes again until that
//!   member acknowledges it (at least once; consumers dedupe by row id).
//! - pushes (`subscribe_all`): every node sees every event, best effort,
//!   from the moment it subscribed.
//!
//! In process (`MemoryOrderBus`), `publish` returns only once every effects
//! group has acknowledged every event, so the relay marks a row sent only
//! after it was handled; pushes then see the events, so a buyer is never
//! told of a change the effects have not taken yet. On Kafka
//! (`KafkaOrderBus`), `publish` returns once the brokers have the events
//! (acks=all) and the groups work through them on their own, committing
//! offsets as they acknowledge.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::{join_all, try_join_all};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::BusError;
use super::kafka::create_topic;

/// An announced order change: an outbox row as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// The outbox row's id: what consumers dedupe on.
    pub id: String,
    /// The show the order is for; the Kafka key, so one show's order
    /// events stay in order.
    pub event_id: String,
    pub order_id: String,
    /// `payment.completed`, `order.refunded`, `order.expired`,
    /// `order.failed`, `order.cancelled`.
    pub kind: String,
    /// JSON written by the order service; the bus does not read it.
    pub payload: String,
    pub created_ms: i64,
}

#[async_trait]
pub trait OrderBus: Send + Sync + 'static {
    /// Publishes in order; returns once the bus has them all. For the
    /// in-process bus that means every effects group has handled and
    /// acknowledged them (so the relay may mark them sent).
    async fn publish(&self, events: &[OrderEvent]) -> Result<(), BusError>;

    /// This node's subscription to every event (pushes).
    async fn subscribe_all(&self) -> Result<Box<dyn OrderSubscription>, BusError>;

    /// The cluster's one consumer group `group` (effects): each event goes
    /// to one member; it comes again unless acknowledged.
    async fn subscribe_group(&self, group: &str) -> Result<Box<dyn OrderSubscription>, BusError>;
}

#[async_trait]
pub trait OrderSubscription: Send {
    /// The next event; `None` once the bus is gone.
    async fn next(&mut self) -> Option<OrderEvent>;

    /// Acknowledges everything up to and including `event` that this
    /// subscription received (Kafka: commits the offsets; in process:
    /// releases the publisher). An event it does not hold (acknowledged
    /// already, or never received) changes nothing. A no-op for `subscribe_all`.
    /// On an error (Kafka: a commit refused, as during a rebalance) they
    /// stay unacknowledged: a later `ack` covers them, or they come again
    /// (here or to another member); a consumer logs it and carries on.
    async fn ack(&mut self, event: &OrderEvent) -> Result<(), BusError>;
}

// ---------------------------------------------------------------------------
// In process
// ---------------------------------------------------------------------------

/// How long an in-process publish waits for the effects groups before it
/// fails (the relay tries again later; the rows stay unsent).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Events buffered for a push subscriber that falls behind; past this it
/// misses some (best effort).
const PUSH_CAPACITY: usize = 16_384;
/// Events buffered for one group member that has not read them yet.
const MEMBER_CAPACITY: usize = 1_024;

const NO_GROUP: &str = "no order-event consumer group took the events in time";

/// The embedded bus. Publishes take turns, so every group member and every
/// push subscriber sees events in publish order.
///
/// A group exists from its first `subscribe_group` on and gets every event
/// published from then on. Each publish goes to one member of each group
/// (members take turns) and returns once every group acknowledged every
/// event; then the push subscribers get them. A member that leaves before
/// acknowledging hands the rest to the next member (waiting for one to
/// join). With no group, no member, or no acknowledgement within the
/// time-out, the publish fails and pushes nothing; what it left in a
/// member's queue is skipped, and the relay's next publish of the same
/// rows delivers them again.
pub struct MemoryOrderBus {
    ack_timeout: Duration,
    pushes: broadcast::Sender<OrderEvent>,
    groups: Mutex<HashMap<String, Group>>,
    /// Woken whenever a member joins a group: a publish waiting for one
    /// goes on at once.
    joined: Notify,
    /// One publish at a time, so two cannot interleave their events.
    turn: tokio::sync::Mutex<()>,
}

/// One consumer group's members, taking publishes in turn.
#[derive(Default)]
struct Group {
    members: Vec<mpsc::Sender<Delivery>>,
    /// Which member takes the next publish (round robin).
    next: usize,
}

/// An event handed to a group member, and how it says it handled it.
struct Delivery {
    event: OrderEvent,
    acked: oneshot::Sender<()>,
}

impl Default for MemoryOrderBus {
    fn default() -> Self {
        Self::new(ACK_TIMEOUT)
    }
}

impl MemoryOrderBus {
    /// A bus whose publish fails after `ack_timeout` unless every group
    /// has acknowledged every event by then.
    pub fn new(ack_timeout: Duration) -> Self {
        Self {
            ack_timeout,
            pushes: broadcast::channel(PUSH_CAPACITY).0,
            groups: Mutex::new(HashMap::new()),
            joined: Notify::new(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The groups that exist, once there is one.
    async fn wait_groups(&self, deadline: Instant) -> Result<Vec<String>, BusError> {
        loop {
            // Made before looking, so a join in between still wakes it.
            let joined = self.joined.notified();
            let names: Vec<String> = self.groups.lock().keys().cloned().collect();
            if !names.is_empty() {
                return Ok(names);
            }
            tokio::time::timeout_at(deadline, joined).await.map_err(|_| BusError::Timeout(NO_GROUP))?;
        }
    }

    /// The member of `group` whose turn it is, waiting for one to join.
    async fn wait_member(&self, group: &str, deadline: Instant) -> Result<mpsc::Sender<Delivery>, BusError> {
        loop {
            let joined = self.joined.notified();
            if let Some(member) = self.member(group) {
                return Ok(member);
            }
            tokio::time::timeout_at(deadline, joined).await.map_err(|_| BusError::Timeout(NO_GROUP))?;
        }
    }

    fn member(&self, group: &str) -> Option<mpsc::Sender<Delivery>> {
        let mut groups = self.groups.lock();
        let g = groups.get_mut(group)?;
        g.members.retain(|m| !m.is_closed());
        if g.members.is_empty() {
            return None;
        }
        let member = g.members[g.next % g.members.len()].clone();
        g.next = g.next.wrapping_add(1);
        Some(member)
    }

    /// Hands `events` to one member of `group` and waits until they are
    /// all acknowledged. A member that leaves first hands what it has not
    /// acknowledged to the next one.
    async fn deliver(&self, group: &str, events: &[OrderEvent], deadline: Instant) -> Result<(), BusError> {
        const NO_ACK: &str = "an order-event consumer did not acknowledge in time";
        let mut done = 0;
        while done < events.len() {
            let member = self.wait_member(group, deadline).await?;
            let mut acks = Vec::with_capacity(events.len() - done);
            for event in &events[done..] {
                let (acked, ack) = oneshot::channel();
                match tokio::time::timeout_at(deadline, member.send(Delivery { event: event.clone(), acked })).await {
                    Ok(Ok(())) => acks.push(ack),
                    // It left: what it took comes again to the next one.
                    Ok(Err(_)) => break,
                    Err(_) => return Err(BusError::Timeout(NO_ACK)),
                }
            }
            for ack in acks {
                match tokio::time::timeout_at(deadline, ack).await {
                    Ok(Ok(())) => done += 1,
                    Ok(Err(_)) => {
                        debug!(group, "an order-event consumer left before acknowledging; handing its events on");
                        break;
                    }
                    Err(_) => return Err(BusError::Timeout(NO_ACK)),
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl OrderBus for MemoryOrderBus {
    async fn publish(&self, events: &[OrderEvent]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.ack_timeout;
        let _turn = tokio::time::timeout_at(deadline, self.turn.lock())
            .await
            .map_err(|_| BusError::Timeout("another order-event publish held the bus too long"))?;
        let groups = self.wait_groups(deadline).await?;
        try_join_all(groups.iter().map(|g| self.deliver(g, events, deadline))).await?;
        for event in events {
            // No push subscriber is fine: nobody watches.
            let _ = self.pushes.send(event.clone());
        }
        Ok(())
    }

    async fn subscribe_all(&self) -> Result<Box<dyn OrderSubscription>, BusError> {
        Ok(Box::new(MemoryPushes { rx: self.pushes.subscribe() }))
    }

    async fn subscribe_group(&self, group: &str) -> Result<Box<dyn OrderSubscription>, BusError> {
        let (tx, rx) = mpsc::channel(MEMBER_CAPACITY);
        self.groups.lock().entry(group.to_owned()).or_default().members.push(tx);
        self.joined.notify_waiters();
        Ok(Box::new(MemoryMember { rx, pending: VecDeque::new() }))
    }
}

struct MemoryPushes {
    rx: broadcast::Receiver<OrderEvent>,
}

#[async_trait]
impl OrderSubscription for MemoryPushes {
    async fn next(&mut self) -> Option<OrderEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "an order-event push subscriber fell behind and missed events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    async fn ack(&mut self, _event: &OrderEvent) -> Result<(), BusError> {
        Ok(())
    }
}

struct MemoryMember {
    rx: mpsc::Receiver<Delivery>,
    /// Received, not acknowledged yet: (row id, the publisher's wait).
    pending: VecDeque<(String, oneshot::Sender<()>)>,
}

#[async_trait]
impl OrderSubscription for MemoryMember {
    async fn next(&mut self) -> Option<OrderEvent> {
        loop {
            let Delivery { event, acked } = self.rx.recv().await?;
            if acked.is_closed() {
                // Its publish failed already; the relay publishes it again.
                debug!(id = %event.id, "skipping an order event its publisher stopped waiting for");
                continue;
            }
            self.pending.push_back((event.id.clone(), acked));
            return Some(event);
        }
    }

    async fn ack(&mut self, event: &OrderEvent) -> Result<(), BusError> {
        // The latest receipt: acknowledging it covers every earlier one.
        if let Some(at) = self.pending.iter().rposition(|(id, _)| *id == event.id) {
            for (_, acked) in self.pending.drain(..=at) {
                // A publisher that gave up will send it again.
                let _ = acked.send(());
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Kafka
// ---------------------------------------------------------------------------

/// The topic order events travel on unless configured otherwise.
pub const DEFAULT_TOPIC: &str = "qt.order-events";
/// How long a send or an offset commit may wait for the brokers.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time over the producer's own message time-out before we stop
/// waiting for its delivery reports ourselves.
const SEND_GRACE: Duration = Duration::from_secs(2);
/// A group member that died without leaving (a crashed node) holds its
/// partitions this long before its events go to another; Kafka's 45 s
/// default would hold sold seats back too long.
const GROUP_SESSION_TIMEOUT_MS: &str = "10000";
/// As for the seat-diff bus: a quiet topic must not cost 500 ms a fetch.
const FETCH_WAIT_MS: &str = "10";
/// After a consumer error, before reading again.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// The distributed bus: JSON records keyed by event id on one topic.
pub struct KafkaOrderBus {
    brokers: String,
    topic: String,
    /// Names this node's push groups, for operators reading group lists.
    node: String,
    timeout: Duration,
    producer: FutureProducer,
}

impl KafkaOrderBus {
    /// Connects a producer to `topic` (`DEFAULT_TOPIC` in a default set-up),
    /// created with `partitions` partitions if missing (0: leave the topic
    /// to the operator), with `BROKER_TIMEOUT` on every send and commit.
    pub async fn connect(brokers: &str, topic: &str, node: &str, partitions: i32) -> Result<Self, BusError> {
        Self::connect_with(brokers, topic, node, partitions, BROKER_TIMEOUT).await
    }

    /// As `connect`, with `timeout` bounding each send and each commit.
    pub async fn connect_with(
        brokers: &str,
        topic: &str,
        node: &str,
        partitions: i32,
        timeout: Duration,
    ) -> Result<Self, BusError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create()?;
        if partitions > 0 {
            create_topic(brokers, topic, partitions, "order events").await;
        }
        Ok(Self { brokers: brokers.to_owned(), topic: topic.to_owned(), node: node.to_owned(), timeout, producer })
    }

    fn consumer_config(&self, group: &str, reset: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("auto.offset.reset", reset)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", FETCH_WAIT_MS);
        config
    }
}

#[async_trait]
impl OrderBus for KafkaOrderBus {
    async fn publish(&self, events: &[OrderEvent]) -> Result<(), BusError> {
        let payloads = events.iter().map(serde_json::to_vec).collect::<Result<Vec<_>, _>>()?;
        // Queue all, then wait: the idempotent producer keeps their order.
        let sends = events
            .iter()
            .zip(&payloads)
            .map(|(e, p)| self.producer.send(FutureRecord::to(&self.topic).key(&e.event_id).payload(p), self.timeout));
        let results = tokio::time::timeout(self.timeout + SEND_GRACE, join_all(sends))
            .await
            .map_err(|_| BusError::Timeout("the brokers did not confirm the order events in time"))?;
        for result in results {
            result.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    async fn subscribe_all(&self) -> Result<Box<dyn OrderSubscription>, BusError> {
        // A group of its own: this node sees every partition, from now on.
        let group = format!("qt-order-pushes-{}-{:08x}", self.node, rand::random::<u32>());
        let consumer: StreamConsumer = self.consumer_config(&group, "latest").create()?;
        consumer.subscribe(&[&self.topic])?;
        Ok(Box::new(KafkaPushes { consumer }))
    }

    async fn subscribe_group(&self, group: &str) -> Result<Box<dyn OrderSubscription>, BusError> {
        let rebalances = Arc::new(AtomicU64::new(0));
        let consumer: StreamConsumer<MemberContext> = self
            .consumer_config(group, "earliest")
            .set("session.timeout.ms", GROUP_SESSION_TIMEOUT_MS)
            .create_with_context(MemberContext { rebalances: rebalances.clone() })?;
        consumer.subscribe(&[&self.topic])?;
        Ok(Box::new(KafkaMember {
            consumer: Arc::new(consumer),
            topic: self.topic.clone(),
            timeout: self.timeout,
            rebalances,
            pending: VecDeque::new(),
        }))
    }
}

/// The event a record carries; `None` (logged) for one nobody can read.
fn decode(m: &BorrowedMessage<'_>) -> Option<OrderEvent> {
    match m.payload().map(serde_json::from_slice::<OrderEvent>) {
        Some(Ok(event)) => Some(event),
        Some(Err(e)) => {
            warn!(error = %e, partition = m.partition(), offset = m.offset(), "skipping an unreadable order event");
            None
        }
        None => {
            warn!(partition = m.partition(), offset = m.offset(), "skipping an order event without payload");
            None
        }
    }
}

struct KafkaPushes {
    consumer: StreamConsumer,
}

#[async_trait]
impl OrderSubscription for KafkaPushes {
    async fn next(&mut self) -> Option<OrderEvent> {
        loop {
            match self.consumer.recv().await {
                Ok(m) => {
                    if let Some(event) = decode(&m) {
                        return Some(event);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "order-event push consumer error; pushes may be missed");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    async fn ack(&mut self, _event: &OrderEvent) -> Result<(), BusError> {
        // A group of one node's own: nobody resumes from its offsets.
        Ok(())
    }
}

/// Counts the rebalances that may have taken partitions from a member:
/// what it received before one of them is no longer its to commit.
struct MemberContext {
    rebalances: Arc<AtomicU64>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Assign(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One record a member received and has not acknowledged.
struct Received {
    /// The event's row id; `None` for a record nobody could read (it is
    /// committed with the events after it).
    id: Option<String>,
    partition: i32,
    offset: i64,
    /// The rebalance count before it was read.
    rebalances: u64,
}

struct KafkaMember {
    consumer: Arc<StreamConsumer<MemberContext>>,
    topic: String,
    timeout: Duration,
    rebalances: Arc<AtomicU64>,
    pending: VecDeque<Received>,
}

impl KafkaMember {
    /// Commits `next` (partition → offset to resume at) for the partitions
    /// this member still has; another member's partitions are theirs to
    /// commit (ours could move their offsets back).
    async fn commit(&self, next: BTreeMap<i32, i64>) -> Result<(), BusError> {
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        // Both block their thread until librdkafka (the broker) answers.
        let commit = tokio::task::spawn_blocking(move || {
            let assigned = consumer.assignment()?;
            let mut tpl = TopicPartitionList::new();
            for (&partition, &offset) in &next {
                if assigned.find_partition(&topic, partition).is_some() {
                    tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
                }
            }
            if tpl.count() == 0 {
                return Ok(());
            }
            consumer.commit(&tpl, CommitMode::Sync)
        });
        match tokio::time::timeout(self.timeout, commit).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(_)) => Err(BusError::Kafka(KafkaError::Canceled)),
            Err(_) => Err(BusError::Timeout("committing order-event offsets timed out")),
        }
    }
}

#[async_trait]
impl OrderSubscription for KafkaMember {
    async fn next(&mut self) -> Option<OrderEvent> {
        loop {
            // Read first: a record of a revoked partition counts as stale.
            let rebalances = self.rebalances.load(Ordering::SeqCst);
            match self.consumer.recv().await {
                Ok(m) => {
                    let event = decode(&m);
                    let id = event.as_ref().map(|e| e.id.clone());
                    self.pending.push_back(Received { id, partition: m.partition(), offset: m.offset(), rebalances });
                    if event.is_some() {
                        return event;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "order-event group consumer error");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    async fn ack(&mut self, event: &OrderEvent) -> Result<(), BusError> {
        // The latest receipt: acknowledging it covers every earlier one.
        let Some(at) = self.pending.iter().rposition(|r| r.id.as_deref() == Some(event.id.as_str())) else {
            return Ok(());
        };
        let now = self.rebalances.load(Ordering::SeqCst);
        let mut next = BTreeMap::new();
        // Records read before a rebalance come again from the group's
        // offsets, to whoever has their partition now.
        for r in self.pending.range(..=at).filter(|r| r.rebalances == now) {
            let resume = next.entry(r.partition).or_insert(r.offset + 1);
            *resume = (*resume).max(r.offset + 1);
        }
        if !next.is_empty() {
            // Kept on failure: a later acknowledgement commits them too.
            self.commit(next).await?;
        }
        self.pending.drain(..=at);
        Ok(())
    }
}

#[cfg(test)]
pub mod contract_tests {
    //! What every order bus must do, one `#[tokio::test]` per scenario and
    //! bus (`order_bus_contract!`): in process, and Kafka on librdkafka's
    //! mock cluster.

    use std::collections::HashMap;
    use std::time::Duration;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    use super::{KafkaOrderBus, MemoryOrderBus, OrderBus, OrderEvent, OrderSubscription};

    /// The effects group of the tests.
    const GROUP: &str = "qt-test-effects";
    /// How long a test waits for an event that must come (a Kafka group
    /// join on the mock cluster takes seconds).
    const ARRIVES: Duration = Duration::from_secs(30);

    macro_rules! order_bus_contract {
        ($make:expr) => {
            $crate::bus::orders::contract_tests::order_bus_contract!(@each $make;
                every_push_subscriber_gets_every_event_in_order,
                a_group_event_goes_to_one_member,
                an_unacked_group_event_comes_again_to_the_next_member,
                an_acked_group_event_does_not_come_again,
            );
        };
        (@each $make:expr; $($scenario:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let fixture = $make.await;
                    $crate::bus::orders::contract_tests::$scenario(&fixture.bus).await;
                }
            )*
        };
    }
    pub(crate) use order_bus_contract;

    mod memory {
        super::order_bus_contract!(async {
            super::Fixture { bus: super::MemoryOrderBus::new(std::time::Duration::from_secs(5)), _keep: () }
        });
    }

    mod kafka {
        super::order_bus_contract!(super::kafka_bus());
    }

    /// A bus under test and what must outlive it; fields drop in order.
    struct Fixture<B, K> {
        bus: B,
        _keep: K,
    }

    async fn kafka_bus() -> Fixture<KafkaOrderBus, MockCluster<'static, DefaultProducerContext>> {
        let cluster = MockCluster::new(3).expect("a mock Kafka cluster");
        cluster.create_topic("qt.test-order-events", 4, 1).expect("the test topic");
        let bus = KafkaOrderBus::connect_with(&cluster.bootstrap_servers(), "qt.test-order-events", "n1", 0, SECS_5)
            .await
            .expect("connect");
        Fixture { bus, _keep: cluster }
    }

    const SECS_5: Duration = Duration::from_secs(5);

    /// The `n`th event of show `show`, with ids and a payload holding the
    /// characters an adapter might split on.
    pub(super) fn event(show: &str, n: u32) -> OrderEvent {
        OrderEvent {
            id: format!("row|{show}:{n}"),
            event_id: show.to_owned(),
            order_id: format!("order,{n} ü"),
            kind: "payment.completed".into(),
            payload: format!(r#"{{"amount":{n},"note":"a \"q\" {{x}}"}}"#),
            created_ms: 1_700_000_000_000 + i64::from(n),
        }
    }

    /// Readiness probes: each on a show of its own, so they spread over
    /// the partitions.
    fn probe(n: u32) -> OrderEvent {
        event(&format!("probe-{n}"), n)
    }

    fn is_probe(e: &OrderEvent) -> bool {
        e.event_id.starts_with("probe-")
    }

    /// A task, stopped when this drops.
    struct Task(JoinHandle<()>);

    impl Drop for Task {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    /// A group member that acknowledges everything (the in-process bus
    /// publishes only once a group has).
    async fn acker<B: OrderBus>(bus: &B, group: &str) -> Task {
        let mut sub = bus.subscribe_group(group).await.unwrap();
        Task(tokio::spawn(async move {
            while let Some(e) = sub.next().await {
                let _ = sub.ack(&e).await;
            }
        }))
    }

    /// The next event that is not a probe.
    async fn next_real(sub: &mut Box<dyn OrderSubscription>) -> OrderEvent {
        loop {
            let e = tokio::time::timeout(ARRIVES, sub.next()).await.expect("an event arrives").expect("the bus is up");
            if !is_probe(&e) {
                return e;
            }
        }
    }

    /// `n` push subscriptions, each shown to receive (a consumer group
    /// needs a moment to get its partitions).
    async fn ready_pushes<B: OrderBus>(bus: &B, n: usize) -> Vec<Box<dyn OrderSubscription>> {
        let mut subs = Vec::with_capacity(n);
        for _ in 0..n {
            subs.push(bus.subscribe_all().await.unwrap());
        }
        let deadline = tokio::time::Instant::now() + ARRIVES;
        let mut i = 0;
        'ready: for sub in &mut subs {
            loop {
                i += 1;
                bus.publish(&[probe(i)]).await.unwrap();
                if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await
                    && is_probe(&e)
                {
                    continue 'ready;
                }
                assert!(tokio::time::Instant::now() < deadline, "a push subscription never became ready");
            }
        }
        subs
    }

    /// Probes until `sub`, a group member, receives one, acknowledging it.
    async fn ready_member<B: OrderBus>(bus: &B, sub: &mut Box<dyn OrderSubscription>) {
        let deadline = tokio::time::Instant::now() + ARRIVES;
        for i in 1.. {
            let take = async {
                if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                    sub.ack(&e).await.unwrap();
                    return true;
                }
                false
            };
            let probe = [probe(i)];
            let (published, took) = tokio::join!(bus.publish(&probe), take);
            published.unwrap();
            if took {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "a group member never became ready");
        }
    }

    /// Group members that each acknowledge what they get at once and report
    /// it (member index, event), each shown to receive.
    async fn ready_members<B: OrderBus>(
        bus: &B,
        n: usize,
    ) -> (Vec<Task>, mpsc::UnboundedReceiver<(usize, OrderEvent)>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::with_capacity(n);
        for member in 0..n {
            let mut sub = bus.subscribe_group(GROUP).await.unwrap();
            let tx = tx.clone();
            tasks.push(Task(tokio::spawn(async move {
                while let Some(e) = sub.next().await {
                    // A commit refused while the group rebalances (during
                    // the probes) is what a consumer lives with: the event
                    // may come again.
                    let _ = sub.ack(&e).await;
                    let _ = tx.send((member, e));
                }
            })));
        }
        let mut ready = vec![false; n];
        let deadline = tokio::time::Instant::now() + ARRIVES;
        let mut i = 0;
        while ready.contains(&false) {
            i += 1;
            bus.publish(&[probe(i)]).await.unwrap();
            if let Ok(Some((member, _))) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                ready[member] = true;
            }
            while let Ok((member, _)) = rx.try_recv() {
                ready[member] = true;
            }
            assert!(tokio::time::Instant::now() < deadline, "group members never all became ready");
        }
        (tasks, rx)
    }

    fn of_show<'a>(events: &'a [OrderEvent], show: &str) -> Vec<&'a OrderEvent> {
        events.iter().filter(|e| e.event_id == show).collect()
    }

    /// Two push subscribers each get every event of two shows, whole,
    /// nothing lost or doubled, each show's in publish order.
    pub async fn every_push_subscriber_gets_every_event_in_order<B: OrderBus>(bus: &B) {
        let _effects = acker(bus, GROUP).await;
        let mut subs = ready_pushes(bus, 2).await;
        let sent: Vec<OrderEvent> = (1..=20).flat_map(|n| [event("all-1", n), event("all-2", n)]).collect();
        for (i, chunk) in sent.chunks(7).enumerate() {
            if i % 2 == 0 {
                bus.publish(chunk).await.unwrap();
            } else {
                for e in chunk {
                    bus.publish(std::slice::from_ref(e)).await.unwrap();
                }
            }
        }
        for sub in &mut subs {
            let mut got = Vec::with_capacity(sent.len());
            while got.len() < sent.len() {
                got.push(next_real(sub).await);
            }
            for show in ["all-1", "all-2"] {
                assert_eq!(of_show(&got, show), of_show(&sent, show), "{show}: whole, in order, once each");
            }
        }
    }

    /// Two members of one group: each event reaches exactly one of them.
    pub async fn a_group_event_goes_to_one_member<B: OrderBus>(bus: &B) {
        let (_members, mut rx) = ready_members(bus, 2).await;
        let sent: Vec<OrderEvent> = (1..=20).map(|n| event(&format!("one-{}", n % 5), n)).collect();
        for chunk in sent.chunks(4) {
            bus.publish(chunk).await.unwrap();
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut real = 0;
        while real < sent.len() {
            let (_, e) = tokio::time::timeout(ARRIVES, rx.recv()).await.expect("events arrive").unwrap();
            if !is_probe(&e) {
                real += 1;
                *seen.entry(e.id).or_default() += 1;
            }
        }
        // Long enough for a second copy to show.
        while let Ok(Some((_, e))) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            if !is_probe(&e) {
                *seen.entry(e.id).or_default() += 1;
            }
        }
        let expected: HashMap<String, usize> = sent.iter().map(|e| (e.id.clone(), 1)).collect();
        assert_eq!(seen, expected, "every event handled by exactly one member");
    }

    /// A member that takes an event and leaves without acknowledging it:
    /// the next member of the group gets it.
    pub async fn an_unacked_group_event_comes_again_to_the_next_member<B: OrderBus>(bus: &B) {
        let mut first = bus.subscribe_group(GROUP).await.unwrap();
        ready_member(bus, &mut first).await;
        let sent = event("again", 1);
        let handover = async {
            assert_eq!(next_real(&mut first).await, sent);
            drop(first);
            let mut second = bus.subscribe_group(GROUP).await.unwrap();
            assert_eq!(next_real(&mut second).await, sent, "it comes again");
            second.ack(&sent).await.unwrap();
        };
        let (published, ()) = tokio::join!(bus.publish(std::slice::from_ref(&sent)), handover);
        published.unwrap();
    }

    /// Acknowledging an event acknowledges the ones received before it too;
    /// a new member starts after them.
    pub async fn an_acked_group_event_does_not_come_again<B: OrderBus>(bus: &B) {
        let mut first = bus.subscribe_group(GROUP).await.unwrap();
        ready_member(bus, &mut first).await;
        let sent = [event("acked", 1), event("acked", 2)];
        let take = async {
            assert_eq!(next_real(&mut first).await, sent[0]);
            assert_eq!(next_real(&mut first).await, sent[1]);
            first.ack(&sent[1]).await.unwrap();
        };
        let (published, ()) = tokio::join!(bus.publish(&sent), take);
        published.unwrap();
        drop(first);

        let mut second = bus.subscribe_group(GROUP).await.unwrap();
        let later = event("acked", 3);
        let take = async {
            assert_eq!(next_real(&mut second).await, later, "only what was not acknowledged");
            second.ack(&later).await.unwrap();
        };
        let (published, ()) = tokio::join!(bus.publish(std::slice::from_ref(&later)), take);
        published.unwrap();
    }
}

#[cfg(test)]
mod memory_tests {
    //! What the in-process bus adds to the contract: its publish is the
    //! effects' acknowledgement, bounded by its time-out.

    use std::time::Duration;

    use super::contract_tests::event;
    use super::{MemoryOrderBus, OrderBus, OrderEvent, OrderSubscription};
    use crate::bus::BusError;
    use crate::store::sql::OutboxRow;

    const SHORT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn publish_fails_in_time_without_a_group() {
        let bus = MemoryOrderBus::new(SHORT);
        let mut pushes = bus.subscribe_all().await.unwrap();
        let started = tokio::time::Instant::now();
        let err = bus.publish(&[event("none", 1)]).await.unwrap_err();
        assert!(matches!(err, BusError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(tokio::time::timeout(Duration::from_millis(50), pushes.next()).await.is_err(), "nothing pushed");
    }

    #[tokio::test]
    async fn a_group_that_joins_late_still_gets_the_waiting_publish() {
        let bus = MemoryOrderBus::new(Duration::from_secs(5));
        let sent = event("late", 1);
        let join = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut member = bus.subscribe_group("effects").await.unwrap();
            let got = member.next().await.unwrap();
            member.ack(&got).await.unwrap();
            got
        };
        let (published, got) = tokio::join!(bus.publish(std::slice::from_ref(&sent)), join);
        published.unwrap();
        assert_eq!(got, sent);
    }

    /// A member that never acknowledges fails the publish in time; nothing
    /// is pushed; the relay's next publish of the same rows delivers them
    /// again, and pushes follow once acknowledged.
    #[tokio::test]
    async fn an_event_never_acked_fails_the_publish_and_comes_again_on_the_next() {
        let bus = MemoryOrderBus::new(SHORT);
        let mut pushes = bus.subscribe_all().await.unwrap();
        let mut member = bus.subscribe_group("effects").await.unwrap();
        let sent = [event("retry", 1), event("retry", 2)];

        let (published, first) = tokio::join!(bus.publish(&sent), member.next());
        assert!(matches!(published, Err(BusError::Timeout(_))), "{published:?}");
        assert_eq!(first.as_ref(), Some(&sent[0]));
        assert!(tokio::time::timeout(Duration::from_millis(50), pushes.next()).await.is_err(), "nothing pushed");

        let handle = async {
            // What the failed publish left behind is skipped, not doubled.
            assert_eq!(member.next().await.as_ref(), Some(&sent[0]));
            assert_eq!(member.next().await.as_ref(), Some(&sent[1]));
            member.ack(&sent[1]).await.unwrap();
        };
        let (published, ()) = tokio::join!(bus.publish(&sent), handle);
        published.unwrap();
        assert_eq!(pushes.next().await.as_ref(), Some(&sent[0]));
        assert_eq!(pushes.next().await.as_ref(), Some(&sent[1]));
    }

    #[tokio::test]
    async fn every_group_gets_every_event() {
        let bus = MemoryOrderBus::new(Duration::from_secs(5));
        let mut seats = bus.subscribe_group("seats").await.unwrap();
        let mut ledger = bus.subscribe_group("ledger").await.unwrap();
        let sent = [event("groups", 1), event("groups", 2)];
        let (published, a, b) = tokio::join!(bus.publish(&sent), take(&mut seats), take(&mut ledger));
        published.unwrap();
        assert_eq!(a, sent);
        assert_eq!(b, sent);
    }

    /// Two events, the second acknowledged (which covers both).
    async fn take(sub: &mut Box<dyn OrderSubscription>) -> [OrderEvent; 2] {
        let got = [sub.next().await.unwrap(), sub.next().await.unwrap()];
        sub.ack(&got[1]).await.unwrap();
        got
    }

    #[tokio::test]
    async fn subscriptions_end_with_the_bus() {
        let bus = MemoryOrderBus::new(SHORT);
        let mut pushes = bus.subscribe_all().await.unwrap();
        let mut member = bus.subscribe_group("effects").await.unwrap();
        drop(bus);
        assert_eq!(pushes.next().await, None);
        assert_eq!(member.next().await, None);
    }

    #[test]
    fn an_outbox_row_travels_whole() {
        let e = event("row", 1);
        let row = OutboxRow::from(e.clone());
        assert_eq!(OrderEvent::from(&row), e);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<OrderEvent>(&json).unwrap(), e);
    }
}
