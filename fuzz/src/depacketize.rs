//! The body of the `depacketize_*` targets: one recorder depacketizer
//! (`weir_recorder::depacketize`) fed arbitrary RTP payloads, or a frame
//! packetized by the reference packetizers of [`crate::media`].
//!
//! Input: a mode byte. Even: payloads, each a flags byte (bit 0: the frame
//! ends after this payload, bit 1: reset first) and a `u16`-prefixed
//! payload. Odd: a frame round trip: the frame's parts (NAL units, OBUs or
//! the frame bytes), then the packetizer's choices.
//!
//! Invariants: no panic; every frame is in the MP4 sample form of its codec
//! (length-prefixed NAL units / sized OBUs covering the sample exactly, no
//! AUD / temporal delimiter, keyframe flag and configuration consistent
//! with the content); a packetized frame comes back exactly.

use weir_recorder::depacketize::{AssembledFrame, CodecConfig, DepacketizeError, Depacketizer};
use weir_recorder::Codec;

use crate::media::{self, av01_obus, avcc_nals};
use crate::Reader;

/// Checks a frame a depacketizer returned.
pub fn check_frame(codec: Codec, frame: &AssembledFrame) {
    assert!(!frame.data.is_empty(), "empty frame");
    match codec {
        Codec::H264 => {
            let nals = avcc_nals(&frame.data);
            assert!(nals.iter().all(|n| n[0] & 0x1f != 9), "AUD kept");
            let idr = nals.iter().any(|n| n[0] & 0x1f == 5);
            assert_eq!(frame.keyframe, idr, "keyframe flag vs IDR");
            match &frame.config {
                Some(CodecConfig::H264 { sps, pps }) => {
                    assert_eq!(sps[0] & 0x1f, 7);
                    assert_eq!(pps[0] & 0x1f, 8);
                    assert!(nals.contains(&sps.as_slice()) && nals.contains(&pps.as_slice()));
                }
                None => {}
                other => panic!("H.264 frame with {other:?}"),
            }
        }
        Codec::Vp8 => {
            assert_eq!(frame.keyframe, frame.data[0] & 1 == 0);
            match (&frame.config, frame.keyframe) {
                (Some(CodecConfig::Vp8 { width, height }), true) => {
                    assert_eq!(&frame.data[3..6], &[0x9d, 0x01, 0x2a]);
                    assert!(*width < 0x4000 && *height < 0x4000);
                }
                (None, false) => {}
                other => panic!("VP8 frame with {other:?}"),
            }
        }
        Codec::Vp9 => match (&frame.config, frame.keyframe) {
            (Some(CodecConfig::Vp9 { .. }), true) | (None, false) => {}
            other => panic!("VP9 frame with {other:?}"),
        },
        Codec::Av1 => {
            let obus = av01_obus(&frame.data);
            assert!(
                obus.iter().all(|o| o.kind != 2 && o.kind != 8),
                "TD or tile list kept"
            );
            match &frame.config {
                Some(CodecConfig::Av1 { sequence_header }) => {
                    assert!(frame.keyframe);
                    assert_eq!((sequence_header[0] >> 3) & 0x0f, 1);
                    assert!(obus.iter().any(|o| o.bytes == sequence_header.as_slice()));
                }
                None => assert!(obus.iter().all(|o| o.kind != 1)),
                other => panic!("AV1 frame with {other:?}"),
            }
        }
        Codec::Opus => {
            assert!(frame.keyframe && frame.config.is_none());
            assert!(weir_recorder::depacketize::opus::packet_duration(&frame.data).is_some());
        }
    }
}

fn finish(codec: Codec, d: &mut Depacketizer) -> Result<AssembledFrame, DepacketizeError> {
    let result = d.finish();
    if let Ok(frame) = &result {
        check_frame(codec, frame);
    }
    result
}

pub fn run(codec: Codec, data: &[u8]) {
    let mut r = Reader::new(data);
    let mut d = Depacketizer::new(codec);
    if r.u8().is_multiple_of(2) || codec == Codec::Opus {
        while !r.is_empty() {
            let flags = r.u8();
            let payload = r.bytes();
            if flags & 2 != 0 {
                d.reset();
            }
            let pushed = d.push(payload);
            if codec == Codec::Opus {
                assert_eq!(
                    pushed.is_ok(),
                    weir_recorder::depacketize::opus::packet_duration(payload).is_some()
                );
            }
            if flags & 1 != 0 {
                let _ = finish(codec, &mut d);
            }
        }
        let _ = finish(codec, &mut d);
        return;
    }
    match codec {
        Codec::H264 => round_trip_h264(&mut r, &mut d),
        Codec::Vp8 => round_trip_vp8(&mut r, &mut d),
        Codec::Vp9 => round_trip_vp9(&mut r, &mut d),
        Codec::Av1 => round_trip_av1(&mut r, &mut d),
        Codec::Opus => unreachable!(),
    }
}

fn push_all(d: &mut Depacketizer, packets: &[Vec<u8>]) {
    for p in packets {
        d.push(p)
            .unwrap_or_else(|e| panic!("packet {p:02x?} of a valid frame refused: {e}"));
    }
}

