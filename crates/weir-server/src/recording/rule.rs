//! The recording rule of an application: what is recorded, in which
//! containers, how files are cut and merged, and where they are stored.
//!
//! [`RecordingRule`] is the REST contract (`PUT/GET
//! /api/v1/apps/{app_id}/recording-rule`) and also what the store keeps as
//! JSON. Serde refuses unknown fields, unknown enum values and mistyped
//! values; [`RecordingRule::validate`] checks everything else (ranges,
//! naming templates, storage fields) and names the field it refuses. The
//! JSON Schema constraints on the types say the same thing, so that a
//! schema-valid rule is always accepted.
//!
//! Defaults for what a request leaves out, from the seeds (SparkRTC
//! chapter 3, TRTC "On-Cloud Recording"):
//! - `content`: `audio_video`; `auto_record`: `false`.
//! - naming: SparkRTC's default template,
//!   `{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}`.
//! - HLS `cycle_minutes`: 0, the whole stream in one playlist (SparkRTC
//!   allows 0; TRTC's default file length, 1440 minutes, is longer than
//!   HLS's 720 maximum, i.e. "as long as the stream"). `slice_seconds`: 10
//!   (SparkRTC's default).
//! - MP4 `cycle_minutes`: 180, SparkRTC's longest (TRTC defaults to its own
//!   longest); files over 2 GiB are split anyway.
//! - `gap_merge`: `{"mode": "seconds", "seconds": 5}`, TRTC's default
//!   resume timeout: a short network drop does not split the file, and the
//!   completion callback is delayed by only 5 s.
//! - `storage`: `{"kind": "local"}`, i.e. `DATA_DIR/recordings`.
//!
//! Mapping to the recorder core: [`RecordingRule::outputs`] gives one
//! [`weir_recorder::OutputConfig`] per listed format (cycle 0 becomes
//! `None`), [`RecordingRule::recorder_content`] the [`weir_recorder::Content`].

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use weir_recorder::{Content, Format, GapMerge, OutputConfig};

/// What GET answers in place of an S3 secret; a PUT that sends it back
/// keeps the stored secret.
pub const SECRET_MASK: &str = "********";
/// Longest naming template, in characters.
pub const MAX_NAMING_LEN: usize = 256;
/// Longest local storage path, in characters.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest S3 object prefix, in characters.
pub const MAX_PREFIX_LEN: usize = 512;
/// Longest S3 endpoint URL, in characters.
pub const MAX_ENDPOINT_LEN: usize = 2083;
/// The region when a rule names none (what S3-compatible stores expect).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Longest gap-merge window: one day.
pub const MAX_GAP_SECONDS: u32 = 86_400;

/// A container of recording files, as the API spells it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum RecordFormatName {
    /// Fragmented-MP4 segments with a media and a multivariant playlist.
    #[serde(rename = "HLS")]
    Hls,
    /// One MP4 file per cycle.
    #[serde(rename = "MP4")]
    Mp4,
}

impl RecordFormatName {
    /// The recorder core's format.
    pub fn format(self) -> Format {
        match self {
            RecordFormatName::Hls => Format::Hls,
            RecordFormatName::Mp4 => Format::Mp4,
        }
    }

    /// The store's format.
    pub fn store_format(self) -> weir_store::RecordFormat {
        match self {
            RecordFormatName::Hls => weir_store::RecordFormat::Hls,
            RecordFormatName::Mp4 => weir_store::RecordFormat::Mp4,
        }
    }
}

/// What of each publisher is recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordContent {
    /// Audio and video in one file.
    #[default]
    AudioVideo,
    Audio,
    Video,
}

/// An application's recording rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingRule {
    /// The containers to record, at least one (duplicates are merged).
    #[schema(min_items = 1)]
    pub formats: Vec<RecordFormatName>,
    /// Default `audio_video`.
    #[serde(default)]
    pub content: RecordContent,
    /// HLS settings (defaults when left out).
    #[serde(default)]
    pub hls: HlsRule,
    /// MP4 settings (defaults when left out).
    #[serde(default)]
    pub mp4: Mp4Rule,
    /// Where files are stored; default `{"kind": "local"}`
    /// (`DATA_DIR/recordings`).
    #[serde(default)]
    pub storage: StorageTarget,
    /// Rooms created while this is on are recorded (the first 25
    /// participants to publish); rooms that already existed are not.
    #[serde(default)]
    pub auto_record: bool,
}

/// HLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HlsRule {
    /// Object name template, without extension: `/`-separated segments of
    /// text and the variables `{app_id}`, `{record_format}` (hls/mp4),
    /// `{stream}` (`{room_id}_{user_id}`), `{room_id}`, `{user_id}`,
    /// `{file_start_time}` (UTC `YYYY-MM-DD-HH-MM-SS`); no empty, `.` or
    /// `..` segment, no `\`, `#`, `?`, `%`, `"`, stray braces or control
    /// characters.
    #[serde(default = "default_naming")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^(?:(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^./{}\\#?%\x22\u0000-\u001F\u007F-\u009F])(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*|\.{3,})(?:/(?:(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^./{}\\#?%\x22\u0000-\u001F\u007F-\u009F])(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*|\.{3,}))*$"
    )]
    pub naming: String,
    /// 0–720; 0 records the whole stream in one playlist. Default 0.
    #[serde(default, deserialize_with = "whole_u32")]
    #[schema(minimum = 0, maximum = 720)]
    pub cycle_minutes: u32,
    /// Segment length, 2–60 s. Default 10.
    #[serde(default = "default_slice", deserialize_with = "whole_u32")]
    #[schema(minimum = 2, maximum = 60)]
    pub slice_seconds: u32,
    /// What an interruption does. Default: merge gaps up to 5 s.
    #[serde(default)]
    pub gap_merge: HlsGapMerge,
}

/// MP4 settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mp4Rule {
    /// Object name template, without extension: `/`-separated segments of
    /// text and the variables `{app_id}`, `{record_format}` (hls/mp4),
    /// `{stream}` (`{room_id}_{user_id}`), `{room_id}`, `{user_id}`,
    /// `{file_start_time}` (UTC `YYYY-MM-DD-HH-MM-SS`); no empty, `.` or
    /// `..` segment, no `\`, `#`, `?`, `%`, `"`, stray braces or control
    /// characters.
    #[serde(default = "default_naming")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^(?:(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^./{}\\#?%\x22\u0000-\u001F\u007F-\u009F])(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*|\.{3,})(?:/(?:(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^./{}\\#?%\x22\u0000-\u001F\u007F-\u009F])(?:\{(?:app_id|record_format|stream|room_id|user_id|file_start_time)\}|[^/{}\\#?%\x22\u0000-\u001F\u007F-\u009F])*|\.{3,}))*$"
    )]
    pub naming: String,
    /// 1–180 minutes per file. Default 180.
    #[serde(default = "default_mp4_cycle", deserialize_with = "whole_u32")]
    #[schema(minimum = 1, maximum = 180)]
    pub cycle_minutes: u32,
    /// What an interruption does. Default: merge gaps up to 5 s.
    #[serde(default)]
    pub gap_merge: Mp4GapMerge,
}

/// HLS interruption handling: `new_file` closes the file at every
/// interruption, `never_split` keeps appending (a new file after 30 days),
/// `seconds` continues the file after an interruption up to `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum HlsGapMerge {
    NewFile {},
    NeverSplit {},
    Seconds {
        /// 1–86400.
        #[serde(deserialize_with = "whole_u32")]
        seconds: u32,
    },
}

/// MP4 interruption handling: `new_file` closes the file at every
/// interruption, `seconds` continues it after an interruption up to
/// `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mp4GapMerge {
    NewFile {},
    Seconds {
        /// 1–86400.
        #[serde(deserialize_with = "whole_u32")]
        seconds: u32,
    },
}

/// Where recording files are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StorageTarget {
    /// A directory of this server.
    Local {
        /// Relative paths are under the data dir; default `recordings`.
        /// Absolute paths are allowed. No control characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// An S3-compatible object store (path-style requests).
    S3(S3Target),
}

