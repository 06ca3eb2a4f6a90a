//! Media helpers for the depacketizer and recorder targets: reference RTP
//! packetizers (written from the RFCs, independently of the recorder's
//! depacketizers) and checks of the MP4 sample formats the recorder emits.

use crate::Reader;

/// Checks an `avc1` sample: 4-byte length-prefixed NAL units that cover it
/// exactly, none empty. Returns the NAL units.
pub fn avcc_nals(sample: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut rest = sample;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "truncated NAL length in {sample:02x?}");
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(len >= 1, "empty NAL unit");
        assert!(rest.len() >= 4 + len, "NAL length past the sample end");
        nals.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    nals
}

/// Reads a LEB128 value (at most 8 bytes), as AV1 does.
pub fn leb128(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in buf.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

pub fn write_leb128(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// An OBU of an `av01` sample.
pub struct Obu<'a> {
    pub kind: u8,
    /// The whole OBU (header, size field, payload).
    pub bytes: &'a [u8],
}

/// Checks an `av01` sample: OBUs that all carry `obu_size` and cover it
/// exactly. Returns them.
pub fn av01_obus(sample: &[u8]) -> Vec<Obu<'_>> {
    let mut obus = Vec::new();
    let mut at = 0;
    while at < sample.len() {
        let header = sample[at];
        assert!(header & 0x02 != 0, "OBU without obu_has_size_field");
        let header_len = 1 + usize::from(header & 0x04 != 0);
        assert!(at + header_len <= sample.len(), "truncated OBU header");
        let (size, used) = leb128(&sample[at + header_len..]).expect("OBU size field");
        let end = at + header_len + used + size as usize;
        assert!(end <= sample.len(), "OBU size past the sample end");
        obus.push(Obu {
            kind: (header >> 3) & 0x0f,
            bytes: &sample[at..end],
        });
        at = end;
    }
    obus
}

/// Splits `data` into chunks whose sizes (at least 1, at most `max`) come
/// from `r`; an empty `data` gives one empty chunk.
pub fn chunks<'a>(r: &mut Reader<'_>, data: &'a [u8], max: usize) -> Vec<&'a [u8]> {
    if data.is_empty() {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let size = (usize::from(r.u8()) % max.max(1) + 1).min(rest.len());
        out.push(&rest[..size]);
        rest = &rest[size..];
    }
    out
}

/// RFC 6184 packetization-mode 1 of one access unit: each NAL unit alone,
/// aggregated with the next ones (STAP-A) or fragmented (FU-A), as `r`
/// chooses. NAL units must be 1..=65535 bytes of types 1..=23.
pub fn packetize_h264(r: &mut Reader<'_>, nals: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < nals.len() {
        let nal = &nals[i];
        match r.u8() % 3 {
            0 => {
                out.push(nal.clone());
                i += 1;
            }
            1 => {
                let count = (usize::from(r.u8()) % 4 + 1).min(nals.len() - i);
                let mut p = vec![24 | (nal[0] & 0xe0)];
                for n in &nals[i..i + count] {
                    p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    p.extend_from_slice(n);
                }
                out.push(p);
                i += count;
            }
            _ => {
                let max = usize::from(r.u8()) + 1;
                let body = chunks(r, &nal[1..], max);
                for (k, c) in body.iter().enumerate() {
                    let mut fu = nal[0] & 0x1f;
                    if k == 0 {
                        fu |= 0x80;
                    }
                    if k + 1 == body.len() {
                        fu |= 0x40;
                    }
                    let mut p = vec![(nal[0] & 0xe0) | 28, fu];
                    p.extend_from_slice(c);
                    out.push(p);
                }
                i += 1;
            }
        }
    }
    out
}

/// RFC 7741: a VP8 payload descriptor (with the optional extensions `r`
/// picks) before each chunk of `frame`.
pub fn packetize_vp8(r: &mut Reader<'_>, frame: &[u8]) -> Vec<Vec<u8>> {
    let flags = r.u8();
    let picture_id = r.u16();
    let max = usize::from(r.u8()) + 1;
    chunks(r, frame, max)
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let mut p = Vec::new();
            let extended = flags & 0x0f != 0;
            let start = if k == 0 { 0x10 } else { 0x00 };
            p.push(if extended { 0x80 } else { 0 } | start);
            if extended {
                let x = (flags & 0x0f) << 4;
                p.push(x);
                if x & 0x80 != 0 {
                    if flags & 0x10 != 0 {
                        p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
                    } else {
                        p.push((picture_id & 0x7f) as u8);
                    }
                }
                if x & 0x40 != 0 {
                    p.push(flags);
                }
                if x & 0x30 != 0 {
                    p.push(flags & 0xe0);
                }
            }
            p.extend_from_slice(c);
            p
        })
        .collect()
}

