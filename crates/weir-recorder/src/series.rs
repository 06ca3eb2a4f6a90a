//! The file state machine of one output (HLS or MP4) of one publisher
//! stream: when files start, cut and end (issue 4, recording.md rules 2, 3, 7).
//!
//! - **Cuts** (cycle, 2 GiB split, MP4 format change) happen only at a video
//!   keyframe (at any audio frame for audio-only files). Audio after the
//!   keyframe's time moves to the next file: nothing is lost between files.
//!   A video keyframe reaching an audio-only file cuts it too: the next file
//!   has both tracks.
//!   A keyframe is requested `keyframe_lead` before a planned cut.
//! - **HLS segments** end at the first keyframe once `slice - 1.5 s` long.
//! - **Interruptions**: the file is flushed and paused. Mode `new_file`
//!   closes it at once; a window closes it when the window expires (only
//!   then is RECORD_FILE_COMPLETE sent); media resuming inside the window
//!   continues the file, the gap filled with Opus silence and the last
//!   keyframe repeated once a second (no giant sample, wall clock kept), and
//!   HLS marks a discontinuity. `never_split` does not fill: its timeline
//!   skips the gap.
//! - **Late video**: video whose first keyframe comes after the file's
//!   first audio starts with that picture frozen from the file's start, so
//!   both tracks share time 0 (no container here has an edit list).
//! - **Holes** inside a run (Opus DTX) are filled with silence.

use std::time::{Duration, SystemTime};

use crate::config::{
    Command, Content, FileCompleted, FileStarted, Format, GapMerge, MediaKind, OutputConfig,
    NEVER_SPLIT_MAX_AGE,
};
use crate::fragment::{kind_slot, Sample};
use crate::hls::HlsWriter;
use crate::lane::{ticks_to_us, us_to_ticks, Lane, LaneAdd, TimedFrame};
use crate::mp4::{Mp4Error, Mp4Writer};
use crate::naming::{self, NamingContext};
use crate::sample_entry::TrackFormat;

mod fill;

/// The current format of each track (set by the recorder from keyframes).
#[derive(Debug, Clone, Default)]
pub struct Formats {
    /// Video sample entry, once a keyframe with configuration was seen.
    pub video: Option<TrackFormat>,
    /// Audio sample entry.
    pub audio: Option<TrackFormat>,
}

/// Limits shared by all outputs.
#[derive(Debug, Clone)]
pub struct SeriesLimits {
    /// What is recorded.
    pub content: Content,
    /// Split before this size.
    pub max_file_bytes: u64,
    /// Fragment length.
    pub fragment: Duration,
    /// Keyframe request lead before a planned cut.
    pub keyframe_lead: Duration,
}

#[derive(Debug)]
enum Writer {
    Mp4(Mp4Writer),
    Hls(HlsWriter),
}

#[derive(Debug)]
struct OpenFile {
    writer: Writer,
    file_id: u64,
    index: u32,
    object: String,
    origin_us: i64,
    skip_us: i64,
    lanes: [Lane; 2],
    buffer: Vec<Sample>,
    video_format: Option<TrackFormat>,
    /// Picture size at the start (what players report for the file).
    size: (u16, u16),
    announced: bool,
    paused_at_us: Option<i64>,
    frozen: bool,
}

/// One output's files.
#[derive(Debug)]
pub struct FileSeries {
    config: OutputConfig,
    output_index: u32,
    context: NamingContext,
    limits: SeriesLimits,
    epoch_wall: SystemTime,
    next_index: u32,
    open: Option<OpenFile>,
    keyframe_wanted: bool,
    /// Errors of the writers (the file is closed; recording goes on).
    pub errors: u64,
}

/// The longest a file of `config` lasts, if it is cut by age.
fn cycle_us(config: &OutputConfig) -> Option<i64> {
    match (config.cycle, config.gap_merge) {
        (Some(cycle), _) => Some(cycle.as_micros() as i64),
        (None, GapMerge::NeverSplit) => Some(NEVER_SPLIT_MAX_AGE.as_micros() as i64),
        (None, _) => None,
    }
}

