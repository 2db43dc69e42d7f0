-- Orders and payments: orders with their priced lines and every status
-- change, the sold seats (the last word on who owns a seat), the
-- transactional outbox, consumer dedupe and the settlement ledger.
-- Portable SQL: the same file runs on SQLite and Postgres. Times are integer
-- milliseconds since the Unix epoch; money is BIGINT minor units.

-- Until when (exclusive) a buyer may have a paid order refunded; NULL: no
-- buyer refunds.
ALTER TABLE events ADD COLUMN refund_until_ms BIGINT NULL;

-- The demo's policy, for databases seeded before there were policies (a
-- fresh seed stores it with the event): refunds until a day before it starts.
UPDATE events SET refund_until_ms = starts_at_ms - 86400000 WHERE id = 'demo-live' AND seller_id = 'demo';

CREATE TABLE orders (
    id                  TEXT PRIMARY KEY,
    event_id            TEXT NOT NULL REFERENCES events (id),
    seller_id           TEXT NOT NULL REFERENCES sellers (id),
    user_id             TEXT NOT NULL,
    status              TEXT NOT NULL
                        CHECK (status IN ('pending', 'paid', 'failed', 'expired', 'refunded', 'cancelled')),
    subtotal            BIGINT NOT NULL CHECK (subtotal >= 0),
    discount            BIGINT NOT NULL CHECK (discount >= 0 AND discount <= subtotal),
    discount_seller     BIGINT NOT NULL CHECK (discount_seller >= 0),
    discount_platform   BIGINT NOT NULL CHECK (discount_platform >= 0),
    total               BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    coupon_id           TEXT REFERENCES coupons (id),
    -- When the buyer asked for the best coupon: why this one.
    coupon_reason       TEXT,
    created_ms          BIGINT NOT NULL,
    expires_ms          BIGINT NOT NULL,
    payment_key         TEXT,
    payment_state       TEXT NOT NULL
                        CHECK (payment_state IN ('none', 'in_flight', 'approved', 'declined', 'refund_due', 'refunded')),
    payment_started_ms  BIGINT,
    gateway_key         TEXT,
    paid_ms             BIGINT,
    reason              TEXT,
    updated_ms          BIGINT NOT NULL,
    -- The money adds up, whatever wrote the row.
    CHECK (discount_seller + discount_platform = discount),
    CHECK (total = subtotal - discount)
);

-- A buyer's orders, newest first (keyset pages), and their pending one.
CREATE INDEX orders_by_user ON orders (user_id, created_ms, id);
-- The expiry sweep: pending orders by when they end.
CREATE INDEX orders_by_expiry ON orders (status, expires_ms);
-- The reconciler: payments in flight by when they started, and refunds due.
CREATE INDEX orders_by_payment ON orders (payment_state, payment_started_ms);
-- A seller's orders, of one event or all, newest first.
CREATE INDEX orders_by_seller ON orders (seller_id, event_id, created_ms, id);
-- One pending order per buyer and event: two tabs checking out at once
-- get one order between them, never two charges for the same seats.
CREATE UNIQUE INDEX orders_one_pending ON orders (user_id, event_id) WHERE status = 'pending';

-- position keeps the lines in the order they were priced.
CREATE TABLE order_lines (
    order_id  TEXT NOT NULL REFERENCES orders (id),
    seat_id   TEXT NOT NULL,
    tier_id   TEXT NOT NULL,
    price     BIGINT NOT NULL CHECK (price >= 0),
    position  BIGINT NOT NULL,
    PRIMARY KEY (order_id, seat_id)
);

-- Every status change of an order, numbered from 1; from_status is NULL for
-- the creation. Written under the order's row lock, so seq has no gaps.
CREATE TABLE order_transitions (
    order_id     TEXT NOT NULL REFERENCES orders (id),
    seq          BIGINT NOT NULL CHECK (seq > 0),
    from_status  TEXT CHECK (from_status IN ('pending', 'paid', 'failed', 'expired', 'refunded', 'cancelled')),
    to_status    TEXT NOT NULL
                 CHECK (to_status IN ('pending', 'paid', 'failed', 'expired', 'refunded', 'cancelled')),
    at_ms        BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- THE guard against a double sale: one row per sold seat, written with the
-- order becoming paid and deleted with its refund. However wrong a cache
-- is, no two orders commit the same seat.
CREATE TABLE sold_seats (
    event_id  TEXT NOT NULL REFERENCES events (id),
    seat_id   TEXT NOT NULL,
    order_id  TEXT NOT NULL REFERENCES orders (id),
    sold_ms   BIGINT NOT NULL,
    PRIMARY KEY (event_id, seat_id)
);

CREATE INDEX sold_seats_by_order ON sold_seats (order_id);

-- The pending order a coupon is kept for (or the order that spent it); no
-- foreign key, so the reservation can be taken before the order is written.
ALTER TABLE coupons ADD COLUMN reserved_order TEXT NULL;

-- Changes to announce, written in the transaction that made them; the relay
-- publishes them in (created_ms, id) order and stamps sent_ms.
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    sent_ms     BIGINT NULL
);

CREATE INDEX outbox_unsent ON outbox (created_ms, id) WHERE sent_ms IS NULL;

-- What each consumer has handled already: a redelivered row is skipped.
CREATE TABLE consumed (
    consumer   TEXT NOT NULL,
    outbox_id  TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (consumer, outbox_id)
);

-- Settlement lines, one per announced sale or refund.
CREATE TABLE ledger_entries (
    outbox_id          TEXT PRIMARY KEY,
    seller_id          TEXT NOT NULL,
    event_id           TEXT NOT NULL,
    order_id           TEXT NOT NULL,
    -- 'sale' or 'refund' so far; left open for later kinds.
    kind               TEXT NOT NULL,
    tickets            BIGINT NOT NULL,
    gross              BIGINT NOT NULL,
    discount_seller    BIGINT NOT NULL,
    discount_platform  BIGINT NOT NULL,
    amount             BIGINT NOT NULL,
    currency           TEXT NOT NULL,
    at_ms              BIGINT NOT NULL
);

CREATE INDEX ledger_by_seller ON ledger_entries (seller_id, event_id, at_ms);
