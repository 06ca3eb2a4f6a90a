//! Crash recovery of MP4 recordings (recording.md, crash safety).
//!
//! While recording, an MP4 file is a valid fragmented MP4 flushed one
//! fragment (about a second) at a time:
//!
//! ```text
//! [ftyp][free ... padding][free 16][moov+mvex][moof][mdat][moof][mdat]...
//! ```
//!
//! After a crash the file ends somewhere in the last fragment. Recovery keeps
//! every complete `moof` + `mdat` pair, drops the torn tail, rebuilds the
//! sample table from the fragments' `trun`s, and returns the commands that
//! turn the file into the same regular MP4 the recorder's own finalization
//! makes (a new head, then a regular `moov` appended at the end of the kept
//! fragments). At most the fragment being written is lost.
//!
//! Only box headers, the `moov` and the `moof`s are read: media data is never
//! loaded, so recovering a 2 GiB file needs little memory.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::num::NonZeroU32;
use std::time::Duration;

use shiguredo_mp4::boxes::{MoofBox, MoovBox, SampleEntry};
use shiguredo_mp4::mux::{Mp4FileMuxer, Sample as MuxSample};
use shiguredo_mp4::{Decode, TrackKind};

use crate::config::Command;

/// Why a file could not be recovered.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("reading the file: {0}")]
    Io(#[from] io::Error),
    /// Not the recorder's layout (no `ftyp` + `moov` at the start).
    #[error("not a recording in progress: {0}")]
    Layout(String),
    /// No complete fragment: nothing to keep.
    #[error("no complete fragment")]
    Empty,
    #[error("mp4: {0}")]
    Mp4(String),
}

/// A recovered file: what to write, and what it holds.
#[derive(Debug)]
pub struct RecoveredMp4 {
    /// Cut the file to this length first (the torn tail goes).
    pub keep_len: u64,
    /// Then carry out these (`WriteAt`, `Append`) on the file.
    pub commands: Vec<Command>,
    /// Bytes of the finished file.
    pub size: u64,
    /// The longest track's duration.
    pub duration: Duration,
    pub width: u16,
    pub height: u16,
    /// Complete fragments kept.
    pub fragments: usize,
}

struct Track {
    kind: TrackKind,
    timescale: NonZeroU32,
    entry: SampleEntry,
    announced: bool,
    default_duration: u32,
    default_size: u32,
    /// Sum of sample durations, in `timescale` units.
    ticks: u64,
}

/// One sample of a fragment, at its absolute position in the file.
struct Placed {
    track_id: u32,
    offset: u64,
    size: u32,
    duration: u32,
    keyframe: bool,
}

