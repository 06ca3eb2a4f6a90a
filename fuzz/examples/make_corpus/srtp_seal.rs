//! Seeds of the `srtp_seal` target: RTP packets as a subscriber's egress
//! would seal them (video with header extensions, audio, CSRCs, a sequence
//! wrap, many SSRCs) and packets that are not RTP.

use weir_fuzz::Writer;

use super::Corpus;

fn rtp(seq: u16, ssrc: u32, csrcs: u8, extension_words: u16, payload_len: usize) -> Vec<u8> {
    let mut packet = vec![0x80 | csrcs, 96];
    if extension_words > 0 {
        packet[0] |= 0x10;
    }
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    for csrc in 0..u32::from(csrcs) {
        packet.extend_from_slice(&(0xc000_0000 + csrc).to_be_bytes());
    }
    if extension_words > 0 {
        packet.extend_from_slice(&[0xbe, 0xde]);
        packet.extend_from_slice(&extension_words.to_be_bytes());
        packet.extend((0..4 * extension_words).map(|b| b as u8));
    }
    packet.extend((0..payload_len).map(|b| b as u8));
    packet
}

pub(super) fn seeds(c: &mut Corpus) {
    // Byte 0: the profile (even AES-128-GCM, odd AES-256-GCM); then
    // packets with a u16 length prefix.
    let mut w = Writer::default();
    w.u8(1);
    for seq in 65_530u16..=65_535 {
        w.bytes(&rtp(seq, 0x1111_1111, 0, 2, 1150));
    }
    for seq in 0u16..4 {
        w.bytes(&rtp(seq, 0x1111_1111, 0, 2, 1150));
        w.bytes(&rtp(seq.wrapping_add(40_000), 0x2222_2222, 0, 1, 120));
    }
    // A retransmission from before the wrap.
    w.bytes(&rtp(65_533, 0x1111_1111, 0, 2, 1150));
    c.add("srtp_seal", "video-audio-wrap", w.data);

    let mut w = Writer::default();
    w.u8(0);
    w.bytes(&rtp(7, 0x3333_3333, 3, 0, 20));
    w.bytes(&rtp(8, 0x3333_3333, 15, 255, 0));
    w.bytes(&[]);
    w.bytes(&[0x40; 30]);
    w.bytes(&rtp(9, 0x3333_3333, 0, 4, 0)[..20]);
    w.bytes(&rtp(9, 0x3333_3333, 2, 0, 0)[..15]);
    c.add("srtp_seal", "csrcs-extensions-malformed", w.data);

    let mut w = Writer::default();
    w.u8(0);
    for ssrc in 0..70u32 {
        w.bytes(&rtp(100, ssrc, 0, 0, 4));
    }
    c.add("srtp_seal", "too-many-ssrcs", w.data);
}
