//! VP8 RTP payload (RFC 7741).
//!
//! A frame starts with S=1 and partition id 0 and ends with the marker bit.
//! It is a keyframe when bit 0 of the first payload byte is 0; a keyframe
//! carries `9d 01 2a` and 14-bit width and height.

use super::{AssembledFrame, CodecConfig, DepacketizeError};

/// Collects the partitions of one VP8 frame.
#[derive(Debug, Default)]
pub struct Vp8Depacketizer {
    data: Vec<u8>,
    started: bool,
}

/// Length of the payload descriptor, and whether the packet starts a frame.
fn descriptor(payload: &[u8]) -> Result<(usize, bool), DepacketizeError> {
    let b0 = *payload.first().ok_or(DepacketizeError::Truncated)?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut len = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(1).ok_or(DepacketizeError::Truncated)?;
        len = 2;
        if x & 0x80 != 0 {
            let pid = *payload.get(len).ok_or(DepacketizeError::Truncated)?;
            len += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            len += 1;
        }
        if x & 0x30 != 0 {
            len += 1;
        }
    }
    if len > payload.len() {
        return Err(DepacketizeError::Truncated);
    }
    Ok((len, start))
}

impl Vp8Depacketizer {
    /// Adds one RTP payload of the current frame.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), DepacketizeError> {
        let (len, start) = descriptor(payload)?;
        if start {
            self.data.clear();
            self.started = true;
        } else if !self.started {
            return Err(DepacketizeError::MissingStart);
        }
        self.data.extend_from_slice(&payload[len..]);
        Ok(())
    }

    /// Ends the frame.
    pub fn finish(&mut self) -> Result<AssembledFrame, DepacketizeError> {
        let data = std::mem::take(&mut self.data);
        let started = std::mem::replace(&mut self.started, false);
        if !started {
            return Err(DepacketizeError::MissingStart);
        }
        let first = *data.first().ok_or(DepacketizeError::Empty)?;
        let keyframe = first & 0x01 == 0;
        let config = if keyframe {
            match data.get(3..10) {
                Some([0x9d, 0x01, 0x2a, w0, w1, h0, h1]) => Some(CodecConfig::Vp8 {
                    width: u16::from_le_bytes([*w0, *w1]) & 0x3fff,
                    height: u16::from_le_bytes([*h0, *h1]) & 0x3fff,
                }),
                _ => return Err(DepacketizeError::BadKeyframe),
            }
        } else {
            None
        };
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

/// A one-packet VP8 frame as an RTP payload (keyframes carry a 320x240
/// header), for the crate's tests.
#[cfg(test)]
pub(crate) fn test_frame_payload(keyframe: bool) -> Vec<u8> {
    let tag: u32 = (64 << 5) | (1 << 4) | u32::from(!keyframe);
    let mut payload = vec![0x10, tag as u8, (tag >> 8) as u8, (tag >> 16) as u8];
    if keyframe {
        payload.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
    }
    payload.extend_from_slice(&[0x55; 40]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_with_picture_id_gives_size() {
        let mut d = Vp8Depacketizer::default();
        // X=1,S=1; I=1; 15-bit picture id.
        d.push(&[0x90, 0x80, 0x81, 0x02, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a])
            .expect("valid test input");
        d.push(&[0x80, 0x80, 0x81, 0x02, 0x80, 0x02, 0x68, 0x01, 0xff])
            .expect("valid test input");
        let f = d.finish().expect("valid test input");
        assert!(f.keyframe);
        assert_eq!(
            f.config,
            Some(CodecConfig::Vp8 {
                width: 640,
                height: 360
            })
        );
    }

    #[test]
    fn continuation_without_start_is_an_error() {
        let mut d = Vp8Depacketizer::default();
        assert_eq!(d.push(&[0x00, 1, 2]), Err(DepacketizeError::MissingStart));
    }
}
