use serde_json::json;

use super::*;

fn parse(value: serde_json::Value) -> Result<RecordingRule, String> {
    let mut rule: RecordingRule = serde_json::from_value(value).map_err(|e| e.to_string())?;
    rule.validate().map_err(|e| e.to_string())?;
    Ok(rule)
}

fn refused(value: serde_json::Value, field: &str) {
    let error = parse(value.clone()).expect_err(&format!("{value} must be refused"));
    assert!(
        error.contains(field),
        "{value}: {error} does not name {field}"
    );
}

fn s3() -> serde_json::Value {
    json!({"kind": "s3", "endpoint": "http://127.0.0.1:9000", "bucket": "weir-rec",
           "access_key": "AKIA123", "secret_key": "s3cr3t/key+1"})
}

#[test]
fn defaults_fill_what_is_left_out() {
    let rule = parse(json!({"formats": ["MP4", "HLS", "MP4"]})).expect("valid");
    assert_eq!(rule.formats, [RecordFormatName::Hls, RecordFormatName::Mp4]);
    assert_eq!(rule.content, RecordContent::AudioVideo);
    assert_eq!(rule.hls.naming, weir_recorder::naming::DEFAULT_TEMPLATE);
    assert_eq!(rule.hls.cycle_minutes, 0);
    assert_eq!(rule.hls.slice_seconds, 10);
    assert_eq!(rule.hls.gap_merge, HlsGapMerge::Seconds { seconds: 5 });
    assert_eq!(rule.mp4.cycle_minutes, 180);
    assert_eq!(rule.mp4.gap_merge, Mp4GapMerge::Seconds { seconds: 5 });
    assert_eq!(rule.storage, StorageTarget::Local { path: None });
    assert!(!rule.auto_record);
    // A partial section keeps the other defaults.
    let rule = parse(json!({"formats": ["HLS"], "hls": {"slice_seconds": 4.0}})).expect("valid");
    assert_eq!(rule.hls.slice_seconds, 4);
    assert_eq!(rule.hls.naming, weir_recorder::naming::DEFAULT_TEMPLATE);
}

#[test]
fn a_full_rule_round_trips_and_maps_to_the_core() {
    let value = json!({
        "formats": ["HLS", "MP4"],
        "content": "audio",
        "hls": {"naming": "{app_id}/{room_id}/{user_id}-{file_start_time}", "cycle_minutes": 30,
                "slice_seconds": 6, "gap_merge": {"mode": "never_split"}},
        "mp4": {"naming": "rec/{stream}/{record_format}_{file_start_time}", "cycle_minutes": 1,
                "gap_merge": {"mode": "new_file"}},
        "storage": s3(),
        "auto_record": true,
    });
    let rule = parse(value).expect("valid");
    let back = serde_json::to_value(&rule).expect("serialize");
    assert_eq!(
        back["storage"]["secret_key"], "s3cr3t/key+1",
        "the store keeps the secret"
    );
    assert_eq!(back["storage"]["region"], DEFAULT_REGION);
    assert_eq!(back["storage"]["prefix"], "");
    assert_eq!(parse(back).expect("round trip"), rule);

    let masked = serde_json::to_value(rule.masked()).expect("serialize");
    assert_eq!(masked["storage"]["secret_key"], SECRET_MASK);
    assert!(!format!("{rule:?}").contains("s3cr3t"), "{rule:?}");

    assert_eq!(rule.recorder_content(), Content::Audio);
    let outputs = rule.outputs();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].format, Format::Hls);
    assert_eq!(outputs[0].cycle, Some(Duration::from_secs(1800)));
    assert_eq!(outputs[0].slice, Duration::from_secs(6));
    assert_eq!(outputs[0].gap_merge, GapMerge::NeverSplit);
    assert_eq!(outputs[1].format, Format::Mp4);
    assert_eq!(
        outputs[1].naming,
        "rec/{stream}/{record_format}_{file_start_time}"
    );
    assert_eq!(outputs[1].cycle, Some(Duration::from_secs(60)));
    assert_eq!(outputs[1].gap_merge, GapMerge::NewFile);

    let whole = parse(
        json!({"formats": ["HLS"], "hls": {"gap_merge": {"mode": "seconds", "seconds": 86400}}}),
    )
    .expect("valid");
    assert_eq!(whole.outputs()[0].cycle, None, "cycle 0 = the whole stream");
    assert_eq!(
        whole.outputs()[0].gap_merge,
        GapMerge::Window(Duration::from_secs(86400))
    );
}

