//! Codec configuration → MP4 sample entry (`avc1`+`avcC`, `vp08`/`vp09`+`vpcC`,
//! `av01`+`av1C`, `Opus`+`dOps`), its RFC 6381 codec string and picture size,
//! all built by `shiguredo_mp4` from the parameter sets seen in band
//! (recording.md "Container facts").

use shiguredo_mp4::bitstream::{av1, h264, opus, vp8, vp9};
use shiguredo_mp4::boxes::SampleEntry;
use shiguredo_mp4::codec_string;

use crate::depacketize::CodecConfig;

/// A track's sample entry with what the playlists and callbacks need.
#[derive(Debug, Clone)]
pub struct TrackFormat {
    /// The MP4 sample entry.
    pub entry: SampleEntry,
    /// RFC 6381 codec string (e.g. `avc1.42c01f`, `opus`).
    pub codec_string: String,
    /// Picture size for video, (0, 0) for audio.
    pub size: (u16, u16),
}

/// Why a configuration does not make a sample entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable codec configuration: {0}")]
pub struct FormatError(pub String);

fn err(e: impl std::fmt::Display) -> FormatError {
    FormatError(e.to_string())
}

impl TrackFormat {
    /// The Opus sample entry (`channels` 1 or 2, pre-skip 0: WebRTC streams
    /// start mid-stream).
    pub fn opus(channels: u8) -> Self {
        let channel_count = if channels >= 2 {
            opus::ChannelCount::Stereo
        } else {
            opus::ChannelCount::Mono
        };
        let entry = SampleEntry::Opus(opus::build_opus_box(&opus::OpusSampleEntryConfig {
            channel_count,
            pre_skip: 0,
            input_sample_rate: 48_000,
            output_gain: 0,
        }));
        Self {
            entry,
            codec_string: "opus".to_owned(),
            size: (0, 0),
        }
    }

    /// The video sample entry for an in-band configuration.
    pub fn video(config: &CodecConfig) -> Result<Self, FormatError> {
        let entry = match config {
            CodecConfig::H264 { sps, pps } => SampleEntry::Avc1(
                h264::build_avc1_box(
                    std::slice::from_ref(sps),
                    std::slice::from_ref(pps),
                    &h264::H264SampleEntryConfig {
                        length_size: h264::LengthSize::FourBytes,
                    },
                )
                .map_err(err)?,
            ),
            CodecConfig::Vp8 { width, height } => {
                SampleEntry::Vp08(vp8::build_vp08_box(&vp8::Vp8SampleEntryConfig {
                    video_full_range_flag: false,
                    colour_primaries: vp8::Vp8SampleEntryConfig::COLOUR_PRIMARIES_BT601,
                    transfer_characteristics:
                        vp8::Vp8SampleEntryConfig::TRANSFER_CHARACTERISTICS_BT601,
                    matrix_coefficients: vp8::Vp8SampleEntryConfig::MATRIX_COEFFICIENTS_BT601,
                    width: *width,
                    height: *height,
                }))
            }
            CodecConfig::Vp9 { header } => {
                let (width, height) = match header.frame_size {
                    vp9::Vp9FrameSize::Resolved { width, height } => (
                        u16::try_from(width).map_err(err)?,
                        u16::try_from(height).map_err(err)?,
                    ),
                    _ => return Err(FormatError("VP9 keyframe without size".into())),
                };
                SampleEntry::Vp09(
                    vp9::build_vp09_box(
                        header,
                        &vp9::Vp9SampleEntryConfig {
                            level: vp9::Vp9SampleEntryConfig::LEVEL_UNDEFINED,
                            colour_primaries: vp9::Vp9SampleEntryConfig::COLOUR_PRIMARIES_BT601,
                            transfer_characteristics:
                                vp9::Vp9SampleEntryConfig::TRANSFER_CHARACTERISTICS_BT601,
                            matrix_coefficients:
                                vp9::Vp9SampleEntryConfig::MATRIX_COEFFICIENTS_BT601,
                            width,
                            height,
                        },
                    )
                    .map_err(err)?,
                )
            }
            CodecConfig::Av1 { sequence_header } => SampleEntry::Av01(
                av1::build_av01_box_from_config_obus(
                    sequence_header,
                    &av1::Av1SampleEntryConfig {
                        initial_presentation_delay_minus_one: None,
                    },
                )
                .map_err(err)?,
            ),
        };
        let size = match &entry {
            SampleEntry::Avc1(b) => (b.visual.width, b.visual.height),
            SampleEntry::Vp08(b) => (b.visual.width, b.visual.height),
            SampleEntry::Vp09(b) => (b.visual.width, b.visual.height),
            SampleEntry::Av01(b) => (b.visual.width, b.visual.height),
            _ => (0, 0),
        };
        let codec_string = codec_string::from_sample_entry(&entry).map_err(err)?;
        Ok(Self {
            entry,
            codec_string,
            size,
        })
    }
}
