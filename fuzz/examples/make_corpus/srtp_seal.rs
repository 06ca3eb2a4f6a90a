//! Seeds of the `srtp_seal` target: RTP packets as a subscriber's egress
//! would seal them (video with header extensions, audio, CSRCs, a sequence
//! wrap, many SSRCs), packets that are not RTP, and headers written by
//! `write_header` with every extension.

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

/// A raw packet operation.
fn raw(w: &mut Writer, packet: &[u8]) {
    w.u8(0).bytes(packet);
}

pub(super) fn seeds(c: &mut Corpus) {
    // Byte 0: the profile (even AES-128-GCM, odd AES-256-GCM); then
    // operations: 0 and a packet with a u16 length prefix, or 1 and a
    // header to write (see the target) and a payload.
    let mut w = Writer::default();
    w.u8(1);
    for seq in 65_530u16..=65_535 {
        raw(&mut w, &rtp(seq, 0x1111_1111, 0, 2, 1150));
    }
    for seq in 0u16..4 {
        raw(&mut w, &rtp(seq, 0x1111_1111, 0, 2, 1150));
        raw(
            &mut w,
            &rtp(seq.wrapping_add(40_000), 0x2222_2222, 0, 1, 120),
        );
    }
    // A retransmission from before the wrap.
    raw(&mut w, &rtp(65_533, 0x1111_1111, 0, 2, 1150));
    c.add("srtp_seal", "video-audio-wrap", w.data);

    let mut w = Writer::default();
    w.u8(0);
    raw(&mut w, &rtp(7, 0x3333_3333, 3, 0, 20));
    raw(&mut w, &rtp(8, 0x3333_3333, 15, 255, 0));
    raw(&mut w, &[]);
    raw(&mut w, &[0x40; 30]);
    raw(&mut w, &rtp(9, 0x3333_3333, 0, 4, 0)[..20]);
    raw(&mut w, &rtp(9, 0x3333_3333, 2, 0, 0)[..15]);
    c.add("srtp_seal", "csrcs-extensions-malformed", w.data);

    let mut w = Writer::default();
    w.u8(0);
    for ssrc in 0..70u32 {
        raw(&mut w, &rtp(100, ssrc, 0, 0, 4));
    }
    c.add("srtp_seal", "too-many-ssrcs", w.data);

    // Written headers: fields, six extension ids (mid 4, audio level 1,
    // orientation 13, content type 5, playout delay 6, capture time 7),
    // a byte of which values are present, the values, the mid, a payload.
    let mut w = Writer::default();
    w.u8(1);
    for (seq, flags) in [(1u16, 0x7fu8), (2, 0x01), (3, 0x00), (4, 0x34)] {
        w.u8(1);
        w.u8(111)
            .bool(seq % 2 == 0)
            .u16(seq)
            .u32(960 * u32::from(seq))
            .u32(0x4444_4444);
        for id in [4u8, 1, 13, 5, 6, 7] {
            w.u8(id);
        }
        w.u8(flags);
        if flags & 0x01 != 0 {
            w.u8(0xd6); // -42 dBov
        }
        if flags & 0x02 != 0 {
            w.bool(true);
        }
        if flags & 0x04 != 0 {
            w.u8(3);
        }
        if flags & 0x08 != 0 {
            w.u8(1);
        }
        if flags & 0x10 != 0 {
            w.u16(100).u16(400);
        }
        if flags & 0x20 != 0 {
            w.u64(1_000_000_000_000_000_000 << 4); // 2001, in ns, shifted
            if flags & 0x40 != 0 {
                w.u64(1 << 32);
            }
        }
        w.string("1");
        w.bytes(&[0x5a; 160]);
    }
    c.add("srtp_seal", "written-headers", w.data);
}
