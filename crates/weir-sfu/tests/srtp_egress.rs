//! Weir's own SRTP sealing (`weir_sfu::egress`) against two independent
//! SRTP implementations: str0m's receiving side after a real DTLS
//! handshake between two str0m sessions connected in memory, and
//! webrtc-rs's `rtc-srtp` with the same master keys. Also the forwarded
//! header's extensions (`weir_sfu::egress::rtp_header`) as str0m reads them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, VideoOrientation};
use str0m::{Candidate, Event, Input, Output, Rtc};
use weir_sfu::egress::key_tap::{tapped_rtc, KeyTap};
use weir_sfu::egress::rtp_header::{write_header, ExtensionIds, HeaderFields, MediaExtensions};
use weir_sfu::egress::srtp_keys::{AeadProfile, MasterKey, TAG_LEN};
use weir_sfu::egress::srtp_seal::{PacketIndex, RtpSealer};

const SERVER: &str = "10.9.0.1:7882";
const CLIENT: &str = "10.9.0.2:5000";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("address")
}

fn rtp(pt: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, pt];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

fn payload(seq: u16, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u16 ^ seq) as u8).collect()
}

/// A server session (ICE-lite, sending video) and a client session, both
/// str0m in RTP mode, with their DTLS keys tapped.
struct Pair {
    now: Instant,
    server: Rtc,
    server_tap: KeyTap,
    client: Rtc,
    client_tap: KeyTap,
    mid: Mid,
    audio_mid: Mid,
    /// RTP packets the client's str0m accepted.
    received: Vec<Received>,
}

/// An RTP packet the client's str0m decrypted and parsed.
struct Received {
    ssrc: u32,
    seq: u64,
    payload: Vec<u8>,
    extensions: ExtensionValues,
}

impl Pair {
    fn connect() -> Pair {
        weir_sfu::install_crypto();
        let now = Instant::now();
        let (mut server, server_tap) = tapped_rtc(
            Rtc::builder()
                .set_rtp_mode(true)
                .set_ice_lite(true)
                .enable_vp8(true)
                .enable_opus(true, false),
            now,
        );
        server.add_local_candidate(Candidate::host(addr(SERVER), "udp").expect("candidate"));
        let (mut client, client_tap) = tapped_rtc(
            Rtc::builder()
                .set_rtp_mode(true)
                .enable_vp8(true)
                .enable_opus(true, false),
            now,
        );
        client.add_local_candidate(Candidate::host(addr(CLIENT), "udp").expect("candidate"));

        let mut change = server.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let audio_mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().expect("an offer");
        let answer = client
            .sdp_api()
            .accept_offer(offer)
            .expect("offer accepted");
        server
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");

        let mut pair = Pair {
            now,
            server,
            server_tap,
            client,
            client_tap,
            mid,
            audio_mid,
            received: Vec::new(),
        };
        for _ in 0..400 {
            pair.pump();
            if pair.server.is_connected() && pair.client_tap.keys().is_some() {
                break;
            }
            pair.now += Duration::from_millis(10);
            for rtc in [&mut pair.server, &mut pair.client] {
                rtc.handle_input(Input::Timeout(pair.now))
                    .expect("timeout taken");
            }
        }
        assert!(pair.server.is_connected(), "ICE and DTLS completed");
        pair
    }

    /// Moves datagrams between the two until both are idle.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(datagram) = poll_transmit(&mut self.server, &mut Vec::new()) {
                deliver(&mut self.client, self.now, SERVER, CLIENT, &datagram);
                moved = true;
            }
            while let Some(datagram) = poll_transmit(&mut self.client, &mut self.received) {
                deliver(&mut self.server, self.now, CLIENT, SERVER, &datagram);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Hands an SRTP datagram sealed by Weir to the client, as the server.
    fn send_sealed(&mut self, datagram: &[u8]) {
        deliver(&mut self.client, self.now, SERVER, CLIENT, datagram);
        self.pump();
    }

    fn video_ssrc_and_pt(&mut self) -> (u32, u8) {
        self.ssrc_and_pt(self.mid)
    }

    fn ssrc_and_pt(&mut self, mid: Mid) -> (u32, u8) {
        let ssrc = *self
            .server
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .expect("the server's stream")
            .ssrc();
        let pt = *self
            .server
            .media(mid)
            .and_then(|m| m.remote_pts().first().copied())
            .expect("a negotiated payload type");
        (ssrc, pt)
    }
}

