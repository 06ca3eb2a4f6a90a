//! Hand-written JSON Schemas of the tagged enums, which the derive gets
//! wrong for this API: each variant must refuse other fields
//! (`additionalProperties: false`, as serde's `deny_unknown_fields` does),
//! and the S3 variant carries `kind` beside the S3 fields.

use std::borrow::Cow;

use serde_json::{json, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::{HlsGapMerge, Mp4GapMerge, S3Target, StorageTarget, MAX_GAP_SECONDS};

/// A schema from its JSON form (the shapes below are fixed and valid).
fn schema(value: Value) -> RefOr<Schema> {
    match serde_json::from_value::<Schema>(value) {
        Ok(schema) => RefOr::T(schema),
        // Unreachable with the literals below; an empty schema documents
        // less but breaks nothing.
        Err(_) => RefOr::T(Schema::default()),
    }
}

fn gap_variant(mode: &str) -> Value {
    json!({
        "type": "object",
        "required": ["mode"],
        "properties": {"mode": {"type": "string", "enum": [mode]}},
        "additionalProperties": false,
    })
}

fn gap_seconds() -> Value {
    json!({
        "type": "object",
        "required": ["mode", "seconds"],
        "properties": {
            "mode": {"type": "string", "enum": ["seconds"]},
            "seconds": {"type": "integer", "minimum": 1, "maximum": MAX_GAP_SECONDS,
                        "description": "The longest interruption merged, 1–86400 s."},
        },
        "additionalProperties": false,
    })
}

impl PartialSchema for HlsGapMerge {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "description": "What an interruption does: `new_file` closes the file, \
                `never_split` keeps appending (a new file after 30 days), `seconds` \
                continues the file after an interruption up to `seconds`.",
            "oneOf": [gap_variant("new_file"), gap_variant("never_split"), gap_seconds()],
        }))
    }
}

impl ToSchema for HlsGapMerge {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("HlsGapMerge")
    }
}

impl PartialSchema for Mp4GapMerge {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "description": "What an interruption does: `new_file` closes the file, \
                `seconds` continues it after an interruption up to `seconds`.",
            "oneOf": [gap_variant("new_file"), gap_seconds()],
        }))
    }
}

impl ToSchema for Mp4GapMerge {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Mp4GapMerge")
    }
}

/// The S3 fields' schema (derived, with their constraints) plus `kind`.
fn s3_variant() -> Value {
    let mut s3 = serde_json::to_value(<S3Target as PartialSchema>::schema()).unwrap_or_default();
    if let Some(properties) = s3.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("kind".into(), json!({"type": "string", "enum": ["s3"]}));
    }
    if let Some(required) = s3.get_mut("required").and_then(Value::as_array_mut) {
        required.insert(0, json!("kind"));
    }
    if let Some(object) = s3.as_object_mut() {
        object.insert("additionalProperties".into(), json!(false));
    }
    s3
}

impl PartialSchema for StorageTarget {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "description": "Where recording files are stored: `local` (a directory of the \
                server) or `s3` (an S3-compatible bucket, path-style requests).",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["local"]},
                        "path": {
                            "type": ["string", "null"], "minLength": 1, "maxLength": super::MAX_PATH_LEN,
                            "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$",
                            "description": "Relative paths are under the data dir; default \
                                `recordings`. Absolute paths are allowed.",
                        },
                    },
                    "additionalProperties": false,
                },
                s3_variant(),
            ],
        }))
    }
}

impl ToSchema for StorageTarget {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StorageTarget")
    }
}
