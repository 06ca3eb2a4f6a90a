//! Recording rules, jobs and files, on SQLite and (when configured)
//! PostgreSQL.

mod support;

use support::{new_app_id, TestDb};
use weir_store::{
    NewRecordingFile, NewRecordingJob, RecordFormat, RecordingFilePatch, RecordingFileStatus,
    RecordingJobOrigin, RecordingJobPatch, RecordingJobStatus, Store, StoreError,
};

on_both_databases!(
    rules_round_trip_and_replace,
    rules_need_an_app_and_a_json_object,
    rule_json_never_shows_in_debug,
    jobs_are_created_read_and_listed_newest_first,
    jobs_are_updated_and_unfinished_ones_found,
    jobs_need_an_app_and_a_format,
    files_are_inserted_updated_and_listed,
    completion_is_notified_exactly_once,
    state_survives_a_reconnect,
    statistics_count_files_by_format_and_status,
);

const T0: i64 = 1_700_000_000_000;
const RULE: &str = r#"{"formats":["MP4"],"storage":{"kind":"s3","secret_key":"s3cr3t"}}"#;

fn new_job(app_id: &str, room_id: &str, created_at_ms: i64) -> NewRecordingJob {
    NewRecordingJob {
        app_id: app_id.to_string(),
        room_id: room_id.to_string(),
        user_ids: vec!["alice".to_string(), "bob".to_string()],
        formats: vec![RecordFormat::Hls, RecordFormat::Mp4],
        origin: RecordingJobOrigin::Manual,
        rule: RULE.to_string(),
        created_at_ms,
    }
}

fn new_file(app_id: &str, job_id: &str, index: u32) -> NewRecordingFile {
    NewRecordingFile {
        app_id: app_id.to_string(),
        job_id: job_id.to_string(),
        room_id: "room".to_string(),
        user_id: "alice".to_string(),
        stream: "room_alice".to_string(),
        format: RecordFormat::Mp4,
        file_index: index,
        object_key: format!("app/mp4/room_alice_{index}.mp4"),
        spool_path: Some(format!("/spool/{job_id}/{index}.mp4")),
        started_at_ms: T0 + i64::from(index) * 1000,
    }
}

async fn rules_round_trip_and_replace(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "rules").await;
    assert_eq!(store.recording_rule(&app_id).await.expect("read"), None);
    let saved = store.set_recording_rule(&app_id, RULE).await.expect("set");
    assert_eq!(saved.rule, RULE);
    let read = store.recording_rule(&app_id).await.expect("read");
    assert_eq!(read, Some(saved));

    let other = r#"{"formats":["HLS"]}"#;
    store
        .set_recording_rule(&app_id, other)
        .await
        .expect("replace");
    let read = store
        .recording_rule(&app_id)
        .await
        .expect("read")
        .expect("a rule");
    assert_eq!(read.rule, other);

    assert!(store.delete_recording_rule(&app_id).await.expect("delete"));
    assert!(!store.delete_recording_rule(&app_id).await.expect("delete"));
    assert_eq!(store.recording_rule(&app_id).await.expect("read"), None);
}

async fn rules_need_an_app_and_a_json_object(db: &TestDb) {
    let store = &db.store;
    let missing = store.set_recording_rule("app_nope", RULE).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    let missing = store.recording_rule("app_nope").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    let app_id = new_app_id(store, "bad-rules").await;
    for bad in ["", "[]", "42", "{", "\"x\""] {
        let result = store.set_recording_rule(&app_id, bad).await;
        assert!(
            matches!(result, Err(StoreError::Invalid { field: "rule", .. })),
            "{bad:?}: {result:?}"
        );
    }
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(weir_store::MAX_RULE_JSON_LEN));
    let result = store.set_recording_rule(&app_id, &huge).await;
    assert!(
        matches!(result, Err(StoreError::Invalid { .. })),
        "{result:?}"
    );
}

async fn rule_json_never_shows_in_debug(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "secret").await;
    let saved = store.set_recording_rule(&app_id, RULE).await.expect("set");
    assert!(!format!("{saved:?}").contains("s3cr3t"));
    let job = store
        .create_recording_job(new_job(&app_id, "room", T0))
        .await
        .expect("job");
    assert!(!format!("{job:?}").contains("s3cr3t"), "{job:?}");
    assert!(!format!("{:?}", new_job(&app_id, "room", T0)).contains("s3cr3t"));
}

