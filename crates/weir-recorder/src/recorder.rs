//! [`Recorder`]: the sans-IO recorder of one publisher stream.
//!
//! Inputs carry `now` (the caller's clock); outputs are [`Command`]s taken
//! with [`Recorder::poll_command`]; [`Recorder::poll_timeout`] says when to
//! call [`Recorder::handle_timeout`]. Per track: reorder → depacketize →
//! align on the recorder's timeline (RTCP SR or arrival) → the outputs'
//! [`FileSeries`]. Audio is held until the first video keyframe (rule 4);
//! a keyframe is requested at start, after loss and before planned cuts,
//! at most every 500 ms.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::assembler::{Frame, FrameAssembler};
use crate::config::{Command, MediaKind, RecorderConfig};
use crate::depacketize::opus::packet_duration;
use crate::depacketize::Codec;
use crate::lane::{ticks_to_us, us_to_ticks, TimedFrame};
use crate::rtp::{ExtTime, RtpPacket};
use crate::sample_entry::TrackFormat;
use crate::series::{FileSeries, Formats, SeriesLimits};
use crate::sync::{SenderClock, SenderReport};

const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Media time drifting this far from arrival time re-anchors the track.
const MAX_DRIFT_US: i64 = 5_000_000;

#[derive(Debug, Clone, Copy)]
struct Anchor {
    run: u32,
    ts: ExtTime,
    pts: i64,
}

#[derive(Debug)]
struct Track {
    codec: Codec,
    kind: MediaKind,
    assembler: FrameAssembler,
    /// Frames waiting for a sender report (at most `sync_wait`).
    waiting: VecDeque<Frame>,
    /// Latest report: (NTP, RTP time, run it applies to; `u32::MAX` = the
    /// next run to be anchored).
    report: Option<(u64, u32, u32)>,
    anchor: Option<Anchor>,
    last_packet: Option<Instant>,
    ended: bool,
}

/// Counters for monitoring.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecorderStats {
    /// Packets given to the recorder.
    pub packets: u64,
    /// Frames released to the outputs.
    pub frames: u64,
    /// Keyframe requests emitted.
    pub keyframe_requests: u64,
    /// Times the audio waited the whole pre-roll for a video keyframe
    /// that did not come, and started an audio-only file.
    pub video_waits_given_up: u64,
    /// Writer errors (a file was closed early).
    pub writer_errors: u64,
}

/// Records one publisher stream (one audio, one video track).
#[derive(Debug)]
pub struct Recorder {
    config: RecorderConfig,
    epoch: Instant,
    tracks: [Option<Track>; 2],
    clock: SenderClock,
    formats: Formats,
    preroll: VecDeque<TimedFrame>,
    /// The publisher has a video track (told before its first packet).
    video_expected: bool,
    /// No keyframe came within the pre-roll: audio goes on alone until one
    /// does (which then starts a file with video).
    video_wait_given_up: bool,
    series: Vec<FileSeries>,
    out: VecDeque<Command>,
    last_keyframe_request: Option<Instant>,
    keyframe_pending: bool,
    interrupted: bool,
    stats: RecorderStats,
}

fn slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

