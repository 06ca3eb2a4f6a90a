//! RTP payload → media frames, one module per payload format.
//!
//! Each depacketizer collects the payloads of one frame (all packets with one
//! RTP timestamp, in sequence order) and turns them into a sample in its MP4
//! form. Sequence gaps, reordering and keyframe waiting are handled around
//! them by [`crate::assembler::FrameAssembler`].
//!
//! Why not webrtc-rs's `rtc-rtp` depacketizers (already in the tree): its
//! H.264 STAP-A reader indexes past the end of a malformed packet (a panic on
//! network input), FU-A fragments are not reset by a start bit, and it gives
//! neither parameter sets, keyframe flags nor AV1 sequence headers. These are
//! small; the codec bitstream parsing (SPS, VP9 header, AV1 sequence header)
//! is `shiguredo_mp4`'s.

pub mod av1;
pub mod h264;
pub mod opus;
pub mod vp8;
pub mod vp9;

use shiguredo_mp4::bitstream::vp9::Vp9FrameHeader;

/// The codecs the recorder takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus audio (48 kHz).
    Opus,
    /// H.264 video.
    H264,
    /// VP8 video.
    Vp8,
    /// VP9 video.
    Vp9,
    /// AV1 video.
    Av1,
}

impl Codec {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 90_000,
        }
    }

    /// Whether this is a video codec.
    pub fn is_video(self) -> bool {
        self != Codec::Opus
    }
}

/// Decoder configuration found in band (on keyframes).
#[derive(Debug, Clone, PartialEq)]
pub enum CodecConfig {
    /// H.264 sequence and picture parameter sets (NAL units, no start code).
    H264 {
        /// Sequence parameter set.
        sps: Vec<u8>,
        /// Picture parameter set.
        pps: Vec<u8>,
    },
    /// VP8 keyframe size.
    Vp8 {
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// VP9 keyframe uncompressed header.
    Vp9 {
        /// The parsed header (profile, bit depth, colour, size).
        header: Box<Vp9FrameHeader>,
    },
    /// AV1 sequence header OBU (with its size field).
    Av1 {
        /// The OBU bytes.
        sequence_header: Vec<u8>,
    },
}

/// Why a payload could not be depacketized. Never fatal: the frame is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepacketizeError {
    /// A length points past the end of the payload.
    #[error("truncated payload")]
    Truncated,
    /// A continuation without the start of its frame or fragment.
    #[error("continuation without start")]
    MissingStart,
    /// A frame ended inside a fragment.
    #[error("frame ended inside a fragment")]
    MissingEnd,
    /// Nothing to record in the frame.
    #[error("empty frame")]
    Empty,
    /// A keyframe whose header does not parse.
    #[error("malformed keyframe header")]
    BadKeyframe,
    /// A payload type of the format that is not supported (e.g. H.264 FU-B).
    #[error("unsupported payload structure {0}")]
    Unsupported(u8),
}

/// A complete frame in MP4 sample form.
#[derive(Debug, Clone, PartialEq)]
pub struct AssembledFrame {
    /// Sample bytes.
    pub data: Vec<u8>,
    /// Whether the frame decodes on its own.
    pub keyframe: bool,
    /// Configuration carried by this frame, if any.
    pub config: Option<CodecConfig>,
}

/// One depacketizer per codec behind one type.
#[derive(Debug)]
pub enum Depacketizer {
    /// Opus: one packet, one frame.
    Opus(Vec<u8>),
    /// H.264.
    H264(h264::H264Depacketizer),
    /// VP8.
    Vp8(vp8::Vp8Depacketizer),
    /// VP9.
    Vp9(vp9::Vp9Depacketizer),
    /// AV1.
    Av1(av1::Av1Depacketizer),
}

impl Depacketizer {
    /// A depacketizer for `codec`.
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Opus => Depacketizer::Opus(Vec::new()),
            Codec::H264 => Depacketizer::H264(Default::default()),
            Codec::Vp8 => Depacketizer::Vp8(Default::default()),
            Codec::Vp9 => Depacketizer::Vp9(Default::default()),
            Codec::Av1 => Depacketizer::Av1(Default::default()),
        }
    }

    /// Adds one payload of the current frame.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), DepacketizeError> {
        match self {
            Depacketizer::Opus(buf) => {
                if opus::packet_duration(payload).is_none() {
                    return Err(DepacketizeError::Truncated);
                }
                *buf = payload.to_vec();
                Ok(())
            }
            Depacketizer::H264(d) => d.push(payload),
            Depacketizer::Vp8(d) => d.push(payload),
            Depacketizer::Vp9(d) => d.push(payload),
            Depacketizer::Av1(d) => d.push(payload),
        }
    }

    /// Ends the current frame.
    pub fn finish(&mut self) -> Result<AssembledFrame, DepacketizeError> {
        match self {
            Depacketizer::Opus(buf) => {
                let data = std::mem::take(buf);
                if data.is_empty() {
                    return Err(DepacketizeError::Empty);
                }
                Ok(AssembledFrame {
                    data,
                    keyframe: true,
                    config: None,
                })
            }
            Depacketizer::H264(d) => d.finish(),
            Depacketizer::Vp8(d) => d.finish(),
            Depacketizer::Vp9(d) => d.finish(),
            Depacketizer::Av1(d) => d.finish(),
        }
    }

    /// Forgets a partial frame.
    pub fn reset(&mut self) {
        match self {
            Depacketizer::Opus(buf) => buf.clear(),
            Depacketizer::H264(d) => d.reset(),
            Depacketizer::Vp8(d) => d.reset(),
            Depacketizer::Vp9(d) => d.reset(),
            Depacketizer::Av1(d) => d.reset(),
        }
    }
}
