-- Coupons: campaigns with their targets, and the coupons buyers claimed.
-- Portable SQL: the same file runs on SQLite and Postgres. Times are
-- integer milliseconds since the Unix epoch; flags are 0/1; money is
-- BIGINT minor units.

CREATE TABLE campaigns (
    id                   TEXT PRIMARY KEY,
    seller_id            TEXT NOT NULL REFERENCES sellers (id),
    name                 TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    value                BIGINT NOT NULL,
    max_discount         BIGINT,
    min_spend            BIGINT NOT NULL,
    -- NULL: unlimited.
    stock                BIGINT CHECK (stock IS NULL OR stock >= 0),
    -- The database's own guard on exact stock: whatever a live counter got
    -- wrong, no commit can issue more than the stock.
    issued               BIGINT NOT NULL DEFAULT 0 CHECK (issued >= 0 AND (stock IS NULL OR issued <= stock)),
    used                 BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    starts_at_ms         BIGINT NOT NULL,
    ends_at_ms           BIGINT NOT NULL,
    paused               BIGINT NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- 1: every event (tier) of the seller, and campaign_events
    -- (campaign_tiers) hold nothing; 0: exactly the rows there, maybe none.
    all_events           BIGINT NOT NULL CHECK (all_events IN (0, 1)),
    all_tiers            BIGINT NOT NULL CHECK (all_tiers IN (0, 1)),
    funded_seller_pct    BIGINT NOT NULL CHECK (funded_seller_pct BETWEEN 0 AND 100),
    funded_platform_pct  BIGINT NOT NULL CHECK (funded_platform_pct BETWEEN 0 AND 100),
    created_ms           BIGINT NOT NULL,
    CHECK (ends_at_ms > starts_at_ms),
    CHECK (funded_seller_pct + funded_platform_pct = 100)
);

-- (seller, id): a seller's campaigns in id order, for keyset pages.
CREATE INDEX campaigns_by_seller ON campaigns (seller_id, id);

-- event_id is no foreign key: events may be created later, by other nodes.
-- position keeps the list in the order it was given.
CREATE TABLE campaign_events (
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
    event_id     TEXT NOT NULL,
    position     BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, event_id)
);

CREATE TABLE campaign_tiers (
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
    tier_id      TEXT NOT NULL,
    position     BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, tier_id)
);

CREATE TABLE coupons (
    id           TEXT PRIMARY KEY,
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
    user_id      TEXT NOT NULL,
    claimed_ms   BIGINT NOT NULL,
    used_ms      BIGINT,
    -- One coupon per buyer per campaign; also the index by campaign.
    UNIQUE (campaign_id, user_id)
);

CREATE INDEX coupons_by_user ON coupons (user_id);