impl Recorder {
    /// A recorder whose timeline starts at `now` (= wall time `wall`).
    pub fn new(config: RecorderConfig, now: Instant, wall: SystemTime) -> Self {
        let limits = SeriesLimits {
            content: config.content,
            max_file_bytes: config.max_file_bytes,
            fragment: config.fragment,
            keyframe_lead: config.keyframe_lead,
        };
        let series = config
            .outputs
            .iter()
            .enumerate()
            .map(|(i, output)| {
                let mut series = FileSeries::new(
                    output.clone(),
                    i as u32,
                    config.context.clone(),
                    limits.clone(),
                    wall,
                );
                series.set_next_index(config.first_file_indexes.get(i).copied().unwrap_or(0));
                series
            })
            .collect();
        let formats = Formats {
            video: None,
            audio: Some(TrackFormat::opus(config.audio_channels)),
        };
        Self {
            config,
            epoch: now,
            tracks: [None, None],
            clock: SenderClock::default(),
            formats,
            preroll: VecDeque::new(),
            video_expected: false,
            video_wait_given_up: false,
            series,
            out: VecDeque::new(),
            last_keyframe_request: None,
            keyframe_pending: false,
            interrupted: false,
            stats: RecorderStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RecorderStats {
        let mut stats = self.stats;
        stats.writer_errors = self.series.iter().map(|s| s.errors).sum();
        stats
    }

    /// The `file_index` the next file of each output gets (by position
    /// in the configuration's outputs).
    pub fn next_file_indexes(&self) -> Vec<u32> {
        self.series.iter().map(FileSeries::next_index).collect()
    }

    /// Says that the publisher has a track of `kind`, before its codec is
    /// known (its first packet): audio then waits for the first video
    /// keyframe even if it comes first (rule 4), instead of starting an
    /// audio-only file. A keyframe is asked for at once.
    pub fn expect_track(&mut self, now: Instant, kind: MediaKind) {
        if kind == MediaKind::Video && self.config.content.includes(kind) && !self.video_expected {
            self.video_expected = true;
            self.want_keyframe(now);
        }
    }

    /// Declares a published track and its codec (from the SDP). Media of an
    /// undeclared kind is ignored.
    pub fn add_track(&mut self, now: Instant, codec: Codec) {
        let kind = if codec.is_video() {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        if !self.config.content.includes(kind) {
            return;
        }
        // A track declared again (republished) keeps the time of its last
        // packet: without it, a track that then stayed silent was never
        // seen as an interruption, and its next packet found a hole as
        // long as the silence, filled at once (found by fuzz/, segmenter).
        let last_packet = self.tracks[slot(kind)].as_ref().and_then(|t| t.last_packet);
        self.tracks[slot(kind)] = Some(Track {
            codec,
            kind,
            assembler: FrameAssembler::new(codec, self.config.reorder_window),
            waiting: VecDeque::new(),
            report: None,
            anchor: None,
            last_packet,
            ended: false,
        });
        if kind == MediaKind::Video {
            // Rule 4: ask for a keyframe at once.
            self.want_keyframe(now);
        }
    }

    fn us(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.epoch).as_micros() as i64
    }

    /// One RTP packet of `kind` (after SRTP decryption).
    pub fn handle_rtp(&mut self, now: Instant, kind: MediaKind, packet: RtpPacket) {
        let Some(track) = self.tracks[slot(kind)].as_mut() else {
            return;
        };
        self.stats.packets += 1;
        if self.interrupted {
            self.interrupted = false;
        }
        track.ended = false;
        track.last_packet = Some(now);
        let mut frames = Vec::new();
        track.assembler.push(packet, &mut frames);
        track.assembler.poll(now, &mut frames);
        track.waiting.extend(frames);
        self.after_input(now);
    }

    /// An RTCP Sender Report of `kind`'s track.
    pub fn handle_sender_report(&mut self, now: Instant, kind: MediaKind, report: SenderReport) {
        let arrival_us = self.us(now);
        let Some(track) = self.tracks[slot(kind)].as_mut() else {
            return;
        };
        self.clock.observe(&report, arrival_us);
        let run = track.waiting.front().map_or(u32::MAX, |f| f.run);
        track.report = Some((report.ntp_time, report.rtp_time.0, run));
        self.after_input(now);
    }

    /// The publisher unpublished `kind` (an interruption once every
    /// recorded track ended).
    pub fn handle_track_ended(&mut self, now: Instant, kind: MediaKind) {
        if let Some(track) = self.tracks[slot(kind)].as_mut() {
            track.ended = true;
        }
        if self.tracks.iter().flatten().all(|t| t.ended) {
            self.interrupt(now);
        }
    }

    /// The publisher left (an interruption).
    pub fn handle_publisher_left(&mut self, now: Instant) {
        for track in self.tracks.iter_mut().flatten() {
            track.ended = true;
        }
        self.interrupt(now);
    }

    /// Time passed: reorder windows, sync waits, interruptions, merge
    /// windows, keyframe re-requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        for track in self.tracks.iter_mut().flatten() {
            let mut frames = Vec::new();
            track.assembler.poll(now, &mut frames);
            track.waiting.extend(frames);
        }
        self.after_input(now);
        let silent = self.tracks.iter().flatten().all(|t| {
            t.last_packet.is_none_or(|at| {
                now.saturating_duration_since(at) >= self.config.interruption_timeout
            })
        });
        let any_media = self
            .tracks
            .iter()
            .flatten()
            .any(|t| t.last_packet.is_some());
        if silent && any_media && !self.interrupted {
            self.interrupt(now);
        }
        let now_us = self.us(now);
        let mut out = Vec::new();
        for series in &mut self.series {
            series.handle_timeout(now_us, &mut out);
        }
        self.out.extend(out);
    }

