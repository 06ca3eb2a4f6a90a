//! The RTP header of a forwarded packet as Weir's own egress writes it:
//! the subscriber's payload type, sequence number, timestamp and SSRC,
//! and the header extensions that describe the media (RFC 8285 one-byte
//! form) with the ids the subscriber negotiated for that m-line.
//!
//! Written: `mid` (the subscriber's m-line), and from the publisher's
//! packet the audio level with voice activity, video orientation, video
//! content type, playout delay and absolute capture time. Transport
//! extensions (TWCC, abs-send-time, rid) are the connection's own and are
//! not forwarded. An extension negotiated with an id above 14 (which only
//! the two-byte form can carry) is left out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use str0m::media::Frequency;
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues};

/// The one-byte form's ids are 1..=14.
const MAX_ONE_BYTE_ID: u8 = 14;
/// The one-byte form's values are 1..=16 bytes.
const MAX_ONE_BYTE_LEN: usize = 16;

/// The longest header [`write_header`] writes: the fixed 12 bytes, the
/// extension block's 4, and every element at its longest (mid 1 + 16,
/// audio level 2, orientation 2, content type 2, playout delay 4, capture
/// time 1 + 16 = 44 bytes, a whole number of words).
pub const MAX_HEADER_LEN: usize = 12 + 4 + 44;

/// The ids one subscriber m-line negotiated for the extensions Weir
/// writes (`None`: not negotiated, or not writable in the one-byte form).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionIds {
    pub mid: Option<u8>,
    pub audio_level: Option<u8>,
    pub video_orientation: Option<u8>,
    pub video_content_type: Option<u8>,
    pub playout_delay: Option<u8>,
    pub abs_capture_time: Option<u8>,
}

impl ExtensionIds {
    /// The ids of `map` (the subscriber's m-line: `Media::remote_extmap`).
    pub fn from_map(map: &ExtensionMap) -> ExtensionIds {
        let id = |extension| {
            map.id_of(extension)
                .filter(|id| (1..=MAX_ONE_BYTE_ID).contains(id))
        };
        ExtensionIds {
            mid: id(Extension::RtpMid),
            audio_level: id(Extension::AudioLevel),
            video_orientation: id(Extension::VideoOrientation),
            video_content_type: id(Extension::VideoContentType),
            playout_delay: id(Extension::PlayoutDelay),
            abs_capture_time: id(Extension::AbsoluteCaptureTime),
        }
    }
}

/// The fixed fields of a forwarded packet's header.
#[derive(Debug, Clone, Copy)]
pub struct HeaderFields {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// The header extensions Weir forwards, already in their one-byte wire
/// form. A publisher's video packet is kept for NACKs with them, so they
/// are as small as the elements (27 bytes instead of str0m's 192-byte
/// `ExtensionValues`: a third of a kept packet's entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaExtensions {
    /// Voice-activity bit and the level in -dBov.
    audio_level: Option<u8>,
    video_orientation: Option<u8>,
    video_content_type: Option<u8>,
    /// Minimum and maximum delay, 12 bits each in 10 ms units.
    playout_delay: Option<[u8; 3]>,
    /// 64-bit NTP capture time, then the clock offset if given.
    abs_capture_time: [u8; 16],
    /// Bytes of `abs_capture_time` in use: 0 (none), 8 or 16.
    abs_capture_time_len: u8,
}

impl MediaExtensions {
    /// The extensions of `values` that describe the media (the transport
    /// ones, such as TWCC, abs-send-time, mid and rid, are the subscriber
    /// connection's own).
    pub fn from_values(values: &ExtensionValues) -> MediaExtensions {
        let mut extensions = MediaExtensions {
            audio_level: values.audio_level.map(|level| {
                let voice = if values.voice_activity == Some(true) {
                    0x80
                } else {
                    0
                };
                voice | (level.unsigned_abs() & 0x7f)
            }),
            video_orientation: values.video_orientation.map(|o| o as u8),
            video_content_type: values.video_content_type,
            ..MediaExtensions::default()
        };
        if let (Some(min), Some(max)) = (values.play_delay_min, values.play_delay_max) {
            let min = (min.rebase(Frequency::HUNDREDTHS).numer() as u32).min(0xfff);
            let max = (max.rebase(Frequency::HUNDREDTHS).numer() as u32).min(0xfff);
            let packed = ((min << 12) | max).to_be_bytes();
            extensions.playout_delay = Some([packed[1], packed[2], packed[3]]);
        }
        if let Some(capture) = &values.abs_capture_time {
            extensions.abs_capture_time[..8]
                .copy_from_slice(&ntp_64(capture.capture_time).to_be_bytes());
            extensions.abs_capture_time_len = match capture.clock_offset {
                Some(offset) => {
                    extensions.abs_capture_time[8..].copy_from_slice(&offset.to_be_bytes());
                    16
                }
                None => 8,
            };
        }
        extensions
    }
}