fn poll_transmit(rtc: &mut Rtc, received: &mut Vec<Received>) -> Option<Vec<u8>> {
    loop {
        match rtc.poll_output().expect("output") {
            Output::Transmit(transmit) => return Some(transmit.contents.to_vec()),
            Output::Event(Event::RtpPacket(packet)) => {
                received.push(Received {
                    ssrc: *packet.header.ssrc,
                    seq: *packet.seq_no,
                    payload: packet.payload.to_vec(),
                    extensions: packet.header.ext_vals.clone(),
                });
            }
            Output::Event(_) => {}
            Output::Timeout(_) => return None,
        }
    }
}

fn deliver(rtc: &mut Rtc, now: Instant, from: &str, to: &str, datagram: &[u8]) {
    let Ok(contents) = datagram.try_into() else {
        return;
    };
    rtc.handle_input(Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source: addr(from),
            destination: addr(to),
            contents,
        },
    ))
    .expect("input taken");
}

fn sealer(master: &MasterKey) -> RtpSealer {
    RtpSealer::new(&master.rtp_session_key().expect("derive")).expect("sealer")
}

#[test]
fn both_ends_tap_the_same_keys_for_each_direction() {
    let pair = Pair::connect();
    let server = pair.server_tap.keys().expect("server keys after DTLS");
    let client = pair.client_tap.keys().expect("client keys after DTLS");
    assert_eq!(server.profile(), client.profile());
    assert_ne!(server.dtls_client(), client.dtls_client());
    assert!(
        AeadProfile::from_dtls(server.profile()).is_some(),
        "str0m negotiates AES-GCM: {:?}",
        server.profile()
    );

    // The server's sending key is the client's receiving key: both seal a
    // packet to the same bytes. The two directions' keys differ.
    let packet = rtp(96, 7, 90_000, 0x1234_5678, &payload(7, 300));
    let seal = |master: MasterKey| {
        let mut out = Vec::new();
        sealer(&master).seal_into(&packet, &mut out).expect("seal");
        out
    };
    let server_out = seal(server.outbound().expect("AEAD").expect("key"));
    let client_in = seal(client.inbound().expect("AEAD").expect("key"));
    let client_out = seal(client.outbound().expect("AEAD").expect("key"));
    assert_eq!(server_out, client_in);
    assert_ne!(server_out, client_out);
}

#[test]
fn str0m_accepts_what_weir_seals_across_a_sequence_wrap() {
    let mut pair = Pair::connect();
    let (ssrc, pt) = pair.video_ssrc_and_pt();
    let keys = pair.server_tap.keys().expect("server keys");
    let mut sealer = sealer(&keys.outbound().expect("AEAD").expect("key"));

    let mut datagram = Vec::new();
    let mut sent = Vec::new();
    for step in 0..120u16 {
        let seq = 65_480u16.wrapping_add(step);
        let body = payload(seq, 200 + usize::from(step) * 9);
        datagram.clear();
        let index = sealer
            .seal_into(
                &rtp(pt, seq, 3000 * u32::from(step), ssrc, &body),
                &mut datagram,
            )
            .expect("seal");
        assert_eq!(index.seq(), seq);
        assert_eq!(datagram.len(), 12 + body.len() + TAG_LEN);
        pair.send_sealed(&datagram);
        sent.push((u64::from(seq) + if step >= 56 { 65_536 } else { 0 }, body));
    }
    assert_eq!(
        sealer
            .seal_into(&rtp(pt, 20, 0, ssrc, b"x"), &mut datagram)
            .map(|i| i.roc()),
        Ok(1)
    );

    let received: Vec<(u64, Vec<u8>)> = pair
        .received
        .iter()
        .filter(|r| r.ssrc == ssrc)
        .map(|r| (r.seq, r.payload.clone()))
        .collect();
    assert_eq!(received.len(), sent.len(), "every sealed packet decrypted");
    for ((seq, body), (sent_seq, sent_body)) in received.iter().zip(&sent) {
        assert_eq!(seq % 65_536, sent_seq % 65_536);
        assert_eq!(body, sent_body);
    }
    assert_eq!(
        received.last().map(|(seq, _)| seq >> 16),
        Some(1),
        "rolled over"
    );
}