async fn jobs_are_created_read_and_listed_newest_first(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "jobs").await;
    let first = store
        .create_recording_job(new_job(&app_id, "room-a", T0))
        .await
        .expect("first");
    let second = store
        .create_recording_job(new_job(&app_id, "room-b", T0 + 1))
        .await
        .expect("second");
    let third = store
        .create_recording_job(new_job(&app_id, "room-a", T0 + 2))
        .await
        .expect("third");
    assert!(first.job_id.starts_with("rec_") && first.job_id.len() == 36);
    assert_eq!(first.status, RecordingJobStatus::Active);
    assert_ne!(first.job_id, second.job_id);

    let read = store
        .recording_job(&app_id, &first.job_id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(read, first);
    assert_eq!(read.formats, vec![RecordFormat::Hls, RecordFormat::Mp4]);
    assert_eq!(read.user_ids, vec!["alice", "bob"]);

    // Another application does not see it.
    let other = new_app_id(store, "other").await;
    assert_eq!(
        store
            .recording_job(&other, &first.job_id)
            .await
            .expect("read"),
        None
    );

    let all = store
        .list_recording_jobs(&app_id, None, 1, 10)
        .await
        .expect("list");
    assert_eq!(all.total, 3);
    let ids: Vec<&str> = all.items.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, [&third.job_id, &second.job_id, &first.job_id]);

    let room_a = store
        .list_recording_jobs(&app_id, Some("room-a"), 1, 1)
        .await
        .expect("list");
    assert_eq!(room_a.total, 2);
    assert_eq!(room_a.items, vec![third.clone()]);
    let page_2 = store
        .list_recording_jobs(&app_id, Some("room-a"), 2, 1)
        .await
        .expect("list");
    assert_eq!(page_2.items, vec![first]);

    let bad_page = store.list_recording_jobs(&app_id, None, 0, 10).await;
    assert!(matches!(
        bad_page,
        Err(StoreError::Invalid { field: "page", .. })
    ));
}

async fn jobs_are_updated_and_unfinished_ones_found(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "update").await;
    let job = store
        .create_recording_job(new_job(&app_id, "room", T0))
        .await
        .expect("job");
    let done = store
        .create_recording_job(new_job(&app_id, "room", T0 + 1))
        .await
        .expect("job");

    let changed = store
        .update_recording_job(
            &app_id,
            &job.job_id,
            RecordingJobPatch {
                user_ids: Some(vec!["carol".to_string()]),
                ..RecordingJobPatch::default()
            },
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(changed.user_ids, vec!["carol"]);
    assert_eq!(changed.status, RecordingJobStatus::Active);
    assert_eq!(changed.stopped_at_ms, None);

    let stopping = store
        .update_recording_job(
            &app_id,
            &job.job_id,
            RecordingJobPatch {
                status: Some(RecordingJobStatus::Stopping),
                ..RecordingJobPatch::default()
            },
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(stopping.user_ids, vec!["carol"], "untouched fields stay");
    store
        .update_recording_job(
            &app_id,
            &done.job_id,
            RecordingJobPatch {
                status: Some(RecordingJobStatus::Stopped),
                detail: Some("stopped by the API".to_string()),
                stopped_at_ms: Some(T0 + 5),
                ..RecordingJobPatch::default()
            },
        )
        .await
        .expect("update");
    let done = store
        .recording_job(&app_id, &done.job_id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(done.status, RecordingJobStatus::Stopped);
    assert_eq!(done.detail.as_deref(), Some("stopped by the API"));
    assert_eq!(done.stopped_at_ms, Some(T0 + 5));

    let unfinished = store.unfinished_recording_jobs().await.expect("unfinished");
    assert_eq!(unfinished, vec![stopping]);

    let missing = store
        .update_recording_job(&app_id, "rec_nope", RecordingJobPatch::default())
        .await
        .expect("update");
    assert_eq!(missing, None);
}

async fn jobs_need_an_app_and_a_format(db: &TestDb) {
    let store = &db.store;
    let result = store
        .create_recording_job(new_job("app_nope", "room", T0))
        .await;
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "{result:?}"
    );
    let app_id = new_app_id(store, "formats").await;
    let mut job = new_job(&app_id, "room", T0);
    job.formats.clear();
    let result = store.create_recording_job(job).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Invalid {
                field: "formats",
                ..
            })
        ),
        "{result:?}"
    );
    let result = store.list_recording_jobs("app_nope", None, 1, 10).await;
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "{result:?}"
    );
}

