//! What a run does: how many rooms, publishers and subscribers, which
//! media at which rate, for how long. Pure data and arithmetic, no IO.

use std::fmt;
use std::time::Duration;

use weir_client::synthetic::{OpusConfig, Vp8Config, STAMP_LEN};

/// Largest payload of a video packet, as browsers packetize (an RTP packet
/// of ~1200 bytes on the wire once headers and the SRTP tag are added).
pub const MAX_VIDEO_PAYLOAD: usize = 1100;
/// A keyframe is this many times the size of a delta frame.
pub const KEYFRAME_SIZE_FACTOR: usize = 5;
/// Payload bytes of a synthetic Opus packet (~40 kbps at 50 packets/s).
pub const OPUS_PAYLOAD: usize = 100;
/// Milliseconds of audio per Opus packet: 50 packets per second.
pub const OPUS_PTIME_MS: u32 = 20;

/// Which tracks each publisher publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Audio,
    Video,
    /// Audio and video.
    Av,
}

impl Media {
    pub fn has_video(self) -> bool {
        matches!(self, Media::Video | Media::Av)
    }

    pub fn has_audio(self) -> bool {
        matches!(self, Media::Audio | Media::Av)
    }

    /// Tracks per publisher.
    pub fn tracks(self) -> usize {
        usize::from(self.has_video()) + usize::from(self.has_audio())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Media::Audio => "audio",
            Media::Video => "video",
            Media::Av => "av",
        }
    }
}

/// The synthetic video stream: frame sizes derived from a bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoProfile {
    pub fps: u32,
    /// A keyframe every this many frames.
    pub keyframe_interval: u32,
    /// Payload bytes of every packet.
    pub packet_size: usize,
    pub delta_packets: u16,
    pub keyframe_packets: u16,
}

impl VideoProfile {
    /// Frames whose average payload rate is `kbps`: a delta frame of `D`
    /// bytes and a keyframe of [`KEYFRAME_SIZE_FACTOR`]` * D` every
    /// `keyframe_interval` frames, cut into equal packets of at most
    /// [`MAX_VIDEO_PAYLOAD`] bytes (as libwebrtc splits a frame evenly).
    pub fn from_bitrate(kbps: u32, fps: u32, keyframe_interval: u32) -> VideoProfile {
        let fps = fps.max(1);
        let interval = keyframe_interval.max(1) as usize;
        let frame_bytes = (u64::from(kbps) * 1000 / 8 / u64::from(fps)) as usize;
        let delta_bytes = frame_bytes * interval / (interval - 1 + KEYFRAME_SIZE_FACTOR);
        let min_packet = STAMP_LEN + 16;
        let delta_packets = delta_bytes.div_ceil(MAX_VIDEO_PAYLOAD).max(1);
        let packet_size = delta_bytes
            .div_ceil(delta_packets)
            .clamp(min_packet, MAX_VIDEO_PAYLOAD);
        let keyframe_bytes = delta_bytes * KEYFRAME_SIZE_FACTOR;
        let keyframe_packets = keyframe_bytes
            .div_ceil(packet_size)
            .max(delta_packets)
            .min(usize::from(u16::MAX));
        VideoProfile {
            fps,
            keyframe_interval: keyframe_interval.max(1),
            packet_size,
            delta_packets: delta_packets.min(usize::from(u16::MAX)) as u16,
            keyframe_packets: keyframe_packets as u16,
        }
    }

    /// Video packets per second on average (keyframes included).
    pub fn packets_per_second(&self) -> f64 {
        let interval = f64::from(self.keyframe_interval);
        let per_gop =
            f64::from(self.keyframe_packets) + f64::from(self.delta_packets) * (interval - 1.0);
        per_gop * f64::from(self.fps) / interval
    }

    /// Payload bitrate on average, in kbit/s.
    pub fn payload_kbps(&self) -> f64 {
        self.packets_per_second() * self.packet_size as f64 * 8.0 / 1000.0
    }

    /// The synthetic source's settings (720p dimensions in keyframes).
    pub fn vp8_config(&self) -> Vp8Config {
        Vp8Config {
            fps: self.fps,
            packet_size: self.packet_size,
            keyframe_packets: self.keyframe_packets,
            delta_packets: self.delta_packets,
            keyframe_interval: self.keyframe_interval,
            width: 1280,
            height: 720,
        }
    }
}

