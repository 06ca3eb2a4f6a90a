//! Signalling JSON (`weir-protocol`): one WebSocket text frame as the
//! server parses it (`ClientMessage::parse`), and the same bytes as the
//! messages clients parse (`ServerMessage`, HTTP error bodies, health).
//!
//! Invariants: no panic; an accepted message serializes and parses back to
//! itself; a refusal carries one of the codes the protocol documents for
//! it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_protocol::{ClientMessage, ErrorCode, Health, HttpErrorBody, ServerMessage};

fn round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).expect("a parsed message serializes");
    let back: T = serde_json::from_str(&text).expect("a serialized message parses");
    assert_eq!(&back, value, "round trip of {text}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // The server reads text frames only (tungstenite checks UTF-8).
        return;
    };
    match ClientMessage::parse(text) {
        Ok(message) => {
            let json = serde_json::to_string(&message).expect("serializes");
            assert_eq!(ClientMessage::parse(&json), Ok(message.clone()), "{json}");
            round_trip(&message);
        }
        Err((code, reason)) => {
            assert!(
                matches!(
                    code,
                    ErrorCode::MessageTooLarge
                        | ErrorCode::MalformedMessage
                        | ErrorCode::UnknownMessage
                ),
                "unexpected refusal {code:?}: {reason}"
            );
        }
    }
    if let Ok(message) = serde_json::from_str::<ServerMessage>(text) {
        round_trip(&message);
    }
    if let Ok(body) = serde_json::from_str::<HttpErrorBody>(text) {
        round_trip(&body);
    }
    if let Ok(health) = serde_json::from_str::<Health>(text) {
        round_trip(&health);
    }
});
