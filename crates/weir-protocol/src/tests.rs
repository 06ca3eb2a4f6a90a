use super::*;

#[test]
fn join_round_trips_with_snake_case_type() {
    let msg = ClientMessage::Join {
        version: PROTOCOL_VERSION,
        auto_subscribe: Some(false),
    };
    let text = serde_json::to_string(&msg).expect("serialises");
    assert_eq!(
        text,
        r#"{"type":"join","version":1,"auto_subscribe":false}"#
    );
    assert_eq!(ClientMessage::parse(&text), Ok(msg));
}

#[test]
fn publish_is_flattened() {
    let parsed = ClientMessage::parse(
        r#"{"type":"publish","mid":"0","kind":"video","source":"screen","codecs":["H264"]}"#,
    )
    .expect("parses");
    assert_eq!(
        parsed,
        ClientMessage::Publish(PublishRequest {
            mid: "0".into(),
            kind: TrackKind::Video,
            source: Some(TrackSource::Screen),
            codecs: vec!["H264".into()],
        })
    );
}

#[test]
fn unknown_type_is_reported_as_unknown() {
    let err = ClientMessage::parse(r#"{"type":"dance"}"#).expect_err("unknown");
    assert_eq!(err.0, ErrorCode::UnknownMessage);
}

#[test]
fn malformed_inputs_are_reported_as_malformed() {
    for text in [
        "",
        "{",
        "[]",
        "42",
        r#"{"type":7}"#,
        r#"{"kind":"join"}"#,
        r#"{"type":"join"}"#,
        r#"{"type":"join","version":"one"}"#,
        r#"{"type":"mute","track_id":"t"}"#,
    ] {
        let err = ClientMessage::parse(text).expect_err(text);
        assert_eq!(err.0, ErrorCode::MalformedMessage, "{text}");
    }
}

#[test]
fn oversized_message_is_refused_before_parsing() {
    let text = format!(
        r#"{{"type":"offer","sdp":"{}"}}"#,
        "a".repeat(MAX_MESSAGE_BYTES)
    );
    let err = ClientMessage::parse(&text).expect_err("too large");
    assert_eq!(err.0, ErrorCode::MessageTooLarge);
}

#[test]
fn error_codes_serialise_as_screaming_snake_case() {
    let msg = ServerMessage::error(ErrorCode::TokenExpired, "expired");
    let text = serde_json::to_string(&msg).expect("serialises");
    assert_eq!(
        text,
        r#"{"type":"error","code":"TOKEN_EXPIRED","message":"expired"}"#
    );
    assert_eq!(ErrorCode::TokenExpired.to_string(), "TOKEN_EXPIRED");
}

#[test]
fn error_code_as_str_matches_serde() {
    for code in [
        ErrorCode::MalformedMessage,
        ErrorCode::UnknownMessage,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::TokenMissing,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::TokenWrongRoom,
        ErrorCode::UnknownApp,
        ErrorCode::AppDisabled,
        ErrorCode::PermissionDenied,
        ErrorCode::RoomFull,
        ErrorCode::SdpInvalid,
        ErrorCode::TrackNotFound,
        ErrorCode::NotFound,
        ErrorCode::BadRequest,
        ErrorCode::PingTimeout,
        ErrorCode::ServerShuttingDown,
        ErrorCode::Internal,
    ] {
        let json = serde_json::to_string(&code).expect("serialises");
        assert_eq!(json, format!("\"{}\"", code.as_str()));
    }
}

#[test]
fn grants_parse_case_insensitively() {
    assert_eq!(Grant::parse("Publish"), Some(Grant::Publish));
    assert_eq!(Grant::parse(" data "), Some(Grant::Data));
    assert_eq!(Grant::parse("admin"), None);
}

#[test]
fn track_published_omits_mid_for_others() {
    let msg = ServerMessage::TrackPublished {
        track: TrackInfo {
            track_id: "TR_1".into(),
            participant_id: "PA_1".into(),
            user_id: "alice".into(),
            kind: TrackKind::Audio,
            source: TrackSource::Microphone,
            muted: false,
            codec: None,
            simulcast: false,
        },
        mid: None,
    };
    let text = serde_json::to_string(&msg).expect("serialises");
    assert!(!text.contains("\"mid\""), "{text}");
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    assert_eq!(
        ClientMessage::parse(r#"{"type":"leave","extra":1}"#),
        Ok(ClientMessage::Leave)
    );
}