/// A subscription's first packets go through str0m, which seals with the
/// extended sequence number as index; when they cross a wrap before Weir's
/// first packet, Weir must seal with the extended number too: a fresh
/// sealer estimating from its own first packet would count rollover 0 and
/// every packet it sealed would fail the receiver's check (seen as a rare
/// flaky room test: subscribers got only str0m's two packets a second).
#[test]
fn weir_continues_a_stream_another_sealer_rolled_over() {
    let mut pair = Pair::connect();
    let (ssrc, pt) = pair.video_ssrc_and_pt();
    let keys = pair.server_tap.keys().expect("server keys");
    let master = keys.outbound().expect("AEAD").expect("key");
    let mut datagram = Vec::new();

    // Stands in for str0m's send path: four packets across the wrap.
    let mut first_sender = sealer(&master);
    for seq in [65_534u16, 65_535, 0, 1] {
        datagram.clear();
        first_sender
            .seal_into(&rtp(pt, seq, 0, ssrc, &payload(seq, 300)), &mut datagram)
            .expect("seal");
        pair.send_sealed(&datagram);
    }
    // A fresh sealer that estimates the index: rollover 0, refused.
    let mut estimating = sealer(&master);
    datagram.clear();
    let index = estimating
        .seal_into(&rtp(pt, 2, 0, ssrc, &payload(2, 300)), &mut datagram)
        .expect("seal");
    assert_eq!(index.roc(), 0);
    pair.send_sealed(&datagram);
    // Weir's egress: the extended number given, rollover 1, accepted.
    let mut weir = sealer(&master);
    for seq in 3u16..10 {
        datagram.clear();
        datagram.extend_from_slice(&rtp(pt, seq, 0, ssrc, &payload(seq, 300)));
        let extended = PacketIndex::from_extended(65_536 + u64::from(seq)).expect("index");
        let index = weir
            .seal_in_place_at(&mut datagram, 0, extended)
            .expect("seal");
        assert_eq!(index.roc(), 1);
        pair.send_sealed(&datagram);
    }
    let seqs: Vec<u64> = pair
        .received
        .iter()
        .filter(|r| r.ssrc == ssrc)
        .map(|r| r.seq % 65_536)
        .collect();
    assert_eq!(seqs, vec![65_534, 65_535, 0, 1, 3, 4, 5, 6, 7, 8, 9]);

    // An index that does not end in the packet's sequence number is refused
    // and nothing is left in the buffer.
    datagram.clear();
    datagram.extend_from_slice(&rtp(pt, 11, 0, ssrc, b"x"));
    let wrong = PacketIndex::from_extended(65_536 + 12).expect("index");
    assert!(weir.seal_in_place_at(&mut datagram, 0, wrong).is_err());
    assert!(datagram.is_empty());
    assert!(PacketIndex::from_extended(1 << 48).is_none());
}

#[test]
fn str0m_drops_packets_sealed_with_the_wrong_key_or_tampered() {
    let mut pair = Pair::connect();
    let (ssrc, pt) = pair.video_ssrc_and_pt();
    let keys = pair.server_tap.keys().expect("server keys");
    // The client's own sending key: valid AES-GCM, wrong direction.
    let mut wrong = sealer(
        &pair
            .client_tap
            .keys()
            .expect("keys")
            .outbound()
            .expect("AEAD")
            .expect("key"),
    );
    let mut right = sealer(&keys.outbound().expect("AEAD").expect("key"));

    let mut datagram = Vec::new();
    wrong
        .seal_into(&rtp(pt, 1, 0, ssrc, &payload(1, 100)), &mut datagram)
        .expect("seal");
    pair.send_sealed(&datagram);

    datagram.clear();
    right
        .seal_into(&rtp(pt, 2, 0, ssrc, &payload(2, 100)), &mut datagram)
        .expect("seal");
    let last = datagram.len() - 1;
    datagram[last] ^= 1;
    pair.send_sealed(&datagram);
    assert!(pair.received.is_empty(), "{}", pair.received.len());

    datagram.clear();
    right
        .seal_into(&rtp(pt, 3, 0, ssrc, &payload(3, 100)), &mut datagram)
        .expect("seal");
    pair.send_sealed(&datagram);
    assert_eq!(pair.received.len(), 1, "the intact packet gets through");
}

