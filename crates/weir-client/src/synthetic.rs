//! Synthetic media: VP8-shaped video packets and Opus-sized audio packets
//! whose payloads identify themselves, so a receiver can check that what
//! arrived is byte-identical to what was sent and compute latency, without a
//! codec.
//!
//! Every payload is `codec header | stamp | filler`:
//!
//! - **VP8** (RFC 7741): a one-byte payload descriptor (S bit on the first
//!   packet of a frame, partition 0). The first packet of a frame then carries
//!   the 3-byte VP8 frame tag (P bit 0 for a keyframe), and for a keyframe the
//!   start code `9d 01 2a` and the dimensions, so a server's keyframe detection
//!   works on it. The frame is split into several ~1100-byte packets; the RTP
//!   marker is set on the last one.
//! - **Opus**: one TOC byte (CELT fullband, 20 ms, one frame), ~100 bytes per
//!   packet, 50 packets per second.
//! - **Stamp** (24 bytes): magic `WEIR`, frame counter, packet index, packet
//!   count, send time (µs since the Unix epoch), flags.
//! - **Filler**: a pattern derived from (frame, index, position), checked by
//!   [`verify_vp8`] / [`verify_opus`].
//!
//! Payloads are carved out of a shared arena buffer, so generating a packet
//! does not allocate (one 64 KiB allocation per ~60 video packets).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// First bytes of every stamp.
pub const STAMP_MAGIC: [u8; 4] = *b"WEIR";
/// Length of the stamp in bytes.
pub const STAMP_LEN: usize = 24;

const FLAG_KEYFRAME: u8 = 0x01;
const FLAG_AUDIO: u8 = 0x02;
const ARENA_BYTES: usize = 64 * 1024;
/// Opus TOC byte: config 31 (CELT-only, fullband, 20 ms), mono, one frame.
const OPUS_TOC: u8 = 31 << 3;
const VP8_KEYFRAME_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];

/// What a synthetic payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Video: frame counter. Audio: packet counter.
    pub frame: u32,
    /// Index of this packet within its frame (0 for audio).
    pub index: u16,
    /// Number of packets of the frame (1 for audio).
    pub count: u16,
    /// Send time, microseconds since the Unix epoch.
    pub sent_at_us: u64,
    pub keyframe: bool,
    pub audio: bool,
}

impl Stamp {
    /// A unique id of the packet within its stream: frame and index.
    pub fn packet_id(&self) -> u64 {
        (u64::from(self.frame) << 16) | u64::from(self.index)
    }

    fn write(&self, buf: &mut BytesMut) {
        buf.put_slice(&STAMP_MAGIC);
        buf.put_u32(self.frame);
        buf.put_u16(self.index);
        buf.put_u16(self.count);
        buf.put_u64(self.sent_at_us);
        let mut flags = 0;
        if self.keyframe {
            flags |= FLAG_KEYFRAME;
        }
        if self.audio {
            flags |= FLAG_AUDIO;
        }
        buf.put_u8(flags);
        buf.put_slice(&[0, 0, 0]);
    }

    /// Reads a stamp at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Option<Stamp> {
        let raw = bytes.get(..STAMP_LEN)?;
        if raw[..4] != STAMP_MAGIC {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
        let mut frame = [0u8; 4];
        frame.copy_from_slice(&raw[4..8]);
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&raw[12..20]);
        let flags = raw[20];
        if flags & !(FLAG_KEYFRAME | FLAG_AUDIO) != 0 || raw[21..24] != [0, 0, 0] {
            return None;
        }
        Some(Stamp {
            frame: u32::from_be_bytes(frame),
            index: u16_at(8),
            count: u16_at(10),
            sent_at_us: u64::from_be_bytes(sent),
            keyframe: flags & FLAG_KEYFRAME != 0,
            audio: flags & FLAG_AUDIO != 0,
        })
    }

    /// Time from sending to `received_at_us` (µs since the Unix epoch).
    pub fn latency(&self, received_at_us: u64) -> Duration {
        Duration::from_micros(received_at_us.saturating_sub(self.sent_at_us))
    }
}