/// An S3-compatible bucket (its `Debug` hides the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Target {
    /// `http(s)://HOST[:PORT][/PATH]`, e.g. `https://s3.example.com`: the
    /// host a DNS name (internationalized ones in punycode) or an IPv4
    /// address, no query or fragment.
    #[schema(
        min_length = 8,
        max_length = 2083,
        pattern = r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::(?:[0-5]?[0-9]{1,4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[^\s\u0000-\u001F\u007F-\u009F?#]*)?$"
    )]
    pub endpoint: String,
    /// Default `us-east-1`.
    #[serde(default = "default_region")]
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub region: String,
    /// 3–63 lowercase letters, digits, `.` and `-`, starting and ending
    /// with a letter or digit.
    #[schema(
        min_length = 3,
        max_length = 63,
        pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
    )]
    pub bucket: String,
    /// Prepended to every object key (`PREFIX/KEY`); default none. Path
    /// segments without `\`, control characters, empty, `.` or `..` ones.
    #[serde(default)]
    #[schema(
        max_length = 512,
        pattern = r"^(?:(?:[^/\\\u0000-\u001F\u007F-\u009F]*[^./\\\u0000-\u001F\u007F-\u009F][^/\\\u0000-\u001F\u007F-\u009F]*|\.{3,})(?:/(?:[^/\\\u0000-\u001F\u007F-\u009F]*[^./\\\u0000-\u001F\u007F-\u009F][^/\\\u0000-\u001F\u007F-\u009F]*|\.{3,}))*)?$"
    )]
    pub prefix: String,
    /// 1–128 printable ASCII characters.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[\x21-\x7E]{1,128}$")]
    pub access_key: String,
    /// Write-only: answered as `********`; sending `********` back keeps
    /// the stored secret. 1–256 printable ASCII characters.
    #[schema(value_type = String, min_length = 1, max_length = 256, pattern = r"^[\x21-\x7E]{1,256}$")]
    pub secret_key: Secret,
}

/// A credential: serialized as itself (the store keeps it), never shown by
/// `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the storage client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this is the mask GET answers (a PUT keeping the secret).
    pub fn is_mask(&self) -> bool {
        self.0 == SECRET_MASK
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl Default for HlsRule {
    fn default() -> Self {
        HlsRule {
            naming: default_naming(),
            cycle_minutes: 0,
            slice_seconds: default_slice(),
            gap_merge: HlsGapMerge::default(),
        }
    }
}

impl Default for Mp4Rule {
    fn default() -> Self {
        Mp4Rule {
            naming: default_naming(),
            cycle_minutes: default_mp4_cycle(),
            gap_merge: Mp4GapMerge::default(),
        }
    }
}

/// TRTC's default resume timeout.
const DEFAULT_GAP_SECONDS: u32 = 5;

impl Default for HlsGapMerge {
    fn default() -> Self {
        HlsGapMerge::Seconds {
            seconds: DEFAULT_GAP_SECONDS,
        }
    }
}

impl Default for Mp4GapMerge {
    fn default() -> Self {
        Mp4GapMerge::Seconds {
            seconds: DEFAULT_GAP_SECONDS,
        }
    }
}

impl Default for StorageTarget {
    fn default() -> Self {
        StorageTarget::Local { path: None }
    }
}

fn default_naming() -> String {
    weir_recorder::naming::DEFAULT_TEMPLATE.to_string()
}

fn default_slice() -> u32 {
    10
}

fn default_mp4_cycle() -> u32 {
    180
}

fn default_region() -> String {
    DEFAULT_REGION.to_string()
}

/// A whole number that a client may also spell with a zero fraction
/// (`5.0`, a valid JSON Schema integer).
fn whole_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => Some(n),
        // In range and whole: the cast is exact.
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
            Some(f as u64)
        }
        _ => None,
    };
    whole.and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
        D::Error::custom(format!(
            "expected a whole number 0 to {}, got {number}",
            u32::MAX
        ))
    })
}

/// A rule (or storage section) that breaks a constraint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct RuleError {
    /// The JSON path of the field, e.g. `hls.cycle_minutes`.
    pub field: String,
    pub reason: String,
}

fn refuse(field: &str, reason: impl Into<String>) -> Result<(), RuleError> {
    Err(RuleError {
        field: field.to_string(),
        reason: reason.into(),
    })
}

fn check_range(field: &str, value: u32, min: u32, max: u32) -> Result<(), RuleError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        refuse(field, format!("must be {min} to {max}, got {value}"))
    }
}