async fn files_are_inserted_updated_and_listed(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "files").await;
    let job = store
        .create_recording_job(new_job(&app_id, "room", T0))
        .await
        .expect("job");
    let second = store
        .insert_recording_file(new_file(&app_id, &job.job_id, 1))
        .await
        .expect("insert");
    let first = store
        .insert_recording_file(new_file(&app_id, &job.job_id, 0))
        .await
        .expect("insert");
    assert!(first.file_id.starts_with("rf_"));
    assert_eq!(first.status, RecordingFileStatus::Recording);
    assert_eq!(
        store
            .recording_file(&first.file_id)
            .await
            .expect("read")
            .as_ref(),
        Some(&first)
    );

    let done = store
        .update_recording_file(
            &first.file_id,
            RecordingFilePatch {
                status: Some(RecordingFileStatus::Complete),
                ended_at_ms: Some(T0 + 60_000),
                size_bytes: Some(5_000_000_000),
                duration_ms: Some(60_000),
                width: Some(1280),
                height: Some(720),
                recovered: Some(true),
                detail: Some("recovered after a restart".to_string()),
            },
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(done.status, RecordingFileStatus::Complete);
    assert_eq!(done.size_bytes, Some(5_000_000_000));
    assert_eq!(done.duration_ms, Some(60_000));
    assert_eq!((done.width, done.height), (Some(1280), Some(720)));
    assert!(done.recovered);
    assert!(!done.complete_notified);
    assert_eq!(done.spool_path, first.spool_path);
    assert_eq!(done.object_key, first.object_key);

    let files = store
        .recording_files_of_job(&job.job_id)
        .await
        .expect("list");
    assert_eq!(files, vec![done, second]);
    assert_eq!(
        store
            .update_recording_file("rf_nope", RecordingFilePatch::default())
            .await
            .expect("update"),
        None
    );
}

async fn completion_is_notified_exactly_once(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "notify").await;
    let job = store
        .create_recording_job(new_job(&app_id, "room", T0))
        .await
        .expect("job");
    let recording = store
        .insert_recording_file(new_file(&app_id, &job.job_id, 0))
        .await
        .expect("insert");
    let complete = store
        .insert_recording_file(new_file(&app_id, &job.job_id, 1))
        .await
        .expect("insert");
    let failed = store
        .insert_recording_file(new_file(&app_id, &job.job_id, 2))
        .await
        .expect("insert");
    for (file, status) in [
        (&complete, RecordingFileStatus::Complete),
        (&failed, RecordingFileStatus::Failed),
    ] {
        store
            .update_recording_file(
                &file.file_id,
                RecordingFilePatch {
                    status: Some(status),
                    ..RecordingFilePatch::default()
                },
            )
            .await
            .expect("update");
    }
    let waiting: Vec<String> = store
        .recording_files_not_notified()
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.file_id)
        .collect();
    assert_eq!(
        waiting,
        [recording.file_id.as_str(), complete.file_id.as_str()]
    );

    // A file still recording cannot be announced yet.
    assert!(!store
        .mark_recording_file_notified(&recording.file_id)
        .await
        .expect("mark"));
    assert!(store
        .mark_recording_file_notified(&complete.file_id)
        .await
        .expect("mark"));
    assert!(!store
        .mark_recording_file_notified(&complete.file_id)
        .await
        .expect("mark"));
    let waiting: Vec<String> = store
        .recording_files_not_notified()
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.file_id)
        .collect();
    assert_eq!(waiting, [recording.file_id.as_str()]);
    let complete = store
        .recording_file(&complete.file_id)
        .await
        .expect("read")
        .expect("found");
    assert!(complete.complete_notified);
}