/// Recovers the MP4 at `path` (the name used in the returned commands),
/// `len` bytes long, read through `file`.
pub fn recover_mp4<F: Read + Seek>(
    file: &mut F,
    len: u64,
    path: &str,
) -> Result<RecoveredMp4, RecoverError> {
    let mut index = Mp4FileMuxer::new().map_err(mux_error)?;
    let head_len = index.initial_boxes_bytes().len() as u64;

    // The head: ftyp and padding up to the regular head's length, then the
    // fragmented moov.
    let first = header_at(file, 0, len)?.ok_or_else(|| layout("too short"))?;
    if &first.kind != b"ftyp" {
        return Err(layout("no ftyp"));
    }
    let mut pos = first.size;
    let moov = loop {
        let header = header_at(file, pos, len)?.ok_or_else(|| layout("no moov"))?;
        if &header.kind == b"moov" {
            break header;
        }
        if &header.kind != b"free" && &header.kind != b"skip" {
            return Err(layout("unexpected box before moov"));
        }
        pos += header.size;
    };
    if pos != head_len {
        return Err(layout("the moov is not where the recorder puts it"));
    }
    let moov_bytes = read_exact_at(file, pos, moov.size)?;
    let (moov_box, _) =
        MoovBox::decode(&moov_bytes).map_err(|e| RecoverError::Mp4(e.to_string()))?;
    let mut tracks = tracks_of(&moov_box)?;
    index.advance_position(moov.size).map_err(mux_error)?;
    pos += moov.size;

    let mut keep_len = pos;
    let mut fragments = 0;
    while let Some(moof) = header_at(file, pos, len)? {
        if &moof.kind != b"moof" {
            break;
        }
        let Some(mdat) = header_at(file, pos + moof.size, len)? else {
            break;
        };
        if &mdat.kind != b"mdat" {
            break;
        }
        let moof_bytes = read_exact_at(file, pos, moof.size)?;
        let Ok((moof_box, _)) = MoofBox::decode(&moof_bytes) else {
            break;
        };
        let mut placed = place_samples(&moof_box, pos, &tracks);
        let data_end = pos + moof.size + mdat.size;
        if placed
            .iter()
            .any(|p| p.offset + u64::from(p.size) > data_end)
        {
            break;
        }
        placed.sort_by_key(|p| p.offset);
        index
            .advance_position(moof.size + mdat.header_len)
            .map_err(mux_error)?;
        // Where the index muxer is: bytes of the mdat no sample refers to
        // are stepped over; overlapping samples are dropped.
        let mut next = pos + moof.size + mdat.header_len;
        for sample in placed {
            if sample.offset < next {
                continue;
            }
            let Some(track) = tracks.get_mut(&sample.track_id) else {
                continue;
            };
            if sample.offset > next {
                index
                    .advance_position(sample.offset - next)
                    .map_err(mux_error)?;
            }
            next = sample.offset + u64::from(sample.size);
            let entry = if track.announced {
                None
            } else {
                track.announced = true;
                Some(track.entry.clone())
            };
            index
                .append_sample(&MuxSample {
                    track_kind: track.kind,
                    sample_entry: entry,
                    keyframe: sample.keyframe,
                    timescale: track.timescale,
                    duration: sample.duration,
                    composition_time_offset: None,
                    data_offset: sample.offset,
                    data_size: sample.size as usize,
                })
                .map_err(mux_error)?;
            track.ticks = track.ticks.saturating_add(u64::from(sample.duration));
        }
        if data_end > next {
            index.advance_position(data_end - next).map_err(mux_error)?;
        }
        pos = data_end;
        keep_len = pos;
        fragments += 1;
    }
    if fragments == 0 {
        return Err(RecoverError::Empty);
    }

    let finalized = index.finalize().map_err(mux_error)?;
    let mut commands = Vec::new();
    let mut size = keep_len;
    for (offset, bytes) in finalized.offset_and_bytes_pairs() {
        if offset >= keep_len {
            if offset != size {
                return Err(layout("the index does not end where the fragments do"));
            }
            size += bytes.len() as u64;
            commands.push(Command::Append {
                path: path.to_string(),
                bytes: bytes.to_vec(),
            });
        } else {
            commands.push(Command::WriteAt {
                path: path.to_string(),
                offset,
                bytes: bytes.to_vec(),
            });
        }
    }
    let duration = tracks
        .values()
        .map(|t| ticks_to_duration(t.ticks, t.timescale))
        .max()
        .unwrap_or_default();
    let (width, height) = tracks
        .values()
        .find_map(|t| video_size(&t.entry))
        .unwrap_or((0, 0));
    Ok(RecoveredMp4 {
        keep_len,
        commands,
        size,
        duration,
        width,
        height,
        fragments,
    })
}

fn tracks_of(moov: &MoovBox) -> Result<HashMap<u32, Track>, RecoverError> {
    let mut tracks = HashMap::new();
    for trak in &moov.trak_boxes {
        let kind = match &trak.mdia_box.hdlr_box.handler_type {
            b"vide" => TrackKind::Video,
            b"soun" => TrackKind::Audio,
            _ => continue,
        };
        let Some(entry) = trak.mdia_box.minf_box.stbl_box.stsd_box.entries.first() else {
            continue;
        };
        let track_id = trak.tkhd_box.track_id;
        let trex = moov
            .mvex_box
            .as_ref()
            .and_then(|m| m.trex_boxes.iter().find(|t| t.track_id == track_id));
        tracks.insert(
            track_id,
            Track {
                kind,
                timescale: trak.mdia_box.mdhd_box.timescale,
                entry: entry.clone(),
                announced: false,
                default_duration: trex.map_or(0, |t| t.default_sample_duration),
                default_size: trex.map_or(0, |t| t.default_sample_size),
                ticks: 0,
            },
        );
    }
    if tracks.is_empty() {
        return Err(layout("no audio or video track"));
    }
    Ok(tracks)
}

