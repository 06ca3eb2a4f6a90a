//! What the targets share once signalling is done: a publisher's
//! `weir-client` tracks sending the synthetic payloads (their stamps carry
//! the send time that latency is measured from), and a subscriber's
//! received packets as a [`MediaStream`].

use anyhow::anyhow;
use async_trait::async_trait;
use tokio::sync::mpsc;
use weir_client::synthetic::{OpusSource, SyntheticPacket, Vp8Source};
use weir_client::{LocalTrack, ReceivedPacket};

use super::{Arrival, MediaStream};

/// A publisher's tracks (at most one video and one audio).
#[derive(Debug, Clone, Default)]
pub struct SendTracks {
    pub video: Option<LocalTrack>,
    pub audio: Option<LocalTrack>,
}

impl SendTracks {
    /// Sends the next VP8 frame of `source` (a keyframe if the server asked
    /// for one); returns how many packets went out.
    pub async fn send_video_frame(
        &self,
        source: &mut Vp8Source,
        frame: &mut Vec<SyntheticPacket>,
    ) -> anyhow::Result<usize> {
        let track = self
            .video
            .as_ref()
            .ok_or_else(|| anyhow!("no video track"))?;
        track.send_vp8_frame(source, frame).await?;
        Ok(frame.len())
    }

    /// Sends the next Opus packet of `source`.
    pub async fn send_audio_packet(&self, source: &mut OpusSource) -> anyhow::Result<()> {
        let track = self
            .audio
            .as_ref()
            .ok_or_else(|| anyhow!("no audio track"))?;
        track.send_opus_packet(source).await?;
        Ok(())
    }
}

/// A client's received packets; each m-line (mid) is a stream.
pub struct PacketStream(pub mpsc::Receiver<ReceivedPacket>);

#[async_trait]
impl MediaStream for PacketStream {
    async fn recv(&mut self) -> Option<Arrival> {
        let packet = self.0.recv().await?;
        Some(Arrival {
            stream: packet.mid,
            payload: packet.payload,
            received_at: packet.received_at,
        })
    }
}

/// Waits until every track of `track_ids` is in `subscribed` (the tracks a
/// subscriber receives), at most `timeout`.
pub async fn wait_for_tracks(
    user: &str,
    subscribed: &tokio::sync::watch::Receiver<std::collections::HashSet<String>>,
    track_ids: &[String],
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let mut watching = subscribed.clone();
    let all = tokio::time::timeout(timeout, async {
        watching
            .wait_for(|set| track_ids.iter().all(|t| set.contains(t)))
            .await
            .map(|_| ())
    })
    .await;
    match all {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => anyhow::bail!("{user}: the session ended before subscribing"),
        Err(_) => {
            let set = subscribed.borrow().clone();
            let missing: Vec<&String> = track_ids.iter().filter(|t| !set.contains(*t)).collect();
            anyhow::bail!("{user}: not subscribed to {missing:?} after {timeout:?}")
        }
    }
}
