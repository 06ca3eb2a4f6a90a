-- Recording statistics (issue 4: "the recording success rate is kept for
-- monitoring"): an application's files by the time they started.
CREATE INDEX recording_files_by_app ON recording_files (app_id, started_at_ms);