/// Microseconds since the Unix epoch, the clock of [`Stamp::sent_at_us`].
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The filler byte at `position` (counted from the end of the stamp).
fn filler_byte(frame: u32, index: u16, position: usize) -> u8 {
    (frame.wrapping_mul(31) ^ u32::from(index).wrapping_mul(7)).wrapping_add(position as u32) as u8
}

fn put_filler(buf: &mut BytesMut, frame: u32, index: u16, len: usize) {
    for position in 0..len {
        buf.put_u8(filler_byte(frame, index, position));
    }
}

fn filler_matches(filler: &[u8], frame: u32, index: u16) -> bool {
    filler
        .iter()
        .enumerate()
        .all(|(position, b)| *b == filler_byte(frame, index, position))
}

/// One generated packet, ready to be written to an RTP track.
#[derive(Debug, Clone)]
pub struct SyntheticPacket {
    pub payload: Bytes,
    pub marker: bool,
    pub rtp_timestamp: u32,
    pub stamp: Stamp,
}

/// Reusable payload memory: packets are split off one large buffer.
#[derive(Debug, Default)]
struct Arena {
    buf: BytesMut,
}

impl Arena {
    /// A buffer with room for `len` bytes, sharing the arena's allocation.
    fn begin(&mut self, len: usize) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < len {
            self.buf = BytesMut::with_capacity(ARENA_BYTES.max(len));
        }
        &mut self.buf
    }

    fn finish(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// Settings of the synthetic VP8 stream.
#[derive(Debug, Clone)]
pub struct Vp8Config {
    pub fps: u32,
    /// Payload bytes per packet (the RTP header comes on top).
    pub packet_size: usize,
    pub keyframe_packets: u16,
    pub delta_packets: u16,
    /// A keyframe every this many frames (0: only the first and on request).
    pub keyframe_interval: u32,
    pub width: u16,
    pub height: u16,
}

impl Default for Vp8Config {
    fn default() -> Self {
        Self {
            fps: 30,
            packet_size: 1100,
            keyframe_packets: 6,
            delta_packets: 3,
            keyframe_interval: 60,
            width: 640,
            height: 480,
        }
    }
}

/// Generates synthetic VP8 frames.
#[derive(Debug)]
pub struct Vp8Source {
    config: Vp8Config,
    frame: u32,
    rtp_timestamp: u32,
    keyframe_requested: bool,
    arena: Arena,
}

impl Vp8Source {
    pub fn new(config: Vp8Config) -> Self {
        let config = Vp8Config {
            fps: config.fps.max(1),
            packet_size: config.packet_size.max(STAMP_LEN + 16),
            keyframe_packets: config.keyframe_packets.max(1),
            delta_packets: config.delta_packets.max(1),
            ..config
        };
        Self {
            config,
            frame: 0,
            rtp_timestamp: rand::random(),
            keyframe_requested: true,
            arena: Arena::default(),
        }
    }

    pub fn config(&self) -> &Vp8Config {
        &self.config
    }

    /// Time between frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_micros(1_000_000 / u64::from(self.config.fps))
    }

    /// Makes the next frame a keyframe (answer to a PLI/FIR).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Frames generated so far.
    pub fn frames(&self) -> u32 {
        self.frame
    }

    /// Appends the packets of the next frame to `out`.
    pub fn next_frame(&mut self, sent_at_us: u64, out: &mut Vec<SyntheticPacket>) {
        let frame = self.frame;
        let interval = self.config.keyframe_interval;
        let keyframe = self.keyframe_requested || (interval > 0 && frame.is_multiple_of(interval));
        self.keyframe_requested = false;
        let count = if keyframe {
            self.config.keyframe_packets
        } else {
            self.config.delta_packets
        };
        let size = self.config.packet_size;
        for index in 0..count {
            let stamp = Stamp {
                frame,
                index,
                count,
                sent_at_us,
                keyframe,
                audio: false,
            };
            let buf = self.arena.begin(size);
            let start = buf.len();
            write_vp8_header(buf, index == 0, keyframe, &self.config);
            stamp.write(buf);
            let written = buf.len() - start;
            put_filler(buf, frame, index, size.saturating_sub(written));
            out.push(SyntheticPacket {
                payload: self.arena.finish(),
                marker: index + 1 == count,
                rtp_timestamp: self.rtp_timestamp,
                stamp,
            });
        }
        self.frame = self.frame.wrapping_add(1);
        self.rtp_timestamp = self
            .rtp_timestamp
            .wrapping_add(90_000 / self.config.fps.max(1));
    }
}

