//! A room's side of recording: which of its publishers are recorded, and
//! the hand-over of their tapped packets to the streams.
//!
//! Owned by the room's task (one owner per room): every call is made there,
//! next to the `weir_sfu::Room` whose taps it turns on and off.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use weir_protocol::{TrackInfo, TrackKind};
use weir_recorder::config::{MediaKind, RecorderConfig};
use weir_recorder::NamingContext;
use weir_sfu::{Room, TappedPacket};

use super::stream::{recorder_codec, FileNumbering, StreamHandle, StreamInput, StreamKey};
use super::{Recorders, MAX_AUTO_RECORDED};
use crate::recording::rule::RecordingRule;
use crate::serve::metrics::ServerMetrics;

/// The recording job a room carries out.
#[derive(Debug, Clone)]
pub struct ActiveJob {
    pub job_id: String,
    /// The publishers to record; `None`: every publisher, the first
    /// [`MAX_AUTO_RECORDED`] by the time they first published.
    pub user_ids: Option<HashSet<String>>,
    /// The rule in force when the job started.
    pub rule: Arc<RecordingRule>,
}

/// A tapped track and where its packets go.
struct TappedTrack {
    user_id: String,
    kind: MediaKind,
    /// The stream was told the track's codec (at its first packet; its
    /// kind when it was tapped).
    declared: bool,
}

/// The recording state of one room.
pub struct RoomRecording {
    app_id: String,
    room_id: String,
    recorders: Recorders,
    metrics: Arc<ServerMetrics>,
    job: Option<ActiveJob>,
    /// The video codec asked of new publications while recording.
    preferred_video_codec: Option<&'static str>,
    /// Users recorded by this job, in the order they were taken on.
    recorded_users: Vec<String>,
    streams: HashMap<String, StreamHandle>,
    /// Per user recorded by this job: the numbering of their files, which
    /// goes on when they come back after their stream ended.
    numbering: HashMap<String, FileNumbering>,
    tracks: HashMap<String, TappedTrack>,
}

impl RoomRecording {
    pub fn new(
        app_id: &str,
        room_id: &str,
        recorders: Recorders,
        metrics: Arc<ServerMetrics>,
        prefer_h264: bool,
    ) -> RoomRecording {
        RoomRecording {
            app_id: app_id.to_string(),
            room_id: room_id.to_string(),
            recorders,
            metrics,
            job: None,
            preferred_video_codec: prefer_h264.then_some("H264"),
            recorded_users: Vec::new(),
            streams: HashMap::new(),
            numbering: HashMap::new(),
            tracks: HashMap::new(),
        }
    }

    /// The job in progress, if any.
    pub fn job(&self) -> Option<&ActiveJob> {
        self.job.as_ref()
    }

    /// The users being recorded.
    pub fn recorded_users(&self) -> &[String] {
        &self.recorded_users
    }

    /// Starts `job`: the tracks already published by its publishers are
    /// tapped at once.
    pub fn start(&mut self, room: &mut Room, now: Instant, job: ActiveJob) {
        self.job = Some(job);
        room.set_preferred_video_codec(self.preferred_video_codec);
        for participant in room.participant_infos() {
            for track in &participant.tracks {
                self.track_published(room, now, track);
            }
        }
    }

    /// Ends the job: taps off, every stream finalizes its files.
    pub fn stop(&mut self, room: &mut Room, now: Instant) {
        for track_id in self.tracks.keys() {
            let _ = room.set_tap(now, track_id, false);
        }
        for stream in self.streams.values() {
            stream.offer(StreamInput::Stop);
        }
        for user in self.streams.keys() {
            self.recorders.ended(&self.key(user));
        }
        self.tracks.clear();
        self.streams.clear();
        self.numbering.clear();
        self.recorded_users.clear();
        self.job = None;
        room.set_preferred_video_codec(None);
    }

    /// Records exactly `user_ids` from now on: the others' taps go off and
    /// their streams finalize; newly listed publishers' tracks are tapped.
    pub fn set_users(&mut self, room: &mut Room, now: Instant, user_ids: HashSet<String>) {
        let Some(job) = self.job.as_mut() else { return };
        job.user_ids = Some(user_ids.clone());
        let dropped: Vec<String> = self
            .streams
            .keys()
            .filter(|user| !user_ids.contains(*user))
            .cloned()
            .collect();
        for user in dropped {
            let tracks: Vec<String> = self
                .tracks
                .iter()
                .filter(|(_, t)| t.user_id == user)
                .map(|(id, _)| id.clone())
                .collect();
            for track_id in tracks {
                let _ = room.set_tap(now, &track_id, false);
                self.tracks.remove(&track_id);
            }
            if let Some(stream) = self.streams.remove(&user) {
                stream.offer(StreamInput::Stop);
            }
            self.recorders.ended(&self.key(&user));
            self.recorded_users.retain(|u| *u != user);
        }
        for participant in room.participant_infos() {
            if user_ids.contains(&participant.user_id) {
                for track in &participant.tracks {
                    if !self.tracks.contains_key(track.track_id.as_str()) {
                        self.track_published(room, now, track);
                    }
                }
            }
        }
    }

