//! Media files published in real time, with a known audio/video alignment.
//!
//! - [`H264FileSource`]: an H.264 Annex-B elementary stream (e.g. made by
//!   `ffmpeg ... -c:v libx264 -bf 0 -f h264 video.h264`), read with
//!   webrtc-rs's `H26xReader` and grouped into access units (frames).
//! - [`OggOpusSource`]: an Ogg Opus file with one Opus packet per page
//!   (ffmpeg writes that with `-page_duration 20000` for 20 ms packets, as
//!   webrtc-rs's play-from-disk example also asks), read with webrtc-rs's
//!   `OggReader`.
//! - [`FilePlayer`]: sends them on published tracks
//!   ([`crate::Client::publish_video_h264`],
//!   [`crate::Client::publish_audio_opus`]) in real time, H.264 packetized by
//!   webrtc-rs's `H264Payloader`.
//!
//! **Timing.** Both files share one media timeline that starts at 0. Video
//! frame `i` is at `i / fps`. An Opus packet is at
//! `(position - pre_skip) / 48000`, `position` being its first sample in the
//! Ogg stream (the previous page's granule position): decoders drop the
//! pre-skip, so that is where its audio is heard. RTP timestamps are a
//! random base plus that media time in the codec's clock (90 kHz, 48 kHz),
//! and each frame or packet is sent when one shared clock reaches its media
//! time.
//!
//! **Sender reports.** webrtc-rs's sender reports map the instant a frame's
//! first packet went out (NTP) to that frame's RTP timestamp, extrapolated
//! to the report's time. Since both tracks are paced by the same clock,
//! both reports give the same NTP time for the same media time, to within
//! the pacing jitter ([`PlaybackStats::max_lateness`]). A receiver that
//! aligns tracks by sender reports (as the server's recorder does) thus sees
//! audio and video exactly as aligned as they are in the files.
//!
//! The sources are parsed once and cheap to clone (shared frames), so a
//! load harness can publish one file from many clients.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rtc::media::io::h26x_reader::{H26xNAL, H26xReader};
use rtc::media::io::ogg_reader::OggReader;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::shared::error::{Error as RtcError, IoError};
use tokio::time::Instant;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::local_track::LocalTrack;

/// Payload bytes per RTP packet: larger NAL units are split into FU-A
/// fragments.
pub const RTP_PAYLOAD_MTU: usize = 1200;
/// The RTP clock of video.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// The RTP clock of Opus (and the unit of Ogg Opus granule positions).
pub const OPUS_CLOCK_RATE: u32 = 48_000;
/// The longest Opus packet (RFC 6716): 120 ms.
const MAX_OPUS_PACKET_SAMPLES: u64 = 5_760;
/// How far ahead of the first send the shared clock starts.
const START_LEAD: Duration = Duration::from_millis(20);
const READ_BUFFER: usize = 64 * 1024;
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// One H.264 access unit (a frame and the parameter sets before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Frame {
    /// The NAL units, Annex B (each after a 4-byte start code). Access unit
    /// delimiters, filler data and SEI are left out.
    pub data: Bytes,
    /// Contains an IDR slice.
    pub keyframe: bool,
}

/// An H.264 elementary stream (Annex B), split into frames.
#[derive(Debug, Clone)]
pub struct H264FileSource {
    frames: Arc<[H264Frame]>,
    fps: u32,
}

impl H264FileSource {
    /// Reads the stream in `path`, whose frames are `fps` apart.
    pub fn open(path: impl AsRef<Path>, fps: u32) -> Result<Self> {
        Self::from_reader(BufReader::new(File::open(path)?), fps)
    }

