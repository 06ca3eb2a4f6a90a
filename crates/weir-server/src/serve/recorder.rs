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
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use weir_recorder::config::RecorderConfig;

use crate::serve::metrics::ServerMetrics;
use spool::Spool;
use stream::{StreamEvent, StreamHandle, StreamKey};

/// Auto-recording records at most this many publishers per room (the first
/// by join time).
pub const MAX_AUTO_RECORDED: usize = 25;

/// Every stream being recorded on this server.
#[derive(Clone)]
pub struct Recorders {
    streams: Arc<Mutex<HashMap<StreamKey, StreamHandle>>>,
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
                spool_root,
                events,
                metrics,
            },
            receiver,
        )
    }

    /// The running stream of `key`, or a new one recording with `config`.
    pub fn stream(
        &self,
        key: &StreamKey,
        job_id: &str,
        config: impl FnOnce() -> RecorderConfig,
    ) -> std::io::Result<StreamHandle> {
        let mut streams = self.lock();
        if let Some(handle) = streams.get(key) {
            return Ok(handle.clone());
        }
        let spool = Spool::new(self.spool_root.join(job_id).join(spool_dir_name(key)));
        let handle = stream::spawn(
            key.clone(),
            job_id.to_string(),
            config(),
            spool,
            self.events.clone(),
            self.metrics.clone(),
        )?;
        streams.insert(key.clone(), handle.clone());
        Ok(handle)
    }

    /// Forgets a stream whose thread ended.
    pub fn ended(&self, key: &StreamKey) {
        self.lock().remove(key);
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
