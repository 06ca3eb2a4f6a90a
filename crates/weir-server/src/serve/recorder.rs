//! The recorder's runtime (issue 4): which publisher streams are being
//! recorded, the threads recording them, and what happens to their files.
//!
//! - [`room::RoomRecording`], owned by a room's task, decides which tracks
//!   to tap (the room's active recording job: manual, or automatic under
//!   the rule's `auto_record`, at most [`MAX_AUTO_RECORDED`] publishers by
//!   join order) and hands their packets to the streams.
//! - [`stream`]: one thread per recorded publisher stream, running the
//!   sans-IO `weir_recorder::Recorder` and writing into its [`spool`].
//! - [`Recorders`]: the server-wide registry of streams, keyed by
//!   application, room and user, so that a stream outlives a room that
//!   closes and reopens within a gap-merge window.

pub mod finisher;
pub mod room;
pub mod spool;
pub mod stream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use weir_recorder::config::RecorderConfig;

use crate::serve::metrics::ServerMetrics;
use spool::Spool;
use stream::{FileNumbering, StreamEvent, StreamHandle, StreamKey};

/// Auto-recording records at most this many publishers per room (the first
/// by join time).
pub const MAX_AUTO_RECORDED: usize = 25;

/// Every stream being recorded on this server.
#[derive(Clone)]
pub struct Recorders {
    streams: Arc<Mutex<HashMap<StreamKey, StreamHandle>>>,
    /// Ended streams replaced before the finisher handled their end.
    replaced: Arc<AtomicU64>,
    spool_root: PathBuf,
    events: UnboundedSender<StreamEvent>,
    metrics: Arc<ServerMetrics>,
}

impl Recorders {
    /// The registry, and the receiver of every stream's file events (for
    /// the finisher).
    pub fn new(
        spool_root: PathBuf,
        metrics: Arc<ServerMetrics>,
    ) -> (Recorders, UnboundedReceiver<StreamEvent>) {
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        (
            Recorders {
                streams: Arc::new(Mutex::new(HashMap::new())),
                replaced: Arc::new(AtomicU64::new(0)),
                spool_root,
                events,
                metrics,
            },
            receiver,
        )
    }

    /// The running stream of `key`, or a new one recording with `config`
    /// whose files are numbered on from `numbering`.
    pub fn stream(
        &self,
        key: &StreamKey,
        job_id: &str,
        config: impl FnOnce() -> RecorderConfig,
        numbering: &FileNumbering,
    ) -> std::io::Result<StreamHandle> {
        let mut streams = self.lock();
        let mut dir = spool_dir_name(key);
        if let Some(handle) = streams.get(key) {
            if !handle.has_ended() {
                return Ok(handle.clone());
            }
            // An ended stream whose end the finisher has not handled yet
            // (its publisher left and came back meanwhile) is replaced; the
            // finisher may still be clearing its spool, so the new one
            // writes elsewhere.
            let n = self.replaced.fetch_add(1, Ordering::Relaxed);
            dir = format!("{dir}_r{n}");
        }
        let spool = Spool::new(self.spool_root.join(job_id).join(dir));
        let handle = stream::spawn(
            key.clone(),
            job_id.to_string(),
            config(),
            numbering.clone(),
            spool,
            self.events.clone(),
            self.metrics.clone(),
        )?;
        streams.insert(key.clone(), handle.clone());
        Ok(handle)
    }

    /// Forgets the stream of `key` (its job no longer records it).
    pub fn ended(&self, key: &StreamKey) {
        self.lock().remove(key);
    }

    /// Forgets the stream of `key` if its thread ended (the finisher saw it
    /// end); a stream that replaced it stays.
    pub fn thread_ended(&self, key: &StreamKey) {
        let mut streams = self.lock();
        if streams.get(key).is_some_and(StreamHandle::has_ended) {
            streams.remove(key);
        }
    }

    /// Ends every stream (shutdown): their files are finalized, stored and
    /// announced; each leaves the registry when the finisher has seen it
    /// end ([`Recorders::active`] reaches 0).
    pub fn stop_all(&self) {
        for handle in self.lock().values() {
            if !handle.offer(stream::StreamInput::Stop) {
                tracing::warn!("a recording's queue is full; it stops when its room's handle goes");
            }
        }
    }

    pub fn active(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, StreamHandle>> {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A spool directory name for a stream (ids are already safe names).
fn spool_dir_name(key: &StreamKey) -> String {
    format!("{}_{}", key.room_id, key.user_id)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use weir_recorder::{Codec, Format, NamingContext, OutputConfig};

    use super::stream::StreamInput;
    use super::*;

    fn config() -> RecorderConfig {
        let context = NamingContext::new("app", "room", "bob");
        RecorderConfig::new(context, vec![OutputConfig::new(Format::Mp4)])
    }

    fn until_ended(handle: &StreamHandle) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !handle.has_ended() {
            assert!(Instant::now() < deadline, "the stream did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_publisher_back_before_the_finisher_saw_the_end_gets_a_new_stream() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (recorders, _events) =
            Recorders::new(dir.path().to_path_buf(), Arc::new(ServerMetrics::default()));
        let key = StreamKey {
            app_id: "app".into(),
            room_id: "room".into(),
            user_id: "bob".into(),
        };
        let numbering = FileNumbering::default();
        let first = recorders
            .stream(&key, "job", config, &numbering)
            .expect("stream");
        // The publisher leaves with no file open: the thread ends.
        assert!(first.offer(StreamInput::PublisherLeft));
        until_ended(&first);
        // It comes back before the finisher saw that end: a live stream.
        let second = recorders
            .stream(&key, "job", config, &numbering)
            .expect("stream");
        assert!(!second.has_ended());
        assert!(second.offer(StreamInput::Track(Codec::Opus)));
        // The finisher then sees the first end: the second stays.
        recorders.thread_ended(&key);
        assert_eq!(recorders.active(), 1);
        assert!(!recorders
            .stream(&key, "job", config, &numbering)
            .expect("stream")
            .has_ended());
        assert!(second.offer(StreamInput::Stop));
        until_ended(&second);
        recorders.thread_ended(&key);
        assert_eq!(recorders.active(), 0);
    }
}
