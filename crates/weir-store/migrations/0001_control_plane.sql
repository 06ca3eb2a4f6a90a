-- Weir's control plane, version 1: applications and the admin key.
--
-- Written in the SQL that both SQLite and PostgreSQL accept: booleans are
-- BIGINT 0/1, JSON is TEXT, times are BIGINT milliseconds since the epoch.

CREATE TABLE apps (
    app_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    app_type TEXT NOT NULL DEFAULT 'other',
    -- JSON array of {"key", "value"} objects.
    tags TEXT NOT NULL DEFAULT '[]',
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    room_permission_required BIGINT NOT NULL DEFAULT 0 CHECK (room_permission_required IN (0, 1)),
    -- The HS256 signing secret of the application's join tokens.
    secret TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX apps_by_creation ON apps (created_at_ms, app_id);

-- At most one row (id = 1): the SHA-256 of the admin key, never the key.
CREATE TABLE admin_key (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    sha256_hex TEXT NOT NULL,
    -- 'configured' (WEIR_ADMIN_KEY or config) or 'generated' (first start).
    source TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
