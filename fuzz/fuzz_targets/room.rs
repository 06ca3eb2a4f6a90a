//! Incoming UDP datagrams through the server's demux into a room, via the
//! sans-IO core (`weir_sfu::Room`) with no sockets: a WHIP publisher and a
//! WHEP viewer (str0m peers, connected over ICE and DTLS-SRTP in memory)
//! and a signalling participant, then fuzzed traffic.
//!
//! Input: operations, each an op byte: 0-1 the publisher sends RTP (m-line,
//! payload type, `i16` sequence step, `u32` timestamp step, marker,
//! payload: encrypted by its peer, so it reaches the forwarding path); 2 a
//! raw datagram from a peer's address (into an established session); 3 a
//! datagram from a new address through the UDP reader's routing (raw, or
//! a STUN Binding request for a participant's ufrag followed by the bytes);
//! 4 a signalling message of the signalling participant (JSON; `$T0`..`$T3`
//! become the room's track ids); 5 an admin action (kick, grants, mute,
//! tap, keyframe request); 6 the viewer asks for a keyframe; 7 time passes.
//!
//! Invariants: no panic; the room only sends to addresses it heard from;
//! the viewer and the recorder tap only ever get payloads a publisher sent,
//! byte for byte; the room always quiesces.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_fuzz::net::Net;
use weir_fuzz::Reader;
use weir_protocol::{ClientMessage, Grant};
use weir_sfu::stun::binding_request_with_username;

fuzz_target!(|data: &[u8]| {
    weir_fuzz::unwind_str0m_panics();
    let mut net = Net::new();
    let Some(observer) = net.join_signalling("observer") else {
        return;
    };
    let Some(publisher) = net.join_http("publisher", true) else {
        return;
    };
    let Some(viewer) = net.join_http("viewer", false) else {
        return;
    };
    assert!(net.wait_connected(), "the peers did not connect");
    let mut r = Reader::new(data);
    let mut seq: [u64; 2] = [1000, 5000];
    let mut ts: [u32; 2] = [0, 0];
    let mut ops = 0;
    while !r.is_empty() && ops < 500 {
        ops += 1;
        match r.u8() % 8 {
            0 | 1 => {
                let choice = r.u8();
                let line = usize::from(choice & 1);
                let pt_index = usize::from(choice >> 1);
                seq[line] = seq[line]
                    .wrapping_add_signed(i64::from(r.u16() as i16))
                    .max(1);
                ts[line] = ts[line].wrapping_add(r.u32());
                let marker = r.bool();
                let payload = r.bytes().to_vec();
                net.write_rtp(
                    publisher, line, pt_index, seq[line], ts[line], marker, payload,
                );
            }
            2 => {
                let from = if r.bool() { publisher } else { viewer };
                let addr = net.peers[from].addr;
                let bytes = r.bytes();
                net.datagram(addr, bytes);
                net.pump();
            }
            3 => {
                let host = r.u8();
                let addr: SocketAddr = format!("10.9.0.{host}:4000").parse().expect("addr");
                let mode = r.u8();
                let mut bytes = Vec::new();
                if mode % 2 == 1 {
                    let ufrags: Vec<String> = net.ufrags.keys().cloned().collect();
                    let ufrag = ufrags
                        .get(usize::from(mode >> 1) % ufrags.len().max(1))
                        .cloned()
                        .unwrap_or_default();
                    bytes = binding_request_with_username(&format!("{ufrag}:fuzz"));
                }
                bytes.extend_from_slice(r.bytes());
                net.datagram(addr, &bytes);
                net.pump();
            }
            4 => {
                let mut text = r.string();
                for (i, track) in net.tracks.iter().enumerate().take(4) {
                    text = text.replace(&format!("$T{i}"), track);
                }
                let now = net.now;
                match ClientMessage::parse(&text) {
                    Ok(message) => net.room.handle_message(now, observer, message),
                    Err((code, reason)) => net.room.reject_message(observer, code, reason),
                }
                net.pump();
            }
            5 => {
                let action = r.u8();
                let user = net.users[usize::from(action >> 3) % net.users.len()].clone();
                let track = net
                    .tracks
                    .get(usize::from(action >> 3) % net.tracks.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| "TR_none".to_string());
                let flag = r.bool();
                let now = net.now;
                let _ = match action % 5 {
                    0 => net.room.kick(now, &user).map(|_| ()),
                    1 => {
                        let grants: Vec<Grant> = Grant::ALL
                            .into_iter()
                            .enumerate()
                            .filter(|(i, _)| r.u8() >> i & 1 == 1)
                            .map(|(_, g)| g)
                            .collect();
                        net.room.update_grants(now, &user, &grants)
                    }
                    2 => net.room.mute_track(now, &track, flag),
                    3 => net.room.set_tap(now, &track, flag),
                    _ => net.room.request_track_keyframe(now, &track),
                };
                net.pump();
            }
            6 => {
                let choice = r.u8();
                net.request_keyframe(viewer, usize::from(choice & 1), choice & 2 != 0);
            }
            _ => {
                let ms = u64::from(r.u16());
                net.advance(Duration::from_millis(ms.min(10_000)));
            }
        }
    }
    // Let everything settle, then everyone leaves.
    net.advance(Duration::from_millis(100));
    let now = net.now;
    net.room.close(now, weir_protocol::LeaveReason::RoomClosed);
    net.pump();
    assert!(net.room.is_empty());
    let _ = (
        net.room.counters(),
        net.room.track_snapshots(),
        net.room.participant_infos(),
    );
});
