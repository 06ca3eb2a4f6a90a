//! Received media: one reader task per remote track turns webrtc-rs track
//! events into [`ReceivedPacket`]s on the client's media channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::PeerConnection;
use weir_protocol::TrackId;

/// One RTP packet as the client received it (after SRTP, RTX repair and the
/// NACK generator; before any jitter buffer: arrival order).
#[derive(Debug, Clone)]
pub struct ReceivedPacket {
    /// The Weir track carried on `mid` when the packet arrived (from
    /// `subscribed`); `None` for WHEP sessions and unannounced m-lines.
    pub track_id: Option<Arc<TrackId>>,
    pub mid: Arc<str>,
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
    pub received_at: Instant,
}

/// Counters of one client (or WHEP session).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Packets not delivered because the media channel was full.
    pub packets_dropped: AtomicU64,
    pub offers_ignored: AtomicU64,
    pub last_rtt_us: AtomicU64,
    pub pongs: AtomicU64,
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Received but not delivered: the media channel was full (or media
    /// delivery is off, `media_buffer == 0`).
    pub packets_dropped: u64,
    /// Server offers ignored because our own offer was outstanding (glare).
    pub offers_ignored: u64,
    pub pongs: u64,
    /// Round-trip time of the last ping.
    pub last_rtt: Option<Duration>,
}

impl Counters {
    pub fn snapshot(&self) -> ClientStats {
        let rtt = self.last_rtt_us.load(Ordering::Relaxed);
        ClientStats {
            packets_received: self.packets_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            packets_dropped: self.packets_dropped.load(Ordering::Relaxed),
            offers_ignored: self.offers_ignored.load(Ordering::Relaxed),
            pongs: self.pongs.load(Ordering::Relaxed),
            last_rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
        }
    }
}

/// Which Weir track each mid carries, with a generation counter so readers
/// re-read only after a change.
#[derive(Debug, Default)]
pub(crate) struct MidMap {
    map: RwLock<HashMap<Arc<str>, Arc<TrackId>>>,
    generation: AtomicU64,
}

impl MidMap {
    pub fn insert(&self, mid: &str, track_id: TrackId) {
        if let Ok(mut map) = self.map.write() {
            map.insert(Arc::from(mid), Arc::new(track_id));
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn remove_track(&self, track_id: &TrackId) {
        if let Ok(mut map) = self.map.write() {
            map.retain(|_, t| **t != *track_id);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn get(&self, mid: &str) -> Option<Arc<TrackId>> {
        self.map.read().ok()?.get(mid).cloned()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Where received packets go.
#[derive(Clone)]
pub(crate) struct MediaSink {
    pub tx: Option<mpsc::Sender<ReceivedPacket>>,
    pub counters: Arc<Counters>,
    pub mids: Arc<MidMap>,
}

impl MediaSink {
    /// A sink with its own counters and, unless `buffer` is 0 (count
    /// only), a bounded channel whose receiver is returned.
    pub(crate) fn new(buffer: usize) -> (MediaSink, Option<mpsc::Receiver<ReceivedPacket>>) {
        let (tx, rx) = if buffer > 0 {
            let (tx, rx) = mpsc::channel(buffer);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let sink = MediaSink {
            tx,
            counters: Arc::new(Counters::default()),
            mids: Arc::new(MidMap::default()),
        };
        (sink, rx)
    }
}

/// Reads one remote track until it ends.
pub(crate) fn spawn_reader(
    pc: Weak<dyn PeerConnection>,
    track: Arc<dyn TrackRemote>,
    sink: MediaSink,
) {
    tokio::spawn(async move {
        let mid: Arc<str> = Arc::from(resolve_mid(&pc, &track).await.unwrap_or_default());
        drop(pc);
        let mut generation = u64::MAX;
        let mut track_id = None;
        while let Some(event) = track.poll().await {
            let packet = match event {
                TrackRemoteEvent::OnRtpPacket(packet) => packet,
                TrackRemoteEvent::OnEnded => break,
                _ => continue,
            };
            let received_at = Instant::now();
            sink.counters
                .packets_received
                .fetch_add(1, Ordering::Relaxed);
            sink.counters
                .bytes_received
                .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
            let Some(tx) = &sink.tx else {
                sink.counters
                    .packets_dropped
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let current = sink.mids.generation();
            if current != generation {
                generation = current;
                track_id = sink.mids.get(&mid);
            }
            let header = &packet.header;
            let received = ReceivedPacket {
                track_id: track_id.clone(),
                mid: Arc::clone(&mid),
                ssrc: header.ssrc,
                payload_type: header.payload_type,
                sequence_number: header.sequence_number,
                timestamp: header.timestamp,
                marker: header.marker,
                payload: packet.payload,
                received_at,
            };
            match tx.try_send(received) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sink.counters
                        .packets_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    sink.counters
                        .packets_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
}

/// The mid of the transceiver whose receiver owns `track`.
async fn resolve_mid(
    pc: &Weak<dyn PeerConnection>,
    track: &Arc<dyn TrackRemote>,
) -> Option<String> {
    let pc = pc.upgrade()?;
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(receiver)) = transceiver.receiver().await else {
            continue;
        };
        if Arc::ptr_eq(receiver.track(), track) {
            return transceiver.mid().await.ok().flatten();
        }
    }
    None
}
