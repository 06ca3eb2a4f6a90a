-- The durable outbox of event callbacks: one row per event to deliver to an
-- application's callback URL, kept until delivered (then removed by
-- housekeeping after a retention period) or given up on.
CREATE TABLE event_outbox (
    -- `ev_` + 32 hex digits; stable across retries (receivers deduplicate).
    event_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    -- The delivery order within a room. SQLite and PostgreSQL share no
    -- autoincrement syntax, so the application assigns it: a hybrid clock,
    -- max(previous + 1, created_at_ms * 1000), continued from MAX(seq) on
    -- start (see weir_store::OutboxSequencer).
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    -- The JSON body, exactly the bytes every attempt sends.
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Finished attempts (delivered or not).
    attempts BIGINT NOT NULL DEFAULT 0,
    first_attempt_at_ms BIGINT,
    -- Pending rows only: when the next attempt may start (a claimed row holds
    -- the end of its claim here).
    next_attempt_at_ms BIGINT,
    last_error TEXT,
    last_status_code BIGINT,
    delivered_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);

-- The sender's question: the oldest pending event of each room.
CREATE INDEX event_outbox_by_room ON event_outbox (app_id, room_id, status, seq);
-- The API's listing of an application's deliveries, newest first.
CREATE INDEX event_outbox_by_app ON event_outbox (app_id, status, seq);
-- Housekeeping: delivered rows by age.
CREATE INDEX event_outbox_by_delivery ON event_outbox (status, delivered_at_ms);
