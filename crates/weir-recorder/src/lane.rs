//! One track's timeline inside a file: sample durations from timestamps,
//! holes detected (DTX, merged gaps) for the file series to fill.
//!
//! A frame's position in the file is its presentation time minus the file's
//! origin (and, for `never_split`, the skipped gaps), in track ticks. A
//! sample's duration is the distance to the next frame's position, so the
//! file's timeline stays locked to RTP time (rule 1) and small jitter is
//! absorbed; a distance above the hole threshold is a hole: the sample keeps
//! its nominal duration and the file series fills the rest (rule 2).

use crate::config::MediaKind;
use crate::fragment::{timescale, Sample};

/// A frame on the recorder's timeline.
#[derive(Debug, Clone)]
pub struct TimedFrame {
    /// Track.
    pub kind: MediaKind,
    /// Presentation time, track ticks since the recorder's epoch.
    pub pts: i64,
    /// Sync sample.
    pub keyframe: bool,
    /// Sample bytes.
    pub data: Vec<u8>,
    /// Nominal duration (Opus TOC; video: 0 = unknown).
    pub nominal: u32,
    /// Synthesized filler (silence / repeated keyframe).
    pub filler: bool,
}

impl TimedFrame {
    /// Presentation time in microseconds.
    pub fn pts_us(&self) -> i64 {
        ticks_to_us(self.pts, self.kind)
    }
}

/// Ticks of `kind` → microseconds.
pub fn ticks_to_us(ticks: i64, kind: MediaKind) -> i64 {
    (i128::from(ticks) * 1_000_000 / i128::from(timescale(kind))) as i64
}

/// Microseconds → ticks of `kind`.
pub fn us_to_ticks(us: i64, kind: MediaKind) -> i64 {
    (i128::from(us) * i128::from(timescale(kind)) / 1_000_000) as i64
}

/// The longest distance between two frames that is not a hole.
pub fn hole_threshold(kind: MediaKind) -> i64 {
    match kind {
        // Opus DTX sends nothing for silence: > 100 ms is a hole.
        MediaKind::Audio => 4_800,
        // Video can legitimately slow down (screen share): > 0.5 s is a hole.
        MediaKind::Video => 45_000,
    }
}

/// Longest a filler frame may last before what follows it counts as a
/// hole (filled): a frozen picture is repeated once a second, silence
/// comes in packets of up to 120 ms. A real frame may run up to
/// [`hole_threshold`] past its nominal duration (video slows down; audio
/// jitters), but a filler is not stretched: when a publisher comes back,
/// the gap's fill ends at its first frame, usually audio, and its video
/// starts a little later.
pub fn filler_limit(kind: MediaKind) -> i64 {
    match kind {
        MediaKind::Audio => 5_760,
        MediaKind::Video => 90_000,
    }
}

/// What adding a frame to a lane did.
#[derive(Debug)]
pub enum LaneAdd {
    /// The frame is pending; maybe a sample was completed.
    Added(Option<Sample>),
    /// A hole from `from` to `to` (file ticks) must be filled first; nothing
    /// was changed.
    Hole {
        /// Start of the hole.
        from: i64,
        /// End of the hole (the frame's position).
        to: i64,
    },
    /// The frame is not after the previous one: dropped.
    Dropped,
}

/// One track of an open file.
#[derive(Debug)]
pub struct Lane {
    kind: MediaKind,
    /// End of the emitted timeline (file ticks).
    pub next_dts: i64,
    pending: Option<TimedFrame>,
    /// Last keyframe's bytes (video filler).
    pub last_keyframe: Option<Vec<u8>>,
    last_duration: u32,
    /// Whether any frame was added.
    pub started: bool,
}

impl Lane {
    /// An empty lane.
    pub fn new(kind: MediaKind) -> Self {
        Self {
            kind,
            next_dts: 0,
            pending: None,
            last_keyframe: None,
            last_duration: match kind {
                MediaKind::Audio => 960,
                MediaKind::Video => 3_000,
            },
            started: false,
        }
    }

    /// Whether a frame waits for its duration.
    pub fn pending(&self) -> Option<&TimedFrame> {
        self.pending.as_ref()
    }

    fn nominal(&self, frame: &TimedFrame) -> u32 {
        if frame.nominal > 0 {
            frame.nominal
        } else {
            self.last_duration
        }
    }

    /// Whether a frame `distance` ticks after the pending `previous` one
    /// leaves a hole: further than its nominal duration plus
    /// [`hole_threshold`], or for a filler, than [`filler_limit`].
    fn leaves_hole(&self, previous: &TimedFrame, distance: i64) -> bool {
        let nominal = i64::from(self.nominal(previous));
        if previous.filler {
            distance > nominal.max(filler_limit(self.kind))
        } else {
            distance - nominal > hole_threshold(self.kind)
        }
    }

    /// The hole in front of a frame at `rel`, if any (see [`Lane::add`]).
    pub fn hole(&self, rel: i64, fill: bool) -> Option<(i64, i64)> {
        if !fill {
            return None;
        }
        let threshold = hole_threshold(self.kind);
        let distance = rel - self.next_dts;
        match &self.pending {
            Some(previous) => {
                let nominal = i64::from(self.nominal(previous));
                self.leaves_hole(previous, distance)
                    .then_some((self.next_dts + nominal, rel))
            }
            None => {
                let can_fill = self.kind == MediaKind::Audio || self.started;
                (can_fill && distance > threshold).then_some((self.next_dts, rel))
            }
        }
    }

