//! Carries out the recorder core's [`Command`]s on an in-memory file system
//! and checks that they are consistent, as the server's spool relies on:
//! appends and patches only to files written first and within their
//! length, nothing for a file after it completed, every completed file
//! started once and its size the sum of its paths, finished MP4 files that
//! demux, finished HLS playlists that list exactly their segments, keyframe
//! requests rate-limited.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use shiguredo_mp4::demux::{Fmp4FileDemuxer, Input, Mp4FileDemuxer};
use weir_recorder::recover::{hls_media_uri, recover_hls};
use weir_recorder::{Command, FileCompleted, FileStarted, Format};

#[derive(Default)]
pub struct Files {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Paths of completed files: no command may touch them again.
    done: HashSet<String>,
    pub started: HashMap<u64, FileStarted>,
    pub completed: HashMap<u64, FileCompleted>,
    last_keyframe_request: Option<Instant>,
    pub keyframe_requests: u64,
}

fn check_path(path: &str) {
    assert!(
        !path.is_empty()
            && !path.starts_with('/')
            && !path.contains('\\')
            && path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
            && !path.chars().any(char::is_control),
        "unsafe path {path:?}"
    );
}

impl Files {
    /// Carries out one command polled at `now`.
    pub fn apply(&mut self, now: Instant, command: Command) {
        match command {
            Command::WriteFile { path, bytes } => {
                check_path(&path);
                assert!(!self.done.contains(&path), "write to completed {path}");
                self.files.insert(path, bytes);
            }
            Command::Append { path, bytes } => {
                assert!(!self.done.contains(&path), "append to completed {path}");
                self.files
                    .get_mut(&path)
                    .unwrap_or_else(|| panic!("append to {path}, never written"))
                    .extend_from_slice(&bytes);
            }
            Command::WriteAt {
                path,
                offset,
                bytes,
            } => {
                assert!(!self.done.contains(&path), "patch of completed {path}");
                let file = self
                    .files
                    .get_mut(&path)
                    .unwrap_or_else(|| panic!("patch of {path}, never written"));
                let start = usize::try_from(offset).expect("offset fits");
                let end = start.checked_add(bytes.len()).expect("no overflow");
                assert!(
                    end <= file.len(),
                    "patch {start}..{end} past the end of {path} ({} bytes)",
                    file.len()
                );
                file[start..end].copy_from_slice(&bytes);
            }
            Command::FileStarted(started) => {
                check_path(&started.object);
                assert!(
                    !self.started.contains_key(&started.file_id),
                    "file {} started twice",
                    started.file_id
                );
                self.started.insert(started.file_id, started);
            }
            Command::FileCompleted(completed) => self.complete(completed),
            Command::RequestKeyframe => {
                if let Some(last) = self.last_keyframe_request {
                    assert!(
                        now.saturating_duration_since(last) >= Duration::from_millis(500),
                        "keyframe requests {:?} apart",
                        now.saturating_duration_since(last)
                    );
                }
                self.last_keyframe_request = Some(now);
                self.keyframe_requests += 1;
            }
        }
    }

    fn complete(&mut self, completed: FileCompleted) {
        let started = self
            .started
            .get(&completed.file_id)
            .unwrap_or_else(|| panic!("file {} completed, never started", completed.file_id));
        assert!(
            !self.completed.contains_key(&completed.file_id),
            "file {} completed twice",
            completed.file_id
        );
        assert_eq!(started.object, completed.object);
        assert_eq!(started.format, completed.format);
        assert_eq!(started.file_index, completed.file_index);
        assert_eq!(started.start_time, completed.start_time);
        assert!(completed.end_time >= completed.start_time);
        assert!(completed.paths.contains(&completed.object));
        let mut size = 0u64;
        for path in &completed.paths {
            let bytes = self
                .files
                .get(path)
                .unwrap_or_else(|| panic!("completed file lists {path}, never written"));
            size += bytes.len() as u64;
            assert!(
                self.done.insert(path.clone()),
                "{path} in two completed files"
            );
        }
        assert_eq!(size, completed.size, "size of {}", completed.object);
        match completed.format {
            Format::Mp4 => check_mp4(&self.files[&completed.object]),
            Format::Hls => self.check_hls(&completed),
        }
        self.completed.insert(completed.file_id, completed);
    }

