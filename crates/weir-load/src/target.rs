//! The system under test, behind traits so that other SFUs can be loaded
//! the same way: the runner only joins publishers and subscribers, sends
//! synthetic frames, reads what arrives, and starts/stops recordings.
//!
//! [`weir`] loads a Weir server (`--target weir`); [`janus`] loads a Janus
//! Gateway VideoRoom (`--target janus`) with its own signalling but the
//! same webrtc-rs peers publishing the same [`weir_client::synthetic`]
//! payloads, so that one scenario runs against both. [`tracks`] holds what
//! the two share once signalling is done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use weir_client::synthetic::{OpusSource, SyntheticPacket, Vp8Source};

use crate::scenario::Media;

pub mod janus;
pub mod tracks;
pub mod weir;

/// Which system to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A Weir server (`/rtc/v1` signalling, REST API for recordings).
    Weir,
    /// A Janus Gateway 1.x VideoRoom (HTTP API; no recordings).
    Janus,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Weir => "weir",
            TargetKind::Janus => "janus",
        }
    }
}

/// A server to load.
#[async_trait]
pub trait Target: Send + Sync {
    /// Joins `room` as `user` and publishes `media`; returns once the
    /// server announced every track and the peer connection is up.
    async fn join_publisher(
        &self,
        room: &str,
        user: &str,
        media: Media,
    ) -> anyhow::Result<Arc<dyn Publisher>>;

    /// Joins `room` as `user`, receiving every publisher track of the
    /// room; returns once joined and connected (subscriptions may follow,
    /// see [`Subscriber::wait_subscribed`]).
    async fn join_subscriber(&self, room: &str, user: &str) -> anyhow::Result<Box<dyn Subscriber>>;

    /// Starts recording `room`.
    async fn start_recording(&self, room: &str) -> anyhow::Result<RecordingJob>;

    /// Stops a recording and waits (at most `timeout`) for its files.
    async fn stop_recording(
        &self,
        job: &RecordingJob,
        timeout: Duration,
    ) -> anyhow::Result<RecordingOutcome>;
}

/// A connected publisher.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// The ids of its tracks, as subscribers see them.
    fn track_ids(&self) -> Vec<String>;

    /// Sends the next frame of `source` (a keyframe if one was requested);
    /// returns how many packets went out.
    async fn send_video_frame(
        &self,
        source: &mut Vp8Source,
        frame: &mut Vec<SyntheticPacket>,
    ) -> anyhow::Result<usize>;

    /// Sends the next packet of `source`.
    async fn send_audio_packet(&self, source: &mut OpusSource) -> anyhow::Result<()>;

    /// True once the session ended (kicked, closed, failed).
    fn is_closed(&self) -> bool;

    /// Leaves the room (bounded wait).
    async fn leave(&self);
}

/// A connected subscriber.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Waits until every track of `track_ids` is delivered to this
    /// subscriber (subscribed and its m-line negotiated).
    async fn wait_subscribed(&self, track_ids: &[String], timeout: Duration) -> anyhow::Result<()>;

    /// What arrives (once; `None` afterwards).
    fn take_media(&self) -> Option<Box<dyn MediaStream>>;

    /// True once the session ended.
    fn is_closed(&self) -> bool;

    /// Leaves the room (bounded wait).
    async fn leave(&self);
}

/// One received RTP payload.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Which received stream it belongs to (e.g. the m-line).
    pub stream: Arc<str>,
    pub payload: Bytes,
    pub received_at: Instant,
}

/// The received packets of a subscriber, in arrival order.
#[async_trait]
pub trait MediaStream: Send {
    /// The next packet; `None` when the session ended.
    async fn recv(&mut self) -> Option<Arrival>;
}

/// A started recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingJob {
    pub room: String,
    pub job_id: String,
}

/// What a stopped recording left.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordingOutcome {
    pub room: String,
    pub job_id: String,
    /// The job's final status (`stopped`, `failed`).
    pub status: String,
    pub files: Vec<RecordedFile>,
}

/// One file of a recording.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordedFile {
    pub user_id: String,
    pub format: String,
    /// Where it is in the storage target (local: under the data dir's
    /// `recordings/`).
    pub object: String,
    /// `complete`, `failed`, or `recording` if it was not finished in time.
    pub status: String,
    pub size_bytes: Option<u64>,
    pub duration_ms: Option<u64>,
}