fn round_trip_h264(r: &mut Reader<'_>, d: &mut Depacketizer) {
    let count = usize::from(r.u8() % 8) + 1;
    let nals: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            // A NAL unit header of type 1..=23 (what packetization mode 1
            // carries alone; 24..=31 are RTP aggregates and fragments).
            let h = r.u8();
            let t = match h & 0x1f {
                t @ 1..=23 => t,
                t => 1 + t % 23,
            };
            let mut nal = vec![(h & 0x60) | t];
            let body = r.bytes();
            nal.extend_from_slice(&body[..body.len().min(65_534)]);
            nal
        })
        .collect();
    let packets = media::packetize_h264(r, &nals);
    push_all(d, &packets);
    let kept: Vec<&Vec<u8>> = nals.iter().filter(|n| n[0] & 0x1f != 9).collect();
    match finish(Codec::H264, d) {
        Ok(frame) => {
            let mut expected = Vec::new();
            for n in &kept {
                expected.extend_from_slice(&(n.len() as u32).to_be_bytes());
                expected.extend_from_slice(n);
            }
            assert_eq!(frame.data, expected);
            let last = |t: u8| {
                kept.iter()
                    .rev()
                    .find(|n| n[0] & 0x1f == t)
                    .map(|n| n.to_vec())
            };
            let config = match (last(7), last(8)) {
                (Some(sps), Some(pps)) => Some(CodecConfig::H264 { sps, pps }),
                _ => None,
            };
            assert_eq!(frame.config, config);
        }
        Err(e) => {
            assert!(kept.is_empty() && e == DepacketizeError::Empty, "{e}")
        }
    }
}

fn round_trip_vp8(r: &mut Reader<'_>, d: &mut Depacketizer) {
    let frame = r.bytes().to_vec();
    let packets = media::packetize_vp8(r, &frame);
    push_all(d, &packets);
    let result = finish(Codec::Vp8, d);
    let key = frame.first().is_some_and(|b| b & 1 == 0);
    let bad_key = key && !(frame.len() >= 10 && frame[3..6] == [0x9d, 0x01, 0x2a]);
    match result {
        Ok(f) => {
            assert!(!bad_key, "keyframe without a start code accepted");
            assert_eq!(f.data, frame);
        }
        Err(DepacketizeError::Empty) => assert!(frame.is_empty()),
        Err(DepacketizeError::BadKeyframe) => assert!(bad_key),
        Err(e) => panic!("VP8 frame refused: {e}"),
    }
}

fn round_trip_vp9(r: &mut Reader<'_>, d: &mut Depacketizer) {
    let inter = r.bool();
    let frame = r.bytes().to_vec();
    let packets = media::packetize_vp9(r, &frame, inter);
    push_all(d, &packets);
    match finish(Codec::Vp9, d) {
        Ok(f) => {
            assert_eq!(f.data, frame);
            assert!(!(inter && f.keyframe), "an inter frame is not a keyframe");
        }
        Err(DepacketizeError::Empty) => assert!(frame.is_empty()),
        Err(DepacketizeError::BadKeyframe) => assert!(!inter),
        Err(e) => panic!("VP9 frame refused: {e}"),
    }
}

fn round_trip_av1(r: &mut Reader<'_>, d: &mut Depacketizer) {
    let count = usize::from(r.u8() % 6) + 1;
    let new_sequence = r.bool();
    let obus: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let h = r.u8();
            let kind = h & 0x0f;
            let ext = h & 0x10 != 0;
            let mut obu = vec![(kind << 3) | if ext { 0x04 } else { 0 }];
            if ext {
                obu.push(r.u8());
            }
            obu.extend_from_slice(r.bytes());
            obu
        })
        .collect();
    let packets = media::packetize_av1(r, &obus, new_sequence);
    push_all(d, &packets);
    let sized = |obu: &Vec<u8>| {
        let header_len = 1 + usize::from(obu[0] & 0x04 != 0);
        let mut out = vec![obu[0] | 0x02];
        out.extend_from_slice(&obu[1..header_len]);
        media::write_leb128(obu.len() - header_len, &mut out);
        out.extend_from_slice(&obu[header_len..]);
        out
    };
    let kept: Vec<&Vec<u8>> = obus
        .iter()
        .filter(|o| !matches!((o[0] >> 3) & 0x0f, 2 | 8))
        .collect();
    match finish(Codec::Av1, d) {
        Ok(frame) => {
            let expected: Vec<u8> = kept.iter().flat_map(|o| sized(o)).collect();
            assert_eq!(frame.data, expected);
            let sequence_header = kept
                .iter()
                .rev()
                .find(|o| (o[0] >> 3) & 0x0f == 1)
                .map(|o| sized(o));
            assert_eq!(frame.keyframe, sequence_header.is_some() || new_sequence);
            assert_eq!(
                frame.config,
                sequence_header.map(|sequence_header| CodecConfig::Av1 { sequence_header })
            );
        }
        Err(e) => assert!(kept.is_empty() && e == DepacketizeError::Empty, "{e}"),
    }
}