/// Every sample of a fragment with its absolute data offset.
fn place_samples(moof: &MoofBox, moof_at: u64, tracks: &HashMap<u32, Track>) -> Vec<Placed> {
    let mut placed = Vec::new();
    for traf in &moof.traf_boxes {
        let tfhd = &traf.tfhd_box;
        let Some(track) = tracks.get(&tfhd.track_id) else {
            continue;
        };
        let base = tfhd.base_data_offset.unwrap_or(moof_at);
        let default_duration = tfhd
            .default_sample_duration
            .unwrap_or(track.default_duration);
        let default_size = tfhd.default_sample_size.unwrap_or(track.default_size);
        let default_flags = tfhd.default_sample_flags;
        for trun in &traf.trun_boxes {
            let mut offset = base.saturating_add_signed(i64::from(trun.data_offset.unwrap_or(0)));
            for (i, sample) in trun.samples.iter().enumerate() {
                let size = sample.size.unwrap_or(default_size);
                let flags = sample
                    .flags
                    .or(if i == 0 {
                        trun.first_sample_flags
                    } else {
                        None
                    })
                    .or(default_flags);
                placed.push(Placed {
                    track_id: tfhd.track_id,
                    offset,
                    size,
                    duration: sample.duration.unwrap_or(default_duration),
                    keyframe: match track.kind {
                        TrackKind::Video => flags.is_none_or(|f| !f.sample_is_non_sync_sample()),
                        _ => true,
                    },
                });
                offset += u64::from(size);
            }
        }
    }
    placed
}

fn video_size(entry: &SampleEntry) -> Option<(u16, u16)> {
    let visual = match entry {
        SampleEntry::Avc1(b) => &b.visual,
        SampleEntry::Vp08(b) => &b.visual,
        SampleEntry::Vp09(b) => &b.visual,
        SampleEntry::Av01(b) => &b.visual,
        _ => return None,
    };
    Some((visual.width, visual.height))
}

struct Header {
    kind: [u8; 4],
    size: u64,
    header_len: u64,
}

/// The complete box starting at `pos`, or `None` if the file ends inside it.
fn header_at<F: Read + Seek>(
    file: &mut F,
    pos: u64,
    len: u64,
) -> Result<Option<Header>, RecoverError> {
    if pos + 8 > len {
        return Ok(None);
    }
    let bytes = read_exact_at(file, pos, 8)?;
    let size32 = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = [bytes[4], bytes[5], bytes[6], bytes[7]];
    let (size, header_len) = match size32 {
        0 => (len - pos, 8),
        1 => {
            if pos + 16 > len {
                return Ok(None);
            }
            let large = read_exact_at(file, pos + 8, 8)?;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&large);
            (u64::from_be_bytes(raw), 16)
        }
        n => (u64::from(n), 8),
    };
    if size < header_len || size > len - pos {
        return Ok(None);
    }
    Ok(Some(Header {
        kind,
        size,
        header_len,
    }))
}

fn read_exact_at<F: Read + Seek>(
    file: &mut F,
    pos: u64,
    size: u64,
) -> Result<Vec<u8>, RecoverError> {
    const MAX_BOX: u64 = 64 * 1024 * 1024;
    if size > MAX_BOX {
        return Err(layout("a header box is implausibly large"));
    }
    file.seek(SeekFrom::Start(pos))?;
    let mut bytes = vec![0; size as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// `ticks` of a `timescale` as a duration, exactly (no float: a damaged
/// file's sums may be near `u64::MAX`).
fn ticks_to_duration(ticks: u64, timescale: NonZeroU32) -> Duration {
    let timescale = u64::from(timescale.get());
    let nanos = u128::from(ticks % timescale) * 1_000_000_000 / u128::from(timescale);
    // nanos < 1e9, so the conversion cannot fail.
    Duration::from_secs(ticks / timescale) + Duration::from_nanos(nanos as u64)
}

fn layout(reason: &str) -> RecoverError {
    RecoverError::Layout(reason.to_string())
}

fn mux_error(e: shiguredo_mp4::mux::MuxError) -> RecoverError {
    RecoverError::Mp4(e.to_string())
}

/// The media segment that was being written at the crash: its complete
/// fragments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecoveredSegment {
    /// Cut the segment file to this length.
    pub keep_len: u64,
    /// The longest track's duration in the kept fragments.
    pub duration: Duration,
}

/// Finds the complete `moof` + `mdat` pairs of a segment (no `ftyp`/`moov`
/// of its own: `init` is its init segment); `None` if there is none.
pub fn recover_segment<F: Read + Seek>(
    init: &[u8],
    segment: &mut F,
    len: u64,
) -> Result<Option<RecoveredSegment>, RecoverError> {
    let mut init_reader = io::Cursor::new(init);
    let init_len = init.len() as u64;
    let mut pos = 0;
    let moov = loop {
        let header = header_at(&mut init_reader, pos, init_len)?
            .ok_or_else(|| layout("no moov in the init segment"))?;
        if &header.kind == b"moov" {
            break header;
        }
        pos += header.size;
    };
    let moov_bytes = read_exact_at(&mut init_reader, pos, moov.size)?;
    let (moov_box, _) =
        MoovBox::decode(&moov_bytes).map_err(|e| RecoverError::Mp4(e.to_string()))?;
    let mut tracks = tracks_of(&moov_box)?;
    let mut pos = 0;
    let mut keep_len = 0;
    while let Some(moof) = header_at(segment, pos, len)? {
        if &moof.kind != b"moof" {
            break;
        }
        let Some(mdat) = header_at(segment, pos + moof.size, len)? else {
            break;
        };
        if &mdat.kind != b"mdat" {
            break;
        }
        let moof_bytes = read_exact_at(segment, pos, moof.size)?;
        let Ok((moof_box, _)) = MoofBox::decode(&moof_bytes) else {
            break;
        };
        let placed = place_samples(&moof_box, pos, &tracks);
        let data_end = pos + moof.size + mdat.size;
        if placed
            .iter()
            .any(|p| p.offset + u64::from(p.size) > data_end)
        {
            break;
        }
        for sample in placed {
            if let Some(track) = tracks.get_mut(&sample.track_id) {
                track.ticks = track.ticks.saturating_add(u64::from(sample.duration));
            }
        }
        pos = data_end;
        keep_len = pos;
    }
    if keep_len == 0 {
        return Ok(None);
    }
    let duration = tracks
        .values()
        .map(|t| ticks_to_duration(t.ticks, t.timescale))
        .max()
        .unwrap_or_default();
    Ok(Some(RecoveredSegment { keep_len, duration }))
}

/// The segment that was being written when the process died.
#[derive(Debug, Clone, Copy)]
pub struct TrailingSegment<'a> {
    /// Its URI, relative to the media playlist.
    pub uri: &'a str,
    /// What [`recover_segment`] kept of it.
    pub duration: Duration,
    /// Its init segment's URI (used when it is the first segment).
    pub init_uri: &'a str,
}