    /// A finished HLS recording: its playlists parse and list exactly its
    /// segments (what a player, and crash recovery, read).
    fn check_hls(&self, completed: &FileCompleted) {
        let top = &self.files[&completed.object];
        let dir = completed
            .object
            .rfind('/')
            .map_or("", |i| &completed.object[..=i]);
        let media_uri = hls_media_uri(top).expect("the multivariant playlist names a variant");
        let media = self
            .files
            .get(&format!("{dir}{media_uri}"))
            .expect("the media playlist was written");
        let listed = recover_hls(top, media, None).expect("a finished HLS recording parses");
        let listed: Vec<String> = listed.paths.iter().map(|p| format!("{dir}{p}")).collect();
        for path in &listed {
            assert!(
                completed.paths.contains(path),
                "the playlists list {path}, not part of the recording"
            );
        }
        for path in &completed.paths {
            assert!(
                listed.contains(path) || *path == completed.object,
                "{path} is not in the playlists"
            );
        }
    }

    /// Files started and not completed.
    pub fn open(&self) -> Vec<&FileStarted> {
        self.started
            .values()
            .filter(|s| !self.completed.contains_key(&s.file_id))
            .collect()
    }
}

/// A finished MP4 with at least one sample: its samples all lie inside
/// the file.
pub fn check_mp4(bytes: &[u8]) {
    assert!(mp4_samples(bytes) > 0, "a finished MP4 without samples");
}

/// Demuxes an MP4 (panics if it does not): how many samples it has, all
/// inside the file.
pub fn mp4_samples(bytes: &[u8]) -> usize {
    let mut demuxer = Mp4FileDemuxer::new();
    while demuxer.required_input().is_some() {
        demuxer.handle_input(Input {
            position: 0,
            data: bytes,
        });
    }
    demuxer.tracks().expect("a finished MP4 has tracks");
    let mut samples = 0;
    while let Some(sample) = demuxer.next_sample().expect("a finished MP4 demuxes") {
        assert!(sample.data_offset + sample.data_size as u64 <= bytes.len() as u64);
        samples += 1;
    }
    samples
}

/// A recording in progress (fragmented MP4): a sequence of complete
/// fragments whose samples all demux.
pub fn check_fmp4(bytes: &[u8]) {
    // Zeros after the end: the demuxer reads box headers 32 bytes at a time
    // (and stalls on a smaller last box); a zero size means the end.
    let mut padded = bytes.to_vec();
    padded.extend_from_slice(&[0; 32]);
    let mut demuxer = Fmp4FileDemuxer::new();
    let mut last_required = None;
    let mut repeats = 0;
    loop {
        if let Some(required) = demuxer.required_input() {
            // The same request again and again: the data is not there.
            repeats = if Some(required) == last_required {
                repeats + 1
            } else {
                0
            };
            assert!(
                repeats < 4,
                "a flushed fragment is incomplete ({} bytes)",
                bytes.len()
            );
            last_required = Some(required);
            let start = usize::try_from(required.position).expect("position fits");
            let rest = padded
                .get(start..)
                .unwrap_or_else(|| panic!("a box ends past the file: {required:?}"));
            let data = required.size.and_then(|n| rest.get(..n)).unwrap_or(rest);
            demuxer.handle_input(Input {
                position: required.position,
                data,
            });
        }
        match demuxer.next_sample() {
            Ok(Some(sample)) => {
                assert!(sample.data_offset + sample.data_size as u64 <= bytes.len() as u64)
            }
            Ok(None) => return,
            Err(shiguredo_mp4::demux::DemuxError::InputRequired(_)) => {}
            Err(e) => panic!("a recording in progress does not demux: {e:?}"),
        }
    }
}
