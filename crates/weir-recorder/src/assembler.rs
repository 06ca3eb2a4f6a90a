//! Per track: reorder window → depacketizer → complete frames, with the
//! loss rule of recording.md (rule 5): after a sequence gap the partial frame
//! is dropped and video waits for the next keyframe (asking for one).

use std::time::{Duration, Instant};

use crate::depacketize::{Codec, CodecConfig, Depacketizer};
use crate::reorder::ReorderBuffer;
use crate::rtp::{ExtSeq, ExtTime, RtpPacket, TimeUnwrapper};

/// A complete frame of one track.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Unwrapped RTP timestamp.
    pub timestamp: ExtTime,
    /// Whether the frame decodes on its own.
    pub keyframe: bool,
    /// Sample bytes in MP4 form.
    pub data: Vec<u8>,
    /// Configuration carried by this frame.
    pub config: Option<CodecConfig>,
    /// Arrival of the frame's first packet.
    pub arrival: Instant,
    /// The run (SSRC session) the frame belongs to; changes on a new SSRC.
    pub run: u32,
}

/// Counters of what the assembler dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerStats {
    /// Packets whose payload did not depacketize.
    pub malformed: u64,
    /// Sequence gaps seen.
    pub gaps: u64,
    /// Frames dropped while waiting for a keyframe.
    pub frames_dropped: u64,
}

#[derive(Debug)]
struct Partial {
    timestamp: ExtTime,
    arrival: Instant,
}

/// Turns the RTP packets of one track into frames.
#[derive(Debug)]
pub struct FrameAssembler {
    codec: Codec,
    window: Duration,
    reorder: ReorderBuffer,
    depacketizer: Depacketizer,
    timestamps: TimeUnwrapper,
    ssrc: Option<u32>,
    run: u32,
    last_seq: Option<ExtSeq>,
    partial: Option<Partial>,
    waiting_for_keyframe: bool,
    keyframe_wanted: bool,
    stats: AssemblerStats,
}

impl FrameAssembler {
    /// An assembler for `codec` with a reorder window.
    pub fn new(codec: Codec, window: Duration) -> Self {
        Self {
            codec,
            window,
            reorder: ReorderBuffer::new(window),
            depacketizer: Depacketizer::new(codec),
            timestamps: TimeUnwrapper::default(),
            ssrc: None,
            run: 0,
            last_seq: None,
            partial: None,
            waiting_for_keyframe: codec.is_video(),
            keyframe_wanted: codec.is_video(),
            stats: AssemblerStats::default(),
        }
    }

    /// The track's codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// What was dropped so far.
    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Whether a keyframe should be requested (cleared by reading it).
    pub fn take_keyframe_wanted(&mut self) -> bool {
        std::mem::replace(&mut self.keyframe_wanted, false)
    }

