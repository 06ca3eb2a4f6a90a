//! One recorded publisher stream: a thread that owns a
//! `weir_recorder::Recorder`, feeds it the room's tapped packets, and
//! carries out its commands (file writes into the [spool](super::spool),
//! keyframe requests back to the room, file events to the finisher).
//!
//! A thread rather than a task: every command is blocking file I/O (each
//! fragment is flushed to disk), and a recording must never hold up a
//! runtime worker that forwards media. The room hands packets over with
//! `try_send` on a bounded queue, so a slow disk drops (and counts)
//! recorder input instead of slowing forwarding; the recorder then waits
//! for the next keyframe.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::UnboundedSender;
use weir_recorder::config::{Command, FileCompleted, FileStarted, MediaKind, RecorderConfig};
use weir_recorder::{Codec, Recorder, RtpPacket, RtpTime, SenderReport, SeqNo};
use weir_sfu::{TapCodec, TappedPacket};

use super::spool::Spool;
use crate::serve::metrics::ServerMetrics;

/// Packets (and other input) a stream may have queued before the room drops.
pub const INPUT_QUEUE: usize = 2048;
/// The longest a stream thread sleeps: how long packets gather in its
/// queue before it takes them (the queue holds far more than arrives in a
/// tick).
const TICK: Duration = Duration::from_millis(50);
/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET_SECONDS: u64 = 2_208_988_800;

/// Which stream of which room this is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub app_id: String,
    pub room_id: String,
    pub user_id: String,
}

/// The next `file_index` of each output of one publisher's recording in
/// one job. A stream ends once its publisher left and its files are
/// finished; if the publisher comes back, the next stream continues the
/// numbering from here (shared by the room and the streams it starts).
#[derive(Debug, Clone, Default)]
pub struct FileNumbering(Arc<Mutex<Vec<u32>>>);

impl FileNumbering {
    /// The index of each output's next file (empty: from 0).
    pub fn next(&self) -> Vec<u32> {
        self.lock().clone()
    }

    fn set(&self, next: Vec<u32>) {
        *self.lock() = next;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the room tells a stream.
#[derive(Debug)]
pub enum StreamInput {
    /// A track of this kind was tapped; its codec comes with its first
    /// packet. Told at once so that audio coming first waits for video.
    Tapped(MediaKind),
    /// The codec of a tapped track (at its first packet).
    Track(Codec),
    /// One packet of a tapped track.
    Packet(TappedPacket),
    /// The publisher unpublished a track.
    TrackEnded(MediaKind),
    /// The publisher left the room.
    PublisherLeft,
    /// End the recording now (job stopped, server shutting down).
    Stop,
}

/// What a stream reports, in order.
#[derive(Debug)]
pub enum StreamEvent {
    Started {
        key: StreamKey,
        job_id: String,
        file: FileStarted,
        /// The spool the file's paths are relative to.
        spool: PathBuf,
    },
    Completed {
        key: StreamKey,
        job_id: String,
        file: FileCompleted,
        spool: PathBuf,
    },
    /// The thread ended: nothing more comes from this stream.
    Ended {
        key: StreamKey,
        job_id: String,
        spool: PathBuf,
    },
}

/// The room's end of a stream.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    input: SyncSender<StreamInput>,
    keyframe_wanted: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
}

impl StreamHandle {
    /// Whether the thread ended (or is ending): it takes no more input.
    /// A publisher who left comes back to a new stream once this is set.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Whether the recorder asked for a keyframe since the last call (the
    /// room then asks the publisher).
    pub fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    /// Hands `input` over without waiting; false when the queue is full or
    /// the stream has ended.
    pub fn offer(&self, input: StreamInput) -> bool {
        match self.input.try_send(input) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Starts the thread of one recorded stream; its files are numbered on
/// from `numbering`, which it keeps up to date.
pub fn spawn(
    key: StreamKey,
    job_id: String,
    mut config: RecorderConfig,
    numbering: FileNumbering,
    spool: Spool,
    events: UnboundedSender<StreamEvent>,
    metrics: Arc<ServerMetrics>,
) -> std::io::Result<StreamHandle> {
    config.first_file_indexes = numbering.next();
    let (input, queue) = std::sync::mpsc::sync_channel(INPUT_QUEUE);
    let keyframe_wanted = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicBool::new(false));
    let name = format!("rec-{}", key.user_id.chars().take(10).collect::<String>());
    let stream = Stream {
        recorder: Recorder::new(config, Instant::now(), SystemTime::now()),
        key,
        job_id,
        spool,
        events,
        keyframe_wanted: keyframe_wanted.clone(),
        ended: ended.clone(),
        metrics,
        numbering,
        open_files: 0,
        publisher_present: true,
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || stream.run(queue))?;
    Ok(StreamHandle {
        input,
        keyframe_wanted,
        ended,
    })
}

struct Stream {
    recorder: Recorder,
    key: StreamKey,
    job_id: String,
    spool: Spool,
    events: UnboundedSender<StreamEvent>,
    keyframe_wanted: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    metrics: Arc<ServerMetrics>,
    numbering: FileNumbering,
    /// Files started and not yet completed.
    open_files: usize,
    publisher_present: bool,
}

impl Stream {
    fn run(mut self, queue: Receiver<StreamInput>) {
        tracing::info!(room = %self.key.room_id, user = %self.key.user_id, "recording started");
        loop {
            // Sleep until the recorder's next deadline, at most a tick, then
            // take everything queued meanwhile. The thread never blocks on
            // the queue, so the room's `try_send`s wake nobody: a recorded
            // stream costs one wake-up per tick, not one (plus a futex call
            // on the forwarding thread) per packet.
            let wait = self
                .recorder
                .poll_timeout()
                .map_or(TICK, |at| at.saturating_duration_since(Instant::now()))
                .min(TICK);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            let stop = self.take_queued(&queue);
            if !stop
                && self
                    .recorder
                    .poll_timeout()
                    .is_some_and(|at| at <= Instant::now())
            {
                self.recorder.handle_timeout(Instant::now());
            }
            if stop {
                self.recorder.stop(Instant::now());
            }
            self.carry_out_commands();
            // Done: told to stop, or the publisher is gone and every file
            // (including one waiting out a gap-merge window) is finished.
            if stop || (!self.publisher_present && self.open_files == 0) {
                break;
            }
        }
        self.ended.store(true, Ordering::Release);
        tracing::info!(room = %self.key.room_id, user = %self.key.user_id, "recording ended");
        let _ = self.events.send(StreamEvent::Ended {
            key: self.key.clone(),
            job_id: self.job_id.clone(),
            spool: self.spool.root().to_path_buf(),
        });
    }