fn wall_at(epoch_wall: SystemTime, us: i64) -> SystemTime {
    if us >= 0 {
        epoch_wall + Duration::from_micros(us as u64)
    } else {
        epoch_wall - Duration::from_micros(us.unsigned_abs())
    }
}

impl OpenFile {
    fn has(&self, kind: MediaKind) -> bool {
        match &self.writer {
            Writer::Mp4(w) => w.has(kind),
            Writer::Hls(w) => w.has(kind),
        }
    }

    fn primary(&self) -> MediaKind {
        if self.has(MediaKind::Video) {
            MediaKind::Video
        } else {
            MediaKind::Audio
        }
    }

    fn rel(&self, frame: &TimedFrame) -> i64 {
        frame.pts - us_to_ticks(self.origin_us + self.skip_us, frame.kind)
    }

    fn to_pts(&self, rel: i64, kind: MediaKind) -> i64 {
        rel + us_to_ticks(self.origin_us + self.skip_us, kind)
    }

    /// Media duration so far (primary lane, emitted samples).
    fn duration_us(&self) -> i64 {
        let kind = self.primary();
        ticks_to_us(self.lanes[kind_slot(kind)].next_dts, kind)
    }

    fn buffered_us(&self) -> i64 {
        let kind = self.primary();
        let ticks: i64 = self
            .buffer
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| i64::from(s.duration))
            .sum();
        ticks_to_us(ticks, kind)
    }

    fn size(&self) -> u64 {
        match &self.writer {
            Writer::Mp4(w) => w.size,
            Writer::Hls(w) => w.size(),
        }
    }

    fn segment_seconds(&self) -> f64 {
        match &self.writer {
            Writer::Hls(w) => w.segment_seconds(),
            Writer::Mp4(_) => 0.0,
        }
    }
}

impl FileSeries {
    /// A series for one output; `epoch_wall` is the wall time of the
    /// recorder's timeline zero.
    pub fn new(
        config: OutputConfig,
        output_index: u32,
        context: NamingContext,
        limits: SeriesLimits,
        epoch_wall: SystemTime,
    ) -> Self {
        Self {
            config,
            output_index,
            context,
            limits,
            epoch_wall,
            next_index: 0,
            open: None,
            keyframe_wanted: false,
            errors: 0,
        }
    }

    /// The output's format.
    pub fn format(&self) -> Format {
        self.config.format
    }

    /// The `file_index` of the next file.
    pub fn next_index(&self) -> u32 {
        self.next_index
    }

    /// Numbers the next file `index` (a recording taken over from an
    /// earlier recorder of the same publisher and job).
    pub fn set_next_index(&mut self, index: u32) {
        self.next_index = index;
    }

    /// Whether a keyframe should be requested (cleared by reading it).
    pub fn take_keyframe_wanted(&mut self) -> bool {
        std::mem::replace(&mut self.keyframe_wanted, false)
    }

    /// Whether a file is open (recording or paused).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// When a paused file's merge window expires (timeline µs).
    pub fn deadline_us(&self) -> Option<i64> {
        let file = self.open.as_ref()?;
        let paused = file.paused_at_us?;
        match self.config.gap_merge {
            GapMerge::NewFile => Some(paused),
            GapMerge::Window(window) => Some(paused + window.as_micros() as i64),
            GapMerge::NeverSplit => Some(file.origin_us + NEVER_SPLIT_MAX_AGE.as_micros() as i64),
        }
    }

    fn wall(&self, us: i64) -> SystemTime {
        wall_at(self.epoch_wall, us)
    }

    /// Adds a frame (in presentation order per track).
    pub fn push(&mut self, frame: TimedFrame, formats: &Formats, out: &mut Vec<Command>) {
        let mut queue = vec![frame];
        while let Some(frame) = queue.pop() {
            let mut more = self.push_one(frame, formats, out);
            // Process filler (earliest first) before the frame that found the hole.
            more.reverse();
            queue.extend(more);
        }
        if let Some(Writer::Hls(w)) = self.open.as_mut().map(|f| &mut f.writer) {
            w.flush_playlist(out);
        }
    }