/// The 3-byte VP8 frame tag: P (0 = key), version 0, show_frame 1, first
/// partition size 64.
fn vp8_frame_tag(keyframe: bool) -> [u8; 3] {
    let first_partition_size: u32 = 64;
    let tag = (first_partition_size << 5) | (1 << 4) | u32::from(!keyframe);
    [tag as u8, (tag >> 8) as u8, (tag >> 16) as u8]
}

fn write_vp8_header(buf: &mut BytesMut, first: bool, keyframe: bool, config: &Vp8Config) {
    // Payload descriptor: X=0, N=0, S=first, PID=0.
    buf.put_u8(if first { 0x10 } else { 0x00 });
    if !first {
        return;
    }
    buf.put_slice(&vp8_frame_tag(keyframe));
    if keyframe {
        buf.put_slice(&VP8_KEYFRAME_START_CODE);
        buf.put_u16_le(config.width & 0x3fff);
        buf.put_u16_le(config.height & 0x3fff);
    }
}

/// The layout of a VP8 payload as far as the stamp.
struct Vp8Layout {
    /// Where the VP8 payload header (frame tag) starts.
    header: usize,
    /// Where the stamp starts.
    stamp: usize,
    starts_frame: bool,
    keyframe: bool,
}

/// Parses the RFC 7741 payload descriptor and, on the first packet of a
/// frame, the frame tag.
fn vp8_layout(payload: &[u8]) -> Option<Vp8Layout> {
    let first = *payload.first()?;
    let mut offset = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(offset)?;
        offset += 1;
        if ext & 0x80 != 0 {
            let pid = *payload.get(offset)?;
            offset += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            offset += 1;
        }
        if ext & 0x30 != 0 {
            offset += 1;
        }
    }
    let header = offset;
    let starts_frame = first & 0x10 != 0 && first & 0x07 == 0;
    if !starts_frame {
        return Some(Vp8Layout {
            header,
            stamp: offset,
            starts_frame,
            keyframe: false,
        });
    }
    let tag = *payload.get(offset)?;
    let keyframe = tag & 0x01 == 0;
    offset += 3;
    if keyframe {
        if payload.get(offset..offset + 3)? != VP8_KEYFRAME_START_CODE {
            return None;
        }
        offset += 7;
    }
    Some(Vp8Layout {
        header,
        stamp: offset,
        starts_frame,
        keyframe,
    })
}

/// The stamp of a synthetic VP8 payload (no filler check).
pub fn parse_vp8(payload: &[u8]) -> Option<Stamp> {
    let layout = vp8_layout(payload)?;
    Stamp::read(payload.get(layout.stamp..)?)
}

/// The stamp of a synthetic Opus payload (no filler check).
pub fn parse_opus(payload: &[u8]) -> Option<Stamp> {
    Stamp::read(payload.get(1..)?)
}

/// Why a payload is not an intact synthetic packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no synthetic stamp in the payload")]
    NoStamp,
    #[error("the codec header disagrees with the stamp")]
    HeaderMismatch,
    #[error("the filler bytes differ from what was sent")]
    FillerMismatch,
}