    /// Whether video frames are being dropped until a keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// When [`FrameAssembler::poll`] has something to release at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.reorder.deadline()
    }

    /// Takes one packet in; frames come out of [`FrameAssembler::poll`].
    pub fn push(&mut self, packet: RtpPacket, out: &mut Vec<Frame>) {
        if self.ssrc != Some(packet.ssrc) {
            if self.ssrc.is_some() {
                // A new publisher session: release what the old one left.
                // Its pictures cannot refer to the old session's: as after
                // a loss, it starts at a keyframe (one is asked for; the
                // recorder repeats the request while it waits).
                self.flush(out);
                self.run = self.run.wrapping_add(1);
                self.lose();
            }
            self.ssrc = Some(packet.ssrc);
            self.reorder = ReorderBuffer::new(self.window);
            self.timestamps = TimeUnwrapper::default();
            self.last_seq = None;
            self.partial = None;
            self.depacketizer.reset();
        }
        let now = packet.arrival;
        self.reorder.push(packet);
        self.poll(now, out);
    }

    /// Releases packets whose turn has come and the frames they complete.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Frame>) {
        while let Some((seq, packet)) = self.reorder.pop(now) {
            self.process(seq, packet, out);
        }
    }

    /// Releases everything (end of stream).
    pub fn flush(&mut self, out: &mut Vec<Frame>) {
        for (seq, packet) in self.reorder.drain() {
            self.process(seq, packet, out);
        }
    }

    /// Forgets the current state after an interruption: the next frame must
    /// be a keyframe and the next packet may come from anywhere.
    pub fn restart(&mut self) {
        let mut frames = Vec::new();
        self.flush(&mut frames);
        self.run = self.run.wrapping_add(1);
        self.ssrc = None;
        self.partial = None;
        self.depacketizer.reset();
        if self.codec.is_video() {
            self.waiting_for_keyframe = true;
            self.keyframe_wanted = true;
        }
    }

    fn lose(&mut self) {
        self.partial = None;
        self.depacketizer.reset();
        if self.codec.is_video() {
            self.waiting_for_keyframe = true;
            self.keyframe_wanted = true;
        }
    }

    fn process(&mut self, seq: ExtSeq, packet: RtpPacket, out: &mut Vec<Frame>) {
        let gap = self
            .last_seq
            .is_some_and(|last| seq.0 != last.0.saturating_add(1));
        self.last_seq = Some(seq);
        let timestamp = self.timestamps.unwrap(packet.timestamp);
        if gap {
            self.stats.gaps += 1;
            self.lose();
        }
        if !self.codec.is_video() {
            // Opus: one packet, one frame.
            self.depacketizer.reset();
            let result = self
                .depacketizer
                .push(&packet.payload)
                .and_then(|()| self.depacketizer.finish());
            match result {
                Ok(frame) => out.push(Frame {
                    timestamp,
                    keyframe: true,
                    data: frame.data,
                    config: None,
                    arrival: packet.arrival,
                    run: self.run,
                }),
                Err(_) => self.stats.malformed += 1,
            }
            return;
        }
        if self
            .partial
            .as_ref()
            .is_some_and(|p| p.timestamp != timestamp)
        {
            // The previous frame never saw its marker: incomplete.
            self.lose();
        }
        let partial = self.partial.get_or_insert(Partial {
            timestamp,
            arrival: packet.arrival,
        });
        let arrival = partial.arrival;
        if self.depacketizer.push(&packet.payload).is_err() {
            self.stats.malformed += 1;
            self.lose();
            return;
        }
        if !packet.marker {
            return;
        }
        self.partial = None;
        match self.depacketizer.finish() {
            Ok(frame) => {
                if self.waiting_for_keyframe && !frame.keyframe {
                    self.stats.frames_dropped += 1;
                    return;
                }
                self.waiting_for_keyframe = false;
                out.push(Frame {
                    timestamp,
                    keyframe: frame.keyframe,
                    data: frame.data,
                    config: frame.config,
                    arrival,
                    run: self.run,
                });
            }
            Err(_) => {
                self.stats.malformed += 1;
                self.lose();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::rtp::{RtpTime, SeqNo};

    fn packet(ssrc: u32, seq: u16, keyframe: bool, at: Instant) -> RtpPacket {
        RtpPacket {
            ssrc,
            seq: SeqNo(seq),
            timestamp: RtpTime(u32::from(seq) * 3_000),
            marker: true,
            payload: crate::depacketize::vp8::test_frame_payload(keyframe),
            arrival: at,
        }
    }

    #[test]
    fn a_new_session_starts_at_a_keyframe() {
        let t0 = Instant::now();
        let mut assembler = FrameAssembler::new(Codec::Vp8, Duration::ZERO);
        let mut out = Vec::new();
        assembler.push(packet(1, 10, true, t0), &mut out);
        assembler.push(packet(1, 11, false, t0), &mut out);
        assert_eq!(out.len(), 2);
        assert!(
            assembler.take_keyframe_wanted(),
            "the first keyframe is asked for at the start"
        );
        assert!(!assembler.take_keyframe_wanted());
        // The publisher comes back with a new SSRC and its first keyframe
        // lost: its delta frames are dropped, a keyframe is asked for.
        out.clear();
        assembler.push(packet(2, 500, false, t0), &mut out);
        assembler.push(packet(2, 501, false, t0), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(assembler.waiting_for_keyframe());
        assert!(assembler.take_keyframe_wanted());
        assert_eq!(assembler.stats().frames_dropped, 2);
        assembler.push(packet(2, 502, true, t0), &mut out);
        assembler.push(packet(2, 503, false, t0), &mut out);
        assert_eq!(
            out.iter().map(|f| f.keyframe).collect::<Vec<_>>(),
            [true, false]
        );
        assert!(!assembler.waiting_for_keyframe());
    }
}
