//! Per-subscription forwarding decisions: which simulcast layer, whether to
//! wait for a keyframe, and the rewritten sequence numbers and timestamps.
//!
//! Pure logic with no str0m types, so it can be tested and benchmarked
//! alone; the room applies its decisions to the subscriber's `Rtc`.

use std::time::Instant;

use crate::keyframe::{starts_keyframe, VideoCodec};
use crate::sequence::{
    ExtendedSeq, RewriteDrop, Rewritten, RtpTimestamp, SequenceRewriter, SourcePacket,
};

/// A simulcast layer id (`rid`), or `None` for a single-layer stream.
pub type LayerId = Option<String>;

/// One incoming packet as the forwarder sees it.
#[derive(Debug, Clone, Copy)]
pub struct IncomingPacket<'a> {
    pub ssrc: u32,
    pub layer: Option<&'a str>,
    pub seq: ExtendedSeq,
    pub timestamp: RtpTimestamp,
    pub arrival: Instant,
    pub payload: &'a [u8],
    /// The video codec of this packet's payload type; `None` for audio.
    pub video_codec: Option<VideoCodec>,
}

/// What to do with an incoming packet for this subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardDecision {
    Forward(Rewritten),
    /// Not forwarded; `request_keyframe` asks the publisher for a keyframe.
    Drop {
        reason: DropReason,
        request_keyframe: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Another simulcast layer is selected.
    OtherLayer,
    /// The subscriber waits for a keyframe before it can decode.
    WaitingForKeyframe,
    /// Sequence rewriting refused it (late, too old).
    Rewrite(RewriteDrop),
    /// The subscription is paused (unsubscribed or muted by the server).
    Paused,
}

/// Forwarding state of one subscriber for one published track.
#[derive(Debug, Clone)]
pub struct Forwarder {
    is_video: bool,
    rewriter: SequenceRewriter,
    /// The layer being forwarded now.
    current_layer: Option<LayerId>,
    /// The layer to switch to at its next keyframe.
    target_layer: Option<LayerId>,
    waiting_for_keyframe: bool,
    paused: bool,
    forwarded: u64,
    dropped: u64,
}

impl Forwarder {
    /// Reads the forwarder's counters (for the fan-out's read-ahead,
    /// `warm_subscribers` in `room/forwarding.rs`).
    pub fn warm(&self) -> usize {
        self.forwarded as usize ^ usize::from(self.waiting_for_keyframe)
    }

    /// Audio (`is_video` false) is never keyframe-gated.
    pub fn new(is_video: bool, clock_rate: u32, initial_seq: u16, initial_ts: u32) -> Self {
        Forwarder {
            is_video,
            rewriter: SequenceRewriter::new(clock_rate, initial_seq, initial_ts),
            current_layer: None,
            target_layer: None,
            waiting_for_keyframe: is_video,
            paused: false,
            forwarded: 0,
            dropped: 0,
        }
    }

    /// Chooses the simulcast layer to forward; the switch happens at that
    /// layer's next keyframe.
    pub fn set_target_layer(&mut self, layer: LayerId) {
        if self.current_layer.as_ref() != Some(&layer) {
            self.target_layer = Some(layer);
        } else {
            self.target_layer = None;
        }
    }

    pub fn target_layer(&self) -> Option<&LayerId> {
        self.target_layer.as_ref().or(self.current_layer.as_ref())
    }

    pub fn current_layer(&self) -> Option<&LayerId> {
        self.current_layer.as_ref()
    }

    /// The source restarted or was replaced (republish, reconnect): keep the
    /// outgoing numbering continuous and, for video, wait for a keyframe.
    pub fn restart_source(&mut self) {
        self.rewriter.reset_source();
        if self.is_video {
            self.waiting_for_keyframe = true;
        }
    }

    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.restart_source();
        }
        self.paused = paused;
    }

    pub fn is_video(&self) -> bool {
        self.is_video
    }

    pub fn is_waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    pub fn forwarded(&self) -> u64 {
        self.forwarded
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn decide(&mut self, packet: IncomingPacket<'_>) -> ForwardDecision {
        let decision = self.decide_inner(packet);
        match decision {
            ForwardDecision::Forward(_) => self.forwarded += 1,
            ForwardDecision::Drop { .. } => self.dropped += 1,
        }
        decision
    }

    fn decide_inner(&mut self, packet: IncomingPacket<'_>) -> ForwardDecision {
        if self.paused {
            return drop(DropReason::Paused, false);
        }
        let layer = packet.layer.map(str::to_string);
        let is_keyframe = packet
            .video_codec
            .is_some_and(|codec| starts_keyframe(codec, packet.payload));

        // Layer switching: only onto a keyframe of the target layer.
        if let Some(target) = &self.target_layer {
            if *target == layer && (is_keyframe || !self.is_video) {
                self.current_layer = Some(layer.clone());
                self.target_layer = None;
                self.rewriter.reset_source();
                self.waiting_for_keyframe = false;
            }
        }
        match &self.current_layer {
            None => {
                // First packet ever: lock onto this layer unless a target says otherwise.
                if self.target_layer.as_ref().is_some_and(|t| *t != layer) {
                    return drop(DropReason::OtherLayer, self.is_video);
                }
                self.current_layer = Some(layer.clone());
                self.target_layer = None;
            }
            Some(current) if *current != layer => {
                return drop(DropReason::OtherLayer, false);
            }
            Some(_) => {}
        }

        if self.waiting_for_keyframe {
            if !is_keyframe {
                return drop(DropReason::WaitingForKeyframe, true);
            }
            self.waiting_for_keyframe = false;
        }

        match self.rewriter.rewrite(SourcePacket {
            ssrc: packet.ssrc,
            seq: packet.seq,
            timestamp: packet.timestamp,
            arrival: packet.arrival,
        }) {
            Ok(rewritten) => ForwardDecision::Forward(rewritten),
            Err(reason) => drop(DropReason::Rewrite(reason), false),
        }
    }
}

fn drop(reason: DropReason, request_keyframe: bool) -> ForwardDecision {
    ForwardDecision::Drop {
        reason,
        request_keyframe,
    }
}

#[cfg(test)]
mod tests;