    /// Adds a frame at file position `rel`; `fill` says whether holes are to
    /// be reported (otherwise they become long samples).
    pub fn add(&mut self, frame: TimedFrame, rel: i64, fill: bool) -> LaneAdd {
        let threshold = hole_threshold(self.kind);
        let completed = match self.pending.take() {
            Some(previous) => {
                let nominal = i64::from(self.nominal(&previous));
                let distance = rel - self.next_dts;
                if distance <= 0 {
                    self.pending = Some(previous);
                    return LaneAdd::Dropped;
                }
                if fill && self.leaves_hole(&previous, distance) {
                    self.pending = Some(previous);
                    return LaneAdd::Hole {
                        from: self.next_dts + nominal,
                        to: rel,
                    };
                }
                Some(self.emit(previous, distance))
            }
            None => {
                let distance = rel - self.next_dts;
                let can_fill = self.kind == MediaKind::Audio || self.started;
                if fill && can_fill && distance > threshold {
                    return LaneAdd::Hole {
                        from: self.next_dts,
                        to: rel,
                    };
                }
                None
            }
        };
        if frame.keyframe && self.kind == MediaKind::Video && !frame.filler {
            self.last_keyframe = Some(frame.data.clone());
        }
        self.started = true;
        self.pending = Some(frame);
        LaneAdd::Added(completed)
    }

    /// Ends the lane's timeline: at `end` (file ticks) when that is a
    /// plausible duration for the pending frame, else after its nominal
    /// duration. Returns the last sample.
    pub fn close(&mut self, end: Option<i64>) -> Option<Sample> {
        let previous = self.pending.take()?;
        let nominal = i64::from(self.nominal(&previous)).max(1);
        let duration = match end.map(|end| end - self.next_dts) {
            Some(d) if d > 0 && d <= nominal + hole_threshold(self.kind) => d,
            _ => nominal,
        };
        Some(self.emit(previous, duration))
    }

    /// Takes the pending frame away (it belongs to the next file).
    pub fn take_pending(&mut self) -> Option<TimedFrame> {
        self.pending.take()
    }

    fn emit(&mut self, frame: TimedFrame, duration: i64) -> Sample {
        let duration = u32::try_from(duration.clamp(1, i64::from(u32::MAX))).unwrap_or(u32::MAX);
        self.next_dts += i64::from(duration);
        if self.kind == MediaKind::Video && !frame.filler {
            self.last_duration = duration.min(9_000);
        }
        Sample {
            kind: frame.kind,
            pts: frame.pts,
            duration,
            keyframe: frame.keyframe,
            data: frame.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: MediaKind, nominal: u32, filler: bool) -> TimedFrame {
        TimedFrame {
            kind,
            pts: 0,
            keyframe: true,
            data: vec![0x65, 1, 2, 3],
            nominal,
            filler,
        }
    }

    /// The duration of the sample an `add` completed (any other outcome
    /// fails the test).
    fn added_duration(add: LaneAdd) -> u32 {
        match add {
            LaneAdd::Added(Some(sample)) => sample.duration,
            other => panic!("{other:?}"),
        }
    }

    /// A lane whose pending frame starts at 0 and is `previous`.
    fn lane_with(previous: TimedFrame) -> Lane {
        let mut lane = Lane::new(previous.kind);
        assert!(matches!(lane.add(previous, 0, true), LaneAdd::Added(None)));
        lane
    }

    #[test]
    fn a_frozen_frame_is_not_stretched_past_a_second() {
        // The fill's last frozen frame lasts 0.95 s; the publisher's video
        // comes 1.075 s after its start: the rest is filled, not a 1.075 s
        // sample (less than the 0.5 s over its duration of a real frame).
        let video = MediaKind::Video;
        let mut lane = lane_with(frame(video, 85_500, true));
        assert!(matches!(
            lane.add(frame(video, 0, false), 96_750, true),
            LaneAdd::Hole {
                from: 85_500,
                to: 96_750
            }
        ));
        assert_eq!(lane.hole(96_750, true), Some((85_500, 96_750)));
        // Within a second it ends the frozen frame.
        assert_eq!(
            added_duration(lane.add(frame(video, 0, false), 90_000, true)),
            90_000
        );
    }

    #[test]
    fn a_real_frame_may_run_long_before_a_hole() {
        // A slow real frame (a screen share) becomes a long sample up to
        // 0.5 s past its duration.
        let video = MediaKind::Video;
        let mut lane = lane_with(frame(video, 3_000, false));
        assert_eq!(lane.hole(40_000, true), None);
        assert_eq!(
            added_duration(lane.add(frame(video, 3_000, false), 40_000, true)),
            40_000
        );
        assert!(matches!(
            lane.add(frame(video, 0, false), 40_000 + 3_000 + 45_001, true),
            LaneAdd::Hole { .. }
        ));
    }

    #[test]
    fn silence_filler_is_not_stretched_past_120_ms() {
        let audio = MediaKind::Audio;
        // 120 ms of silence, then audio 150 ms after its start: filled.
        let mut lane = lane_with(frame(audio, 5_760, true));
        assert!(matches!(
            lane.add(frame(audio, 960, false), 7_200, true),
            LaneAdd::Hole {
                from: 5_760,
                to: 7_200
            }
        ));
        // A real 20 ms packet may be followed 100 ms later (jitter, DTX
        // under the threshold) without a fill.
        let mut lane = lane_with(frame(audio, 960, false));
        assert!(matches!(
            lane.add(frame(audio, 960, false), 4_800, true),
            LaneAdd::Added(Some(_))
        ));
    }
}
