//! Construction of the webrtc-rs peer connection shared by the signalling
//! client and the WHIP/WHEP helpers: codecs, interceptors, loopback binding,
//! and the event handler that turns callbacks into channels.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::runtime::TokioRuntime;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::keyframe_interceptor::{is_keyframe_request, KeyframeRequestForwarder, RtcpSelector};
use crate::rtx_repair::{RtxRepair, RTX_REPAIR_SLOT};
use crate::sdp;

/// The state of the client's peer connection (mirrors `RTCPeerConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl From<RTCPeerConnectionState> for PeerState {
    fn from(state: RTCPeerConnectionState) -> Self {
        match state {
            RTCPeerConnectionState::Connecting => PeerState::Connecting,
            RTCPeerConnectionState::Connected => PeerState::Connected,
            RTCPeerConnectionState::Disconnected => PeerState::Disconnected,
            RTCPeerConnectionState::Failed => PeerState::Failed,
            RTCPeerConnectionState::Closed => PeerState::Closed,
            _ => PeerState::New,
        }
    }
}

/// Turns webrtc-rs callbacks into channels. Never blocks the driver.
struct Handler {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<PeerState>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state.into());
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // The receiver may be gone when the session ended; nothing to do then.
        let _ = self.tracks.send(track);
    }
}

/// A peer connection with its event channels.
pub(crate) struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    pub state: watch::Receiver<PeerState>,
    pub remote_tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    /// Where the server's candidates are rewritten to (a test proxy).
    pub rewrite_server_candidate: Option<SocketAddr>,
}

/// How often the client's ICE agent sends connectivity checks.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Checks per candidate pair before it fails (28 x 50 ms = 1.4 s).
const ICE_MAX_BINDING_REQUESTS: u16 = 28;

/// How long ICE gathering may take (host candidates only: milliseconds).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

impl Peer {
    /// Builds a peer connection bound to `bind_ip` (never a wildcard: a
    /// wildcard skips loopback, see docs/testing notes).
    pub async fn build(
        bind_ip: IpAddr,
        rewrite_server_candidate: Option<SocketAddr>,
    ) -> Result<Peer> {
        Self::build_delivering(bind_ip, rewrite_server_candidate, is_keyframe_request).await
    }

    /// Like [`Peer::build`], handing the inbound RTCP that `deliver` picks
    /// to the tracks' event streams (keyframe requests only, normally).
    pub async fn build_delivering(
        bind_ip: IpAddr,
        rewrite_server_candidate: Option<SocketAddr>,
        deliver: RtcpSelector,
    ) -> Result<Peer> {
        let mut media_engine = MediaEngine::default();
        register_codecs(&mut media_engine)?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
        // Before the NACK generator: RTX counts as the original packet.
        let registry = registry.with(Slot::from(RTX_REPAIR_SLOT), RtxRepair::default());
        // Application-most: after every interceptor has seen the RTCP.
        let registry = registry.with(
            Slot::from(14_000),
            KeyframeRequestForwarder::delivering(deliver),
        );
        // ICE checks paced like a browser's (Chromium: 50 ms) rather than
        // webrtc-rs's 200 ms, which alone made every join take ~250 ms;
        // the same 1.4 s of attempts per pair.
        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
            .build();
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (state_tx, state) = watch::channel(PeerState::New);
        let (tracks_tx, remote_tracks) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler {
            gathering: gathering_tx,
            state: state_tx,
            tracks: tracks_tx,
        });
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting_engine)
            .with_runtime(Arc::new(TokioRuntime))
            .with_handler(handler)
            .with_udp_addrs(vec![SocketAddr::new(bind_ip, 0)])
            .build()
            .await?;
        Ok(Peer {
            pc: Arc::new(pc),
            gathering,
            state,
            remote_tracks,
            rewrite_server_candidate,
        })
    }

    /// The current local description once ICE gathering is complete, so it
    /// carries every candidate (the server takes no trickle).
    pub async fn complete_local_sdp(&self) -> Result<String> {
        let mut gathering = self.gathering.clone();
        tokio::time::timeout(
            GATHER_TIMEOUT,
            gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .map_err(|_| Error::Timeout("ICE gathering"))?
        .map_err(|_| Error::Closed)?;
        let description = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| Error::Negotiation("no local description".to_string()))?;
        Ok(description.sdp)
    }

    /// Adds `track` as a send-only transceiver (no stream ids, default
    /// encodings).
    pub(crate) async fn add_sendonly(
        &self,
        track: &crate::local_track::NewTrack,
    ) -> std::result::Result<Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>, webrtc::error::Error>
    {
        let local: Arc<dyn webrtc::media_stream::track_local::TrackLocal> = track.track.clone();
        let init = webrtc::rtp_transceiver::RTCRtpTransceiverInit {
            direction: webrtc::rtp_transceiver::RTCRtpTransceiverDirection::Sendonly,
            streams: Vec::new(),
            send_encodings: Vec::new(),
        };
        self.pc.add_transceiver_from_track(local, Some(init)).await
    }

    /// Creates an offer, applies it and returns it complete.
    pub async fn offer(&self) -> Result<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.complete_local_sdp().await
    }

    /// Applies a server offer and returns the complete answer.
    pub async fn answer(&self, offer_sdp: &str) -> Result<String> {
        let offer = RTCSessionDescription::offer(self.server_sdp(offer_sdp))?;
        self.pc.set_remote_description(offer).await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.complete_local_sdp().await
    }

    /// Applies the server's answer to our offer.
    pub async fn accept_answer(&self, answer_sdp: &str) -> Result<()> {
        let answer = RTCSessionDescription::answer(self.server_sdp(answer_sdp))?;
        self.pc.set_remote_description(answer).await?;
        Ok(())
    }

    /// Abandons our outstanding offer.
    pub async fn rollback(&self) -> Result<()> {
        self.pc
            .set_local_description(RTCSessionDescription::rollback(None)?)
            .await?;
        Ok(())
    }

    fn server_sdp(&self, sdp: &str) -> String {
        match self.rewrite_server_candidate {
            Some(to) => sdp::rewrite_candidates(sdp, to),
            None => sdp.to_string(),
        }
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        wait_connected(self.state.clone(), timeout).await
    }
}

/// Waits until the peer connection is connected; fails fast on failure.
pub(crate) async fn wait_connected(
    mut state: watch::Receiver<PeerState>,
    timeout: Duration,
) -> Result<()> {
    let reached = tokio::time::timeout(
        timeout,
        state.wait_for(|s| {
            matches!(
                s,
                PeerState::Connected | PeerState::Failed | PeerState::Closed
            )
        }),
    )
    .await
    .map_err(|_| Error::Timeout("the peer connection to connect"))?
    .map_err(|_| Error::Closed)?;
    match *reached {
        PeerState::Connected => Ok(()),
        other => Err(Error::Negotiation(format!(
            "peer connection ended as {other:?}"
        ))),
    }
}

/// VP8 (+RTX), H.264 (+RTX) and Opus, with the payload types the client
/// offers. Each published track offers only its own codec (see
/// [`crate::local_track`]); receiving accepts any of them.
fn register_codecs(media_engine: &mut MediaEngine) -> Result<()> {
    for codec in [Codec::Vp8, Codec::H264, Codec::Opus] {
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec.rtp_codec(),
                payload_type: codec.payload_type(),
            },
            codec.rtc_kind(),
        )?;
        if let (Some(rtx), Some(payload_type)) = (codec.rtx_codec(), codec.rtx_payload_type()) {
            media_engine.register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: rtx,
                    payload_type,
                },
                codec.rtc_kind(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