/// A recovered HLS recording: its media playlist finished with
/// `EXT-X-ENDLIST`, and what it consists of.
#[derive(Debug)]
pub struct RecoveredHls {
    /// The media playlist's URI, relative to the multivariant playlist.
    pub media_uri: String,
    /// The finished media playlist (write it over the old one).
    pub media_playlist: Vec<u8>,
    /// Every file of the recording, relative to the multivariant playlist:
    /// the two playlists, the init segments and the media segments listed.
    pub paths: Vec<String>,
    /// Sum of the segments' durations.
    pub duration: Duration,
    pub width: u16,
    pub height: u16,
}

/// Recovers an HLS recording from its multivariant playlist and (read by
/// the caller from `media_uri`, see [`hls_media_uri`]) its media playlist:
/// segments listed in the playlist were complete when it was written (the
/// playlist is rewritten after each segment), so only the `EXT-X-ENDLIST`
/// is missing; a segment being written when the process died is not listed
/// and is left out.
///
/// `trailing` is the segment that was being written (its URI relative to the
/// media playlist, and what [`recover_segment`] kept of it): it is listed
/// last, so that at most the fragment being written is lost.
pub fn recover_hls(
    multivariant: &[u8],
    media: &[u8],
    trailing: Option<TrailingSegment<'_>>,
) -> Result<RecoveredHls, RecoverError> {
    let (media_uri, width, height) = variant_of(multivariant)?;
    let mut playlist = match m3u8_rs::parse_playlist_res(media) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        _ => return Err(layout("the media playlist does not parse")),
    };
    if let Some(trailing) = trailing {
        let listed = playlist.segments.iter().any(|s| s.uri == trailing.uri);
        if !listed && !trailing.duration.is_zero() {
            // The first segment names its init segment; later ones inherit.
            let map = playlist.segments.is_empty().then(|| m3u8_rs::Map {
                uri: trailing.init_uri.to_string(),
                ..m3u8_rs::Map::default()
            });
            playlist.segments.push(m3u8_rs::MediaSegment {
                uri: trailing.uri.to_string(),
                duration: trailing.duration.as_secs_f32(),
                map,
                ..m3u8_rs::MediaSegment::default()
            });
            let longest = trailing.duration.as_secs_f64().round() as u64;
            playlist.target_duration = playlist.target_duration.max(longest);
        }
    }
    if playlist.segments.is_empty() {
        return Err(RecoverError::Empty);
    }
    playlist.end_list = true;
    let mut paths = vec![media_uri.clone()];
    let dir = match media_uri.rfind('/') {
        Some(i) => &media_uri[..=i],
        None => "",
    };
    let mut seconds = 0.0f64;
    let unsafe_uri = |uri: &str| uri.is_empty() || uri.contains("..") || uri.starts_with('/');
    for segment in &playlist.segments {
        if unsafe_uri(&segment.uri) || segment.map.as_ref().is_some_and(|m| unsafe_uri(&m.uri)) {
            return Err(layout("unsafe segment URI"));
        }
        if let Some(map) = &segment.map {
            let init = format!("{dir}{}", map.uri);
            if !paths.contains(&init) {
                paths.push(init);
            }
        }
        paths.push(format!("{dir}{}", segment.uri));
        if !segment.duration.is_finite() || segment.duration < 0.0 {
            return Err(layout("a segment duration is negative or not a number"));
        }
        seconds += f64::from(segment.duration);
    }
    let mut media_playlist = Vec::new();
    playlist
        .write_to(&mut media_playlist)
        .map_err(|e| RecoverError::Mp4(e.to_string()))?;
    Ok(RecoveredHls {
        media_uri,
        media_playlist,
        paths,
        duration: Duration::try_from_secs_f64(seconds)
            .map_err(|_| layout("the segment durations add up past any duration"))?,
        width,
        height,
    })
}

