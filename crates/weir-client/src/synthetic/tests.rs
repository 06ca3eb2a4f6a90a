use super::*;

/// The server's rule (RFC 7741): S bit, partition 0, then P bit 0 in the
/// frame tag. Kept here as an independent statement of the contract.
fn starts_vp8_keyframe(payload: &[u8]) -> bool {
    let first = payload[0];
    first & 0x10 != 0 && first & 0x07 == 0 && first & 0x80 == 0 && payload[1] & 0x01 == 0
}

#[test]
fn first_frame_is_a_detectable_keyframe_split_into_packets() {
    let mut source = Vp8Source::new(Vp8Config::default());
    let mut out = Vec::new();
    source.next_frame(42, &mut out);
    assert_eq!(out.len(), 6);
    assert!(starts_vp8_keyframe(&out[0].payload));
    assert_eq!(&out[0].payload[4..7], &VP8_KEYFRAME_START_CODE);
    for (i, packet) in out.iter().enumerate() {
        assert_eq!(packet.payload.len(), 1100);
        assert_eq!(packet.marker, i == 5);
        assert_eq!(packet.rtp_timestamp, out[0].rtp_timestamp);
        let stamp = verify_vp8(&packet.payload).expect("intact");
        assert_eq!(stamp, packet.stamp);
        assert_eq!(stamp.frame, 0);
        assert_eq!(stamp.index as usize, i);
        assert_eq!(stamp.count, 6);
        assert_eq!(stamp.sent_at_us, 42);
        assert!(stamp.keyframe);
        if i > 0 {
            assert_eq!(
                packet.payload[0], 0x00,
                "continuation packets have no S bit"
            );
            assert!(!starts_vp8_keyframe(&packet.payload));
        }
    }
}

#[test]
fn delta_frames_are_not_keyframes_and_keyframes_recur() {
    let config = Vp8Config {
        keyframe_interval: 3,
        ..Vp8Config::default()
    };
    let mut source = Vp8Source::new(config);
    let mut out = Vec::new();
    let mut firsts = Vec::new();
    let mut last_ts = None;
    for _ in 0..7 {
        out.clear();
        source.next_frame(now_us(), &mut out);
        firsts.push(starts_vp8_keyframe(&out[0].payload));
        assert_eq!(out[0].payload[0] & 0x10, 0x10, "every frame starts with S");
        if let Some(ts) = last_ts {
            assert_eq!(out[0].rtp_timestamp.wrapping_sub(ts), 3000);
        }
        last_ts = Some(out[0].rtp_timestamp);
        for p in &out {
            verify_vp8(&p.payload).expect("intact");
        }
    }
    assert_eq!(firsts, [true, false, false, true, false, false, true]);
    out.clear();
    source.request_keyframe();
    source.next_frame(0, &mut out);
    assert!(starts_vp8_keyframe(&out[0].payload), "requested keyframe");
}

#[test]
fn packet_ids_are_unique_across_frames() {
    let mut source = Vp8Source::new(Vp8Config::default());
    let mut out = Vec::new();
    for _ in 0..100 {
        source.next_frame(0, &mut out);
    }
    let ids: std::collections::HashSet<u64> = out.iter().map(|p| p.stamp.packet_id()).collect();
    assert_eq!(ids.len(), out.len());
}

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let mut source = Vp8Source::new(Vp8Config::default());
    let mut out = Vec::new();
    source.next_frame(7, &mut out);
    for packet in &out {
        for position in 0..packet.payload.len() {
            if packet.stamp.index == 0 && (7..11).contains(&position) {
                continue; // keyframe dimensions: config, not content
            }
            let mut bytes = packet.payload.to_vec();
            bytes[position] ^= 0x40;
            assert!(
                verify_vp8(&bytes) != Ok(packet.stamp),
                "flip at {position} of packet {} went unnoticed",
                packet.stamp.index
            );
        }
    }
}

#[test]
fn vp8_parser_understands_extended_descriptors() {
    let mut source = Vp8Source::new(Vp8Config::default());
    let mut out = Vec::new();
    source.next_frame(5, &mut out);
    let original = &out[0].payload;
    // X=1, I=1 with a 15-bit picture id, then the original header.
    let mut extended = vec![original[0] | 0x80, 0x80, 0x81, 0x23];
    extended.extend_from_slice(&original[1..]);
    assert_eq!(parse_vp8(&extended), Some(out[0].stamp));
    assert_eq!(verify_vp8(&extended), Ok(out[0].stamp));
}

#[test]
fn parsers_never_panic_on_short_or_foreign_input() {
    for len in 0..40 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
        let _ = parse_vp8(&junk);
        let _ = verify_vp8(&junk);
        let _ = parse_opus(&junk);
        let _ = verify_opus(&junk);
        let mut keyish = junk.clone();
        if !keyish.is_empty() {
            keyish[0] = 0x90;
        }
        let _ = verify_vp8(&keyish);
    }
    assert_eq!(verify_vp8(&[]), Err(VerifyError::NoStamp));
}

#[test]
fn opus_packets_are_small_and_paced_at_50_per_second() {
    let mut source = OpusSource::new(OpusConfig::default());
    assert_eq!(source.packet_interval(), Duration::from_millis(20));
    let first = source.next_packet(1);
    let second = source.next_packet(2);
    assert_eq!(first.payload.len(), 100);
    assert!(first.marker);
    assert!(!second.marker);
    assert_eq!(second.rtp_timestamp.wrapping_sub(first.rtp_timestamp), 960);
    let stamp = verify_opus(&second.payload).expect("intact");
    assert_eq!(stamp.frame, 1);
    assert!(stamp.audio);
    assert_eq!(stamp.sent_at_us, 2);
    let mut bad = second.payload.to_vec();
    bad[99] ^= 1;
    assert_eq!(verify_opus(&bad), Err(VerifyError::FillerMismatch));
}

#[test]
fn payloads_share_arena_allocations() {
    let mut source = OpusSource::new(OpusConfig::default());
    let a = source.next_packet(0);
    let b = source.next_packet(0);
    // Consecutive payloads are adjacent slices of one buffer.
    assert_eq!(
        a.payload.as_ptr().wrapping_add(a.payload.len()),
        b.payload.as_ptr()
    );
}

#[test]
fn latency_is_receive_minus_send() {
    let stamp = Stamp {
        frame: 0,
        index: 0,
        count: 1,
        sent_at_us: 1_000,
        keyframe: false,
        audio: true,
    };
    assert_eq!(stamp.latency(3_500), Duration::from_micros(2_500));
    assert_eq!(stamp.latency(10), Duration::ZERO);
}
