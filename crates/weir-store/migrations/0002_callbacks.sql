-- Where an application's event callbacks go (one configuration per app).
CREATE TABLE callback_configs (
    app_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    -- JSON array of event type names; empty means every event.
    events TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
