//! A bare peer connection for signalling that is not Weir's: the caller
//! carries the SDP (e.g. the load harness's Janus VideoRoom target), and
//! gets the same peer as [`crate::Client`] and the WHIP/WHEP helpers: the
//! same codecs, interceptors (NACK, reports, TWCC, RTX repair, keyframe
//! requests), loopback binding, [`LocalTrack`]s and [`ReceivedPacket`]s.
//!
//! Publish: [`SdpPeer::add_sendonly`] per track, [`SdpPeer::offer`],
//! [`SdpPeer::accept_answer`], then [`SdpPeer::video`] / [`SdpPeer::audio`].
//! Receive: [`SdpPeer::answer`] the remote offer (again for each
//! renegotiation) and read [`SdpPeer::take_media`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::rtp_transceiver::RtpTransceiver;
use weir_protocol::{TrackKind, TrackSource};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::local_track::{LocalTrack, NewTrack};
use crate::peer::{Peer, PeerState};
use crate::receive::{spawn_reader, ClientStats, Counters, MediaSink, ReceivedPacket};
use crate::whip::close_in_background;

/// A peer connection whose offers and answers the caller exchanges.
pub struct SdpPeer {
    peer: Peer,
    /// Tracks added but not yet negotiated.
    pending: Vec<(NewTrack, Arc<dyn RtpTransceiver>)>,
    video: Option<LocalTrack>,
    audio: Option<LocalTrack>,
    media: Option<mpsc::Receiver<ReceivedPacket>>,
    counters: Arc<Counters>,
    reader_spawner: JoinHandle<()>,
    closed: bool,
}

impl SdpPeer {
    /// A peer bound to `bind_ip` (never a wildcard: it would skip
    /// loopback). Received packets go to a channel of `media_buffer`
    /// (0: counted only, see [`SdpPeer::stats`]).
    pub async fn new(bind_ip: IpAddr, media_buffer: usize) -> Result<SdpPeer> {
        let mut peer = Peer::build(bind_ip, None).await?;
        let (sink, media) = MediaSink::new(media_buffer);
        let counters = Arc::clone(&sink.counters);
        let (_, empty) = mpsc::unbounded_channel();
        let mut tracks = std::mem::replace(&mut peer.remote_tracks, empty);
        let weak_pc = Arc::downgrade(&peer.pc);
        let reader_spawner = tokio::spawn(async move {
            while let Some(track) = tracks.recv().await {
                spawn_reader(weak_pc.clone(), track, sink.clone());
            }
        });
        Ok(SdpPeer {
            peer,
            pending: Vec::new(),
            video: None,
            audio: None,
            media,
            counters,
            reader_spawner,
            closed: false,
        })
    }

    /// Adds a send-only track of `codec` (one video and one audio track at
    /// most), negotiated by the next [`SdpPeer::offer`].
    pub async fn add_sendonly(&mut self, codec: Codec) -> Result<()> {
        let kind = codec.kind();
        let taken = self.pending.iter().any(|(t, _)| t.kind == kind)
            || match kind {
                TrackKind::Video => self.video.is_some(),
                TrackKind::Audio => self.audio.is_some(),
            };
        if taken {
            return Err(Error::InvalidArgument(format!(
                "a {kind:?} track is already added"
            )));
        }
        let source = match kind {
            TrackKind::Video => TrackSource::Camera,
            TrackKind::Audio => TrackSource::Microphone,
        };
        let track = NewTrack::new(codec, source);
        let transceiver = self.peer.add_sendonly(&track).await?;
        self.pending.push((track, transceiver));
        Ok(())
    }

    /// Creates and applies an offer; returns it with every candidate.
    pub async fn offer(&self) -> Result<String> {
        self.peer.offer().await
    }

    /// Applies the remote answer to our offer; the added tracks become
    /// [`SdpPeer::video`] and [`SdpPeer::audio`].
    pub async fn accept_answer(&mut self, answer_sdp: &str) -> Result<()> {
        self.peer.accept_answer(answer_sdp).await?;
        for (track, transceiver) in std::mem::take(&mut self.pending) {
            let mid = transceiver.mid().await.ok().flatten().unwrap_or_default();
            let kind = track.kind;
            let local = track.into_local(mid, None);
            match kind {
                TrackKind::Video => self.video = Some(local),
                TrackKind::Audio => self.audio = Some(local),
            }
        }
        Ok(())
    }

    /// Applies a remote offer; returns the answer with every candidate.
    pub async fn answer(&self, offer_sdp: &str) -> Result<String> {
        self.peer.answer(offer_sdp).await
    }

    /// The published video track, once negotiated.
    pub fn video(&self) -> Option<&LocalTrack> {
        self.video.as_ref()
    }

    /// The published audio track, once negotiated.
    pub fn audio(&self) -> Option<&LocalTrack> {
        self.audio.as_ref()
    }

    /// The received packets (once; `None` afterwards or with a
    /// `media_buffer` of 0).
    pub fn take_media(&mut self) -> Option<mpsc::Receiver<ReceivedPacket>> {
        self.media.take()
    }

    pub fn stats(&self) -> ClientStats {
        self.counters.snapshot()
    }

    pub fn peer_state(&self) -> PeerState {
        *self.peer.state.borrow()
    }

    /// The peer connection's state as it changes.
    pub fn watch_state(&self) -> watch::Receiver<PeerState> {
        self.peer.state.clone()
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        self.peer.wait_connected(timeout).await
    }

    /// Closes the peer connection.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        self.reader_spawner.abort();
        self.peer.pc.close().await?;
        Ok(())
    }
}

impl Drop for SdpPeer {
    fn drop(&mut self) {
        if !self.closed {
            self.reader_spawner.abort();
            close_in_background(Arc::clone(&self.peer.pc));
        }
    }
}