    /// A track was published: tapped if its publisher is recorded.
    pub fn track_published(&mut self, room: &mut Room, now: Instant, track: &TrackInfo) {
        let Some(job) = &self.job else { return };
        let user = &track.user_id;
        let selected = match &job.user_ids {
            Some(users) => users.contains(user),
            None => {
                self.recorded_users.contains(user) || self.recorded_users.len() < MAX_AUTO_RECORDED
            }
        };
        if !selected {
            return;
        }
        if !self.streams.contains_key(user) && !self.open_stream(user) {
            return;
        }
        if !self.recorded_users.contains(user) {
            self.recorded_users.push(user.clone());
        }
        let track_id = track.track_id.to_string();
        if room.set_tap(now, &track_id, true).is_ok() {
            let kind = match track.kind {
                TrackKind::Audio => MediaKind::Audio,
                TrackKind::Video => MediaKind::Video,
            };
            if let Some(stream) = self.streams.get(user) {
                // A full queue (it never is for a new tap) only loses the
                // head start: the codec still comes with the first packet.
                stream.offer(StreamInput::Tapped(kind));
            }
            self.tracks.insert(
                track_id,
                TappedTrack {
                    user_id: user.clone(),
                    kind,
                    declared: false,
                },
            );
        }
    }

    /// The stream of `user` in the registry (the running one, or a new
    /// one numbering its files on), into `streams`; false if no thread
    /// could be started.
    fn open_stream(&mut self, user: &str) -> bool {
        let Some(job) = &self.job else { return false };
        let key = self.key(user);
        let numbering = self.numbering.entry(user.to_string()).or_default();
        let started = self.recorders.stream(
            &key,
            &job.job_id,
            || recorder_config(&key, &job.rule),
            numbering,
        );
        match started {
            Ok(stream) => {
                self.streams.insert(user.to_string(), stream);
                true
            }
            Err(e) => {
                tracing::error!(user = %user, error = %e, "cannot start a recording thread");
                false
            }
        }
    }

    /// A packet of a tapped track: to its stream, without waiting (and
    /// without allocating: this runs for every packet of the room).
    pub fn tapped(&mut self, room: &mut Room, now: Instant, packet: TappedPacket) {
        let track_id = packet.track_id.as_str();
        let ended = match self.tracks.get(track_id) {
            Some(track) => self
                .streams
                .get(&track.user_id)
                .is_some_and(StreamHandle::has_ended),
            None => return,
        };
        if ended {
            // The stream ended as its publisher came back (it had left and
            // its files were finished): a new stream takes over, told the
            // tracks' codecs again.
            let Some(user) = self.tracks.get(track_id).map(|t| t.user_id.clone()) else {
                return;
            };
            self.streams.remove(&user);
            if !self.open_stream(&user) {
                return;
            }
            let stream = self.streams.get(&user);
            for track in self.tracks.values_mut().filter(|t| t.user_id == user) {
                track.declared = false;
                if let Some(stream) = stream {
                    stream.offer(StreamInput::Tapped(track.kind));
                }
            }
        }
        let Some(track) = self.tracks.get_mut(track_id) else {
            return;
        };
        let Some(stream) = self.streams.get(&track.user_id) else {
            return;
        };
        if !track.declared {
            let Some(codec) = recorder_codec(packet.codec) else {
                return;
            };
            if !stream.offer(StreamInput::Track(codec)) {
                self.metrics.recorder_packets_dropped.inc();
                return;
            }
            track.declared = true;
        }
        if track.kind == MediaKind::Video && stream.take_keyframe_request() {
            let _ = room.request_track_keyframe(now, track_id);
        }
        if !stream.offer(StreamInput::Packet(packet)) {
            self.metrics.recorder_packets_dropped.inc();
        }
    }

    /// A track was unpublished.
    pub fn track_unpublished(&mut self, track: &TrackInfo) {
        let track_id = track.track_id.to_string();
        if let Some(tapped) = self.tracks.remove(&track_id) {
            if let Some(stream) = self.streams.get(&tapped.user_id) {
                stream.offer(StreamInput::TrackEnded(tapped.kind));
            }
        }
    }

    /// A participant left: its stream waits out the gap-merge window on
    /// its own (a return within it continues the same file).
    pub fn participant_left(&mut self, user_id: &str) {
        self.tracks.retain(|_, t| t.user_id != user_id);
        if let Some(stream) = self.streams.remove(user_id) {
            stream.offer(StreamInput::PublisherLeft);
        }
    }

    fn key(&self, user_id: &str) -> StreamKey {
        StreamKey {
            app_id: self.app_id.clone(),
            room_id: self.room_id.clone(),
            user_id: user_id.to_string(),
        }
    }
}

/// The recorder core's configuration for one stream under `rule`.
pub fn recorder_config(key: &StreamKey, rule: &RecordingRule) -> RecorderConfig {
    let context = NamingContext::new(&*key.app_id, &*key.room_id, &*key.user_id);
    let mut config = RecorderConfig::new(context, rule.outputs());
    config.content = rule.recorder_content();
    config
}