fn check_naming(field: &str, template: &str) -> Result<(), RuleError> {
    if template.chars().count() > MAX_NAMING_LEN {
        return refuse(
            field,
            format!("must be at most {MAX_NAMING_LEN} characters"),
        );
    }
    weir_recorder::naming::validate(template).or_else(|e| refuse(field, e.to_string()))
}

impl RecordingRule {
    /// Checks every constraint serde does not; merges duplicate formats.
    pub fn validate(&mut self) -> Result<(), RuleError> {
        let formats: BTreeSet<RecordFormatName> = self.formats.iter().copied().collect();
        if formats.is_empty() {
            return refuse("formats", "must list at least one of HLS, MP4");
        }
        self.formats = formats.into_iter().collect();
        check_naming("hls.naming", &self.hls.naming)?;
        check_range("hls.cycle_minutes", self.hls.cycle_minutes, 0, 720)?;
        check_range("hls.slice_seconds", self.hls.slice_seconds, 2, 60)?;
        if let HlsGapMerge::Seconds { seconds } = self.hls.gap_merge {
            check_range("hls.gap_merge.seconds", seconds, 1, MAX_GAP_SECONDS)?;
        }
        check_naming("mp4.naming", &self.mp4.naming)?;
        check_range("mp4.cycle_minutes", self.mp4.cycle_minutes, 1, 180)?;
        if let Mp4GapMerge::Seconds { seconds } = self.mp4.gap_merge {
            check_range("mp4.gap_merge.seconds", seconds, 1, MAX_GAP_SECONDS)?;
        }
        self.storage.validate()
    }

    /// The rule as GET answers it: the S3 secret masked.
    pub fn masked(&self) -> RecordingRule {
        let mut rule = self.clone();
        if let StorageTarget::S3(s3) = &mut rule.storage {
            s3.secret_key = Secret::new(SECRET_MASK);
        }
        rule
    }

    /// The recorder core's outputs, one per listed format.
    pub fn outputs(&self) -> Vec<OutputConfig> {
        self.formats
            .iter()
            .map(|format| match format {
                RecordFormatName::Hls => self.hls.output_config(),
                RecordFormatName::Mp4 => self.mp4.output_config(),
            })
            .collect()
    }

    /// The recorder core's content selection.
    pub fn recorder_content(&self) -> Content {
        match self.content {
            RecordContent::AudioVideo => Content::AudioVideo,
            RecordContent::Audio => Content::Audio,
            RecordContent::Video => Content::Video,
        }
    }
}

fn minutes(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 60)
}

impl HlsRule {
    /// The core's HLS output; cycle 0 is one file for the whole stream.
    pub fn output_config(&self) -> OutputConfig {
        OutputConfig {
            format: Format::Hls,
            naming: self.naming.clone(),
            cycle: (self.cycle_minutes > 0).then(|| minutes(self.cycle_minutes)),
            slice: Duration::from_secs(u64::from(self.slice_seconds)),
            gap_merge: match self.gap_merge {
                HlsGapMerge::NewFile {} => GapMerge::NewFile,
                HlsGapMerge::NeverSplit {} => GapMerge::NeverSplit,
                HlsGapMerge::Seconds { seconds } => {
                    GapMerge::Window(Duration::from_secs(u64::from(seconds)))
                }
            },
        }
    }
}

impl Mp4Rule {
    /// The core's MP4 output.
    pub fn output_config(&self) -> OutputConfig {
        OutputConfig {
            format: Format::Mp4,
            naming: self.naming.clone(),
            cycle: Some(minutes(self.cycle_minutes)),
            slice: OutputConfig::new(Format::Mp4).slice,
            gap_merge: match self.gap_merge {
                Mp4GapMerge::NewFile {} => GapMerge::NewFile,
                Mp4GapMerge::Seconds { seconds } => {
                    GapMerge::Window(Duration::from_secs(u64::from(seconds)))
                }
            },
        }
    }
}

impl StorageTarget {
    /// Checks the fields (the same rules as the JSON Schema patterns).
    pub fn validate(&self) -> Result<(), RuleError> {
        match self {
            StorageTarget::Local { path: None } => Ok(()),
            StorageTarget::Local { path: Some(path) } => {
                let len = path.chars().count();
                if len == 0 || len > MAX_PATH_LEN {
                    return refuse(
                        "storage.path",
                        format!("must be 1 to {MAX_PATH_LEN} characters"),
                    );
                }
                if path.chars().any(char::is_control) {
                    return refuse("storage.path", "must not contain control characters");
                }
                Ok(())
            }
            StorageTarget::S3(s3) => s3.validate(),
        }
    }