    /// Reads an Annex B stream from `reader`. A frame starts at an access
    /// unit delimiter, SPS, PPS or SEI, or at a slice with
    /// `first_mb_in_slice == 0`, after a frame's slices (H.264 7.4.1.2.3).
    pub fn from_reader(reader: impl Read, fps: u32) -> Result<Self> {
        if fps == 0 {
            return Err(Error::InvalidArgument("fps must be at least 1".to_string()));
        }
        let mut nals = H26xReader::new(reader, READ_BUFFER, false);
        let mut frames = Vec::new();
        let mut unit = AccessUnit::default();
        loop {
            let nal = match nals.next_nal() {
                Ok(H26xNAL::H264(nal)) => nal,
                Ok(_) => return Err(Error::InvalidArgument("not an H.264 stream".to_string())),
                Err(RtcError::ErrIoEOF) => break,
                Err(e) => return Err(e.into()),
            };
            let Some(&header) = nal.data.first() else {
                continue;
            };
            let nal_type = header & 0x1f;
            let slice = matches!(nal_type, 1 | 5);
            // first_mb_in_slice is ue(v): 0 is the single bit `1`.
            let first_slice = slice && nal.data.get(1).is_some_and(|b| b & 0x80 != 0);
            let starts_unit = matches!(nal_type, 6..=9 | 14..=18) || first_slice;
            if unit.has_slice && starts_unit {
                frames.push(unit.finish());
            }
            // Delimiters and filler carry nothing a receiver needs.
            if matches!(nal_type, 9 | 12) {
                continue;
            }
            unit.data.put_slice(&START_CODE);
            unit.data.put_slice(&nal.data);
            unit.has_slice |= slice;
            unit.keyframe |= nal_type == 5;
        }
        if unit.has_slice {
            frames.push(unit.finish());
        }
        if frames.is_empty() {
            return Err(Error::InvalidArgument(
                "no H.264 frame in the stream".to_string(),
            ));
        }
        Ok(Self {
            frames: frames.into(),
            fps,
        })
    }

    pub fn frames(&self) -> &[H264Frame] {
        &self.frames
    }

    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// Frames × frame interval.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.frame_time_us(self.frames.len() as u64))
    }

    /// Media time of frame `index`, in µs.
    pub fn frame_time_us(&self, index: u64) -> u64 {
        index * 1_000_000 / u64::from(self.fps)
    }

    /// RTP ticks (90 kHz) from frame 0 to frame `index`.
    pub fn frame_ticks(&self, index: u64) -> u64 {
        index * u64::from(VIDEO_CLOCK_RATE) / u64::from(self.fps)
    }
}

#[derive(Default)]
struct AccessUnit {
    data: BytesMut,
    has_slice: bool,
    keyframe: bool,
}

impl AccessUnit {
    fn finish(&mut self) -> H264Frame {
        let unit = std::mem::take(self);
        H264Frame {
            data: unit.data.freeze(),
            keyframe: unit.keyframe,
        }
    }
}

/// One Opus packet of an Ogg file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    pub data: Bytes,
    /// Its first sample (48 kHz) in the Ogg stream, pre-skip included: the
    /// previous page's granule position.
    pub position: u64,
    /// Samples it adds to the stream (the granule step; the last packet's
    /// may be trimmed).
    pub samples: u64,
}

/// An Ogg Opus file, one packet per page.
#[derive(Debug, Clone)]
pub struct OggOpusSource {
    packets: Arc<[OpusPacket]>,
    pre_skip: u64,
    /// The last granule position.
    end: u64,
}

impl OggOpusSource {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_reader(BufReader::new(File::open(path)?))
    }

    /// Reads an Ogg Opus stream. A page must hold exactly one packet (a
    /// page of more than 120 ms holds several and is refused; make the file
    /// with ffmpeg's `-page_duration 20000`).
    pub fn from_reader(reader: impl Read) -> Result<Self> {
        let (mut ogg, header) = OggReader::new(reader, true)?;
        let mut packets = Vec::new();
        let mut position = 0u64;
        loop {
            let (payload, page) = match ogg.parse_next_page() {
                Ok(next) => next,
                Err(RtcError::Io(IoError(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break
                }
                Err(e) => return Err(e.into()),
            };
            if payload.is_empty() || page.opus_header_type(&payload).is_some() {
                continue;
            }
            let granule = page.granule_position;
            if granule == u64::MAX {
                return Err(Error::InvalidArgument(
                    "an Opus packet spans Ogg pages: write one packet per page".to_string(),
                ));
            }
            let samples = granule.saturating_sub(position);
            if samples > MAX_OPUS_PACKET_SAMPLES {
                return Err(Error::InvalidArgument(format!(
                    "an Ogg page holds {samples} samples, more than one Opus packet: \
                     write one packet per page (ffmpeg -page_duration 20000)"
                )));
            }
            packets.push(OpusPacket {
                data: payload.freeze(),
                position,
                samples,
            });
            position = position.max(granule);
            if page.is_end_of_stream() {
                break;
            }
        }
        if packets.is_empty() {
            return Err(Error::InvalidArgument(
                "no Opus packet in the Ogg stream".to_string(),
            ));
        }
        Ok(Self {
            packets: packets.into(),
            pre_skip: u64::from(header.pre_skip),
            end: position,
        })
    }

    pub fn packets(&self) -> &[OpusPacket] {
        &self.packets
    }

    /// Samples the decoder drops at the start (OpusHead pre-skip).
    pub fn pre_skip(&self) -> u64 {
        self.pre_skip
    }

    /// The audible length: the last granule position minus the pre-skip.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(samples_to_us(self.end.saturating_sub(self.pre_skip) as i64) as u64)
    }

    /// Media time of `packet` in µs (negative for the pre-skip).
    pub fn packet_time_us(&self, packet: &OpusPacket) -> i64 {
        samples_to_us(self.packet_ticks(packet))
    }

    /// RTP ticks (48 kHz) from media time 0 to `packet`.
    pub fn packet_ticks(&self, packet: &OpusPacket) -> i64 {
        packet.position as i64 - self.pre_skip as i64
    }
}

