//! HLS output: fMP4 (CMAF) segments, a media playlist and a multivariant
//! playlist (issue 4, recording.md "Container facts").
//!
//! - Segments start on video keyframes; each is a run of ~1 s fragments
//!   appended as they are made (a crash loses at most one fragment).
//! - Media playlist: VERSION 7, EXT-X-MAP, INDEPENDENT-SEGMENTS,
//!   PROGRAM-DATE-TIME on every segment, PLAYLIST-TYPE EVENT while
//!   recording, ENDLIST when done, DISCONTINUITY after a merged gap or a
//!   new init segment. TARGETDURATION is the slice length, raised (never
//!   below) to the largest round(EXTINF) if a keyframe came late.
//! - A parameter-set or resolution change writes a new init segment (the
//!   muxer's `stsd` gains an entry; `tfdt` goes on) behind a DISCONTINUITY
//!   and a new EXT-X-MAP; H.264 parameter sets also stay in band.
//! - Multivariant playlist: CODECS from the actual sample entries (lowercase
//!   `opus`) and RESOLUTION.

use std::time::SystemTime;

use m3u8_rs::{
    MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Resolution, VariantStream,
};
use shiguredo_mp4::mux::Fmp4SegmentMuxer;

use crate::config::{Command, MediaKind};
use crate::fragment::{build_fragment, declare_tracks, kind_slot, timescale, Sample};
use crate::mp4::Mp4Error;
use crate::sample_entry::TrackFormat;

#[derive(Debug, Clone)]
struct SegmentEntry {
    uri: String,
    duration: f64,
    discontinuity: bool,
    map: String,
    start: SystemTime,
}

#[derive(Debug)]
struct OpenSegment {
    path: String,
    uri: String,
    video_ticks: u64,
    audio_ticks: u64,
    start: SystemTime,
    discontinuity: bool,
}

/// Writes one HLS recording (a playlist and its segments).
#[derive(Debug)]
pub struct HlsWriter {
    dir: String,
    stem: String,
    target: u64,
    muxer: Option<Fmp4SegmentMuxer>,
    /// Tracks the muxer knows (audio, video).
    muxer_tracks: [bool; 2],
    video: Option<TrackFormat>,
    audio: Option<TrackFormat>,
    init_count: u32,
    init_uri: String,
    segment_count: u32,
    segments: Vec<SegmentEntry>,
    open: Option<OpenSegment>,
    discontinuity_next: bool,
    /// A segment ended since the media playlist was last written (see
    /// [`HlsWriter::flush_playlist`]).
    playlist_stale: bool,
    paths: Vec<String>,
    /// Bytes of segments and inits written (playlists are added at the end).
    pub media_size: u64,
    playlist_size: u64,
    multivariant_size: u64,
    peak_bandwidth: u64,
}

fn split_path(base: &str) -> (String, String) {
    match base.rsplit_once('/') {
        Some((dir, stem)) => (format!("{dir}/"), stem.to_owned()),
        None => (String::new(), base.to_owned()),
    }
}

impl HlsWriter {
    /// A writer for `base` (path without extension), segments of `target` s.
    pub fn new(base: &str, target_secs: u64) -> Self {
        let (dir, stem) = split_path(base);
        Self {
            dir,
            stem,
            target: target_secs.max(1),
            muxer: None,
            muxer_tracks: [false; 2],
            video: None,
            audio: None,
            init_count: 0,
            init_uri: String::new(),
            segment_count: 0,
            segments: Vec::new(),
            open: None,
            discontinuity_next: false,
            playlist_stale: false,
            paths: Vec::new(),
            media_size: 0,
            playlist_size: 0,
            multivariant_size: 0,
            peak_bandwidth: 0,
        }
    }

    /// The multivariant playlist (the recording's object).
    pub fn object(&self) -> String {
        format!("{}{}.m3u8", self.dir, self.stem)
    }

    fn media_playlist_path(&self) -> String {
        format!("{}{}_media.m3u8", self.dir, self.stem)
    }

    /// Every path written so far.
    pub fn paths(&self) -> Vec<String> {
        let mut paths = vec![self.object(), self.media_playlist_path()];
        paths.extend(self.paths.iter().cloned());
        paths
    }

    /// Total bytes (playlists + inits + segments).
    pub fn size(&self) -> u64 {
        self.media_size + self.playlist_size + self.multivariant_size
    }

