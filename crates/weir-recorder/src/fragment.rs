//! One fMP4 fragment (`moof` + `mdat`) from the samples of both tracks, via
//! `shiguredo_mp4`'s `Fmp4SegmentMuxer` (which numbers fragments and keeps
//! each track's `tfdt` as the sum of the durations before it).

use std::num::NonZeroU32;

use shiguredo_mp4::boxes::SampleEntry;
use shiguredo_mp4::mux::{Fmp4SegmentMuxer, MuxError, Sample as MuxSample};
use shiguredo_mp4::TrackKind;

use crate::config::MediaKind;

/// One sample ready for a container.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Track.
    pub kind: MediaKind,
    /// Presentation time on the recorder's timeline (track ticks).
    pub pts: i64,
    /// Duration in track ticks.
    pub duration: u32,
    /// Sync sample.
    pub keyframe: bool,
    /// Bytes.
    pub data: Vec<u8>,
}

/// Where a sample's bytes sit inside a fragment's `mdat` payload.
#[derive(Debug, Clone)]
pub struct SamplePlacement {
    /// Track.
    pub kind: MediaKind,
    /// Offset from the start of the fragment bytes.
    pub offset: u64,
    /// Size.
    pub size: usize,
    /// Duration in track ticks.
    pub duration: u32,
    /// Sync sample.
    pub keyframe: bool,
}

/// A fragment's bytes and the layout of its samples.
#[derive(Debug, Clone)]
pub struct BuiltFragment {
    /// `moof` + `mdat` header + payload.
    pub bytes: Vec<u8>,
    /// Length of `moof` + `mdat` header.
    pub header_len: u64,
    /// The samples in payload order.
    pub placements: Vec<SamplePlacement>,
}

/// Timescale of a track kind.
pub fn timescale(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => 48_000,
        MediaKind::Video => 90_000,
    }
}

/// Index of a track kind in per-kind arrays (audio 0, video 1).
pub(crate) fn kind_slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

pub(crate) fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}

/// Makes the muxer know a track before its first sample, so that an init
/// segment written now declares it (the muxer otherwise adds a track at its
/// first sample, and fragments of a track the init lacks do not play).
///
/// The muxer is fed one empty, zero-length sample per track and the
/// fragment it makes is thrown away: `tfdt` stays at 0, and only the
/// fragment sequence number moves on (it only has to increase).
pub fn declare_tracks(
    muxer: &mut Fmp4SegmentMuxer,
    tracks: &[(MediaKind, &SampleEntry)],
) -> Result<(), MuxError> {
    if tracks.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<MuxSample> = tracks
        .iter()
        .map(|(kind, entry)| MuxSample {
            track_kind: track_kind(*kind),
            sample_entry: Some((*entry).clone()),
            keyframe: true,
            timescale: NonZeroU32::new(timescale(*kind)).unwrap_or(NonZeroU32::MIN),
            duration: 0,
            composition_time_offset: None,
            data_offset: 0,
            data_size: 0,
        })
        .collect();
    muxer.create_media_segment_metadata(&placeholders)?;
    Ok(())
}

/// Builds a fragment: video samples first, then audio, each track contiguous.
pub fn build_fragment(
    muxer: &mut Fmp4SegmentMuxer,
    samples: &[Sample],
    video_entry: Option<&SampleEntry>,
    audio_entry: Option<&SampleEntry>,
) -> Result<BuiltFragment, MuxError> {
    let mut ordered: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.kind == MediaKind::Video && video_entry.is_some())
        .collect();
    ordered.extend(
        samples
            .iter()
            .filter(|s| s.kind == MediaKind::Audio && audio_entry.is_some()),
    );
    let mut mux_samples = Vec::with_capacity(ordered.len());
    let mut offset = 0u64;
    for s in &ordered {
        let entry = match s.kind {
            MediaKind::Video => video_entry,
            MediaKind::Audio => audio_entry,
        };
        mux_samples.push(MuxSample {
            track_kind: track_kind(s.kind),
            sample_entry: entry.cloned(),
            keyframe: s.keyframe,
            timescale: NonZeroU32::new(timescale(s.kind)).unwrap_or(NonZeroU32::MIN),
            duration: s.duration,
            composition_time_offset: None,
            data_offset: offset,
            data_size: s.data.len(),
        });
        offset += s.data.len() as u64;
    }
    let header = muxer.create_media_segment_metadata(&mux_samples)?;
    let header_len = header.len() as u64;
    let mut bytes = header;
    let mut placements = Vec::with_capacity(ordered.len());
    for s in ordered {
        placements.push(SamplePlacement {
            kind: s.kind,
            offset: bytes.len() as u64,
            size: s.data.len(),
            duration: s.duration,
            keyframe: s.keyframe,
        });
        bytes.extend_from_slice(&s.data);
    }
    Ok(BuiltFragment {
        bytes,
        header_len,
        placements,
    })
}

/// Splits a serialized init segment into (`ftyp`, `moov`).
pub fn split_init(init: &[u8]) -> Option<(&[u8], &[u8])> {
    let size = u32::from_be_bytes(init.get(0..4)?.try_into().ok()?) as usize;
    if init.get(4..8)? != b"ftyp" || size > init.len() {
        return None;
    }
    Some(init.split_at(size))
}