/// Checks a synthetic VP8 payload byte by byte (all but the keyframe
/// dimensions, which depend on the sender's config); returns its stamp.
pub fn verify_vp8(payload: &[u8]) -> Result<Stamp, VerifyError> {
    let layout = vp8_layout(payload).ok_or(VerifyError::NoStamp)?;
    let stamp = payload
        .get(layout.stamp..)
        .and_then(Stamp::read)
        .ok_or(VerifyError::NoStamp)?;
    let first = payload[0];
    let expected_descriptor = if stamp.index == 0 { 0x10 } else { 0x00 };
    if stamp.audio
        || layout.starts_frame != (stamp.index == 0)
        || (first & 0x80 == 0 && first != expected_descriptor)
    {
        return Err(VerifyError::HeaderMismatch);
    }
    if layout.starts_frame {
        if layout.keyframe != stamp.keyframe {
            return Err(VerifyError::HeaderMismatch);
        }
        let tag = vp8_frame_tag(stamp.keyframe);
        if payload.get(layout.header..layout.header + 3) != Some(&tag[..]) {
            return Err(VerifyError::HeaderMismatch);
        }
    }
    if !filler_matches(
        &payload[layout.stamp + STAMP_LEN..],
        stamp.frame,
        stamp.index,
    ) {
        return Err(VerifyError::FillerMismatch);
    }
    Ok(stamp)
}

/// Checks every byte of a synthetic Opus payload; returns its stamp.
pub fn verify_opus(payload: &[u8]) -> Result<Stamp, VerifyError> {
    let stamp = parse_opus(payload).ok_or(VerifyError::NoStamp)?;
    if payload[0] != OPUS_TOC || !stamp.audio {
        return Err(VerifyError::HeaderMismatch);
    }
    if !filler_matches(&payload[1 + STAMP_LEN..], stamp.frame, stamp.index) {
        return Err(VerifyError::FillerMismatch);
    }
    Ok(stamp)
}

/// Settings of the synthetic Opus stream.
#[derive(Debug, Clone)]
pub struct OpusConfig {
    /// Payload bytes per packet.
    pub packet_size: usize,
    /// Milliseconds of audio per packet.
    pub ptime_ms: u32,
}

impl Default for OpusConfig {
    fn default() -> Self {
        Self {
            packet_size: 100,
            ptime_ms: 20,
        }
    }
}

/// Generates synthetic Opus packets.
#[derive(Debug)]
pub struct OpusSource {
    config: OpusConfig,
    packet: u32,
    rtp_timestamp: u32,
    arena: Arena,
}

impl OpusSource {
    pub fn new(config: OpusConfig) -> Self {
        let config = OpusConfig {
            packet_size: config.packet_size.max(1 + STAMP_LEN),
            ptime_ms: config.ptime_ms.max(1),
        };
        Self {
            config,
            packet: 0,
            rtp_timestamp: rand::random(),
            arena: Arena::default(),
        }
    }

    /// Time between packets.
    pub fn packet_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.ptime_ms))
    }

    /// Packets generated so far.
    pub fn packets(&self) -> u32 {
        self.packet
    }

    pub fn next_packet(&mut self, sent_at_us: u64) -> SyntheticPacket {
        let stamp = Stamp {
            frame: self.packet,
            index: 0,
            count: 1,
            sent_at_us,
            keyframe: false,
            audio: true,
        };
        let size = self.config.packet_size;
        let buf = self.arena.begin(size);
        buf.put_u8(OPUS_TOC);
        stamp.write(buf);
        put_filler(buf, stamp.frame, 0, size - 1 - STAMP_LEN);
        let packet = SyntheticPacket {
            payload: self.arena.finish(),
            marker: self.packet == 0,
            rtp_timestamp: self.rtp_timestamp,
            stamp,
        };
        self.packet = self.packet.wrapping_add(1);
        self.rtp_timestamp = self.rtp_timestamp.wrapping_add(48 * self.config.ptime_ms);
        packet
    }
}

#[cfg(test)]
mod tests;