/// RFC 9628 (flexible or non-flexible mode, optional picture id and
/// scalability structure on the first packet) over chunks of `frame`.
pub fn packetize_vp9(r: &mut Reader<'_>, frame: &[u8], inter: bool) -> Vec<Vec<u8>> {
    let flags = r.u8();
    let picture_id = r.u16();
    let max = usize::from(r.u8()) + 1;
    let parts = chunks(r, frame, max);
    let count = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let i = flags & 0x01 != 0;
            let l = flags & 0x02 != 0;
            let f = flags & 0x04 != 0;
            let v = flags & 0x08 != 0 && k == 0;
            let mut b0 = 0u8;
            if i {
                b0 |= 0x80;
            }
            if inter {
                b0 |= 0x40;
            }
            if l {
                b0 |= 0x20;
            }
            if f {
                b0 |= 0x10;
            }
            if k == 0 {
                b0 |= 0x08;
            }
            if k + 1 == count {
                b0 |= 0x04;
            }
            if v {
                b0 |= 0x02;
            }
            let mut p = vec![b0];
            if i {
                if flags & 0x10 != 0 {
                    p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
                } else {
                    p.push((picture_id & 0x7f) as u8);
                }
            }
            if l {
                p.push(0); // TID 0, U 0, SID 0, D 0
                if !f {
                    p.push(flags); // TL0PICIDX
                }
            }
            if f && inter {
                // Two P_DIFFs (N set on the first).
                p.extend_from_slice(&[0x03, 0x02]);
            }
            if v {
                // One spatial layer with its size, one picture group.
                p.push(0x18);
                p.extend_from_slice(&[0x01, 0x40, 0x00, 0xb4]);
                p.push(1);
                p.extend_from_slice(&[0x04, 0x01]);
            }
            p.extend_from_slice(c);
            p
        })
        .collect()
}

/// The AV1 RTP aggregation header format: OBUs (without size fields)
/// chunked, chunks packed into packets (only the first element of a packet
/// may continue an OBU, only the last may be continued), W = 0 or the
/// element count. `new_sequence` sets N on the first packet.
pub fn packetize_av1(r: &mut Reader<'_>, obus: &[Vec<u8>], new_sequence: bool) -> Vec<Vec<u8>> {
    // (chunk, is the first chunk of its OBU, is the last chunk of its OBU)
    let mut pieces: Vec<(&[u8], bool, bool)> = Vec::new();
    for obu in obus {
        let max = usize::from(r.u8()) + 1;
        let parts = chunks(r, obu, max);
        let n = parts.len();
        for (k, c) in parts.into_iter().enumerate() {
            pieces.push((c, k == 0, k + 1 == n));
        }
    }
    let per_packet = usize::from(r.u8() % 4) + 1;
    let mut packets: Vec<Vec<(&[u8], bool, bool)>> = Vec::new();
    for piece in pieces {
        let new_packet = match packets.last() {
            None => true,
            Some(p) => p.len() >= per_packet || !p.last().is_some_and(|last| last.2),
        };
        if new_packet {
            packets.push(Vec::new());
        }
        packets.last_mut().expect("a packet").push(piece);
    }
    let mut out = Vec::new();
    for (index, elements) in packets.iter().enumerate() {
        let z = !elements[0].1;
        let y = !elements[elements.len() - 1].2;
        let w = if elements.len() <= 3 && r.bool() {
            elements.len() as u8
        } else {
            0
        };
        let mut header = w << 4;
        if z {
            header |= 0x80;
        }
        if y {
            header |= 0x40;
        }
        if new_sequence && index == 0 {
            header |= 0x08;
        }
        let mut p = vec![header];
        for (k, (chunk, _, _)) in elements.iter().enumerate() {
            if w == 0 || k + 1 < usize::from(w) {
                write_leb128(chunk.len(), &mut p);
            }
            p.extend_from_slice(chunk);
        }
        out.push(p);
    }
    out
}
