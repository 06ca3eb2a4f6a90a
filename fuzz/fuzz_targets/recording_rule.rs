//! The recording rule (`weir_server::recording::RecordingRule`), the body of
//! `PUT /api/v1/apps/{app_id}/recording-rule`: JSON in, `validate`, then
//! everything the server does with an accepted rule.
//!
//! Invariants: no panic; an accepted rule is what the store keeps as JSON,
//! so it serializes and parses back to itself and validates again (a rule
//! the store cannot read back fails every later job); the masked rule GET
//! answers can be PUT back and keeps the stored secret; its naming
//! templates expand to safe relative paths; its storage target opens.
#![no_main]

use std::path::Path;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use weir_recorder::naming::{self, NamingContext};
use weir_server::recording::{RecordingRule, RecordingStorage, StorageOptions, StorageTarget};

fuzz_target!(|data: &[u8]| {
    let Ok(mut rule) = serde_json::from_slice::<RecordingRule>(data) else {
        return;
    };
    if rule.validate().is_err() {
        return;
    }

    // What the store keeps, and what a job reads back.
    let stored = serde_json::to_string(&rule).expect("an accepted rule serializes");
    let mut back: RecordingRule =
        serde_json::from_str(&stored).expect("the stored rule parses back");
    back.validate().expect("the stored rule validates again");
    assert_eq!(back, rule, "stored as {stored}");

    // GET answers the rule masked; PUT of that answer keeps the secret.
    let masked = serde_json::to_string(&rule.masked()).expect("masked rule serializes");
    let mut again: RecordingRule = serde_json::from_str(&masked).expect("masked rule parses");
    again.validate().expect("the masked rule validates");
    if let StorageTarget::S3(_) = &again.storage {
        again
            .storage
            .keep_stored_secret(Some(&rule.storage))
            .expect("the stored secret is kept");
    }
    assert_eq!(again, rule, "masked as {masked}");

    // The recorder core's view of the rule.
    let outputs = rule.outputs();
    assert!(!outputs.is_empty());
    let _ = rule.recorder_content();
    let context = NamingContext::new("app-1", "room.1", "alice@example.com");
    for output in &outputs {
        for start in [
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800),
        ] {
            let path = naming::expand(&output.naming, &context, output.format.as_str(), start)
                .expect("an accepted template expands");
            assert!(!path.starts_with('/') && !path.contains('\\'));
            assert!(path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."));
        }
    }

    let storage = RecordingStorage::open_with(
        &rule.storage,
        Path::new("/nonexistent-data-dir"),
        StorageOptions::quick(),
    )
    .unwrap_or_else(|e| panic!("an accepted storage target does not open: {e}"));
    let key = "app/mp4/room_user_2024-01-01-00-00-00/room_user_2024-01-01-00-00-00.mp4";
    let _ = (
        storage.location(),
        storage.bucket(),
        storage.stored_key(key),
        storage.url(key),
    );
});