    /// Whether a segment is open.
    pub fn segment_open(&self) -> bool {
        self.open.is_some()
    }

    /// Length of the open segment in seconds.
    pub fn segment_seconds(&self) -> f64 {
        self.open.as_ref().map_or(0.0, segment_seconds)
    }

    /// The next segment uses these formats in a new init segment (after a
    /// discontinuity).
    ///
    /// The muxer is kept: its `stsd` gains the new sample entry and `tfdt`
    /// goes on, so timestamps keep increasing across the change.
    pub fn set_formats(&mut self, video: Option<TrackFormat>, audio: Option<TrackFormat>) {
        let changed = self.video.as_ref().map(|f| &f.entry) != video.as_ref().map(|f| &f.entry)
            || self.audio.as_ref().map(|f| &f.entry) != audio.as_ref().map(|f| &f.entry);
        if changed {
            self.video = video;
            self.audio = audio;
            self.init_uri = String::new();
            if !self.segments.is_empty() || self.open.is_some() {
                self.discontinuity_next = true;
            }
        }
    }

    /// Whether the track is in the current init.
    pub fn has(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Audio => self.audio.is_some(),
            MediaKind::Video => self.video.is_some(),
        }
    }

    /// The next segment follows a gap.
    pub fn mark_discontinuity(&mut self) {
        self.discontinuity_next = true;
    }

    /// Appends a fragment to the open segment (opening one that starts at
    /// wall time `start` if needed).
    pub fn write_fragment(
        &mut self,
        samples: &[Sample],
        start: SystemTime,
        out: &mut Vec<Command>,
    ) -> Result<(), Mp4Error> {
        if samples.is_empty() {
            return Ok(());
        }
        if self.muxer.is_none() {
            self.muxer = Some(Fmp4SegmentMuxer::new()?);
        }
        let video_entry = self.video.as_ref().map(|f| f.entry.clone());
        let audio_entry = self.audio.as_ref().map(|f| f.entry.clone());
        let Some(muxer) = self.muxer.as_mut() else {
            return Ok(());
        };
        if self.init_uri.is_empty() {
            // The init written below declares every track of the
            // recording, including one whose first sample comes later.
            let mut undeclared = Vec::new();
            for (kind, entry) in [
                (MediaKind::Video, video_entry.as_ref()),
                (MediaKind::Audio, audio_entry.as_ref()),
            ] {
                let slot = &mut self.muxer_tracks[kind_slot(kind)];
                if let Some(entry) = entry.filter(|_| !*slot) {
                    *slot = true;
                    undeclared.push((kind, entry));
                }
            }
            declare_tracks(muxer, &undeclared)?;
        }
        let fragment = build_fragment(muxer, samples, video_entry.as_ref(), audio_entry.as_ref())?;
        if fragment.placements.is_empty() {
            return Ok(());
        }
        if self.init_uri.is_empty() {
            self.init_count += 1;
            let init = muxer.init_segment_bytes()?;
            let uri = format!("{}_init{}.mp4", self.stem, self.init_count);
            let path = format!("{}{}", self.dir, uri);
            self.media_size += init.len() as u64;
            self.paths.push(path.clone());
            out.push(Command::WriteFile { path, bytes: init });
            self.init_uri = uri;
            self.write_multivariant(out);
        }
        if self.open.is_none() {
            self.segment_count += 1;
            let uri = format!("{}_{:05}.m4s", self.stem, self.segment_count);
            let path = format!("{}{}", self.dir, uri);
            self.paths.push(path.clone());
            out.push(Command::WriteFile {
                path: path.clone(),
                bytes: Vec::new(),
            });
            self.open = Some(OpenSegment {
                path,
                uri,
                video_ticks: 0,
                audio_ticks: 0,
                start,
                discontinuity: std::mem::replace(&mut self.discontinuity_next, false),
            });
        }
        if let Some(open) = self.open.as_mut() {
            for p in &fragment.placements {
                match p.kind {
                    MediaKind::Video => open.video_ticks += u64::from(p.duration),
                    MediaKind::Audio => open.audio_ticks += u64::from(p.duration),
                }
            }
            self.media_size += fragment.bytes.len() as u64;
            out.push(Command::Append {
                path: open.path.clone(),
                bytes: fragment.bytes,
            });
        }
        Ok(())
    }

    /// Closes the open segment; the media playlist that lists it is
    /// written by the next [`HlsWriter::flush_playlist`], once for all the
    /// segments one input ended (a long hole's filler can end thousands,
    /// and rewriting the playlist after each was quadratic).
    pub fn end_segment(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let duration = segment_seconds(&open);
        self.segments.push(SegmentEntry {
            uri: open.uri,
            duration,
            discontinuity: open.discontinuity,
            map: self.init_uri.clone(),
            start: open.start,
        });
        self.playlist_stale = true;
    }

    /// Writes the media playlist if a segment ended since it was written.
    pub fn flush_playlist(&mut self, out: &mut Vec<Command>) {
        if self.playlist_stale {
            self.write_media_playlist(false, out);
        }
    }

    /// Total duration of the closed segments (seconds).
    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// Ends the recording: last segment, ENDLIST, final multivariant.
    pub fn finish(&mut self, out: &mut Vec<Command>) {
        self.end_segment();
        self.write_media_playlist(true, out);
        self.write_multivariant(out);
    }

    fn write_media_playlist(&mut self, ended: bool, out: &mut Vec<Command>) {
        self.playlist_stale = false;
        let longest = self
            .segments
            .iter()
            .map(|s| s.duration.round() as u64)
            .max()
            .unwrap_or(0);
        let mut previous_map = String::new();
        let segments = self
            .segments
            .iter()
            .map(|s| {
                let map = (s.map != previous_map).then(|| m3u8_rs::Map {
                    uri: s.map.clone(),
                    ..Default::default()
                });
                previous_map.clone_from(&s.map);
                let start: chrono::DateTime<chrono::Utc> = s.start.into();
                MediaSegment {
                    uri: s.uri.clone(),
                    duration: ((s.duration * 1000.0).round() / 1000.0) as f32,
                    discontinuity: s.discontinuity,
                    map,
                    program_date_time: Some(start.fixed_offset()),
                    ..Default::default()
                }
            })
            .collect();
        let playlist = MediaPlaylist {
            version: Some(7),
            target_duration: self.target.max(longest),
            media_sequence: 0,
            segments,
            end_list: ended,
            playlist_type: Some(MediaPlaylistType::Event),
            independent_segments: true,
            ..Default::default()
        };
        let mut bytes = Vec::new();
        if playlist.write_to(&mut bytes).is_ok() {
            self.playlist_size = bytes.len() as u64;
            out.push(Command::WriteFile {
                path: self.media_playlist_path(),
                bytes,
            });
        }
        for s in &self.segments {
            if s.duration > 0.0 {
                // Only an estimate from the average over the recording.
                let bandwidth = (self.media_size as f64 * 8.0 / self.duration().max(1.0)) as u64;
                self.peak_bandwidth = self.peak_bandwidth.max(bandwidth);
                break;
            }
        }
    }

    fn write_multivariant(&mut self, out: &mut Vec<Command>) {
        let codecs: Vec<&str> = [self.video.as_ref(), self.audio.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| f.codec_string.as_str())
            .collect();
        let resolution = self.video.as_ref().map(|f| Resolution {
            width: u64::from(f.size.0),
            height: u64::from(f.size.1),
        });
        let playlist = MasterPlaylist {
            version: Some(7),
            independent_segments: true,
            variants: vec![VariantStream {
                uri: format!("{}_media.m3u8", self.stem),
                bandwidth: self.peak_bandwidth.max(64_000),
                codecs: Some(codecs.join(",")),
                resolution,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut bytes = Vec::new();
        if playlist.write_to(&mut bytes).is_ok() {
            self.multivariant_size = bytes.len() as u64;
            out.push(Command::WriteFile {
                path: self.object(),
                bytes,
            });
        }
    }
}

/// A segment lasts as long as its video (its audio without video).
/// Segments are cut at video keyframes, so the video of consecutive
/// segments abuts and their EXTINF add up to the recording. Not the longer
/// track: the audio packet that straddles a cut (still pending in its lane
/// when the keyframe came) starts the next segment, which then holds more
/// audio than video (up to 20 ms, 120 ms of filler silence after a gap),
/// and the playlist grew longer than the recording by that much per
/// segment.
fn segment_seconds(open: &OpenSegment) -> f64 {
    if open.video_ticks > 0 {
        open.video_ticks as f64 / f64::from(timescale(MediaKind::Video))
    } else {
        open.audio_ticks as f64 / f64::from(timescale(MediaKind::Audio))
    }
}