fn samples_to_us(samples: i64) -> i64 {
    samples * 1_000_000 / i64::from(OPUS_CLOCK_RATE)
}

fn us_to_ticks(us: u64, rate: u32) -> u64 {
    (u128::from(us) * u128::from(rate) / 1_000_000) as u64
}

/// What a [`FilePlayer`] sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaybackStats {
    pub video_frames: u64,
    pub video_packets: u64,
    pub audio_packets: u64,
    /// RTP timestamp of video media time 0 (the first frame).
    pub video_rtp_base: u32,
    /// RTP timestamp of audio media time 0 (the first packet's is this
    /// minus the pre-skip).
    pub audio_rtp_base: u32,
    /// Keyframe requests (PLI/FIR) received: a file cannot answer them;
    /// its next IDR comes within its GOP.
    pub keyframe_requests: u64,
    /// The latest any frame or packet went out after its time.
    pub max_lateness: Duration,
}

/// Plays an H.264 file and/or an Ogg Opus file on published tracks, in
/// real time, aligned as in the files (see the module docs).
#[derive(Debug, Clone)]
pub struct FilePlayer {
    video: Option<(LocalTrack, H264FileSource)>,
    audio: Option<(LocalTrack, OggOpusSource)>,
    loops: u32,
}

impl Default for FilePlayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FilePlayer {
    /// Nothing to play yet, once.
    pub fn new() -> Self {
        Self {
            video: None,
            audio: None,
            loops: 1,
        }
    }

    /// Plays `source` on `track` (an H.264 track).
    pub fn video(mut self, track: LocalTrack, source: H264FileSource) -> Self {
        self.video = Some((track, source));
        self
    }

    /// Plays `source` on `track` (an Opus track).
    pub fn audio(mut self, track: LocalTrack, source: OggOpusSource) -> Self {
        self.audio = Some((track, source));
        self
    }

    /// Plays the files `loops` times (at least once). Each loop starts one
    /// [`FilePlayer::period`] after the previous one, timestamps going on.
    pub fn loops(mut self, loops: u32) -> Self {
        self.loops = loops.max(1);
        self
    }

    /// The length of one loop: the longer file's duration.
    pub fn period(&self) -> Duration {
        let video = self.video.as_ref().map(|(_, s)| s.duration());
        let audio = self.audio.as_ref().map(|(_, s)| s.duration());
        video.into_iter().chain(audio).max().unwrap_or_default()
    }

