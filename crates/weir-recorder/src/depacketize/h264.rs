//! H.264 RTP payload (RFC 6184, packetization-mode 1): single NAL units
//! (types 1–23), STAP-A (24) and FU-A (28).
//!
//! Output is one access unit as 4-byte length-prefixed NAL units (the MP4
//! `avc1` sample format). SPS (7) and PPS (8) are reported as the codec
//! configuration and also kept in band (players that keep the first init's
//! `avcC` across an HLS EXT-X-MAP change, like ffmpeg, still decode after a
//! resolution change); access unit delimiters (9) are dropped. An IDR slice (5) makes the access unit a keyframe.

use super::{AssembledFrame, CodecConfig, DepacketizeError};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Collects the NAL units of one access unit.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    nals: Vec<Vec<u8>>,
    /// A FU-A fragment in progress.
    fragment: Option<Vec<u8>>,
}

impl H264Depacketizer {
    /// Adds one RTP payload of the current access unit.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), DepacketizeError> {
        let header = *payload.first().ok_or(DepacketizeError::Truncated)?;
        match header & 0x1f {
            1..=23 => {
                self.fragment = None;
                self.nals.push(payload.to_vec());
            }
            STAP_A => {
                self.fragment = None;
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    let [hi, lo, tail @ ..] = rest else {
                        return Err(DepacketizeError::Truncated);
                    };
                    let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                    if size == 0 || size > tail.len() {
                        return Err(DepacketizeError::Truncated);
                    }
                    self.nals.push(tail[..size].to_vec());
                    rest = &tail[size..];
                }
            }
            FU_A => {
                let fu = *payload.get(1).ok_or(DepacketizeError::Truncated)?;
                let start = fu & 0x80 != 0;
                let end = fu & 0x40 != 0;
                let body = &payload[2..];
                if start {
                    let mut nal = Vec::with_capacity(body.len() * 4 + 1);
                    nal.push((header & 0xe0) | (fu & 0x1f));
                    nal.extend_from_slice(body);
                    self.fragment = Some(nal);
                } else {
                    self.fragment
                        .as_mut()
                        .ok_or(DepacketizeError::MissingStart)?
                        .extend_from_slice(body);
                }
                if end {
                    if let Some(nal) = self.fragment.take() {
                        self.nals.push(nal);
                    }
                }
            }
            other => return Err(DepacketizeError::Unsupported(other)),
        }
        Ok(())
    }

    /// Ends the access unit.
    pub fn finish(&mut self) -> Result<AssembledFrame, DepacketizeError> {
        if self.fragment.take().is_some() {
            self.nals.clear();
            return Err(DepacketizeError::MissingEnd);
        }
        let mut data = Vec::new();
        let mut keyframe = false;
        let mut sps = None;
        let mut pps = None;
        for nal in self.nals.drain(..) {
            let kind = nal.first().map(|b| b & 0x1f);
            if matches!(kind, Some(NAL_AUD) | None) {
                continue;
            }
            keyframe |= kind == Some(NAL_IDR);
            let len = u32::try_from(nal.len()).map_err(|_| DepacketizeError::Truncated)?;
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(&nal);
            match kind {
                Some(NAL_SPS) => sps = Some(nal),
                Some(NAL_PPS) => pps = Some(nal),
                _ => {}
            }
        }
        if data.is_empty() {
            return Err(DepacketizeError::Empty);
        }
        let config = match (sps, pps) {
            (Some(sps), Some(pps)) => Some(CodecConfig::H264 { sps, pps }),
            _ => None,
        };
        Ok(AssembledFrame {
            data,
            keyframe,
            config,
        })
    }

    /// Forgets a partial access unit.
    pub fn reset(&mut self) {
        self.nals.clear();
        self.fragment = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stap_a_and_fu_a_make_one_keyframe() {
        let mut d = H264Depacketizer::default();
        // STAP-A with SPS and PPS.
        d.push(&[24, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 9])
            .expect("valid test input");
        // FU-A IDR in three fragments.
        d.push(&[0x7c, 0x85, 1, 2]).expect("valid test input");
        d.push(&[0x7c, 0x05, 3]).expect("valid test input");
        d.push(&[0x7c, 0x45, 4]).expect("valid test input");
        let f = d.finish().expect("valid test input");
        assert!(f.keyframe);
        assert_eq!(
            f.data,
            vec![0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 9, 0, 0, 0, 5, 0x65, 1, 2, 3, 4]
        );
        assert_eq!(
            f.config,
            Some(CodecConfig::H264 {
                sps: vec![0x67, 1, 2],
                pps: vec![0x68, 9]
            })
        );
    }

    #[test]
    fn fu_a_without_start_is_an_error() {
        let mut d = H264Depacketizer::default();
        assert_eq!(
            d.push(&[0x7c, 0x05, 3]),
            Err(DepacketizeError::MissingStart)
        );
    }

    #[test]
    fn truncated_stap_a_is_an_error() {
        let mut d = H264Depacketizer::default();
        assert!(d.push(&[24, 0, 3, 0x67]).is_err());
        assert!(d.push(&[24, 0, 1, 0x67, 0]).is_err());
    }
}
