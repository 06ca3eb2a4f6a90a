//! Join tokens (`weir_server::token`): arbitrary text through `issuer` and
//! `verify` (the WebSocket, WHIP/WHEP and `/api/v1/tokens/verify` path), and
//! tokens minted from arbitrary fields verified back.
//!
//! Input: a mode byte; mode 0: `u64` now, room (string, empty = any room),
//! then the token text (the rest); mode 1: app index, room, user, grants
//! (string of `p`/`s`/`d`), `u32` ttl, `u64` now, `u16` position to tamper.
//!
//! Invariants: no panic; a token accepted by `verify` has valid names, an
//! expiry after `now`, grants without duplicates, an enabled issuer whose
//! rules it obeys, the requested room; a minted token verifies to exactly
//! what was minted, expires at `now + ttl`, and no single-byte change makes
//! it verify to anything else.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_fuzz::Reader;
use weir_protocol::Grant;
use weir_server::token::{self, AppKey, TokenError, VerifiedToken, ANY_ROOM};

/// The applications tokens are checked against (the corpus's tokens are
/// signed with these secrets).
pub fn keys() -> Vec<AppKey> {
    vec![
        AppKey {
            app_id: "app1".into(),
            secret: "fuzz-secret-one-0123456789abcdef".into(),
            enabled: true,
            room_permission_required: false,
        },
        AppKey {
            app_id: "app2".into(),
            secret: "fuzz-secret-two-0123456789abcdef".into(),
            enabled: false,
            room_permission_required: false,
        },
        AppKey {
            app_id: "app3".into(),
            secret: "fuzz-secret-three-0123456789abcd".into(),
            enabled: true,
            room_permission_required: true,
        },
    ]
}

fn check_accepted(keys: &[AppKey], token: &str, room: Option<&str>, now: u64, v: &VerifiedToken) {
    let app = keys
        .iter()
        .find(|k| k.app_id == v.app_id)
        .expect("issued by a known app");
    assert!(app.enabled, "a disabled app's token was accepted");
    assert_eq!(token::issuer(token).as_deref(), Ok(v.app_id.as_str()));
    assert!(token::is_valid_name(&v.user_id), "user {:?}", v.user_id);
    assert!(
        v.room == ANY_ROOM || token::is_valid_name(&v.room),
        "room {:?}",
        v.room
    );
    assert!(v.expires_at > now, "expired token accepted");
    for (i, g) in v.grants.iter().enumerate() {
        assert!(!v.grants[..i].contains(g), "duplicate grant {g:?}");
    }
    if app.room_permission_required {
        assert_ne!(v.room, ANY_ROOM);
        assert!(!v.grants.is_empty());
    }
    if let Some(room) = room {
        assert!(v.room == room || (v.room == ANY_ROOM && token::is_valid_name(room)));
    }
}

fn grants_of(text: &str) -> Vec<Grant> {
    text.bytes()
        .map(|b| match b {
            b'p' => Grant::Publish,
            b's' => Grant::Subscribe,
            b'd' => Grant::Data,
            _ => Grant::ALL[usize::from(b % 3)],
        })
        .take(8)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    let mut r = Reader::new(data);
    match r.u8() % 2 {
        0 => {
            let now = r.u64();
            let room = r.string();
            let room = (!room.is_empty()).then_some(room);
            let token = String::from_utf8_lossy(r.rest()).into_owned();
            let _ = token::issuer(&token).map_err(|e| e.code());
            match token::verify(&keys, &token, room.as_deref(), now) {
                Ok(v) => check_accepted(&keys, &token, room.as_deref(), now, &v),
                Err(e) => {
                    let _ = (e.code(), e.to_string());
                }
            }
        }
        _ => {
            let app = &keys[usize::from(r.u8()) % keys.len()];
            let room = r.string();
            let user = r.string();
            let grants = grants_of(&r.string());
            let ttl = Duration::from_secs(u64::from(r.u32()));
            let now = r.u64();
            let tamper_at = usize::from(r.u16());
            let minted = match token::mint(app, &room, &user, &grants, ttl, now) {
                Ok(t) => t,
                Err(TokenError::Signing(e)) => panic!("signing failed: {e}"),
                Err(_) => return,
            };
            let requested = (room != ANY_ROOM).then_some(room.as_str());
            let v = token::verify(&keys, &minted, requested, now).expect("a minted token verifies");
            check_accepted(&keys, &minted, requested, now, &v);
            assert_eq!(v.app_id, app.app_id);
            assert_eq!(v.user_id, user);
            assert_eq!(v.room, room);
            let mut unique = Vec::new();
            for g in grants {
                if !unique.contains(&g) {
                    unique.push(g);
                }
            }
            assert_eq!(v.grants, unique);
            assert_eq!(v.expires_at, now + ttl.as_secs());
            assert_eq!(
                token::verify(&keys, &minted, requested, v.expires_at),
                Err(TokenError::Expired)
            );
            // Tampering: any changed byte is refused, or (base64 padding
            // bits of the signature) verifies to the very same claims.
            let mut bytes = minted.clone().into_bytes();
            let at = tamper_at % bytes.len();
            for replacement in [b'A', b'_', b'.', b'x'] {
                if bytes[at] == replacement {
                    continue;
                }
                bytes[at] = replacement;
                let tampered = String::from_utf8(bytes.clone()).expect("ASCII");
                if let Ok(t) = token::verify(&keys, &tampered, requested, now) {
                    assert_eq!(t, v, "tampered token {tampered} verified differently");
                }
            }
        }
    }
});