/// Appends the header to `out`: fixed fields, then the extensions that
/// have both an id and a value. `mid` is the subscriber's m-line id.
pub fn write_header(
    fields: HeaderFields,
    ids: &ExtensionIds,
    mid: Option<&str>,
    values: &MediaExtensions,
    out: &mut Vec<u8>,
) {
    // Built on the stack and appended once (no capacity check per byte).
    let mut header = [0u8; MAX_HEADER_LEN];
    header[0] = 0x80;
    header[1] = (fields.payload_type & 0x7f) | if fields.marker { 0x80 } else { 0 };
    header[2..4].copy_from_slice(&fields.seq.to_be_bytes());
    header[4..8].copy_from_slice(&fields.timestamp.to_be_bytes());
    header[8..12].copy_from_slice(&fields.ssrc.to_be_bytes());
    header[12..14].copy_from_slice(&[0xbe, 0xde]);

    const BLOCK: usize = 16;
    let mut len = BLOCK;
    let mut element = |id: Option<u8>, value: &[u8]| {
        let Some(id) = id else { return };
        // Every element fits: MAX_HEADER_LEN counts each at its longest,
        // and each is written at most once.
        if value.is_empty()
            || value.len() > MAX_ONE_BYTE_LEN
            || len + 1 + value.len() > header.len()
        {
            return;
        }
        header[len] = (id << 4) | (value.len() as u8 - 1);
        header[len + 1..len + 1 + value.len()].copy_from_slice(value);
        len += 1 + value.len();
    };
    if let Some(mid) = mid {
        element(ids.mid, mid.as_bytes());
    }
    if let Some(level) = values.audio_level {
        element(ids.audio_level, &[level]);
    }
    if let Some(orientation) = values.video_orientation {
        element(ids.video_orientation, &[orientation]);
    }
    if let Some(content_type) = values.video_content_type {
        element(ids.video_content_type, &[content_type]);
    }
    if let Some(delay) = &values.playout_delay {
        element(ids.playout_delay, delay);
    }
    let capture_len = usize::from(values.abs_capture_time_len).min(values.abs_capture_time.len());
    if capture_len > 0 {
        element(
            ids.abs_capture_time,
            &values.abs_capture_time[..capture_len],
        );
    }

    let written = len - BLOCK;
    if written == 0 {
        out.extend_from_slice(&header[..12]);
        return;
    }
    // Padded with zero bytes (already there) to whole 32-bit words.
    let words = written.div_ceil(4);
    header[14..16].copy_from_slice(&(words as u16).to_be_bytes());
    header[0] |= 0x10;
    out.extend_from_slice(&header[..BLOCK + 4 * words]);
}