#[test]
fn bad_naming_templates_are_refused() {
    for (section, naming) in [
        ("hls", "{app_id}/{nope}"),
        ("mp4", "{stream"),
        ("mp4", "a}b"),
        ("hls", "a/../b"),
        ("hls", "../{stream}"),
        ("mp4", "/abs/{stream}"),
        ("mp4", "a//b"),
        ("mp4", "a/./b"),
        ("hls", "a/"),
        ("hls", ""),
        ("hls", "a\\b"),
        ("hls", "a\u{7}b"),
        ("hls", "{}"),
    ] {
        refused(
            json!({"formats": ["HLS", "MP4"], section: {"naming": naming}}),
            &format!("{section}.naming"),
        );
    }
    refused(
        json!({"formats": ["MP4"], "mp4": {"naming": "a".repeat(257)}}),
        "mp4.naming",
    );
    // A section for an unlisted format is still checked.
    refused(
        json!({"formats": ["MP4"], "hls": {"naming": "{x}"}}),
        "hls.naming",
    );
    // Dots are fine inside a segment, and three dots are a name.
    parse(json!({"formats": ["MP4"], "mp4": {"naming": ".{stream}/.../v1.0/{file_start_time}"}}))
        .expect("valid");
}

#[test]
fn out_of_range_numbers_are_refused() {
    for (value, field) in [
        (json!({"hls": {"cycle_minutes": 721}}), "hls.cycle_minutes"),
        (json!({"hls": {"slice_seconds": 1}}), "hls.slice_seconds"),
        (json!({"hls": {"slice_seconds": 61}}), "hls.slice_seconds"),
        (
            json!({"hls": {"gap_merge": {"mode": "seconds", "seconds": 0}}}),
            "hls.gap_merge.seconds",
        ),
        (
            json!({"hls": {"gap_merge": {"mode": "seconds", "seconds": 86401}}}),
            "hls.gap_merge.seconds",
        ),
        (json!({"mp4": {"cycle_minutes": 0}}), "mp4.cycle_minutes"),
        (json!({"mp4": {"cycle_minutes": 181}}), "mp4.cycle_minutes"),
        (
            json!({"mp4": {"gap_merge": {"mode": "seconds", "seconds": 0}}}),
            "mp4.gap_merge.seconds",
        ),
    ] {
        let mut value = value;
        value["formats"] = json!(["HLS", "MP4"]);
        refused(value, field);
    }
    for bad in [
        json!(-1),
        json!(1.5),
        json!("10"),
        json!(null),
        json!(4294967296u64),
    ] {
        refused(
            json!({"formats": ["HLS"], "hls": {"slice_seconds": bad}}),
            "",
        );
    }
}

#[test]
fn bad_shapes_are_refused() {
    // Empty or missing formats, unknown formats and content.
    refused(json!({"formats": []}), "formats");
    refused(json!({}), "formats");
    refused(json!({"formats": ["FLV"]}), "unknown variant");
    refused(
        json!({"formats": ["MP4"], "content": "both"}),
        "unknown variant",
    );
    // never_split is HLS only; gap modes need their fields and no others.
    refused(
        json!({"formats": ["MP4"], "mp4": {"gap_merge": {"mode": "never_split"}}}),
        "unknown variant",
    );
    refused(
        json!({"formats": ["MP4"], "mp4": {"gap_merge": {"mode": "seconds"}}}),
        "seconds",
    );
    refused(
        json!({"formats": ["MP4"], "mp4": {"gap_merge": {"mode": "new_file", "seconds": 5}}}),
        "unknown field",
    );
    refused(
        json!({"formats": ["MP4"], "hls": {"gap_merge": {}}}),
        "mode",
    );
    // Unknown fields anywhere.
    refused(json!({"formats": ["MP4"], "extra": 1}), "unknown field");
    refused(
        json!({"formats": ["MP4"], "hls": {"segment": 4}}),
        "unknown field",
    );
    refused(
        json!({"formats": ["MP4"], "mp4": {"slice_seconds": 4}}),
        "unknown field",
    );
    refused(
        json!({"formats": ["MP4"], "storage": {"kind": "local", "bucket": "x"}}),
        "unknown field",
    );
    let mut with_extra = s3();
    with_extra["token"] = json!("x");
    refused(
        json!({"formats": ["MP4"], "storage": with_extra}),
        "unknown field",
    );
    // Storage kinds.
    refused(
        json!({"formats": ["MP4"], "storage": {"kind": "ftp"}}),
        "unknown variant",
    );
    refused(
        json!({"formats": ["MP4"], "storage": {"path": "x"}}),
        "kind",
    );
}