    fn push_one(
        &mut self,
        frame: TimedFrame,
        formats: &Formats,
        out: &mut Vec<Command>,
    ) -> Vec<TimedFrame> {
        if !self.limits.content.includes(frame.kind) {
            return Vec::new();
        }
        if self.open.is_none() {
            if frame.kind == MediaKind::Video && !frame.keyframe {
                return Vec::new();
            }
            self.start_file(frame.pts_us(), formats);
        }
        let Some(file) = self.open.as_mut() else {
            return Vec::new();
        };
        if !file.has(frame.kind) {
            if frame.kind == MediaKind::Video && frame.keyframe && formats.video.is_some() {
                // Video came to an audio-only file (its keyframe was late,
                // or the camera was turned on): the file ends here and the
                // next one, from this keyframe, has both tracks.
                return self.cut(&frame, out);
            }
            return Vec::new();
        }
        if let Some(paused) = file.paused_at_us.take() {
            // Media resumed inside the window: the next HLS segment follows
            // a discontinuity.
            if let Writer::Hls(w) = &mut file.writer {
                w.mark_discontinuity();
            }
            if self.config.gap_merge == GapMerge::NeverSplit {
                file.skip_us += (frame.pts_us() - paused).max(0);
            } else {
                // Fill both tracks up to the resumed frame, in time order.
                let until_us = frame.pts_us();
                let mut frames = Vec::new();
                for kind in [MediaKind::Audio, MediaKind::Video] {
                    let Some(file) = self.open.as_ref() else {
                        break;
                    };
                    if !file.has(kind) || !file.lanes[kind_slot(kind)].started {
                        continue;
                    }
                    let from = file.lanes[kind_slot(kind)].next_dts;
                    let to = us_to_ticks(until_us - file.origin_us - file.skip_us, kind);
                    if to > from {
                        frames.extend(self.filler(kind, from, to));
                    }
                }
                frames.sort_by_key(TimedFrame::pts_us);
                frames.push(frame);
                return frames;
            }
        }
        let Some(file) = self.open.as_mut() else {
            return Vec::new();
        };
        // A hole (DTX, late track) is filled before the frame is looked at.
        let rel = file.rel(&frame);
        let lane = &mut file.lanes[kind_slot(frame.kind)];
        if frame.kind == MediaKind::Video
            && frame.keyframe
            && !frame.filler
            && !lane.started
            && rel > lane.next_dts
        {
            // Video starting after the file's first audio (the audio held
            // for this keyframe, or a camera turned on late): its first
            // picture is shown from the file's start, as a frozen frame
            // fills a gap. Otherwise the first video sample would be at
            // time 0 and the whole video ahead of its audio.
            lane.last_keyframe = Some(frame.data.clone());
            let from = lane.next_dts;
            let mut frames = self.filler(MediaKind::Video, from, rel);
            frames.push(frame);
            return frames;
        }
        if let Some((from, to)) = file.lanes[kind_slot(frame.kind)].hole(rel, !file.frozen) {
            let mut frames = self.filler(frame.kind, from, to);
            frames.push(frame);
            return frames;
        }
        let Some(file) = self.open.as_mut() else {
            return Vec::new();
        };
        let primary = frame.kind == file.primary();
        if primary && frame.keyframe {
            if let Some(carried) = self.at_cut_point(&frame, formats, out) {
                return carried;
            }
        } else if primary && self.cut_due() {
            // A WebRTC publisher sends keyframes only when asked: ask for
            // the one the cut waits for (again at every frame until it
            // comes; the recorder rate-limits the requests).
            self.keyframe_wanted = true;
        }
        let Some(file) = self.open.as_mut() else {
            return Vec::new();
        };
        let rel = file.rel(&frame);
        let fill = !file.frozen;
        let kind = frame.kind;
        let lane = &mut file.lanes[kind_slot(kind)];
        match lane.add(frame.clone(), rel, fill) {
            LaneAdd::Added(sample) => {
                if let Some(sample) = sample {
                    file.buffer.push(sample);
                }
                file.frozen = false;
                self.maybe_force_flush(out);
                Vec::new()
            }
            LaneAdd::Dropped => Vec::new(),
            LaneAdd::Hole { from, to } => {
                let mut frames = self.filler(kind, from, to);
                frames.push(frame);
                frames
            }
        }
    }

