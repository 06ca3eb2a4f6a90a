//! The recording rule as the core sees it, and the commands it emits.

use std::time::{Duration, SystemTime};

use crate::naming::NamingContext;

/// What of a publisher is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Audio and video in one file.
    AudioVideo,
    /// Audio only (video packets are ignored).
    Audio,
    /// Video only (audio packets are ignored).
    Video,
}

impl Content {
    /// Whether `kind` is recorded.
    pub fn includes(self, kind: MediaKind) -> bool {
        matches!(
            (self, kind),
            (Content::AudioVideo, _)
                | (Content::Audio, MediaKind::Audio)
                | (Content::Video, MediaKind::Video)
        )
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// The audio track.
    Audio,
    /// The video track.
    Video,
}

/// What happens to a file when the publisher's media stops for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapMerge {
    /// Close the file at every interruption.
    NewFile,
    /// Keep appending after any interruption (HLS), still a new file after
    /// 30 days. Gaps are not filled: the playlist's timeline skips them
    /// (EXT-X-DISCONTINUITY + EXT-X-PROGRAM-DATE-TIME give the wall clock).
    NeverSplit,
    /// An interruption shorter than this continues the same file, the gap
    /// filled so that end_time - start_time == record_duration.
    Window(Duration),
}

/// The longest a `never_split` file lasts.
pub const NEVER_SPLIT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The container of one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// fMP4 segments + media playlist + multivariant playlist.
    Hls,
    /// One MP4 file, fragmented while recording, finalized in place.
    Mp4,
}

impl Format {
    /// `{record_format}`: `hls` or `mp4`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Hls => "hls",
            Format::Mp4 => "mp4",
        }
    }
}

/// One output of the rule (HLS or MP4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    /// Container.
    pub format: Format,
    /// Naming template (see [`crate::naming`]).
    pub naming: String,
    /// File cycle; `None` = one file for the whole stream.
    pub cycle: Option<Duration>,
    /// HLS segment length (2..60 s, default 10).
    pub slice: Duration,
    /// Interruption handling.
    pub gap_merge: GapMerge,
}

impl OutputConfig {
    /// Defaults of the rule for `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            naming: crate::naming::DEFAULT_TEMPLATE.to_owned(),
            cycle: None,
            slice: Duration::from_secs(10),
            gap_merge: GapMerge::NewFile,
        }
    }
}

/// Everything the recorder of one publisher stream needs.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Names for the template.
    pub context: NamingContext,
    /// What is recorded.
    pub content: Content,
    /// The outputs (formats).
    pub outputs: Vec<OutputConfig>,
    /// How long a missing packet is waited for (NACK repair), rule 5.
    pub reorder_window: Duration,
    /// No RTP for this long is an interruption.
    pub interruption_timeout: Duration,
    /// Files are split before this size (2 GiB).
    pub max_file_bytes: u64,
    /// Target fragment length (crash safety: at most this much is lost).
    pub fragment: Duration,
    /// A keyframe is requested this long before a planned cut.
    pub keyframe_lead: Duration,
    /// How long frames wait for an RTCP sender report before the track is
    /// aligned on arrival times instead.
    pub sync_wait: Duration,
    /// Longest audio pre-roll kept while waiting for the first keyframe.
    pub preroll: Duration,
    /// Opus channel count written to `dOps`.
    pub audio_channels: u8,
    /// The `file_index` of each output's first file, by position in
    /// `outputs` (missing: 0). A recorder that takes over a publisher's
    /// recording in the same job (the publisher came back after its last
    /// file was finished) continues the numbering, with
    /// [`crate::Recorder::next_file_indexes`] of the one before.
    pub first_file_indexes: Vec<u32>,
}

impl RecorderConfig {
    /// Defaults for a publisher stream.
    pub fn new(context: NamingContext, outputs: Vec<OutputConfig>) -> Self {
        Self {
            context,
            content: Content::AudioVideo,
            outputs,
            reorder_window: Duration::from_millis(500),
            interruption_timeout: Duration::from_secs(3),
            max_file_bytes: 2 * 1024 * 1024 * 1024,
            fragment: Duration::from_secs(1),
            keyframe_lead: Duration::from_secs(2),
            sync_wait: Duration::from_millis(1500),
            preroll: Duration::from_secs(5),
            audio_channels: 2,
            first_file_indexes: Vec::new(),
        }
    }
}

/// A file the recorder started (RECORD_NEW_FILE_START once durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStarted {
    /// Unique within this recorder.
    pub file_id: u64,
    /// Container.
    pub format: Format,
    /// The object: the `.mp4`, or for HLS the multivariant `.m3u8`.
    pub object: String,
    /// Wall time of the first media.
    pub start_time: SystemTime,
    /// 0-based index of the file in this recorder's output.
    pub file_index: u32,
}

/// A finished file (RECORD_FILE_COMPLETE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCompleted {
    /// As in [`FileStarted`].
    pub file_id: u64,
    /// Container.
    pub format: Format,
    /// The object (see [`FileStarted::object`]).
    pub object: String,
    /// Every path written for this file (HLS: playlists, inits, segments).
    pub paths: Vec<String>,
    /// Bytes of all `paths`.
    pub size: u64,
    /// Media duration.
    pub duration: Duration,
    /// Wall time of the first media.
    pub start_time: SystemTime,
    /// Wall time of the end of the last media.
    pub end_time: SystemTime,
    /// Picture width (0 without video).
    pub width: u16,
    /// Picture height (0 without video).
    pub height: u16,
    /// As in [`FileStarted`].
    pub file_index: u32,
}

/// What the caller must do. File commands for one path come in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create (or replace) `path` with `bytes`.
    WriteFile {
        /// Relative path.
        path: String,
        /// Content.
        bytes: Vec<u8>,
    },
    /// Append `bytes` to `path` (created by an earlier `WriteFile`).
    Append {
        /// Relative path.
        path: String,
        /// Content.
        bytes: Vec<u8>,
    },
    /// Overwrite bytes of `path` at `offset` (MP4 finalization).
    WriteAt {
        /// Relative path.
        path: String,
        /// Byte offset.
        offset: u64,
        /// Content.
        bytes: Vec<u8>,
    },
    /// A file got its first media.
    FileStarted(FileStarted),
    /// A file is complete: no more commands for its paths.
    FileCompleted(FileCompleted),
    /// Ask the publisher for a keyframe (PLI/FIR), already rate-limited.
    RequestKeyframe,
}
