-- Settlement: fee plans per seller, statements and the lines of closed
-- ones. A ledger entry is claimed by the closed statement that settled it,
-- so it is never settled twice; one that arrives for a closed period goes
-- into a later statement.

-- NULL: the server's default plan.
ALTER TABLE sellers ADD COLUMN fee_percent_bp BIGINT;
ALTER TABLE sellers ADD COLUMN fee_fixed_per_ticket BIGINT;
ALTER TABLE sellers ADD COLUMN fee_min_per_order BIGINT;

CREATE TABLE statements (
    id                  TEXT PRIMARY KEY,
    seller_id           TEXT NOT NULL,
    -- '' for every event of the seller (a unique key cannot hold NULL the
    -- same way on both databases).
    event_id            TEXT NOT NULL,
    from_ms             BIGINT NOT NULL,
    to_ms               BIGINT NOT NULL,
    status              TEXT NOT NULL,
    currency            TEXT NOT NULL,
    created_ms          BIGINT NOT NULL,
    closed_ms           BIGINT,
    -- The figures, fixed when the statement closes.
    orders              BIGINT NOT NULL DEFAULT 0,
    tickets             BIGINT NOT NULL DEFAULT 0,
    gross               BIGINT NOT NULL DEFAULT 0,
    discounts_seller    BIGINT NOT NULL DEFAULT 0,
    discounts_platform  BIGINT NOT NULL DEFAULT 0,
    fees                BIGINT NOT NULL DEFAULT 0,
    fee_clawbacks       BIGINT NOT NULL DEFAULT 0,
    refunds             BIGINT NOT NULL DEFAULT 0,
    net                 BIGINT NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX statements_one_per_period ON statements (seller_id, event_id, from_ms, to_ms);

CREATE TABLE statement_lines (
    statement_id        TEXT NOT NULL,
    entry_id            TEXT NOT NULL,
    order_id            TEXT NOT NULL,
    event_id            TEXT NOT NULL,
    kind                TEXT NOT NULL,
    at_ms               BIGINT NOT NULL,
    tickets             BIGINT NOT NULL,
    gross               BIGINT NOT NULL,
    discounts_seller    BIGINT NOT NULL,
    discounts_platform  BIGINT NOT NULL,
    fees                BIGINT NOT NULL,
    fee_clawbacks       BIGINT NOT NULL,
    refunds             BIGINT NOT NULL,
    net                 BIGINT NOT NULL,
    position            BIGINT NOT NULL,
    PRIMARY KEY (statement_id, entry_id)
);

ALTER TABLE ledger_entries ADD COLUMN statement_id TEXT;