#[test]
fn webrtc_rs_srtp_opens_what_weir_seals_for_both_profiles() {
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    let crypto = rtc::crypto::default_provider().expect("ring provider");
    for (profile, theirs) in [
        (AeadProfile::Aes128Gcm, ProtectionProfile::AeadAes128Gcm),
        (AeadProfile::Aes256Gcm, ProtectionProfile::AeadAes256Gcm),
    ] {
        let key: Vec<u8> = (0..profile.key_len() as u8)
            .map(|b| b.wrapping_mul(37))
            .collect();
        let salt: Vec<u8> = (0..12u8).map(|b| b ^ 0xa5).collect();
        let master = MasterKey::new(profile, &key, &salt).expect("lengths");
        let mut ours = sealer(&master);
        let mut opener = Context::new(&key, &salt, theirs, None, None, crypto.crypto())
            .expect("webrtc-rs context");

        let mut datagram = Vec::new();
        for step in 0..40u16 {
            let seq = 65_520u16.wrapping_add(step);
            let plain = rtp(
                111,
                seq,
                960 * u32::from(step),
                0xfeed_f00d,
                &payload(seq, 160),
            );
            datagram.clear();
            let index = ours.seal_into(&plain, &mut datagram).expect("seal");
            assert_eq!(index, PacketIndex::new(u32::from(step >= 16), seq));
            let opened = opener
                .decrypt_rtp(&datagram)
                .unwrap_or_else(|e| panic!("{profile:?} seq {seq}: {e}"));
            assert_eq!(&opened[..], &plain[..], "{profile:?} seq {seq}");
        }
        // A fresh packet with one payload bit flipped fails authentication.
        datagram.clear();
        ours.seal_into(
            &rtp(111, 100, 0, 0xfeed_f00d, &payload(100, 160)),
            &mut datagram,
        )
        .expect("seal");
        datagram[14] ^= 0x40;
        assert!(opener.decrypt_rtp(&datagram).is_err(), "{profile:?}");
    }
}

#[test]
fn str0m_reads_the_extensions_weir_writes_with_the_negotiated_ids() {
    let mut pair = Pair::connect();
    let keys = pair.server_tap.keys().expect("server keys");
    let mut sealer = sealer(&keys.outbound().expect("AEAD").expect("key"));

    let mut plain = Vec::new();
    let mut datagram = Vec::new();
    for (mid, values) in [
        (
            pair.audio_mid,
            ExtensionValues {
                audio_level: Some(-42),
                voice_activity: Some(true),
                ..Default::default()
            },
        ),
        (
            pair.mid,
            ExtensionValues {
                video_orientation: Some(VideoOrientation::Deg270),
                ..Default::default()
            },
        ),
    ] {
        let (ssrc, pt) = pair.ssrc_and_pt(mid);
        let ids = ExtensionIds::from_map(
            pair.server
                .media(mid)
                .expect("negotiated m-line")
                .remote_extmap(),
        );
        assert!(ids.mid.is_some(), "{ids:?}");
        plain.clear();
        let fields = HeaderFields {
            payload_type: pt,
            marker: true,
            seq: 100,
            timestamp: 4242,
            ssrc,
        };
        write_header(
            fields,
            &ids,
            Some(&mid.to_string()),
            &MediaExtensions::from_values(&values),
            &mut plain,
        );
        plain.extend_from_slice(&payload(100, 80));
        datagram.clear();
        sealer.seal_into(&plain, &mut datagram).expect("seal");
        pair.send_sealed(&datagram);
    }

    assert_eq!(pair.received.len(), 2, "both packets accepted");
    let audio = &pair.received[0].extensions;
    assert_eq!(audio.audio_level, Some(-42));
    assert_eq!(audio.voice_activity, Some(true));
    assert_eq!(audio.mid, Some(pair.audio_mid));
    let video = &pair.received[1].extensions;
    assert_eq!(video.video_orientation, Some(VideoOrientation::Deg270));
    assert_eq!(video.mid, Some(pair.mid));
    assert_eq!(pair.received[1].payload, payload(100, 80));
}