    /// Replaces a masked S3 secret by the one stored in `stored` (the same
    /// access key's). Refuses a mask with nothing to keep.
    pub fn keep_stored_secret(&mut self, stored: Option<&StorageTarget>) -> Result<(), RuleError> {
        let StorageTarget::S3(s3) = self else {
            return Ok(());
        };
        if !s3.secret_key.is_mask() {
            return Ok(());
        }
        match stored {
            Some(StorageTarget::S3(old)) if old.access_key == s3.access_key => {
                s3.secret_key = old.secret_key.clone();
                Ok(())
            }
            _ => refuse(
                "storage.secret_key",
                "is the mask, but no secret is stored for this access_key: send the secret",
            ),
        }
    }
}

impl S3Target {
    fn validate(&self) -> Result<(), RuleError> {
        check_endpoint(&self.endpoint)?;
        let region_ok = (1..=64).contains(&self.region.len())
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !region_ok {
            return refuse(
                "storage.region",
                "must be 1 to 64 letters, digits, `-` or `_`",
            );
        }
        check_bucket(&self.bucket)?;
        check_prefix(&self.prefix)?;
        check_printable("storage.access_key", &self.access_key, 128)?;
        check_printable("storage.secret_key", self.secret_key.expose(), 256)
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), RuleError> {
    const FIELD: &str = "storage.endpoint";
    if endpoint.chars().count() > MAX_ENDPOINT_LEN {
        return refuse(
            FIELD,
            format!("must be at most {MAX_ENDPOINT_LEN} characters"),
        );
    }
    let Some(rest) = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
    else {
        return refuse(FIELD, "must start with http:// or https://");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    let host_ok = host.bytes().all(host_char)
        && host
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && host
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !host_ok {
        return refuse(
            FIELD,
            "must name a host: letters, digits, `.` and `-` (a DNS name or an IPv4 address)",
        );
    }
    if port.is_some_and(|p| !(1..=5).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit())) {
        return refuse(FIELD, "the port must be 1 to 5 digits");
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return refuse(
            FIELD,
            "the path must not contain spaces, control characters, `?` or `#`",
        );
    }
    // What the storage client requires too (the URL rules: a port up to
    // 65535, a numeric last label is an IPv4 address, ...): an accepted
    // rule's storage always opens.
    super::storage::normalize_endpoint(endpoint)
        .map(|_| ())
        .or_else(|e| refuse(FIELD, e.to_string()))
}

fn check_bucket(bucket: &str) -> Result<(), RuleError> {
    let bytes = bucket.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = (3..=63).contains(&bytes.len())
        && bytes.first().is_some_and(inner)
        && bytes.last().is_some_and(inner)
        && bytes.iter().all(|b| inner(b) || *b == b'.' || *b == b'-');
    if ok {
        Ok(())
    } else {
        refuse(
            "storage.bucket",
            "must be 3 to 63 lowercase letters, digits, `.` or `-`, starting and ending with a letter or digit",
        )
    }
}

fn check_prefix(prefix: &str) -> Result<(), RuleError> {
    const FIELD: &str = "storage.prefix";
    if prefix.chars().count() > MAX_PREFIX_LEN {
        return refuse(
            FIELD,
            format!("must be at most {MAX_PREFIX_LEN} characters"),
        );
    }
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.contains('\\') || prefix.chars().any(char::is_control) {
        return refuse(FIELD, "must not contain `\\` or control characters");
    }
    if prefix
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return refuse(FIELD, "must not have empty, `.` or `..` path segments");
    }
    Ok(())
}

fn check_printable(field: &str, value: &str, max: usize) -> Result<(), RuleError> {
    if (1..=max).contains(&value.len()) && value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Ok(())
    } else {
        // Never echo the value: it may be a credential.
        refuse(
            field,
            format!("must be 1 to {max} printable ASCII characters"),
        )
    }
}

mod schema;
#[cfg(test)]
mod tests;
