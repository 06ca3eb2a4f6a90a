//! Weir's SRTP sealing for its own egress
//! (`weir_sfu::egress::srtp_seal::RtpSealer`): arbitrary packets, RTP or
//! not, any SSRCs and sequence numbers (wraps, retransmissions, more SSRCs
//! than a session keeps).
//!
//! Input: a byte choosing the profile (even AES-128-GCM, odd AES-256-GCM),
//! then packets with a `u16` length prefix.
//!
//! Invariants: no panic; a sealed packet is the input with its RTP header
//! unchanged and a 16-byte tag appended, sealed with the packet's own
//! sequence number; sealing the same packet again right away gives the
//! same index and the same bytes (same key, IV and plaintext); a packet
//! that is refused leaves the send buffer as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_fuzz::Reader;
use weir_sfu::egress::srtp_keys::{AeadProfile, MasterKey, TAG_LEN};
use weir_sfu::egress::srtp_seal::{rtp_header_len, RtpSealer};

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
    while !input.is_empty() {
        let packet = input.bytes();
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
            }
            Err(_) => assert_eq!(out.len(), before),
        }
        if out.len() > 1 << 20 {
            out.clear();
        }
    }
});