/// What a restarted server reads back: the rule, the unfinished jobs and
/// the files still to announce.
async fn state_survives_a_reconnect(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "restart").await;
    store.set_recording_rule(&app_id, RULE).await.expect("set");
    let job = store
        .create_recording_job(new_job(&app_id, "room", T0))
        .await
        .expect("job");
    let file = store
        .insert_recording_file(new_file(&app_id, &job.job_id, 0))
        .await
        .expect("file");

    let reopened = Store::connect(&db.url).await.expect("reconnect");
    let rule = reopened
        .recording_rule(&app_id)
        .await
        .expect("read")
        .expect("a rule");
    assert_eq!(rule.rule, RULE);
    assert_eq!(
        reopened.unfinished_recording_jobs().await.expect("jobs"),
        vec![job]
    );
    assert_eq!(
        reopened
            .recording_files_not_notified()
            .await
            .expect("files"),
        vec![file]
    );
    reopened.close().await;
}

async fn statistics_count_files_by_format_and_status(db: &TestDb) {
    let store = &db.store;
    let app_id = new_app_id(store, "stats").await;
    let other_app = new_app_id(store, "stats-other").await;
    let job = store
        .create_recording_job(new_job(&app_id, "room", T0))
        .await
        .expect("job");
    let other_job = store
        .create_recording_job(new_job(&other_app, "room", T0))
        .await
        .expect("job");
    let finish = |status, size, recovered| RecordingFilePatch {
        status: Some(status),
        size_bytes: size,
        duration_ms: size.map(|s| s / 100),
        recovered: Some(recovered),
        ..RecordingFilePatch::default()
    };
    // Files 0..=5 start at T0 + index s: three MP4s complete (one of them
    // recovered), one MP4 failed, one HLS complete, one HLS recording.
    let plan = [
        (
            RecordFormat::Mp4,
            Some(finish(RecordingFileStatus::Complete, Some(1_000), false)),
        ),
        (
            RecordFormat::Mp4,
            Some(finish(RecordingFileStatus::Complete, Some(2_000), true)),
        ),
        (
            RecordFormat::Mp4,
            Some(finish(RecordingFileStatus::Failed, None, false)),
        ),
        (
            RecordFormat::Hls,
            Some(finish(RecordingFileStatus::Complete, Some(4_000), false)),
        ),
        (RecordFormat::Hls, None),
        (
            RecordFormat::Mp4,
            Some(finish(RecordingFileStatus::Complete, Some(8_000), false)),
        ),
    ];
    for (index, (format, patch)) in plan.into_iter().enumerate() {
        let mut file = new_file(&app_id, &job.job_id, index as u32);
        file.format = format;
        let file = store.insert_recording_file(file).await.expect("insert");
        if let Some(patch) = patch {
            store
                .update_recording_file(&file.file_id, patch)
                .await
                .expect("update");
        }
    }
    // Another application's file is never counted.
    store
        .insert_recording_file(new_file(&other_app, &other_job.job_id, 0))
        .await
        .expect("insert");

    // The window [T0, T0 + 5 s) leaves out file 5.
    let stats = store
        .recording_stats(&app_id, T0, T0 + 5_000)
        .await
        .expect("stats");
    assert_eq!((stats.from_ms, stats.to_ms), (T0, T0 + 5_000));
    assert_eq!(stats.total.started, 5);
    assert_eq!(stats.total.complete, 3);
    assert_eq!(stats.total.failed, 1);
    assert_eq!(stats.total.recording, 1);
    assert_eq!(stats.total.recovered, 1);
    assert_eq!(stats.total.stored_bytes, 7_000);
    assert_eq!(stats.total.recorded_ms, 70);
    assert_eq!(stats.total.success_rate(), Some(0.75));
    assert_eq!(stats.mp4.started, 3);
    assert_eq!(stats.mp4.success_rate(), Some(2.0 / 3.0));
    assert_eq!(stats.hls.started, 2);
    assert_eq!(stats.hls.success_rate(), Some(1.0));

    let all = store
        .recording_stats(&app_id, T0, T0 + 60_000)
        .await
        .expect("stats");
    assert_eq!(all.total.started, 6);
    assert_eq!(all.total.stored_bytes, 15_000);
    let none = store
        .recording_stats(&app_id, T0 - 60_000, T0)
        .await
        .expect("stats");
    assert_eq!(none.total, weir_store::RecordingFileCounts::default());
    assert_eq!(none.total.success_rate(), None);
}