    /// Ends the recording: every open file is finalized.
    pub fn stop(&mut self, now: Instant) {
        self.interrupt(now);
        let mut out = Vec::new();
        for series in &mut self.series {
            series.stop(&mut out);
        }
        self.out.extend(out);
    }

    /// The next command to carry out.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// When [`Recorder::handle_timeout`] must be called at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for track in self.tracks.iter().flatten() {
            if let Some(at) = track.assembler.deadline() {
                consider(at);
            }
            if let Some(first) = track.waiting.front() {
                consider(first.arrival + self.config.sync_wait);
            }
        }
        // An interruption: every track silent for the timeout.
        let last_packet = self
            .tracks
            .iter()
            .flatten()
            .filter_map(|t| t.last_packet)
            .max();
        if let (Some(at), false) = (last_packet, self.interrupted) {
            consider(at + self.config.interruption_timeout);
        }
        for series in &self.series {
            if let Some(us) = series.deadline_us() {
                consider(self.epoch + Duration::from_micros(us.max(0) as u64));
            }
        }
        if self.keyframe_pending {
            if let Some(at) = self.last_keyframe_request {
                consider(at + KEYFRAME_REQUEST_INTERVAL);
            }
        }
        next
    }

    fn want_keyframe(&mut self, now: Instant) {
        let due = self
            .last_keyframe_request
            .is_none_or(|at| now.saturating_duration_since(at) >= KEYFRAME_REQUEST_INTERVAL);
        if due {
            self.last_keyframe_request = Some(now);
            self.keyframe_pending = false;
            self.stats.keyframe_requests += 1;
            self.out.push_back(Command::RequestKeyframe);
        } else {
            self.keyframe_pending = true;
        }
    }

    /// Releases what is held, then pauses the files.
    fn interrupt(&mut self, now: Instant) {
        for track in self.tracks.iter_mut().flatten() {
            let mut frames = Vec::new();
            track.assembler.flush(&mut frames);
            track.waiting.extend(frames);
        }
        self.release(now, true);
        if self.interrupted {
            return;
        }
        self.interrupted = true;
        for track in self.tracks.iter_mut().flatten() {
            track.assembler.restart();
            track.anchor = None;
            track.report = None;
        }
        let mut out = Vec::new();
        for series in &mut self.series {
            series.interrupt(&mut out);
        }
        self.out.extend(out);
    }

    fn after_input(&mut self, now: Instant) {
        self.release(now, false);
        let mut wanted = self.keyframe_pending;
        for track in self.tracks.iter_mut().flatten() {
            wanted |= track.assembler.take_keyframe_wanted();
            if track.assembler.waiting_for_keyframe() && track.last_packet.is_some() {
                wanted |= self
                    .last_keyframe_request
                    .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
            }
        }
        for series in &mut self.series {
            wanted |= series.take_keyframe_wanted();
        }
        if wanted {
            self.want_keyframe(now);
        }
    }

    /// Anchors and releases the waiting frames of both tracks, merged in
    /// arrival order: a frame is released once its track's sender report is
    /// known, or it waited `sync_wait` (or `force`), and only after every
    /// frame of the other track that arrived before it. So the outputs get
    /// audio and video interleaved as they came, even when one track's first
    /// report comes later than the other's: otherwise video released ahead
    /// would cut an HLS segment at a keyframe before the audio in front of
    /// that keyframe, which then lands in the next segment.
    fn release(&mut self, now: Instant, force: bool) {
        loop {
            let next = self
                .tracks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| Some((i, t.as_ref()?.waiting.front()?.arrival)))
                .min_by_key(|(_, arrival)| *arrival)
                .map(|(i, _)| i);
            let Some(i) = next else {
                return;
            };
            if !(force || self.ready(i, now)) {
                return;
            }
            let Some(frame) = self.tracks[i].as_mut().and_then(|t| t.waiting.pop_front()) else {
                return;
            };
            let timed = self.time_frame(i, frame);
            self.deliver(timed);
        }
    }

    /// Whether track `i`'s first waiting frame can be timed: its run is
    /// anchored, its sender report is known, or it waited `sync_wait`.
    fn ready(&self, i: usize, now: Instant) -> bool {
        let Some(track) = self.tracks[i].as_ref() else {
            return false;
        };
        let Some(frame) = track.waiting.front() else {
            return false;
        };
        let anchored = track.anchor.is_some_and(|a| a.run == frame.run);
        let has_report = track
            .report
            .is_some_and(|r| r.2 == frame.run || r.2 == u32::MAX)
            && self.clock.known();
        let waited = now.saturating_duration_since(frame.arrival) >= self.config.sync_wait;
        anchored || has_report || waited
    }

    fn time_frame(&mut self, i: usize, frame: Frame) -> Option<TimedFrame> {
        let epoch = self.epoch;
        let track = self.tracks[i].as_mut()?;
        let kind = track.kind;
        let rate = track.codec.clock_rate();
        let arrival_us = frame.arrival.saturating_duration_since(epoch).as_micros() as i64;
        let anchor = match track.anchor {
            Some(a) if a.run == frame.run => a,
            _ => {
                let mapped = track.report.and_then(|(ntp, rtp, _)| {
                    // The low 32 bits of an unwrapped timestamp are the RTP value.
                    let delta = (frame.timestamp.0 as u32).wrapping_sub(rtp) as i32;
                    self.clock.map(ntp, i64::from(delta), rate)
                });
                let anchor_us = mapped.unwrap_or(arrival_us);
                let a = Anchor {
                    run: frame.run,
                    ts: frame.timestamp,
                    pts: us_to_ticks(anchor_us, kind),
                };
                track.anchor = Some(a);
                a
            }
        };
        let mut pts = anchor.pts + frame.timestamp.since(anchor.ts);
        if (ticks_to_us(pts, kind) - arrival_us).abs() > MAX_DRIFT_US {
            // A timestamp jump: re-anchor on arrival.
            pts = us_to_ticks(arrival_us, kind);
            track.anchor = Some(Anchor {
                run: frame.run,
                ts: frame.timestamp,
                pts,
            });
        }
        let nominal = match track.codec {
            Codec::Opus => packet_duration(&frame.data).unwrap_or(960),
            _ => 0,
        };
        if let Some(config) = &frame.config {
            if let Ok(format) = TrackFormat::video(config) {
                let changed = self.formats.video.as_ref().map(|f| &f.entry) != Some(&format.entry);
                if changed {
                    self.formats.video = Some(format);
                }
            }
        }
        Some(TimedFrame {
            kind,
            pts,
            keyframe: frame.keyframe,
            data: frame.data,
            nominal,
            filler: false,
        })
    }

    fn deliver(&mut self, frame: Option<TimedFrame>) {
        let Some(frame) = frame else {
            return;
        };
        self.stats.frames += 1;
        if frame.kind == MediaKind::Video && frame.keyframe {
            // What a request left pending wanted has come.
            self.keyframe_pending = false;
        }
        let video_expected = self.video_expected || self.tracks[slot(MediaKind::Video)].is_some();
        let mut frames = Vec::new();
        match frame.kind {
            MediaKind::Audio
                if video_expected && self.formats.video.is_none() && !self.video_wait_given_up =>
            {
                // Rule 4: hold audio until the first video keyframe, a
                // few seconds at most: then the held audio starts an
                // audio-only file (the keyframe, when it comes, starts the
                // next file, with video).
                let newest = frame.pts_us();
                self.preroll.push_back(frame);
                let limit = self.config.preroll.as_micros() as i64;
                let oldest_us = self.preroll.front().map_or(newest, TimedFrame::pts_us);
                if newest - oldest_us <= limit {
                    return;
                }
                self.video_wait_given_up = true;
                self.stats.video_waits_given_up += 1;
                frames.extend(self.preroll.drain(..));
            }
            MediaKind::Video if self.formats.video.is_none() => return,
            MediaKind::Video if !self.preroll.is_empty() => {
                let keyframe_us = frame.pts_us();
                let limit = self.config.preroll.as_micros() as i64;
                frames.extend(
                    self.preroll
                        .drain(..)
                        .filter(|f| keyframe_us - f.pts_us() <= limit),
                );
                frames.push(frame);
            }
            _ => frames.push(frame),
        }
        let mut out = Vec::new();
        for series in &mut self.series {
            for f in &frames {
                series.push(f.clone(), &self.formats, &mut out);
            }
        }
        self.out.extend(out);
    }
}

#[cfg(test)]
mod tests;