    /// Sends everything, each frame and packet at its media time; returns
    /// when the last one is sent.
    pub async fn play(self) -> Result<PlaybackStats> {
        for (track, codec) in [
            (self.video.as_ref().map(|(t, _)| t), Codec::H264),
            (self.audio.as_ref().map(|(t, _)| t), Codec::Opus),
        ] {
            if let Some(track) = track.filter(|t| t.codec() != codec) {
                return Err(Error::InvalidArgument(format!(
                    "a {} file needs a {} track, not {}",
                    codec.name(),
                    codec.name(),
                    track.codec().name()
                )));
            }
        }
        let period_us = self.period().as_micros() as u64;
        let mut video = self.video.map(|(track, source)| VideoCursor {
            base: rand::random(),
            payloader: H264Payloader::default(),
            track,
            source,
            next: 0,
        });
        let mut audio = self.audio.map(|(track, source)| AudioCursor {
            base: rand::random(),
            track,
            source,
            next: 0,
        });
        let mut stats = PlaybackStats {
            video_rtp_base: video.as_ref().map_or(0, |v| v.base),
            audio_rtp_base: audio.as_ref().map_or(0, |a| a.base),
            ..PlaybackStats::default()
        };
        // Media time 0, late enough for the pre-skip's negative times.
        let earliest_us = audio
            .as_ref()
            .map_or(0, |a| samples_to_us(a.source.pre_skip as i64));
        let origin = Instant::now() + START_LEAD + Duration::from_micros(earliest_us as u64);
        let loops = u64::from(self.loops);
        loop {
            let video_due = video.as_ref().and_then(|v| v.due_us(period_us, loops));
            let audio_due = audio.as_ref().and_then(|a| a.due_us(period_us, loops));
            let (due_us, is_video) = match (video_due, audio_due) {
                (Some(v), Some(a)) if a < v => (a, false),
                (Some(v), _) => (v, true),
                (None, Some(a)) => (a, false),
                (None, None) => break,
            };
            let due = if due_us >= 0 {
                origin + Duration::from_micros(due_us as u64)
            } else {
                origin - Duration::from_micros(due_us.unsigned_abs())
            };
            tokio::time::sleep_until(due).await;
            stats.max_lateness = stats
                .max_lateness
                .max(Instant::now().saturating_duration_since(due));
            if is_video {
                if let Some(v) = video.as_mut() {
                    if v.track.take_keyframe_request() {
                        stats.keyframe_requests += 1;
                    }
                    stats.video_packets += v.send_next(period_us).await?;
                    stats.video_frames += 1;
                }
            } else if let Some(a) = audio.as_mut() {
                a.send_next(period_us).await?;
                stats.audio_packets += 1;
            }
        }
        Ok(stats)
    }
}

struct VideoCursor {
    track: LocalTrack,
    source: H264FileSource,
    payloader: H264Payloader,
    base: u32,
    /// Frames sent, over all loops.
    next: u64,
}

impl VideoCursor {
    /// (loop, frame index in the file) of the next frame.
    fn position(&self) -> (u64, usize) {
        let len = self.source.frames.len() as u64;
        (self.next / len, (self.next % len) as usize)
    }

    fn due_us(&self, period_us: u64, loops: u64) -> Option<i64> {
        let (round, index) = self.position();
        (round < loops)
            .then(|| (round * period_us + self.source.frame_time_us(index as u64)) as i64)
    }

    /// Sends the next frame; returns its packet count.
    async fn send_next(&mut self, period_us: u64) -> Result<u64> {
        let (round, index) = self.position();
        self.next += 1;
        let ticks = us_to_ticks(round * period_us, VIDEO_CLOCK_RATE)
            + self.source.frame_ticks(index as u64);
        let timestamp = self.base.wrapping_add(ticks as u32);
        let Some(frame) = self.source.frames.get(index) else {
            return Ok(0);
        };
        let payloads = self.payloader.payload(RTP_PAYLOAD_MTU, &frame.data)?;
        let count = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            self.track
                .write_rtp(i + 1 == count, timestamp, payload)
                .await?;
        }
        Ok(count as u64)
    }
}

struct AudioCursor {
    track: LocalTrack,
    source: OggOpusSource,
    base: u32,
    /// Packets sent, over all loops.
    next: u64,
}

impl AudioCursor {
    fn position(&self) -> (u64, usize) {
        let len = self.source.packets.len() as u64;
        (self.next / len, (self.next % len) as usize)
    }

    fn due_us(&self, period_us: u64, loops: u64) -> Option<i64> {
        let (round, index) = self.position();
        let packet = self.source.packets.get(index)?;
        (round < loops).then(|| (round * period_us) as i64 + self.source.packet_time_us(packet))
    }

    async fn send_next(&mut self, period_us: u64) -> Result<()> {
        let (round, index) = self.position();
        self.next += 1;
        let Some(packet) = self.source.packets.get(index) else {
            return Ok(());
        };
        let ticks = us_to_ticks(round * period_us, OPUS_CLOCK_RATE) as i64
            + self.source.packet_ticks(packet);
        // Two's complement: a negative offset wraps below the base.
        let timestamp = self.base.wrapping_add(ticks as u32);
        // The marker starts a talkspurt (RFC 7587): the first packet.
        let marker = self.next == 1;
        self.track
            .write_rtp(marker, timestamp, packet.data.clone())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