/// Settings of the synthetic audio stream.
pub fn opus_config() -> OpusConfig {
    OpusConfig {
        packet_size: OPUS_PAYLOAD,
        ptime_ms: OPUS_PTIME_MS,
    }
}

/// Audio packets per second of one publisher.
pub fn audio_packets_per_second() -> f64 {
    1000.0 / f64::from(OPUS_PTIME_MS)
}

/// One load scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub rooms: u32,
    /// Publishers per room.
    pub publishers: u32,
    /// Subscribers per room (each subscribes to every publisher track).
    pub subscribers: u32,
    pub media: Media,
    pub video_kbps: u32,
    pub video: VideoProfile,
    /// How long publishers send once everyone is subscribed.
    pub duration: Duration,
    /// Clients join spread over this time.
    pub ramp: Duration,
    /// After sending, how long to keep receiving what is still in flight.
    pub drain: Duration,
    /// Record every room during the run.
    pub record: bool,
    /// Room names are `{room_prefix}-{n}`.
    pub room_prefix: String,
}

impl Scenario {
    pub fn room_name(&self, room: u32) -> String {
        format!("{}-{}", self.room_prefix, room + 1)
    }

    pub fn clients(&self) -> u64 {
        u64::from(self.rooms) * (u64::from(self.publishers) + u64::from(self.subscribers))
    }

    /// Video tracks the subscribers are subscribed to, all rooms together.
    pub fn subscribed_video_tracks(&self) -> u64 {
        if !self.media.has_video() {
            return 0;
        }
        u64::from(self.rooms) * u64::from(self.publishers) * u64::from(self.subscribers)
    }

    /// Packets per second all publishers send, by the profile.
    pub fn nominal_sent_pps(&self) -> f64 {
        let mut per_publisher = 0.0;
        if self.media.has_video() {
            per_publisher += self.video.packets_per_second();
        }
        if self.media.has_audio() {
            per_publisher += audio_packets_per_second();
        }
        per_publisher * f64::from(self.publishers) * f64::from(self.rooms)
    }

    /// Packets per second the server should forward, by the profile.
    pub fn nominal_forwarded_pps(&self) -> f64 {
        self.nominal_sent_pps() * f64::from(self.subscribers)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} room(s) x {} publisher(s) -> {} subscriber(s), {}",
            self.rooms,
            self.publishers,
            self.subscribers,
            self.media.as_str()
        )?;
        if self.media.has_video() {
            write!(
                f,
                " {} kbps {} fps keyframe/{}",
                self.video_kbps, self.video.fps, self.video.keyframe_interval
            )?;
        }
        write!(f, ", {} s", self.duration.as_secs_f64())?;
        if self.record {
            write!(f, ", recorded")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_720p_like_profile_matches_its_bitrate() {
        let profile = VideoProfile::from_bitrate(1500, 30, 60);
        assert!(profile.packet_size <= MAX_VIDEO_PAYLOAD);
        assert_eq!(profile.delta_packets, 6);
        assert!(profile.keyframe_packets >= 5 * profile.delta_packets - 1);
        let kbps = profile.payload_kbps();
        assert!((1450.0..=1550.0).contains(&kbps), "{kbps} kbps");
    }

    #[test]
    fn tiny_bitrates_still_make_valid_packets() {
        let profile = VideoProfile::from_bitrate(8, 60, 1);
        assert!(profile.packet_size >= STAMP_LEN + 16);
        assert!(profile.delta_packets >= 1 && profile.keyframe_packets >= 1);
        let huge = VideoProfile::from_bitrate(50_000, 1, 1000);
        assert!(huge.packet_size <= MAX_VIDEO_PAYLOAD);
        assert!(huge.keyframe_packets >= huge.delta_packets);
    }

    #[test]
    fn nominal_rates_count_every_track() {
        let scenario = Scenario {
            rooms: 2,
            publishers: 3,
            subscribers: 4,
            media: Media::Audio,
            video_kbps: 1500,
            video: VideoProfile::from_bitrate(1500, 30, 60),
            duration: Duration::from_secs(1),
            ramp: Duration::ZERO,
            drain: Duration::from_secs(1),
            record: false,
            room_prefix: "t".to_string(),
        };
        assert_eq!(scenario.nominal_sent_pps(), 300.0);
        assert_eq!(scenario.nominal_forwarded_pps(), 1200.0);
        assert_eq!(scenario.clients(), 14);
        assert_eq!(scenario.room_name(0), "t-1");
    }
}