#[test]
fn bad_storage_fields_are_refused() {
    refused(
        json!({"formats": ["MP4"], "storage": {"kind": "local", "path": ""}}),
        "storage.path",
    );
    refused(
        json!({"formats": ["MP4"], "storage": {"kind": "local", "path": "a\nb"}}),
        "storage.path",
    );
    refused(
        json!({"formats": ["MP4"], "storage": {"kind": "local", "path": "a".repeat(1025)}}),
        "storage.path",
    );
    for path in ["recordings", "/var/lib/weir/rec", "../elsewhere"] {
        parse(json!({"formats": ["MP4"], "storage": {"kind": "local", "path": path}})).expect(path);
    }
    for (field, value) in [
        ("endpoint", json!("ftp://host")),
        ("endpoint", json!("http://")),
        ("endpoint", json!("http:///path")),
        ("endpoint", json!("http://ho st")),
        ("endpoint", json!("http://[::1]:9000")),
        ("endpoint", json!("http://host:")),
        ("endpoint", json!("http://host:123456")),
        // Found by fuzz/ (recording_rule): accepted, then the storage
        // client refused them at the first upload.
        ("endpoint", json!("https://s3.example.com:90020")),
        ("endpoint", json!("http://256.1.1.1")),
        ("endpoint", json!("http://s3.example.1")),
        ("endpoint", json!("http://host/?x")),
        ("endpoint", json!("http://-host")),
        ("endpoint", json!("http://h\u{f6}st")),
        ("region", json!("")),
        ("region", json!("us east")),
        ("bucket", json!("ab")),
        ("bucket", json!("Upper")),
        ("bucket", json!("-bucket")),
        ("bucket", json!("bucket-")),
        ("bucket", json!("b_ucket")),
        ("prefix", json!("/abs")),
        ("prefix", json!("a/../b")),
        ("prefix", json!("a//b")),
        ("prefix", json!("a/")),
        ("access_key", json!("")),
        ("access_key", json!("has space")),
        ("secret_key", json!("")),
        ("secret_key", json!("é")),
    ] {
        let mut storage = s3();
        storage[field] = value.clone();
        let error = parse(json!({"formats": ["MP4"], "storage": storage}))
            .expect_err(&format!("{field} = {value}"));
        assert!(
            error.contains(&format!("storage.{field}")),
            "{field}: {error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
    }
    for missing in ["endpoint", "bucket", "access_key", "secret_key"] {
        let mut storage = s3();
        storage.as_object_mut().expect("object").remove(missing);
        refused(json!({"formats": ["MP4"], "storage": storage}), missing);
    }
    let mut storage = s3();
    storage["prefix"] = json!("tenant-1/rec.v2");
    parse(json!({"formats": ["MP4"], "storage": storage})).expect("a prefix");
    for endpoint in [
        "https://s3.example.com",
        "http://10.0.0.1:9000/s3/",
        "http://a",
    ] {
        let mut storage = s3();
        storage["endpoint"] = json!(endpoint);
        parse(json!({"formats": ["MP4"], "storage": storage})).expect(endpoint);
    }
}

#[test]
fn a_masked_secret_keeps_the_stored_one() {
    let stored: StorageTarget = serde_json::from_value(s3()).expect("storage");
    let mut masked = stored.clone();
    if let StorageTarget::S3(s3) = &mut masked {
        s3.secret_key = Secret::new(SECRET_MASK);
    }
    let mut kept = masked.clone();
    kept.keep_stored_secret(Some(&stored)).expect("kept");
    assert_eq!(kept, stored);
    // Nothing stored, or another access key: the secret must be sent.
    assert!(masked.clone().keep_stored_secret(None).is_err());
    let mut other_key = masked.clone();
    if let StorageTarget::S3(s3) = &mut other_key {
        s3.access_key = "AKIA999".to_string();
    }
    let error = other_key
        .keep_stored_secret(Some(&stored))
        .expect_err("refused");
    assert_eq!(error.field, "storage.secret_key");
    // A real secret replaces the stored one.
    let mut fresh = stored.clone();
    if let StorageTarget::S3(s3) = &mut fresh {
        s3.secret_key = Secret::new("new-secret");
    }
    let mut replaced = fresh.clone();
    replaced
        .keep_stored_secret(Some(&stored))
        .expect("fresh secret");
    assert_eq!(replaced, fresh);
}

#[test]
fn whole_floats_are_accepted_inside_tagged_sections() {
    let rule = parse(json!({"formats": ["HLS"],
        "hls": {"cycle_minutes": 30.0, "gap_merge": {"mode": "seconds", "seconds": 7.0}}}))
    .expect("valid");
    assert_eq!(rule.hls.gap_merge, HlsGapMerge::Seconds { seconds: 7 });
    assert_eq!(rule.hls.cycle_minutes, 30);
    refused(
        json!({"formats": ["HLS"], "hls": {"gap_merge": {"mode": "seconds", "seconds": 7.5}}}),
        "whole number",
    );
}

#[test]
fn every_tagged_variant_refuses_other_fields_in_the_schema() {
    use utoipa::PartialSchema;
    for schema in [
        serde_json::to_value(<StorageTarget as PartialSchema>::schema()),
        serde_json::to_value(<HlsGapMerge as PartialSchema>::schema()),
        serde_json::to_value(<Mp4GapMerge as PartialSchema>::schema()),
    ] {
        let schema = schema.expect("JSON");
        let variants = schema["oneOf"].as_array().expect("oneOf");
        assert!(variants.len() >= 2, "{schema}");
        for variant in variants {
            assert_eq!(variant["additionalProperties"], json!(false), "{variant}");
            assert!(
                variant["required"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
                "{variant}"
            );
        }
    }
    let storage = serde_json::to_value(<StorageTarget as PartialSchema>::schema()).expect("JSON");
    let s3 = &storage["oneOf"][1];
    assert_eq!(s3["properties"]["kind"]["enum"], json!(["s3"]));
    assert_eq!(s3["properties"]["bucket"]["maxLength"], json!(63));
    assert_eq!(s3["required"][0], "kind");
}
