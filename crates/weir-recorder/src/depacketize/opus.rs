//! Opus RTP payload (RFC 7587): one Opus packet per RTP packet, clock 48 kHz,
//! the marker bit means nothing for framing. The duration comes from the TOC
//! byte (RFC 6716 §3.1). DTX shows as a timestamp jump with no packets.

/// Samples at 48 kHz in one Opus frame of the given TOC configuration.
fn frame_samples(config: u8) -> u32 {
    match config {
        // SILK NB/MB/WB: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid SWB/FB: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    }
}

/// Duration of an Opus packet in 48 kHz samples, `None` if malformed.
pub fn packet_duration(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let per_frame = frame_samples(toc >> 3);
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = per_frame.checked_mul(frames)?;
    // RFC 6716: at most 120 ms per packet.
    (frames > 0 && total <= 5760).then_some(total)
}

/// A silent Opus packet (CELT fullband, mono, code 3, CBR) lasting
/// `frames` × 20 ms, 1..=6 frames. Each frame is the two-byte silence frame
/// `ff fe` (recording.md: TOC 0xF8 + 0xFF 0xFE = 20 ms).
pub fn silence_packet(frames: u8) -> Vec<u8> {
    let frames = frames.clamp(1, 6);
    if frames == 1 {
        return vec![0xf8, 0xff, 0xfe];
    }
    let mut packet = vec![0xfb, frames];
    for _ in 0..frames {
        packet.extend_from_slice(&[0xff, 0xfe]);
    }
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_toc() {
        assert_eq!(packet_duration(&[0x78, 0]), Some(960)); // SILK WB 20 ms
        assert_eq!(packet_duration(&[0xfc, 0]), Some(960)); // CELT FB 20 ms
        assert_eq!(packet_duration(&[0x79, 0]), Some(1920)); // code 1: two frames
        assert_eq!(packet_duration(&[0xfb, 0x06]), Some(5760)); // code 3: 6 x 20 ms
        assert_eq!(packet_duration(&[0xfb, 0x07]), None); // 140 ms: invalid
        assert_eq!(packet_duration(&[]), None);
    }

    #[test]
    fn silence_packets_have_the_right_duration() {
        assert_eq!(packet_duration(&silence_packet(1)), Some(960));
        assert_eq!(packet_duration(&silence_packet(6)), Some(5760));
    }
}