    /// Cut decisions at a keyframe of the primary track. Returns frames to
    /// re-push when the file was cut (the keyframe and carried audio).
    fn at_cut_point(
        &mut self,
        frame: &TimedFrame,
        formats: &Formats,
        out: &mut Vec<Command>,
    ) -> Option<Vec<TimedFrame>> {
        let file = self.open.as_mut()?;
        let kind = frame.kind;
        let rel = file.rel(frame);
        // Close the primary lane's pending sample up to this frame.
        if let Some(sample) = file.lanes[kind_slot(kind)].close(Some(rel)) {
            file.buffer.push(sample);
        }
        let age_us = file.duration_us();
        let cycle_us = cycle_us(&self.config);
        let lead = self.limits.keyframe_lead.as_micros() as i64;
        let size = file.size() + Mp4Writer::estimate(&file.buffer);
        let format_changed = kind == MediaKind::Video
            && !frame.filler
            && formats.video.as_ref().map(|f| &f.entry)
                != file.video_format.as_ref().map(|f| &f.entry);
        let mp4 = matches!(file.writer, Writer::Mp4(_));
        let cycle_due = cycle_us.is_some_and(|c| age_us >= c - lead / 2);
        let size_due = size >= self.limits.max_file_bytes / 4 * 3;
        if (format_changed && mp4) || cycle_due || size_due {
            let carried = self.cut(frame, out);
            return Some(carried);
        }
        if cycle_us.is_some_and(|c| age_us >= c - lead) || size >= self.limits.max_file_bytes / 2 {
            self.keyframe_wanted = true;
        }
        let slice = self.config.slice.as_secs_f64();
        let file = self.open.as_mut()?;
        let segment_seconds = file.segment_seconds() + file.buffered_us() as f64 / 1e6;
        let mut end_segment = false;
        if let Writer::Hls(_) = file.writer {
            end_segment = format_changed || segment_seconds >= slice - 1.5;
            if segment_seconds >= slice - 1.5 - lead as f64 / 1e6 {
                self.keyframe_wanted = true;
            }
        }
        let file = self.open.as_mut()?;
        if end_segment || file.buffered_us() >= self.limits.fragment.as_micros() as i64 {
            self.flush_fragment(Some(frame.pts_us()), out);
        }
        let file = self.open.as_mut()?;
        if let Writer::Hls(w) = &mut file.writer {
            if end_segment {
                w.end_segment();
                if format_changed {
                    w.set_formats(formats.video.clone(), formats.audio.clone());
                    file.video_format.clone_from(&formats.video);
                }
            }
        }
        None
    }

    /// Whether the next keyframe of the primary track would cut the file
    /// (cycle, size) or end the HLS segment, as decided in
    /// [`FileSeries::at_cut_point`].
    fn cut_due(&self) -> bool {
        let Some(file) = self.open.as_ref() else {
            return false;
        };
        let lead = self.limits.keyframe_lead.as_micros() as i64;
        let cycle_due = cycle_us(&self.config).is_some_and(|c| file.duration_us() >= c - lead / 2);
        let size = file.size() + Mp4Writer::estimate(&file.buffer);
        let size_due = size >= self.limits.max_file_bytes / 4 * 3;
        let segment_due = matches!(file.writer, Writer::Hls(_))
            && file.segment_seconds() + file.buffered_us() as f64 / 1e6
                >= self.config.slice.as_secs_f64() - 1.5;
        cycle_due || size_due || segment_due
    }

