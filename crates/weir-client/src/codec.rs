//! The codecs the client sends, with the payload types and SDP parameters
//! it offers them with (one place for both the media engine and the tracks).

use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RtpCodecKind};
use weir_protocol::TrackKind;

/// Payload type of VP8 in the client's offers.
pub(crate) const VP8_PAYLOAD_TYPE: u8 = 96;
/// Payload type of VP8's RTX in the client's offers.
pub(crate) const VP8_RTX_PAYLOAD_TYPE: u8 = 97;
/// Payload type of H.264 in the client's offers.
pub(crate) const H264_PAYLOAD_TYPE: u8 = 102;
/// Payload type of H.264's RTX in the client's offers.
pub(crate) const H264_RTX_PAYLOAD_TYPE: u8 = 103;
/// Payload type of Opus in the client's offers.
pub(crate) const OPUS_PAYLOAD_TYPE: u8 = 111;

/// H.264 Constrained Baseline level 3.1, packetization mode 1 (FU-A and
/// STAP-A): what browsers offer first and what the server records.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// A codec a published track sends. A track offers only its own codec (and
/// its RTX), so the server cannot pick another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// VP8 (the synthetic video of [`crate::synthetic`]).
    Vp8,
    /// H.264 packetization mode 1, profile-level-id 42e01f (e.g. the
    /// files of [`crate::media_file`]).
    H264,
    /// Opus, 48 kHz.
    Opus,
}

impl Codec {
    /// What [`crate::Client::publish`] sends for `kind`: VP8 or Opus.
    pub fn default_for(kind: TrackKind) -> Codec {
        match kind {
            TrackKind::Video => Codec::Vp8,
            TrackKind::Audio => Codec::Opus,
        }
    }

    pub fn kind(self) -> TrackKind {
        match self {
            Codec::Vp8 | Codec::H264 => TrackKind::Video,
            Codec::Opus => TrackKind::Audio,
        }
    }

    /// The RTP payload type the client offers it with.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Vp8 => VP8_PAYLOAD_TYPE,
            Codec::H264 => H264_PAYLOAD_TYPE,
            Codec::Opus => OPUS_PAYLOAD_TYPE,
        }
    }

    /// The payload type of its RTX, if it has one.
    pub fn rtx_payload_type(self) -> Option<u8> {
        match self {
            Codec::Vp8 => Some(VP8_RTX_PAYLOAD_TYPE),
            Codec::H264 => Some(H264_RTX_PAYLOAD_TYPE),
            Codec::Opus => None,
        }
    }

    /// The name in SDP and in the protocol's `codecs` list.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Vp8 | Codec::H264 => 90_000,
            Codec::Opus => 48_000,
        }
    }

    pub(crate) fn rtc_kind(self) -> RtpCodecKind {
        match self.kind() {
            TrackKind::Video => RtpCodecKind::Video,
            TrackKind::Audio => RtpCodecKind::Audio,
        }
    }

    /// The codec as registered in the media engine and named by a track's
    /// encoding (the same fmtp, so webrtc-rs matches it exactly).
    pub(crate) fn rtp_codec(self) -> RTCRtpCodec {
        let feedback = |typ: &str, parameter: &str| RTCPFeedback {
            typ: typ.to_string(),
            parameter: parameter.to_string(),
        };
        let video_feedback = vec![
            feedback("ccm", "fir"),
            feedback("nack", ""),
            feedback("nack", "pli"),
        ];
        match self {
            Codec::Vp8 => RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_string(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: video_feedback,
            },
            Codec::H264 => RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_string(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: H264_FMTP.to_string(),
                rtcp_feedback: video_feedback,
            },
            Codec::Opus => RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_string(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_string(),
                rtcp_feedback: vec![],
            },
        }
    }

    /// Its RTX codec (`apt` = its payload type), if it has one.
    pub(crate) fn rtx_codec(self) -> Option<RTCRtpCodec> {
        self.rtx_payload_type()?;
        Some(RTCRtpCodec {
            mime_type: MIME_TYPE_RTX.to_string(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: format!("apt={}", self.payload_type()),
            rtcp_feedback: vec![],
        })
    }
}