/// `time` as a 64-bit NTP timestamp (seconds since 1900 in the upper 32
/// bits, the fraction in the lower; wraps in 2036 as NTP does).
fn ntp_64(time: SystemTime) -> u64 {
    const NTP_UNIX_OFFSET: Duration = Duration::from_secs(2_208_988_800);
    let since_1900 = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(NTP_UNIX_OFFSET);
    let seconds = since_1900.as_secs() as u32;
    let fraction = (u64::from(since_1900.subsec_nanos()) << 32) / 1_000_000_000;
    (u64::from(seconds) << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::srtp_seal::rtp_header_len;
    use str0m::media::MediaTime;
    use str0m::rtp::VideoOrientation;

    fn fields() -> HeaderFields {
        HeaderFields {
            payload_type: 96,
            marker: true,
            seq: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        }
    }

    #[test]
    fn without_extensions_the_header_is_the_fixed_twelve_bytes() {
        let mut out = vec![0xaa];
        write_header(
            fields(),
            &ExtensionIds::default(),
            Some("0"),
            &MediaExtensions::default(),
            &mut out,
        );
        assert_eq!(
            out,
            [0xaa, 0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]
        );
    }

    #[test]
    fn extensions_are_one_byte_elements_padded_to_words() {
        let ids = ExtensionIds {
            mid: Some(1),
            audio_level: Some(2),
            video_orientation: Some(3),
            playout_delay: Some(4),
            ..Default::default()
        };
        let values = ExtensionValues {
            audio_level: Some(-37),
            voice_activity: Some(true),
            video_orientation: Some(VideoOrientation::Deg90),
            play_delay_min: Some(MediaTime::from_millis(100)),
            play_delay_max: Some(MediaTime::from_millis(40_960)),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_header(
            fields(),
            &ids,
            Some("ab"),
            &MediaExtensions::from_values(&values),
            &mut out,
        );
        assert_eq!(out[0], 0x90, "X bit");
        assert_eq!(&out[12..16], &[0xbe, 0xde, 0, 3]);
        assert_eq!(
            &out[16..],
            &[
                0x11,
                b'a',
                b'b', // mid
                0x20,
                0x80 | 37, // audio level, voice
                0x30,
                3, // orientation
                0x42,
                0x00,
                0xaf,
                0xff, // playout delay 10 x 10 ms, max clamped
                0,    // padding
            ]
        );
        assert_eq!(rtp_header_len(&out), Ok(out.len()));
    }

    #[test]
    fn ids_beyond_the_one_byte_form_and_oversized_values_are_left_out() {
        let mut map = ExtensionMap::empty();
        map.set(15, Extension::AudioLevel);
        map.set(5, Extension::RtpMid);
        let ids = ExtensionIds::from_map(&map);
        assert_eq!(ids.audio_level, None);
        assert_eq!(ids.mid, Some(5));
        let mut out = Vec::new();
        let too_long = "m".repeat(17);
        write_header(
            fields(),
            &ids,
            Some(&too_long),
            &MediaExtensions::default(),
            &mut out,
        );
        assert_eq!(out.len(), 12, "nothing to write, no extension block");
    }

    #[test]
    fn the_longest_header_fits_max_header_len() {
        let ids = ExtensionIds {
            mid: Some(1),
            audio_level: Some(2),
            video_orientation: Some(3),
            video_content_type: Some(4),
            playout_delay: Some(5),
            abs_capture_time: Some(6),
        };
        let values = ExtensionValues {
            audio_level: Some(-1),
            voice_activity: Some(false),
            video_orientation: Some(VideoOrientation::Deg180),
            video_content_type: Some(1),
            play_delay_min: Some(MediaTime::from_millis(0)),
            play_delay_max: Some(MediaTime::from_millis(10)),
            abs_capture_time: Some(str0m::rtp::AbsCaptureTime {
                capture_time: UNIX_EPOCH,
                clock_offset: Some(-1),
            }),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_header(
            fields(),
            &ids,
            Some(&"m".repeat(16)),
            &MediaExtensions::from_values(&values),
            &mut out,
        );
        assert_eq!(out.len(), MAX_HEADER_LEN);
    }

    #[test]
    fn capture_time_without_offset_is_eight_bytes_and_the_kept_form_is_small() {
        let ids = ExtensionIds {
            abs_capture_time: Some(7),
            ..Default::default()
        };
        let values = ExtensionValues {
            abs_capture_time: Some(str0m::rtp::AbsCaptureTime {
                capture_time: UNIX_EPOCH + Duration::from_millis(500),
                clock_offset: None,
            }),
            // Transport extensions are the connection's own: not kept.
            transport_cc: Some(9),
            ..Default::default()
        };
        let kept = MediaExtensions::from_values(&values);
        let mut out = Vec::new();
        write_header(fields(), &ids, None, &kept, &mut out);
        assert_eq!(&out[12..16], &[0xbe, 0xde, 0, 3]);
        assert_eq!(out[16], 0x77, "id 7, 8 bytes");
        let ntp = (2_208_988_800u64 << 32) | (1 << 31);
        assert_eq!(&out[17..25], &ntp.to_be_bytes());
        assert_eq!(&out[25..], &[0, 0, 0], "padding");
        // Kept with every video packet for NACKs: no bigger than this.
        assert!(std::mem::size_of::<MediaExtensions>() <= 32);
    }

    #[test]
    fn ntp_time_of_the_unix_epoch_and_a_half_second() {
        assert_eq!(ntp_64(UNIX_EPOCH), 2_208_988_800u64 << 32);
        let half = UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(ntp_64(half), (2_208_988_800u64 << 32) | (1 << 31));
    }
}