/// The media playlist a multivariant playlist points at.
pub fn hls_media_uri(multivariant: &[u8]) -> Result<String, RecoverError> {
    variant_of(multivariant).map(|(uri, _, _)| uri)
}

fn variant_of(multivariant: &[u8]) -> Result<(String, u16, u16), RecoverError> {
    let Ok(m3u8_rs::Playlist::MasterPlaylist(top)) = m3u8_rs::parse_playlist_res(multivariant)
    else {
        return Err(layout("not a multivariant playlist"));
    };
    let variant = top
        .variants
        .first()
        .ok_or_else(|| layout("the multivariant playlist lists no variant"))?;
    if variant.uri.is_empty() || variant.uri.contains("..") || variant.uri.starts_with('/') {
        return Err(layout("unsafe media playlist URI"));
    }
    let (width, height) = variant.resolution.map_or((0, 0), |r| {
        (
            u16::try_from(r.width).unwrap_or(0),
            u16::try_from(r.height).unwrap_or(0),
        )
    });
    Ok((variant.uri.clone(), width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_larger_than_the_file_is_no_box() {
        // Found by fuzz/ (recover): a 64-bit box size near u64::MAX made
        // `pos + size` overflow (a panic, or a bogus box in release builds).
        let mut file = vec![0, 0, 0, 16, b'f', b't', b'y', b'p', 0, 0, 0, 0, 0, 0, 0, 0];
        file.extend_from_slice(&[0, 0, 0, 1, b'm', b'o', b'o', b'v']);
        file.extend_from_slice(&(u64::MAX - 8).to_be_bytes());
        let len = file.len() as u64;
        let header = header_at(&mut io::Cursor::new(&file), 16, len).expect("readable");
        assert!(header.is_none());
        assert!(recover_mp4(&mut io::Cursor::new(&file), len, "a.mp4").is_err());
        let segment = recover_segment(&file, &mut io::Cursor::new(&file[16..]), len - 16);
        assert!(matches!(segment, Ok(None) | Err(_)));
    }

    #[test]
    fn ticks_become_durations_exactly_up_to_u64_max() {
        let ms = NonZeroU32::new(1000).expect("non-zero");
        assert_eq!(ticks_to_duration(1500, ms), Duration::from_millis(1500));
        let video = NonZeroU32::new(90_000).expect("non-zero");
        assert_eq!(
            ticks_to_duration(3003, video),
            Duration::from_nanos(33_366_666)
        );
        // A float division rounds u64::MAX up to 2^64 seconds, past
        // Duration's range (the same panic as below, on the MP4 side).
        let one = NonZeroU32::new(1).expect("non-zero");
        assert_eq!(
            ticks_to_duration(u64::MAX, one),
            Duration::from_secs(u64::MAX)
        );
    }

    #[test]
    fn a_playlist_with_a_nonsense_segment_duration_is_refused() {
        // Found by fuzz/ (recover): m3u8-rs reads `#EXTINF:` as an f32, so
        // 40 digits are infinity and 38 add up past Duration's range, and
        // `Duration::from_secs_f64` panicked on either.
        let multivariant = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nmedia.m3u8\n";
        for extinf in ["9".repeat(40), "9".repeat(38)] {
            let mut media = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
            for i in 0..2 {
                media.push_str(&format!("#EXTINF:{extinf},\nseg{i}.m4s\n"));
            }
            let recovered = recover_hls(multivariant, media.as_bytes(), None);
            assert!(recovered.is_err(), "{extinf}: {recovered:?}");
        }
        let good = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.m4s\n";
        let recovered = recover_hls(multivariant, good, None).expect("recovers");
        assert_eq!(recovered.duration, Duration::from_secs(2));
    }
}
