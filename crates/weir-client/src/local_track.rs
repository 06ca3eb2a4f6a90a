//! A published track: write RTP (or synthetic frames) to it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use weir_protocol::{TrackId, TrackKind, TrackSource};

use crate::codec::Codec;
use crate::error::Result;
use crate::keyframe_interceptor::is_keyframe_request;
use crate::synthetic::{now_us, OpusSource, SyntheticPacket, Vp8Source};

/// Keyframe requests (PLI/FIR) the server sent about one of our tracks.
#[derive(Debug, Default)]
pub(crate) struct Feedback {
    keyframe_requested: AtomicBool,
    keyframe_requests: AtomicU64,
}

/// The webrtc-rs side of a track before it is published.
pub(crate) struct NewTrack {
    pub kind: TrackKind,
    pub codec: Codec,
    pub source: TrackSource,
    pub ssrc: u32,
    pub track: Arc<TrackLocalStaticRTP>,
}

impl NewTrack {
    /// A track sending `codec`. Its encoding names the codec, so webrtc-rs
    /// offers only that codec (and its RTX) on the track's m-line.
    pub fn new(codec: Codec, source: TrackSource) -> NewTrack {
        let ssrc = rand::random::<u32>() | 1;
        let kind = codec.kind();
        let label = match kind {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
        };
        let id = format!("weir-{label}-{:08x}", rand::random::<u32>());
        let track = MediaStreamTrack::new(
            format!("weir-stream-{:08x}", rand::random::<u32>()),
            id.clone(),
            id,
            codec.rtc_kind(),
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: codec.rtp_codec(),
                ..Default::default()
            }],
        );
        NewTrack {
            kind,
            codec,
            source,
            ssrc,
            track: Arc::new(TrackLocalStaticRTP::new(track)),
        }
    }

    /// The published handle, listening for keyframe requests.
    pub fn into_local(self, mid: String, track_id: Option<TrackId>) -> LocalTrack {
        let feedback = Arc::new(Feedback::default());
        spawn_feedback_reader(Arc::clone(&self.track), Arc::clone(&feedback));
        LocalTrack {
            inner: Arc::new(Inner {
                kind: self.kind,
                codec: self.codec,
                source: self.source,
                mid,
                track_id,
                ssrc: self.ssrc,
                payload_type: self.codec.payload_type(),
                track: self.track,
                sequence: AtomicU32::new(u32::from(rand::random::<u16>())),
                packets_sent: AtomicU64::new(0),
                feedback,
            }),
        }
    }
}

fn spawn_feedback_reader(track: Arc<TrackLocalStaticRTP>, feedback: Arc<Feedback>) {
    tokio::spawn(async move {
        while let Some(event) = track.poll().await {
            let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                continue;
            };
            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                feedback.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                feedback.keyframe_requested.store(true, Ordering::Release);
            }
        }
    });
}

struct Inner {
    kind: TrackKind,
    codec: Codec,
    source: TrackSource,
    mid: String,
    track_id: Option<TrackId>,
    ssrc: u32,
    payload_type: u8,
    track: Arc<TrackLocalStaticRTP>,
    /// Next sequence number (low 16 bits used).
    sequence: AtomicU32,
    packets_sent: AtomicU64,
    feedback: Arc<Feedback>,
}

/// A track this client publishes. Cheap to clone; writes from several tasks
/// get distinct sequence numbers.
#[derive(Clone)]
pub struct LocalTrack {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrack")
            .field("kind", &self.inner.kind)
            .field("codec", &self.inner.codec)
            .field("mid", &self.inner.mid)
            .field("track_id", &self.inner.track_id)
            .field("ssrc", &self.inner.ssrc)
            .finish()
    }
}

impl LocalTrack {
    /// The server's id for this track (`None` for WHIP, where the server
    /// does not say).
    pub fn track_id(&self) -> Option<&TrackId> {
        self.inner.track_id.as_ref()
    }

    pub fn mid(&self) -> &str {
        &self.inner.mid
    }

    pub fn kind(&self) -> TrackKind {
        self.inner.kind
    }

    pub fn source(&self) -> TrackSource {
        self.inner.source
    }

    /// The codec the track sends.
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// The SSRC this track sends with.
    pub fn ssrc(&self) -> u32 {
        self.inner.ssrc
    }

    pub fn payload_type(&self) -> u8 {
        self.inner.payload_type
    }

    /// Identity of the webrtc-rs track, to find its sender.
    pub(crate) fn rtc_track_addr(&self) -> usize {
        Arc::as_ptr(&self.inner.track) as *const () as usize
    }

    /// RTP packets written so far.
    pub fn packets_sent(&self) -> u64 {
        self.inner.packets_sent.load(Ordering::Relaxed)
    }

    /// Keyframe requests (PLI/FIR) received for this track so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.inner
            .feedback
            .keyframe_requests
            .load(Ordering::Relaxed)
    }

    /// True (once) when a keyframe was requested since the last call.
    pub fn take_keyframe_request(&self) -> bool {
        self.inner
            .feedback
            .keyframe_requested
            .swap(false, Ordering::AcqRel)
    }

    /// Sends one RTP packet; the track assigns the sequence number (returned),
    /// SSRC and payload type.
    pub async fn write_rtp(&self, marker: bool, timestamp: u32, payload: Bytes) -> Result<u16> {
        let sequence_number = self.inner.sequence.fetch_add(1, Ordering::Relaxed) as u16;
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.inner.payload_type,
                sequence_number,
                timestamp,
                ssrc: self.inner.ssrc,
                ..Default::default()
            },
            payload,
        };
        self.inner.track.write_rtp(packet).await?;
        self.inner.packets_sent.fetch_add(1, Ordering::Relaxed);
        Ok(sequence_number)
    }

    /// Sends a synthetic packet (its payload is shared, not copied).
    pub async fn write_synthetic(&self, packet: &SyntheticPacket) -> Result<u16> {
        self.write_rtp(packet.marker, packet.rtp_timestamp, packet.payload.clone())
            .await
    }

    /// Generates the next VP8 frame into `frame` (cleared first) and sends
    /// it. A pending keyframe request makes it a keyframe.
    pub async fn send_vp8_frame(
        &self,
        source: &mut Vp8Source,
        frame: &mut Vec<SyntheticPacket>,
    ) -> Result<()> {
        if self.take_keyframe_request() {
            source.request_keyframe();
        }
        frame.clear();
        source.next_frame(now_us(), frame);
        for packet in frame.iter() {
            self.write_synthetic(packet).await?;
        }
        Ok(())
    }

    /// Generates and sends the next Opus packet; returns it.
    pub async fn send_opus_packet(&self, source: &mut OpusSource) -> Result<SyntheticPacket> {
        let packet = source.next_packet(now_us());
        self.write_synthetic(&packet).await?;
        Ok(packet)
    }
}
