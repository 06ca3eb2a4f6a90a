//! Keyframe detection on RTP payloads, per codec, without depacketizing.
//!
//! A subscriber that starts (or resumes) a video stream must start at a
//! keyframe; the forwarder holds back a new subscription until it sees the
//! first packet of one.

/// Video codecs the forwarder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Av1,
    /// Forwarded, but keyframes cannot be recognised: never gated.
    Other,
}

/// True when `payload` is the first packet of a keyframe (or, for H.264,
/// carries an IDR/SPS NAL). Never panics on short or malformed input.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::Vp9 => vp9_starts_keyframe(payload),
        VideoCodec::H264 => h264_contains_keyframe(payload),
        VideoCodec::Av1 => av1_starts_keyframe(payload),
        VideoCodec::Other => true,
    }
}

/// RFC 7741: payload descriptor, then the VP8 payload header whose first
/// byte's lowest bit P is 0 for a key frame.
fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut offset = 1;
    if extended {
        let Some(&ext) = payload.get(offset) else {
            return false;
        };
        offset += 1;
        if ext & 0x80 != 0 {
            // PictureID: 1 or 2 bytes.
            let Some(&pid) = payload.get(offset) else {
                return false;
            };
            offset += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            offset += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            offset += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(offset).is_some_and(|header| header & 0x01 == 0)
}

/// VP9 payload descriptor (draft-ietf-payload-vp9): I|P|L|F|B|E|V|Z.
/// A keyframe starts with B=1 and P=0 (not inter-predicted), on spatial
/// layer 0 when layer indices are present.
fn vp9_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let inter_predicted = first & 0x40 != 0;
    let layer_indices = first & 0x20 != 0;
    let begins_frame = first & 0x08 != 0;
    if inter_predicted || !begins_frame {
        return false;
    }
    if !layer_indices {
        return true;
    }
    let mut offset = 1;
    if first & 0x80 != 0 {
        let Some(&pid) = payload.get(offset) else {
            return false;
        };
        offset += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    // Layer indices byte: TID(3) U(1) SID(3) D(1).
    payload
        .get(offset)
        .is_some_and(|layers| (layers >> 1) & 0x07 == 0)
}

/// H.264 (RFC 6184): single NAL, STAP-A (24) or FU-A (28) start fragment
/// carrying an IDR slice (5) or SPS (7).
fn h264_contains_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let is_key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    match first & 0x1f {
        24 => {
            let mut offset = 1;
            while offset + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[offset], payload[offset + 1]]));
                let Some(&nal) = payload.get(offset + 2) else {
                    return false;
                };
                if size == 0 {
                    return false;
                }
                if is_key(nal & 0x1f) {
                    return true;
                }
                offset += 2 + size;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        nal_type => is_key(nal_type),
    }
}

/// AV1 (RTP payload format for AV1): the aggregation header's N bit marks
/// the first packet of a coded video sequence, i.e. a keyframe.
fn av1_starts_keyframe(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|aggregation| aggregation & 0x08 != 0 && aggregation & 0x80 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_and_delta() {
        // S=1, PID 0, no extension; VP8 header P bit 0 -> key.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x00, 0x9d, 0x01]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x10, 0x01, 0x9d]));
        // Continuation packet.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x00]));
        // Extended with 2-byte picture id and TL0PICIDX (Chrome's shape).
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0xC0, 0x80, 0x01, 0x05, 0x50]
        ));
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0xC0, 0x80, 0x01, 0x05, 0x51]
        ));
    }

    #[test]
    fn h264_nal_shapes() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a]));
        // STAP-A with SPS.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]
        ));
        // FU-A start of IDR vs middle fragment.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(starts_keyframe(VideoCodec::Vp9, &[0x08]));
        assert!(!starts_keyframe(VideoCodec::Vp9, &[0x48]));
        assert!(starts_keyframe(VideoCodec::Av1, &[0x18]));
        assert!(!starts_keyframe(VideoCodec::Av1, &[0x10]));
    }

    #[test]
    fn garbage_never_panics() {
        for codec in [
            VideoCodec::Vp8,
            VideoCodec::Vp9,
            VideoCodec::H264,
            VideoCodec::Av1,
        ] {
            for len in 0..8 {
                for fill in [0u8, 0xff, 0x78, 0x90, 0x1c] {
                    let payload = vec![fill; len];
                    let _ = starts_keyframe(codec, &payload);
                }
            }
        }
    }
}