    /// Feeds everything queued to the recorder; true when told to stop or
    /// the room is gone.
    fn take_queued(&mut self, queue: &Receiver<StreamInput>) -> bool {
        loop {
            match queue.try_recv() {
                Ok(input) => {
                    if self.handle(input) {
                        return true;
                    }
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Feeds one input to the recorder; true for [`StreamInput::Stop`].
    fn handle(&mut self, input: StreamInput) -> bool {
        let now = Instant::now();
        match input {
            StreamInput::Tapped(kind) => self.recorder.expect_track(now, kind),
            StreamInput::Track(codec) => {
                self.publisher_present = true;
                self.recorder.add_track(now, codec);
            }
            StreamInput::Packet(packet) => {
                self.publisher_present = true;
                let Some(kind) = media_kind(packet.codec) else {
                    return false;
                };
                if let Some(report) = packet.sender_report {
                    self.recorder.handle_sender_report(
                        now,
                        kind,
                        SenderReport {
                            ntp_time: ntp_from_system_time(report.ntp_time),
                            rtp_time: RtpTime(report.rtp_time),
                        },
                    );
                }
                self.recorder.handle_rtp(
                    now,
                    kind,
                    RtpPacket {
                        ssrc: packet.ssrc,
                        seq: SeqNo(packet.sequence_number),
                        timestamp: RtpTime(packet.rtp_timestamp),
                        marker: packet.marker,
                        payload: packet.payload.to_vec(),
                        arrival: packet.arrival,
                    },
                );
            }
            StreamInput::TrackEnded(kind) => self.recorder.handle_track_ended(now, kind),
            StreamInput::PublisherLeft => {
                self.publisher_present = false;
                self.recorder.handle_publisher_left(now);
            }
            StreamInput::Stop => return true,
        }
        false
    }

    fn carry_out_commands(&mut self) {
        while let Some(command) = self.recorder.poll_command() {
            let written = match command {
                Command::WriteFile { path, bytes } => self.spool.write_file(&path, &bytes),
                Command::Append { path, bytes } => self.spool.append(&path, &bytes),
                Command::WriteAt {
                    path,
                    offset,
                    bytes,
                } => self.spool.write_at(&path, offset, &bytes),
                Command::FileStarted(file) => {
                    self.open_files += 1;
                    self.numbering.set(self.recorder.next_file_indexes());
                    let _ = self.events.send(StreamEvent::Started {
                        key: self.key.clone(),
                        job_id: self.job_id.clone(),
                        file,
                        spool: self.spool.root().to_path_buf(),
                    });
                    Ok(())
                }
                Command::FileCompleted(file) => {
                    self.open_files = self.open_files.saturating_sub(1);
                    self.spool.close(&file.paths);
                    let _ = self.events.send(StreamEvent::Completed {
                        key: self.key.clone(),
                        job_id: self.job_id.clone(),
                        file,
                        spool: self.spool.root().to_path_buf(),
                    });
                    Ok(())
                }
                Command::RequestKeyframe => {
                    self.keyframe_wanted.store(true, Ordering::Relaxed);
                    Ok(())
                }
            };
            if let Err(e) = written {
                self.metrics.recorder_write_errors.inc();
                tracing::error!(
                    room = %self.key.room_id, user = %self.key.user_id, error = %e,
                    "writing a recording to the spool failed"
                );
            }
        }
    }
}

/// The recorder's codec of a tapped track, if it records it.
pub fn recorder_codec(codec: TapCodec) -> Option<Codec> {
    match codec {
        TapCodec::Opus => Some(Codec::Opus),
        TapCodec::H264 => Some(Codec::H264),
        TapCodec::Vp8 => Some(Codec::Vp8),
        TapCodec::Vp9 => Some(Codec::Vp9),
        TapCodec::Av1 => Some(Codec::Av1),
        TapCodec::Other => None,
    }
}

fn media_kind(codec: TapCodec) -> Option<MediaKind> {
    match codec {
        TapCodec::Opus => Some(MediaKind::Audio),
        TapCodec::H264 | TapCodec::Vp8 | TapCodec::Vp9 | TapCodec::Av1 => Some(MediaKind::Video),
        TapCodec::Other => None,
    }
}

/// A wall-clock time as a 32.32 NTP timestamp.
fn ntp_from_system_time(time: SystemTime) -> u64 {
    let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECONDS);
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversion_matches_the_epoch_offset() {
        let ntp = ntp_from_system_time(UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET_SECONDS + 1);
        assert_eq!(ntp & 0xffff_ffff, 1 << 31, "half a second");
    }
}