    /// Flushes when the buffer holds twice the fragment length (no keyframe
    /// came).
    fn maybe_force_flush(&mut self, out: &mut Vec<Command>) {
        let Some(file) = self.open.as_ref() else {
            return;
        };
        if file.buffered_us() >= 2 * self.limits.fragment.as_micros() as i64 {
            self.flush_fragment(None, out);
        }
    }

    /// Writes the buffered samples before `before_us` as one fragment.
    fn flush_fragment(&mut self, before_us: Option<i64>, out: &mut Vec<Command>) {
        let Some(file) = self.open.as_mut() else {
            return;
        };
        let (now, later): (Vec<Sample>, Vec<Sample>) = std::mem::take(&mut file.buffer)
            .into_iter()
            .partition(|s| before_us.is_none_or(|b| ticks_to_us(s.pts, s.kind) < b));
        file.buffer = later;
        if now.is_empty() {
            return;
        }
        let first_us = now
            .iter()
            .map(|s| ticks_to_us(s.pts, s.kind))
            .min()
            .unwrap_or(file.origin_us);
        let start_wall = wall_at(self.epoch_wall, first_us);
        let result = match &mut file.writer {
            Writer::Mp4(w) => w.write_fragment(&now, out),
            Writer::Hls(w) => w.write_fragment(&now, start_wall, out),
        };
        if let Err(_e) = result {
            self.errors += 1;
            return;
        }
        if !file.announced {
            file.announced = true;
            let started = FileStarted {
                file_id: file.file_id,
                format: self.config.format,
                object: file.object.clone(),
                start_time: wall_at(self.epoch_wall, file.origin_us),
                file_index: file.index,
            };
            out.push(Command::FileStarted(started));
        }
    }

    fn start_file(&mut self, origin_us: i64, formats: &Formats) {
        let content = self.limits.content;
        let video = formats
            .video
            .clone()
            .filter(|_| content.includes(MediaKind::Video));
        let audio = formats
            .audio
            .clone()
            .filter(|_| content.includes(MediaKind::Audio));
        let start_wall = self.wall(origin_us);
        let base = match naming::expand(
            &self.config.naming,
            &self.context,
            self.config.format.as_str(),
            start_wall,
        ) {
            Ok(base) => base,
            Err(_) => {
                self.errors += 1;
                return;
            }
        };
        let index = self.next_index;
        self.next_index += 1;
        // Two files in the same second get distinct names.
        let base = if index > 0 {
            format!("{base}_{index}")
        } else {
            base
        };
        let (writer, object) = match self.config.format {
            Format::Mp4 => {
                let path = format!("{base}.mp4");
                match Mp4Writer::new(
                    path.clone(),
                    video.as_ref().map(|f| f.entry.clone()),
                    audio.as_ref().map(|f| f.entry.clone()),
                ) {
                    Ok(w) => (Writer::Mp4(w), path),
                    Err(Mp4Error::Mux(_) | Mp4Error::Layout) => {
                        self.errors += 1;
                        return;
                    }
                }
            }
            Format::Hls => {
                let mut w = HlsWriter::new(&base, self.config.slice.as_secs().max(1));
                w.set_formats(video.clone(), audio.clone());
                let object = w.object();
                (Writer::Hls(w), object)
            }
        };
        self.open = Some(OpenFile {
            writer,
            file_id: (u64::from(self.output_index) << 32) | u64::from(index),
            index,
            object,
            origin_us,
            skip_us: 0,
            lanes: [Lane::new(MediaKind::Audio), Lane::new(MediaKind::Video)],
            buffer: Vec::new(),
            size: video.as_ref().map_or((0, 0), |f| f.size),
            video_format: video,
            announced: false,
            paused_at_us: None,
            frozen: false,
        });
    }

