//! The media of a run: each publisher sends synthetic frames in real time,
//! each subscriber reads what arrives, recognizes the synthetic stamp,
//! drops duplicates and measures latency from the stamp's send time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use weir_client::synthetic::{now_us, parse_opus, parse_vp8, OpusSource, Stamp, Vp8Source};

use crate::scenario::{opus_config, Media, VideoProfile};
use crate::target::{MediaStream, Publisher};

/// Largest latency the histograms hold (larger values are clamped).
const MAX_LATENCY_US: u64 = 600_000_000;
/// Packet ids remembered per received stream to recognize duplicates
/// (retransmissions arrive within a few hundred packets).
const RECENT_IDS: usize = 4096;

/// A latency histogram in microseconds.
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .map_err(|e| anyhow::anyhow!("creating a histogram: {e}"))
}

/// What one publisher did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishOutcome {
    pub packets: u64,
    pub errors: u64,
}

/// Sends `media` from `start` until `end`, adding every packet sent to
/// `sent`. Each track starts at a random phase within its first interval
/// so that publishers do not all send at the same instant.
pub async fn publish(
    publisher: Arc<dyn Publisher>,
    media: Media,
    video: VideoProfile,
    start: Instant,
    end: Instant,
    sent: Arc<AtomicU64>,
) -> PublishOutcome {
    let mut vp8 = Vp8Source::new(video.vp8_config());
    let mut opus = OpusSource::new(opus_config());
    let (video_phase, audio_phase) = {
        let mut rng = rand::thread_rng();
        let mut phase = |interval: Duration| {
            Duration::from_micros(rng.gen_range(0..(interval.as_micros() as u64).max(1)))
        };
        (phase(vp8.frame_interval()), phase(opus.packet_interval()))
    };
    let mut video_tick = tokio::time::interval_at(start + video_phase, vp8.frame_interval());
    let mut audio_tick = tokio::time::interval_at(start + audio_phase, opus.packet_interval());
    // A late tick is sent at once (the rate stays as configured).
    video_tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    audio_tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut frame = Vec::new();
    let mut outcome = PublishOutcome::default();
    let finished = tokio::time::sleep_until(end);
    tokio::pin!(finished);
    loop {
        tokio::select! {
            biased;
            _ = &mut finished => return outcome,
            _ = video_tick.tick(), if media.has_video() => {
                match publisher.send_video_frame(&mut vp8, &mut frame).await {
                    Ok(packets) => {
                        outcome.packets += packets as u64;
                        sent.fetch_add(packets as u64, Ordering::Relaxed);
                    }
                    Err(_) => outcome.errors += 1,
                }
            }
            _ = audio_tick.tick(), if media.has_audio() => {
                match publisher.send_audio_packet(&mut opus).await {
                    Ok(()) => {
                        outcome.packets += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => outcome.errors += 1,
                }
            }
        }
    }
}

/// Live counters of one subscriber, read by the progress display.
#[derive(Debug, Default)]
pub struct ReceiveCounters {
    /// Distinct synthetic packets received.
    pub received: AtomicU64,
}

/// What one subscriber received.
#[derive(Debug, Clone)]
pub struct ReceiveOutcome {
    /// Distinct synthetic packets.
    pub received: u64,
    /// Packets that arrived twice (counted once).
    pub duplicates: u64,
    /// Payloads without a synthetic stamp (padding, foreign media).
    pub unstamped: u64,
    pub latency_us: Histogram<u64>,
}

/// The last [`RECENT_IDS`] packet ids of a stream.
#[derive(Debug, Default)]
struct RecentIds {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentIds {
    /// False if `id` is among the recent ones.
    fn insert(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        true
    }
}

/// The stamp of a synthetic payload, audio or video. A VP8 packet that
/// does not start a frame has its stamp right after the one-byte
/// descriptor, where an Opus packet has it, so either parse finds it.
pub fn stamp_of(payload: &[u8]) -> Option<Stamp> {
    parse_opus(payload).or_else(|| parse_vp8(payload))
}

/// Reads `media` until `stop` turns true or the stream ends.
pub async fn receive(
    mut media: Box<dyn MediaStream>,
    counters: Arc<ReceiveCounters>,
    mut stop: watch::Receiver<bool>,
    mut latency_us: Histogram<u64>,
) -> ReceiveOutcome {
    let mut seen: HashMap<Arc<str>, RecentIds> = HashMap::new();
    let mut outcome_duplicates = 0;
    let mut unstamped = 0;
    let mut received = 0;
    loop {
        let arrival = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            arrival = media.recv() => match arrival {
                Some(arrival) => arrival,
                None => break,
            },
        };
        let Some(stamp) = stamp_of(&arrival.payload) else {
            unstamped += 1;
            continue;
        };
        let key = (u64::from(stamp.audio) << 63) | stamp.packet_id();
        let fresh = match seen.get_mut(&arrival.stream) {
            Some(ids) => ids.insert(key),
            None => {
                let mut ids = RecentIds::default();
                ids.insert(key);
                seen.insert(Arc::clone(&arrival.stream), ids);
                true
            }
        };
        if !fresh {
            outcome_duplicates += 1;
            continue;
        }
        received += 1;
        counters.received.fetch_add(1, Ordering::Relaxed);
        let age = arrival.received_at.elapsed().as_micros() as u64;
        let arrived_us = now_us().saturating_sub(age);
        let latency = stamp.latency(arrived_us).as_micros() as u64;
        latency_us.saturating_record(latency.clamp(1, MAX_LATENCY_US));
    }
    ReceiveOutcome {
        received,
        duplicates: outcome_duplicates,
        unstamped,
        latency_us,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use async_trait::async_trait;
    use bytes::Bytes;
    use weir_client::synthetic::{OpusSource, Vp8Config, Vp8Source};

    use super::*;
    use crate::target::Arrival;

    #[test]
    fn stamps_are_found_in_every_synthetic_packet() {
        let mut vp8 = Vp8Source::new(Vp8Config::default());
        let mut frame = Vec::new();
        vp8.next_frame(now_us(), &mut frame);
        vp8.next_frame(now_us(), &mut frame);
        for packet in &frame {
            let stamp = stamp_of(&packet.payload).expect("a video stamp");
            assert_eq!(stamp, packet.stamp);
            assert!(!stamp.audio);
        }
        let mut opus = OpusSource::new(opus_config());
        let packet = opus.next_packet(now_us());
        assert_eq!(stamp_of(&packet.payload), Some(packet.stamp));
        assert_eq!(stamp_of(b"\x90\x00junk"), None);
        assert_eq!(stamp_of(b""), None);
    }

    #[test]
    fn recent_ids_stay_bounded() {
        let mut ids = RecentIds::default();
        assert!(ids.insert(1));
        assert!(!ids.insert(1));
        for id in 2..(RECENT_IDS as u64 + 10) {
            assert!(ids.insert(id));
        }
        assert_eq!(ids.set.len(), RECENT_IDS);
        assert_eq!(ids.order.len(), RECENT_IDS);
        assert!(!ids.insert(RECENT_IDS as u64), "a recent id is a duplicate");
    }

    struct Replay(Vec<Arrival>);

    #[async_trait]
    impl MediaStream for Replay {
        async fn recv(&mut self) -> Option<Arrival> {
            if self.0.is_empty() {
                None
            } else {
                Some(self.0.remove(0))
            }
        }
    }

    #[tokio::test]
    async fn duplicates_and_foreign_payloads_are_not_counted() {
        let mut opus = OpusSource::new(opus_config());
        let stream: Arc<str> = Arc::from("1");
        let arrival = |payload: Bytes| Arrival {
            stream: Arc::clone(&stream),
            payload,
            received_at: StdInstant::now(),
        };
        let first = opus.next_packet(now_us()).payload;
        let second = opus.next_packet(now_us()).payload;
        let media = Replay(vec![
            arrival(first.clone()),
            arrival(first),
            arrival(Bytes::from_static(b"padding")),
            arrival(second),
        ]);
        let counters = Arc::new(ReceiveCounters::default());
        let (_stop_tx, stop) = watch::channel(false);
        let outcome = receive(
            Box::new(media),
            Arc::clone(&counters),
            stop,
            latency_histogram().expect("histogram"),
        )
        .await;
        assert_eq!(outcome.received, 2);
        assert_eq!(outcome.duplicates, 1);
        assert_eq!(outcome.unstamped, 1);
        assert_eq!(counters.received.load(Ordering::Relaxed), 2);
        assert_eq!(outcome.latency_us.len(), 2);
    }
}
