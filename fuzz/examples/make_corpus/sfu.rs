//! Seeds of the media core targets: the forwarder and the room.

use weir_fuzz::Writer;

use super::Corpus;

pub(super) fn forwarder(c: &mut Corpus) {
    // VP8 (codec 1): a keyframe on layer "q", deltas, a switch to "h" at
    // its keyframe, a restart, a pause, a new SSRC, a keyframe request.
    let key = [0x10u8, 0x00, 0x9d, 0x01, 0x2a];
    let delta = [0x10u8, 0x01, 0x00];
    let mut w = Writer::default();
    w.u8(1).u16(1000).u32(5000);
    let packet = |w: &mut Writer, which: u8, seq: i16, ts: u32, ms: u16, payload: &[u8]| {
        w.u8(0)
            .u8(which)
            .u16(seq as u16)
            .u32(ts)
            .u16(ms)
            .bytes(payload);
    };
    packet(&mut w, 1 << 2, 1, 3000, 33, &key);
    packet(&mut w, 1 << 2, 1, 3000, 33, &delta);
    packet(&mut w, 1 << 2, 2, 3000, 33, &delta);
    packet(&mut w, 1 << 2, -1, 0, 5, &delta);
    w.u8(4).u8(2);
    packet(&mut w, 1 | (2 << 2), 1, 3000, 10, &delta);
    packet(&mut w, 1 | (2 << 2), 1, 3000, 10, &key);
    w.u8(5);
    packet(&mut w, 2 | (2 << 2), 7, 90_000, 500, &key);
    w.u8(6).u8(1);
    packet(&mut w, 2 | (2 << 2), 1, 3000, 33, &key);
    w.u8(6).u8(0);
    packet(&mut w, 2 | (2 << 2), 1, 3000, 33, &key);
    w.u8(7).u32(1);
    w.u8(7).u32(0);
    c.add("forwarder", "vp8-simulcast", w.data);
    // Audio (codec 0) across an SSRC change and a reorder.
    let mut w = Writer::default();
    w.u8(0).u16(65_530).u32(u32::MAX - 2000);
    for i in 0..6u8 {
        let ssrc = if i < 3 { 0 } else { 1 };
        let step = if i == 4 { -2 } else { 1 };
        packet(&mut w, ssrc, step, 960, 20, &[0xf8, 0xff, 0xfe]);
    }
    c.add("forwarder", "audio-ssrc-change", w.data);
}

pub(super) fn room(c: &mut Corpus) {
    // Op 0/1 (publisher RTP): choice (m-line, payload type), i16 seq step,
    // u32 ts step, marker, payload.
    let vp8_key = [0x10u8, 0x00, 0x9d, 0x01, 0x2a, 0x60, 0x00, 0x40, 0x00, 0x00];
    let mut w = Writer::default();
    w.u8(0).u8(0).u16(1).u32(3000).bool(true).bytes(&vp8_key);
    w.u8(1)
        .u8(1)
        .u16(1)
        .u32(960)
        .bool(false)
        .bytes(&[0xf8, 0xff, 0xfe]);
    w.u8(7).u16(50);
    w.u8(0)
        .u8(0)
        .u16(1)
        .u32(3000)
        .bool(true)
        .bytes(&[0x10, 0x01, 1, 2, 3]);
    w.u8(6).u8(0);
    w.u8(4).string(r#"{"type":"subscribe","track_id":"$T0"}"#);
    w.u8(5).u8(3).bool(true);
    w.u8(0).u8(0).u16(1).u32(3000).bool(true).bytes(&vp8_key);
    w.u8(5).u8(2).bool(true);
    w.u8(7).u16(600);
    w.u8(5).u8(2).bool(false);
    w.u8(0).u8(0).u16(1).u32(3000).bool(true).bytes(&vp8_key);
    w.u8(4).string(r#"{"type":"ping","ts":1717171717171}"#);
    c.add("room", "media-and-admin", w.data);
    let mut w = Writer::default();
    w.u8(3).u8(7).u8(1).bytes(&[0xde, 0xad]);
    w.u8(3)
        .u8(8)
        .u8(0)
        .bytes(&[0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]);
    w.u8(2).bool(true).bytes(&[0x80, 0xc8, 0, 6, 1, 2, 3, 4]);
    w.u8(2).bool(false).bytes(&[0x16, 0xfe, 0xfd, 0, 0]);
    w.u8(5).u8(0).bool(false);
    c.add("room", "datagrams-and-kick", w.data);
}
