//! VP9 RTP payload (RFC 9628).
//!
//! The descriptor's B bit starts a frame and E (or the marker) ends it; P=0
//! on the first packet means the frame is intra-coded. The frame size of a
//! keyframe comes from the uncompressed header (parsed by `shiguredo_mp4`).
//! One spatial layer is expected (the SFU's tap forwards one layer).

use super::{AssembledFrame, CodecConfig, DepacketizeError};
use shiguredo_mp4::bitstream::vp9::{parse_frame_header, Vp9FrameType};

/// Collects the packets of one VP9 frame.
#[derive(Debug, Default)]
pub struct Vp9Depacketizer {
    data: Vec<u8>,
    started: bool,
    inter: bool,
}

struct Descriptor {
    len: usize,
    begin: bool,
    inter: bool,
}

fn descriptor(payload: &[u8]) -> Result<Descriptor, DepacketizeError> {
    let b0 = *payload.first().ok_or(DepacketizeError::Truncated)?;
    let byte = |i: usize| payload.get(i).copied().ok_or(DepacketizeError::Truncated);
    let (i, p, l, f, b, v) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
        b0 & 0x08 != 0,
        b0 & 0x02 != 0,
    );
    let mut len = 1;
    if i {
        len += if byte(len)? & 0x80 != 0 { 2 } else { 1 };
    }
    if l {
        len += 1;
        if !f {
            len += 1; // TL0PICIDX
        }
    }
    if f && p {
        // Up to three P_DIFF bytes, N bit continues.
        for _ in 0..3 {
            let d = byte(len)?;
            len += 1;
            if d & 0x01 == 0 {
                break;
            }
        }
    }
    if v {
        let ss = byte(len)?;
        len += 1;
        let spatial = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            len += 4 * spatial;
        }
        if ss & 0x08 != 0 {
            let groups = byte(len)?;
            len += 1;
            for _ in 0..groups {
                let g = byte(len)?;
                len += 1 + usize::from((g >> 2) & 0x03);
            }
        }
    }
    if len > payload.len() {
        return Err(DepacketizeError::Truncated);
    }
    Ok(Descriptor {
        len,
        begin: b,
        inter: p,
    })
}

impl Vp9Depacketizer {
    /// Adds one RTP payload of the current frame.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), DepacketizeError> {
        let d = descriptor(payload)?;
        if d.begin {
            self.data.clear();
            self.started = true;
            self.inter = d.inter;
        } else if !self.started {
            return Err(DepacketizeError::MissingStart);
        }
        self.data.extend_from_slice(&payload[d.len..]);
        Ok(())
    }

    /// Ends the frame.
    pub fn finish(&mut self) -> Result<AssembledFrame, DepacketizeError> {
        let data = std::mem::take(&mut self.data);
        if !std::mem::replace(&mut self.started, false) {
            return Err(DepacketizeError::MissingStart);
        }
        if data.is_empty() {
            return Err(DepacketizeError::Empty);
        }
        let mut keyframe = false;
        let mut config = None;
        if !self.inter {
            let header = parse_frame_header(&data).map_err(|_| DepacketizeError::BadKeyframe)?;
            if header.frame_type == Vp9FrameType::Key {
                keyframe = true;
                config = Some(CodecConfig::Vp9 {
                    header: Box::new(header),
                });
            }
        }
        Ok(AssembledFrame {
            data,
            keyframe,
            config,
        })
    }

    /// Forgets a partial frame.
    pub fn reset(&mut self) {
        self.data.clear();
        self.started = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_with_scalability_structure() {
        // I=1 (7-bit id), B=1, E=1, V=1; SS: N_S=0, Y=1, G=0; 640x360.
        let p = [0x8e, 0x05, 0x10, 0x02, 0x80, 0x01, 0x68, 0xaa];
        let d = descriptor(&p).expect("valid test input");
        assert_eq!(d.len, 7);
        assert!(d.begin);
        assert!(!d.inter);
    }

    #[test]
    fn truncated_descriptor_is_an_error() {
        assert!(descriptor(&[0x8e]).is_err());
        assert!(descriptor(&[0x0a, 0x10]).is_err());
        assert!(descriptor(&[0x0c, 0x10]).is_ok());
    }
}
