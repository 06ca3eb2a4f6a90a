//! Filling time in an open file: the frames that cover a hole (Opus
//! silence, the last keyframe repeated), and the end of both tracks at a
//! pause or stop.

use super::FileSeries;
use crate::config::MediaKind;
use crate::depacketize::opus::silence_packet;
use crate::fragment::kind_slot;
use crate::lane::{ticks_to_us, us_to_ticks, LaneAdd, TimedFrame};

/// At most this many filler frames per hole (an hour of 120 ms silence
/// packets, ten hours of a frozen frame once a second).
const MAX_FILLER_FRAMES: i64 = 30_000;
/// At most this much repeated keyframe data per hole.
const MAX_FILLER_BYTES: usize = 16 * 1024 * 1024;

impl FileSeries {
    /// Filler frames covering `from..to` (file ticks) of `kind`: Opus
    /// silence packets of up to 120 ms, or the last keyframe once a second.
    /// A hole is filled at once, so a long one is spread over at most
    /// [`MAX_FILLER_FRAMES`] frames and [`MAX_FILLER_BYTES`] of repeated
    /// keyframes, further apart (an hour of frozen video is not 3 600
    /// copies of a keyframe in memory).
    pub(super) fn filler(&mut self, kind: MediaKind, from: i64, to: i64) -> Vec<TimedFrame> {
        let Some(file) = self.open.as_mut() else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        let hole = to - from;
        match kind {
            MediaKind::Audio => {
                const OPUS_FRAME: i64 = 960;
                let spacing = (hole / MAX_FILLER_FRAMES).max(6 * OPUS_FRAME);
                let mut at = from;
                while to - at >= OPUS_FRAME {
                    let step = if spacing > 6 * OPUS_FRAME {
                        // Beyond the cap: 120 ms of silence per sample, the
                        // samples `spacing` apart.
                        spacing.min(to - at)
                    } else {
                        ((to - at) / OPUS_FRAME).min(6) * OPUS_FRAME
                    };
                    let count = (step / OPUS_FRAME).min(6);
                    frames.push(TimedFrame {
                        kind,
                        pts: file.to_pts(at, kind),
                        keyframe: true,
                        data: silence_packet(count as u8),
                        nominal: u32::try_from(step).unwrap_or(u32::MAX),
                        filler: true,
                    });
                    at += step;
                }
            }
            MediaKind::Video => {
                let lane = &file.lanes[kind_slot(kind)];
                let Some(keyframe) = lane.last_keyframe.clone() else {
                    // Nothing to freeze: the hole becomes a long sample.
                    file.frozen = true;
                    return Vec::new();
                };
                const SECOND: i64 = 90_000;
                let by_bytes = (MAX_FILLER_BYTES / keyframe.len().max(1)).max(1) as i64;
                let spacing = (hole / MAX_FILLER_FRAMES.min(by_bytes)).max(SECOND);
                let mut at = from;
                while at < to {
                    let step = spacing.min(to - at);
                    frames.push(TimedFrame {
                        kind,
                        pts: file.to_pts(at, kind),
                        keyframe: true,
                        data: keyframe.clone(),
                        nominal: u32::try_from(step).unwrap_or(u32::MAX),
                        filler: true,
                    });
                    at += step;
                }
            }
        }
        if frames.is_empty() {
            file.frozen = true;
        }
        frames
    }

    /// Closes both lanes of the open file, the video one at the audio's end
    /// when that is later (see [`FileSeries::interrupt`]).
    pub(super) fn end_lanes_together(&mut self) {
        let Some(file) = self.open.as_mut() else {
            return;
        };
        let audio = &mut file.lanes[kind_slot(MediaKind::Audio)];
        if let Some(sample) = audio.close(None) {
            file.buffer.push(sample);
        }
        let audio_end_us = ticks_to_us(audio.next_dts, MediaKind::Audio);
        let video_end = us_to_ticks(audio_end_us, MediaKind::Video);
        let video = &mut file.lanes[kind_slot(MediaKind::Video)];
        if !video.started {
            return;
        }
        // A last frame up to half a second longer than its own duration.
        if let Some(sample) = video.close(Some(video_end)) {
            file.buffer.push(sample);
        }
        let from = video.next_dts;
        if from >= video_end {
            return;
        }
        // Further behind: a gap, filled with the last keyframe.
        let frames = self.filler(MediaKind::Video, from, video_end);
        let Some(file) = self.open.as_mut() else {
            return;
        };
        for frame in frames {
            let rel = file.rel(&frame);
            if let LaneAdd::Added(Some(sample)) =
                file.lanes[kind_slot(MediaKind::Video)].add(frame, rel, false)
            {
                file.buffer.push(sample);
            }
        }
        if let Some(sample) = file.lanes[kind_slot(MediaKind::Video)].close(Some(video_end)) {
            file.buffer.push(sample);
        }
    }
}
