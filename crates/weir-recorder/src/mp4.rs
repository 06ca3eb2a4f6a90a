//! MP4 output: a "hybrid MP4" (as OBS and `shiguredo_mp4`'s docs describe).
//!
//! While recording the file is a valid fragmented MP4, flushed one ~1 s
//! fragment at a time (crash safety, recording.md rule 6):
//!
//! ```text
//! [ftyp][free ... padding][free 16][moov+mvex][moof][mdat][moof][mdat]...
//! ```
//!
//! Every sample is also registered with `shiguredo_mp4`'s `Mp4FileMuxer` at
//! its absolute offset. Finalizing overwrites the head with the regular
//! `ftyp` and a 64-bit `mdat` header that swallows the fragmented `moov` and
//! all `moof`s, and appends a regular `moov` (`stts`/`stsz`/`stco`/`stss`).
//! The result is a plain, seekable MP4 (ffmpeg, Chromium) made in place with
//! three small writes; nothing is copied.

use shiguredo_mp4::boxes::SampleEntry;
use shiguredo_mp4::mux::{Fmp4SegmentMuxer, Mp4FileMuxer, MuxError, Sample as MuxSample};

use crate::config::{Command, MediaKind};
use crate::fragment::{
    build_fragment, declare_tracks, kind_slot, split_init, timescale, track_kind, Sample,
};

/// Why the MP4 writer failed (a bug or an impossible input; the file is
/// closed).
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    /// From `shiguredo_mp4`.
    #[error("mp4 mux: {0}")]
    Mux(String),
    /// The fragmented `ftyp` does not fit in the regular head.
    #[error("file head layout")]
    Layout,
}

impl From<MuxError> for Mp4Error {
    fn from(e: MuxError) -> Self {
        Mp4Error::Mux(e.to_string())
    }
}

/// Writes one MP4 file.
#[derive(Debug)]
pub struct Mp4Writer {
    path: String,
    fragments: Fmp4SegmentMuxer,
    index: Mp4FileMuxer,
    video_entry: Option<SampleEntry>,
    audio_entry: Option<SampleEntry>,
    entries_announced: [bool; 2],
    /// Bytes written so far.
    pub size: u64,
    started: bool,
}

impl Mp4Writer {
    /// A writer for `path` with the tracks' sample entries.
    pub fn new(
        path: String,
        video_entry: Option<SampleEntry>,
        audio_entry: Option<SampleEntry>,
    ) -> Result<Self, Mp4Error> {
        // The fragmented head declares both tracks even if one of them
        // starts later (crash recovery reads the fragments against it).
        let mut fragments = Fmp4SegmentMuxer::new()?;
        let declared: Vec<_> = [
            (MediaKind::Video, video_entry.as_ref()),
            (MediaKind::Audio, audio_entry.as_ref()),
        ]
        .into_iter()
        .filter_map(|(kind, entry)| entry.map(|e| (kind, e)))
        .collect();
        declare_tracks(&mut fragments, &declared)?;
        Ok(Self {
            path,
            fragments,
            index: Mp4FileMuxer::new()?,
            video_entry,
            audio_entry,
            entries_announced: [false; 2],
            size: 0,
            started: false,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the track is in the file.
    pub fn has(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Audio => self.audio_entry.is_some(),
            MediaKind::Video => self.video_entry.is_some(),
        }
    }

    /// Size a fragment of these samples would add (approximately).
    pub fn estimate(samples: &[Sample]) -> u64 {
        samples
            .iter()
            .map(|s| s.data.len() as u64 + 16)
            .sum::<u64>()
            + 200
    }

    /// Writes one fragment.
    pub fn write_fragment(
        &mut self,
        samples: &[Sample],
        out: &mut Vec<Command>,
    ) -> Result<(), Mp4Error> {
        if samples.is_empty() {
            return Ok(());
        }
        let fragment = build_fragment(
            &mut self.fragments,
            samples,
            self.video_entry.as_ref(),
            self.audio_entry.as_ref(),
        )?;
        if fragment.placements.is_empty() {
            return Ok(());
        }
        if !self.started {
            self.write_head(out)?;
            self.started = true;
        }
        let base = self.size;
        self.index.advance_position(fragment.header_len)?;
        for p in &fragment.placements {
            let i = kind_slot(p.kind);
            let entry = if self.entries_announced[i] {
                None
            } else {
                self.entries_announced[i] = true;
                match p.kind {
                    MediaKind::Audio => self.audio_entry.clone(),
                    MediaKind::Video => self.video_entry.clone(),
                }
            };
            self.index.append_sample(&MuxSample {
                track_kind: track_kind(p.kind),
                sample_entry: entry,
                keyframe: p.keyframe,
                timescale: std::num::NonZeroU32::new(timescale(p.kind))
                    .unwrap_or(std::num::NonZeroU32::MIN),
                duration: p.duration,
                composition_time_offset: None,
                data_offset: base + p.offset,
                data_size: p.size,
            })?;
        }
        self.size += fragment.bytes.len() as u64;
        out.push(Command::Append {
            path: self.path.clone(),
            bytes: fragment.bytes,
        });
        Ok(())
    }

    /// The head: fragmented `ftyp`, padding up to where the regular head will
    /// end, then the fragmented `moov`.
    fn write_head(&mut self, out: &mut Vec<Command>) -> Result<(), Mp4Error> {
        let init = self.fragments.init_segment_bytes()?;
        let (ftyp, moov) = split_init(&init).ok_or(Mp4Error::Layout)?;
        // The regular head: ftyp + free (reserved), then a 16-byte mdat header.
        let regular_head = self.index.initial_boxes_bytes().len() as u64;
        let mdat_header_at = regular_head.checked_sub(16).ok_or(Mp4Error::Layout)?;
        let pad = mdat_header_at
            .checked_sub(ftyp.len() as u64)
            .filter(|pad| *pad >= 8)
            .ok_or(Mp4Error::Layout)?;
        let mut head = ftyp.to_vec();
        head.extend_from_slice(&free_box(pad)?);
        head.extend_from_slice(&free_box(16)?);
        debug_assert_eq!(head.len() as u64, regular_head);
        head.extend_from_slice(moov);
        // The index muxer counts from the end of its own head.
        self.index.advance_position(moov.len() as u64)?;
        self.size = head.len() as u64;
        out.push(Command::WriteFile {
            path: self.path.clone(),
            bytes: head,
        });
        Ok(())
    }

    /// Whether anything was written.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Turns the file into a regular MP4 in place.
    pub fn finalize(&mut self, out: &mut Vec<Command>) -> Result<(), Mp4Error> {
        if !self.started {
            return Ok(());
        }
        let finalized = self.index.finalize()?;
        let mut appended = 0u64;
        for (offset, bytes) in finalized.offset_and_bytes_pairs() {
            if offset >= self.size {
                if offset != self.size {
                    return Err(Mp4Error::Layout);
                }
                appended += bytes.len() as u64;
                out.push(Command::Append {
                    path: self.path.clone(),
                    bytes: bytes.to_vec(),
                });
            } else {
                out.push(Command::WriteAt {
                    path: self.path.clone(),
                    offset,
                    bytes: bytes.to_vec(),
                });
            }
        }
        self.size += appended;
        Ok(())
    }
}

fn free_box(size: u64) -> Result<Vec<u8>, Mp4Error> {
    let size32 = u32::try_from(size).map_err(|_| Mp4Error::Layout)?;
    let mut b = Vec::with_capacity(size as usize);
    b.extend_from_slice(&size32.to_be_bytes());
    b.extend_from_slice(b"free");
    b.resize(size as usize, 0);
    Ok(b)
}
