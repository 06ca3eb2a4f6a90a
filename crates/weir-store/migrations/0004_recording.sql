-- Recording (issue 4): each application's recording rule, the recording
-- jobs (manual or automatic) and the files they produce.
--
-- Same conventions as the other migrations: booleans are BIGINT 0/1, JSON is
-- TEXT, times are BIGINT milliseconds since the epoch.

-- One rule per application (formats, content, HLS/MP4 settings, storage).
-- The JSON holds the storage credentials: never log it.
CREATE TABLE recording_rules (
    app_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- A recording of (some of) a room's publishers.
CREATE TABLE recording_jobs (
    -- `rec_` + 32 hex digits.
    job_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    -- JSON array of user ids; empty means every publisher (auto_record
    -- records the first 25 by join time).
    user_ids TEXT NOT NULL,
    -- JSON array of formats ("HLS", "MP4").
    formats TEXT NOT NULL,
    -- 'manual' (the API) or 'auto' (auto_record).
    origin TEXT NOT NULL CHECK (origin IN ('manual', 'auto')),
    -- The rule (JSON) the job records with, frozen at its start, so that
    -- files recovered after a crash go where the job was writing them.
    rule TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'stopping', 'stopped', 'failed')),
    -- Why the job stopped or failed.
    detail TEXT,
    created_at_ms BIGINT NOT NULL,
    stopped_at_ms BIGINT
);

-- The API's listing of a room's jobs, newest first.
CREATE INDEX recording_jobs_by_room ON recording_jobs (app_id, room_id, created_at_ms);
-- A restart's question: which jobs were still running.
CREATE INDEX recording_jobs_by_status ON recording_jobs (status, created_at_ms);

-- One recording file (an MP4, or an HLS playlist with its segments).
CREATE TABLE recording_files (
    -- `rf_` + 32 hex digits.
    file_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    -- 'hls' or 'mp4'.
    format TEXT NOT NULL CHECK (format IN ('hls', 'mp4')),
    -- 0-based index of the file within its stream's recording.
    file_index BIGINT NOT NULL,
    -- The stored object (the .mp4, or the HLS .m3u8).
    object_key TEXT NOT NULL,
    -- Where the file is spooled locally until it is stored.
    spool_path TEXT,
    status TEXT NOT NULL CHECK (status IN ('recording', 'complete', 'failed')),
    started_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    -- Bytes stored (HLS: playlists and segments).
    size_bytes BIGINT,
    duration_ms BIGINT,
    width BIGINT,
    height BIGINT,
    -- Finalized after a crash (at most the last fragment lost).
    recovered BIGINT NOT NULL DEFAULT 0 CHECK (recovered IN (0, 1)),
    -- RECORD_FILE_COMPLETE is in the outbox: set once, so it is sent once.
    complete_notified BIGINT NOT NULL DEFAULT 0 CHECK (complete_notified IN (0, 1)),
    -- Why the file failed, or what recovery did.
    detail TEXT
);

CREATE INDEX recording_files_by_job ON recording_files (job_id, started_at_ms);
-- Crash recovery: files not finished, or finished but not yet announced.
CREATE INDEX recording_files_by_notification ON recording_files (complete_notified, status);