    /// Cuts the file at `frame` (a keyframe): everything from its time on
    /// goes to the next file.
    fn cut(&mut self, frame: &TimedFrame, out: &mut Vec<Command>) -> Vec<TimedFrame> {
        let mut carried = vec![frame.clone()];
        let cut_us = frame.pts_us();
        if let Some(file) = self.open.as_mut() {
            let audio = &mut file.lanes[kind_slot(MediaKind::Audio)];
            if let Some(pending) = audio.pending() {
                if pending.pts_us() >= cut_us {
                    carried.extend(audio.take_pending());
                }
            }
            let keep: Vec<Sample> = std::mem::take(&mut file.buffer);
            for s in keep {
                if s.kind == MediaKind::Audio && ticks_to_us(s.pts, s.kind) >= cut_us {
                    carried.push(TimedFrame {
                        kind: s.kind,
                        pts: s.pts,
                        keyframe: true,
                        nominal: s.duration,
                        data: s.data,
                        filler: false,
                    });
                } else {
                    file.buffer.push(s);
                }
            }
            let cut_rel = file.rel(frame);
            let audio_end = us_to_ticks(ticks_to_us(cut_rel, frame.kind), MediaKind::Audio);
            if let Some(sample) = file.lanes[0].close(Some(audio_end)) {
                file.buffer.push(sample);
            }
        }
        self.close_file(out);
        // Stable: the keyframe stays ahead of audio at the same time.
        carried.sort_by_key(TimedFrame::pts_us);
        carried
    }

    /// Media stopped (publisher gone, track ended, stopped, or no RTP):
    /// flush and pause; `new_file` closes at once.
    ///
    /// Both tracks end together, at the later one's end: audio that went on
    /// after the last video frame (a publisher's tab closing stops the
    /// camera first, or a camera turned off) is kept, and the last picture
    /// stays on until it ends (a longer last sample, or the last keyframe
    /// repeated as in a gap). Otherwise the file would outlast its reported
    /// (video) duration, and the MP4 the HLS of the same stretch, whose
    /// EXTINF follow the video.
    pub fn interrupt(&mut self, out: &mut Vec<Command>) {
        let Some(file) = self.open.as_mut() else {
            return;
        };
        if file.paused_at_us.is_some() {
            return;
        }
        self.end_lanes_together();
        let Some(file) = self.open.as_mut() else {
            return;
        };
        let end_us = file.origin_us + file.skip_us + file.duration_us();
        file.paused_at_us = Some(end_us);
        self.flush_fragment(None, out);
        if let Some(Writer::Hls(w)) = self.open.as_mut().map(|f| &mut f.writer) {
            w.end_segment();
            w.flush_playlist(out);
        }
        if self.config.gap_merge == GapMerge::NewFile {
            self.close_file(out);
        }
    }

    /// Closes a paused file whose window expired at timeline time `now_us`.
    pub fn handle_timeout(&mut self, now_us: i64, out: &mut Vec<Command>) {
        if self.deadline_us().is_some_and(|d| now_us >= d) {
            self.close_file(out);
        }
    }

    /// Ends the recording: closes the open file.
    pub fn stop(&mut self, out: &mut Vec<Command>) {
        self.close_file(out);
    }

    fn close_file(&mut self, out: &mut Vec<Command>) {
        let Some(file) = self.open.as_mut() else {
            return;
        };
        for lane in &mut file.lanes {
            if let Some(sample) = lane.close(None) {
                file.buffer.push(sample);
            }
        }
        self.flush_fragment(None, out);
        let Some(mut file) = self.open.take() else {
            return;
        };
        if !file.announced {
            return;
        }
        let duration_us = file.duration_us().max(0);
        let (paths, size) = match &mut file.writer {
            Writer::Mp4(w) => {
                if w.finalize(out).is_err() {
                    self.errors += 1;
                }
                (vec![w.path().to_owned()], w.size)
            }
            Writer::Hls(w) => {
                w.finish(out);
                (w.paths(), w.size())
            }
        };
        let (width, height) = file.size;
        let start_time = self.wall(file.origin_us);
        let end_time = self.wall(file.origin_us + file.skip_us + duration_us);
        out.push(Command::FileCompleted(FileCompleted {
            file_id: file.file_id,
            format: self.config.format,
            object: file.object,
            paths,
            size,
            duration: Duration::from_micros(duration_us as u64),
            start_time,
            end_time,
            width,
            height,
            file_index: file.index,
        }));
    }
}
