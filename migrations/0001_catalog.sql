-- Catalogue: sellers, venues with their seats, events with tiers and live
-- queue settings. Portable SQL: the same file runs on SQLite and Postgres.
-- Times are integer milliseconds since the Unix epoch; flags are 0/1.

CREATE TABLE sellers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE venues (
    id          TEXT PRIMARY KEY,
    seller_id   TEXT NOT NULL REFERENCES sellers (id),
    name        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE seats (
    venue_id    TEXT NOT NULL REFERENCES venues (id),
    id          TEXT NOT NULL,
    section     TEXT NOT NULL,
    row_label   TEXT NOT NULL,
    number      BIGINT NOT NULL,
    x           BIGINT NOT NULL,
    y           BIGINT NOT NULL,
    tier        TEXT NOT NULL,
    PRIMARY KEY (venue_id, id)
);

CREATE TABLE events (
    id                   TEXT PRIMARY KEY,
    seller_id            TEXT NOT NULL REFERENCES sellers (id),
    venue_id             TEXT NOT NULL REFERENCES venues (id),
    name                 TEXT NOT NULL,
    starts_at_ms         BIGINT NOT NULL,
    on_sale_at_ms        BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    rate_per_min         BIGINT NOT NULL CHECK (rate_per_min > 0),
    max_active           BIGINT NOT NULL CHECK (max_active > 0),
    window_s             BIGINT NOT NULL CHECK (window_s > 0),
    grace_s              BIGINT NOT NULL CHECK (grace_s >= 0),
    paused               BIGINT NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    hold_s               BIGINT NOT NULL CHECK (hold_s > 0),
    max_seats_per_buyer  BIGINT NOT NULL CHECK (max_seats_per_buyer > 0),
    created_ms           BIGINT NOT NULL
);

CREATE INDEX events_by_seller ON events (seller_id);

CREATE TABLE event_tiers (
    event_id    TEXT NOT NULL REFERENCES events (id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    price       BIGINT NOT NULL CHECK (price >= 0),
    PRIMARY KEY (event_id, id)
);
