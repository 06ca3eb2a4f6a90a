//! Weir's SRTP sealing for its own egress
//! (`weir_sfu::egress::srtp_seal::RtpSealer`): arbitrary packets, RTP or
//! not, any SSRCs and sequence numbers (wraps, retransmissions, more SSRCs
//! than a session keeps).
//!
//! Input: a byte choosing the profile (even AES-128-GCM, odd AES-256-GCM),
//! then packets, each an operation byte and: (even) raw bytes with a
//! `u16` length prefix, or (odd) a header written by
//! `egress::rtp_header::write_header` from fuzzed fields, extension ids and
//! values, followed by a payload.
//!
//! Invariants: no panic; a written header is a well-formed RTP header
//! (its length as parsed is what was written) with the fields asked for;
//! a sealed packet is the input with its RTP header unchanged and a 16-byte
//! tag appended, sealed with the packet's own sequence number; sealing the
//! same packet again right away gives the same index and the same bytes
//! (same key, IV and plaintext), and so does sealing it in place with
//! that index given (the room's path), while a given index that does not
//! end in the packet's sequence number is refused; a packet that is
//! refused leaves the send buffer as it was.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use str0m::media::MediaTime;
use str0m::rtp::{AbsCaptureTime, ExtensionValues, VideoOrientation};
use weir_fuzz::Reader;
use weir_sfu::egress::rtp_header::{write_header, ExtensionIds, HeaderFields, MediaExtensions};
use weir_sfu::egress::srtp_keys::{AeadProfile, MasterKey, TAG_LEN};
use weir_sfu::egress::srtp_seal::{rtp_header_len, PacketIndex, RtpSealer};

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let profile = if input.u8() % 2 == 0 {
        AeadProfile::Aes128Gcm
    } else {
        AeadProfile::Aes256Gcm
    };
    let key = vec![0x42; profile.key_len()];
    let master = MasterKey::new(profile, &key, &[7; 12]).expect("valid lengths");
    let session = master.rtp_session_key().expect("derive");
    let mut sealer = RtpSealer::new(&session).expect("sealer");

    let mut out = Vec::new();
    let mut again = Vec::new();
    let mut written = Vec::new();
    while !input.is_empty() {
        let packet = if input.u8() % 2 == 0 {
            input.bytes()
        } else {
            written.clear();
            write_fuzzed_header(&mut input, &mut written);
            written.extend_from_slice(input.bytes());
            &written[..]
        };
        let before = out.len();
        match sealer.seal_into(packet, &mut out) {
            Ok(index) => {
                assert_eq!(out.len(), before + packet.len() + TAG_LEN);
                let header = rtp_header_len(packet).expect("sealed, so RTP");
                assert_eq!(&out[before..before + header], &packet[..header]);
                assert_eq!(index.seq(), u16::from_be_bytes([packet[2], packet[3]]));
                again.clear();
                let second = sealer.seal_into(packet, &mut again).expect("sealed once");
                assert_eq!(second, index);
                assert_eq!(&again[..], &out[before..]);
                again.clear();
                again.extend_from_slice(packet);
                let given = sealer.seal_in_place_at(&mut again, 0, index).ok();
                assert_eq!(given, Some(index));
                assert_eq!(&again[..], &out[before..]);
                again.clear();
                again.extend_from_slice(&[1, 2]);
                again.extend_from_slice(packet);
                let wrong = PacketIndex::new(index.roc(), index.seq().wrapping_add(1));
                assert!(sealer.seal_in_place_at(&mut again, 2, wrong).is_err());
                assert_eq!(again, [1, 2]);
            }
            Err(_) => assert_eq!(out.len(), before),
        }
        if out.len() > 1 << 20 {
            out.clear();
        }
    }
});

/// An extension id as the one-byte form allows (1..=14), or none.
fn id(input: &mut Reader) -> Option<u8> {
    let id = input.u8() & 0x0f;
    (1..=14).contains(&id).then_some(id)
}

fn write_fuzzed_header(input: &mut Reader, out: &mut Vec<u8>) {
    let fields = HeaderFields {
        payload_type: input.u8(),
        marker: input.bool(),
        seq: input.u16(),
        timestamp: input.u32(),
        ssrc: input.u32(),
    };
    let ids = ExtensionIds {
        mid: id(input),
        audio_level: id(input),
        video_orientation: id(input),
        video_content_type: id(input),
        playout_delay: id(input),
        abs_capture_time: id(input),
    };
    let flags = input.u8();
    let on = |bit: u8| flags & (1 << bit) != 0;
    let values = ExtensionValues {
        audio_level: on(0).then(|| input.u8() as i8),
        voice_activity: on(1).then(|| input.bool()),
        video_orientation: on(2).then(|| VideoOrientation::from(input.u8())),
        video_content_type: on(3).then(|| input.u8()),
        play_delay_min: on(4).then(|| MediaTime::from_millis(u64::from(input.u16()))),
        play_delay_max: on(4).then(|| MediaTime::from_millis(u64::from(input.u16()))),
        abs_capture_time: on(5).then(|| AbsCaptureTime {
            capture_time: UNIX_EPOCH + Duration::from_nanos(input.u64() >> 4),
            clock_offset: on(6).then(|| input.u64() as i64),
        }),
        ..Default::default()
    };
    let mid = input.string();
    let mid = (!mid.is_empty()).then_some(mid.as_str());
    let start = out.len();
    write_header(
        fields,
        &ids,
        mid,
        &MediaExtensions::from_values(&values),
        out,
    );
    let header = &out[start..];
    assert_eq!(
        rtp_header_len(header),
        Ok(header.len()),
        "a whole RTP header"
    );
    assert_eq!(header[1] & 0x7f, fields.payload_type & 0x7f);
    assert_eq!(header[1] & 0x80 != 0, fields.marker);
    assert_eq!(&header[2..4], &fields.seq.to_be_bytes());
    assert_eq!(&header[4..8], &fields.timestamp.to_be_bytes());
    assert_eq!(&header[8..12], &fields.ssrc.to_be_bytes());
}
