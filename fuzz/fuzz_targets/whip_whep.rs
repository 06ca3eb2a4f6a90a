//! WHIP/WHEP request handling below HTTP: the SDP offer of `POST
//! /whip/v1/rooms/{room}` or `/whep/...` joins a room (`Room::join` with
//! `SessionKind::Whip`/`Whep`), which parses it, answers it and orders the
//! answer's codecs (`weir_sfu::sdp_order`); and `order_answer_codecs` alone
//! on arbitrary SDP text.
//!
//! Input: a flags byte (session kind, whether a WHIP publisher joined
//! first, the room's preferred video codec, limited grants, or the
//! codec-order mode), then the offer (the rest); in codec-order mode the
//! answer, the offer and a preference list, separated by `\0\0`.
//!
//! Invariants: no panic; an accepted offer gets an answer that parses and
//! has the offer's m-lines (same mids, same order); a refused offer adds no
//! participant; an accepted session leaves cleanly; reordering codecs
//! changes only the payload type order of m-lines.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use weir_fuzz::net::{client_rtc, room_config};
use weir_protocol::{Grant, LeaveReason};
use weir_sfu::sdp_order::{mids_of_kind, order_answer_codecs};
use weir_sfu::{JoinRequest, Room, SessionKind};

/// A str0m client's WHIP offer (audio and video), made once.
fn publisher_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = client_rtc(Instant::now(), "10.0.2.1:5000".parse().expect("addr"));
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _) = api.apply().expect("an offer");
        offer.to_sdp_string()
    })
}

fn codec_order(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.splitn(3, "\0\0").collect();
    let answer = parts[0];
    let offer = parts.get(1).copied().unwrap_or("");
    let mut preferences = HashMap::new();
    if let Some(list) = parts.get(2) {
        for entry in list.split(';') {
            if let Some((mid, codecs)) = entry.split_once('=') {
                preferences.insert(
                    mid.to_string(),
                    codecs.split(',').map(str::to_string).collect::<Vec<_>>(),
                );
            }
        }
    }
    let _ = (mids_of_kind(answer, "video"), mids_of_kind(offer, "audio"));
    let ordered = order_answer_codecs(answer, offer, &preferences);
    // Answers are str0m's: CRLF line ends only, one distinct mid per m-line.
    let bare = answer.replace("\r\n", "");
    if bare.contains(['\r', '\n']) {
        return;
    }
    let mut mids: Vec<Option<&str>> = Vec::new();
    for line in answer.split("\r\n") {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            if last.replace(mid.trim()).is_some() {
                return;
            }
        }
    }
    let mut named: Vec<&str> = mids.iter().flatten().copied().collect();
    named.sort_unstable();
    named.dedup();
    if named.len() != mids.len() {
        return;
    }
    let before: Vec<&str> = answer.split("\r\n").collect();
    let after: Vec<&str> = ordered.split("\r\n").collect();
    assert_eq!(before.len(), after.len(), "lines added or lost");
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert!(
                b.starts_with("m=") && a.starts_with("m="),
                "{b:?} became {a:?}"
            );
            let mut bt: Vec<&str> = b.split(' ').filter(|t| !t.is_empty()).collect();
            let mut at: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
            bt.sort_unstable();
            at.sort_unstable();
            assert_eq!(bt, at, "payload types changed: {b:?} became {a:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    weir_fuzz::unwind_str0m_panics();
    let Some((&flags, offer)) = data.split_first() else {
        return;
    };
    if flags & 0x80 != 0 {
        codec_order(offer);
        return;
    }
    let Ok(offer) = std::str::from_utf8(offer) else {
        // The handler refuses non-UTF-8 bodies before joining.
        return;
    };
    let now = Instant::now();
    let mut room = Room::new("fuzz", room_config(), now);
    if flags & 0x04 != 0 {
        room.set_preferred_video_codec(Some("H264"));
    }
    if flags & 0x08 != 0 {
        room.join(
            now,
            JoinRequest {
                user_id: "publisher".into(),
                grants: Grant::ALL.to_vec(),
                kind: SessionKind::Whip,
                auto_subscribe: false,
                offer: Some(publisher_offer().to_string()),
                wall_clock_ms: 0,
            },
        )
        .expect("the canned WHIP offer joins");
    }
    let kind = match flags & 0x03 {
        0 => SessionKind::Whip,
        1 => SessionKind::Whep { publisher: None },
        2 => SessionKind::Whep {
            publisher: Some("publisher".into()),
        },
        _ => SessionKind::Whep {
            publisher: Some("nobody".into()),
        },
    };
    let grants = if flags & 0x10 != 0 {
        vec![Grant::Data]
    } else {
        Grant::ALL.to_vec()
    };
    let before = room.participant_count();
    let joined = room.join(
        now,
        JoinRequest {
            user_id: "fuzzer".into(),
            grants,
            kind,
            auto_subscribe: false,
            offer: Some(offer.to_string()),
            wall_clock_ms: 0,
        },
    );
    match joined {
        Ok(joined) => {
            let answer = joined.answer.expect("an HTTP session gets an answer");
            let parsed_offer = SdpOffer::from_sdp_string(offer).expect("an accepted offer parses");
            let parsed = SdpAnswer::from_sdp_string(&answer)
                .unwrap_or_else(|e| panic!("the answer does not parse ({e}):\n{answer}"));
            let offer_mids: Vec<String> = parsed_offer
                .media_lines
                .iter()
                .map(|m| m.mid().to_string())
                .collect();
            let answer_mids: Vec<String> = parsed
                .media_lines
                .iter()
                .map(|m| m.mid().to_string())
                .collect();
            // (str0m leaves m-lines of unknown media types out of its answer,
            // which RFC 3264 forbids: known, reported, not checked here.)
            let known = offer.lines().filter(|l| l.starts_with("m=")).all(|l| {
                ["m=audio ", "m=video ", "m=application "]
                    .iter()
                    .any(|k| l.starts_with(k))
            });
            if known {
                assert_eq!(
                    offer_mids, answer_mids,
                    "the answer's m-lines differ:\n{answer}"
                );
            }
            room.handle_timeout(now + Duration::from_millis(10));
            room.leave(
                now + Duration::from_millis(20),
                joined.key,
                LeaveReason::ClientLeft,
            );
            assert_eq!(room.participant_count(), before);
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
            assert_eq!(
                room.participant_count(),
                before,
                "a refused join added someone"
            );
        }
    }
    while room.poll_output().is_some() {}
});
