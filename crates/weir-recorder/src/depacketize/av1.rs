//! AV1 RTP payload (AOM "RTP Payload Format for AV1", the aggregation header
//! of RFC 9066-style descriptors): Z (first element continues an OBU), Y
//! (last element continues in the next packet), W (element count; 0 = every
//! element is length-prefixed), N (new coded video sequence).
//!
//! Output is one temporal unit with every OBU carrying `obu_size` (the MP4
//! `av01` sample format); temporal delimiters and tile lists are dropped. A
//! temporal unit holding a sequence header is a keyframe, and the sequence
//! header OBU is its configuration.

use super::{AssembledFrame, CodecConfig, DepacketizeError};

const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_TILE_LIST: u8 = 8;

/// Collects the OBUs of one temporal unit.
#[derive(Debug, Default)]
pub struct Av1Depacketizer {
    obus: Vec<Vec<u8>>,
    /// An OBU fragment continuing into the next packet.
    fragment: Option<Vec<u8>>,
    new_sequence: bool,
}

/// Reads a LEB128 value; returns (value, bytes used).
pub(crate) fn read_leb128(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return usize::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn write_leb128(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl Av1Depacketizer {
    /// Adds one RTP payload of the current temporal unit.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), DepacketizeError> {
        let header = *payload.first().ok_or(DepacketizeError::Truncated)?;
        let z = header & 0x80 != 0;
        let y = header & 0x40 != 0;
        let w = usize::from((header >> 4) & 0x03);
        self.new_sequence |= header & 0x08 != 0;
        if z && self.fragment.is_none() {
            return Err(DepacketizeError::MissingStart);
        }
        if !z {
            self.fragment = None;
        }
        let mut rest = &payload[1..];
        let mut index = 0;
        let mut elements = Vec::new();
        while !rest.is_empty() {
            index += 1;
            let element = if w != 0 && index == w {
                std::mem::take(&mut rest)
            } else {
                let (len, used) = read_leb128(rest).ok_or(DepacketizeError::Truncated)?;
                let end = used.checked_add(len).ok_or(DepacketizeError::Truncated)?;
                let element = rest.get(used..end).ok_or(DepacketizeError::Truncated)?;
                rest = &rest[end..];
                element
            };
            elements.push(element);
        }
        let count = elements.len();
        for (i, element) in elements.into_iter().enumerate() {
            let mut obu = if i == 0 && z {
                self.fragment.take().ok_or(DepacketizeError::MissingStart)?
            } else {
                Vec::new()
            };
            obu.extend_from_slice(element);
            if i + 1 == count && y {
                self.fragment = Some(obu);
            } else {
                self.obus.push(obu);
            }
        }
        Ok(())
    }

    /// Ends the temporal unit.
    pub fn finish(&mut self) -> Result<AssembledFrame, DepacketizeError> {
        if self.fragment.take().is_some() {
            self.obus.clear();
            return Err(DepacketizeError::MissingEnd);
        }
        let mut data = Vec::new();
        let mut sequence_header = None;
        for obu in self.obus.drain(..) {
            let sized = with_size_field(&obu)?;
            match obu.first().map(|h| (h >> 3) & 0x0f) {
                Some(OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST) | None => continue,
                Some(OBU_SEQUENCE_HEADER) => sequence_header = Some(sized.clone()),
                Some(_) => {}
            }
            data.extend_from_slice(&sized);
        }
        let new_sequence = std::mem::replace(&mut self.new_sequence, false);
        if data.is_empty() {
            return Err(DepacketizeError::Empty);
        }
        let keyframe = sequence_header.is_some() || new_sequence;
        Ok(AssembledFrame {
            data,
            keyframe,
            config: sequence_header.map(|obu| CodecConfig::Av1 {
                sequence_header: obu,
            }),
        })
    }

    /// Forgets a partial temporal unit.
    pub fn reset(&mut self) {
        self.obus.clear();
        self.fragment = None;
        self.new_sequence = false;
    }
}

/// Rewrites an OBU so that it carries `obu_size` (obu_has_size_field = 1).
fn with_size_field(obu: &[u8]) -> Result<Vec<u8>, DepacketizeError> {
    let header = *obu.first().ok_or(DepacketizeError::Empty)?;
    let ext_len = usize::from(header & 0x04 != 0);
    let header_len = 1 + ext_len;
    let head = obu.get(..header_len).ok_or(DepacketizeError::Truncated)?;
    if header & 0x02 != 0 {
        // Already sized: check that the size is consistent and trim to it.
        let (len, used) = read_leb128(&obu[header_len..]).ok_or(DepacketizeError::Truncated)?;
        let end = header_len + used + len;
        return obu
            .get(..end)
            .map(<[u8]>::to_vec)
            .ok_or(DepacketizeError::Truncated);
    }
    let payload = &obu[header_len..];
    let mut out = Vec::with_capacity(obu.len() + 4);
    out.push(header | 0x02);
    out.extend_from_slice(&head[1..]);
    write_leb128(payload.len(), &mut out);
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragmented_obu_is_reassembled_with_size() {
        let mut d = Av1Depacketizer::default();
        // W=2: a length-prefixed sequence header, then a frame OBU that continues.
        d.push(&[0x68, 2, 0x08, 0xaa, 0x30, 1, 2])
            .expect("valid test input");
        // Z=1, W=1: the rest of the frame OBU.
        d.push(&[0x90, 3, 4]).expect("valid test input");
        let f = d.finish().expect("valid test input");
        assert!(f.keyframe);
        assert_eq!(f.data, vec![0x0a, 1, 0xaa, 0x32, 4, 1, 2, 3, 4]);
        assert_eq!(
            f.config,
            Some(CodecConfig::Av1 {
                sequence_header: vec![0x0a, 1, 0xaa]
            })
        );
    }

    #[test]
    fn continuation_without_fragment_is_an_error() {
        let mut d = Av1Depacketizer::default();
        assert_eq!(d.push(&[0x90, 3, 4]), Err(DepacketizeError::MissingStart));
    }

    #[test]
    fn leb128_roundtrip() {
        for v in [0usize, 1, 127, 128, 300, 1 << 20] {
            let mut out = Vec::new();
            write_leb128(v, &mut out);
            assert_eq!(read_leb128(&out), Some((v, out.len())));
        }
    }
}
