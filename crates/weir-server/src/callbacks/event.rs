//! The callback body (`{event_id, event_type, app_id, room_id, user_id?,
//! track?, timestamp_ms, ...}`), the seeds' room and media events.

use serde::{Deserialize, Serialize};
use weir_protocol::{TrackKind, TrackSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    RoomCreated,
    RoomDissolved,
    ParticipantJoined,
    ParticipantLeft,
    TrackPublished,
    TrackUnpublished,
    /// A recording file got its first media (issue 4).
    RecordNewFileStart,
    /// A recording file is finalized and stored.
    RecordFileComplete,
    /// A recording file could not be stored.
    RecordFailed,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::RoomCreated,
        EventType::RoomDissolved,
        EventType::ParticipantJoined,
        EventType::ParticipantLeft,
        EventType::TrackPublished,
        EventType::TrackUnpublished,
        EventType::RecordNewFileStart,
        EventType::RecordFileComplete,
        EventType::RecordFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RoomCreated => "ROOM_CREATED",
            EventType::RoomDissolved => "ROOM_DISSOLVED",
            EventType::ParticipantJoined => "PARTICIPANT_JOINED",
            EventType::ParticipantLeft => "PARTICIPANT_LEFT",
            EventType::TrackPublished => "TRACK_PUBLISHED",
            EventType::TrackUnpublished => "TRACK_UNPUBLISHED",
            EventType::RecordNewFileStart => "RECORD_NEW_FILE_START",
            EventType::RecordFileComplete => "RECORD_FILE_COMPLETE",
            EventType::RecordFailed => "RECORD_FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// The track an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTrack {
    pub track_id: String,
    pub kind: TrackKind,
    pub source: TrackSource,
}

/// One event as delivered. `event_id` is stable across retries, so a
/// receiver can drop duplicates (delivery is at-least-once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub app_id: String,
    pub room_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<EventTrack>,
    pub timestamp_ms: u64,
    /// More fields at the top level of the body, for event types that carry
    /// more than the common ones. Never one of the names above.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CallbackEvent {
    /// The body's own field names, which [`CallbackEvent::extra`] must not
    /// use (the JSON object would have the key twice).
    pub const RESERVED_FIELDS: [&'static str; 7] = [
        "event_id",
        "event_type",
        "app_id",
        "room_id",
        "user_id",
        "track",
        "timestamp_ms",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape_matches_the_contract() {
        let event = CallbackEvent {
            event_id: "ev_1".into(),
            event_type: EventType::TrackPublished,
            app_id: "app_1".into(),
            room_id: "room".into(),
            user_id: Some("alice".into()),
            track: Some(EventTrack {
                track_id: "TR_1".into(),
                kind: TrackKind::Video,
                source: TrackSource::Camera,
            }),
            timestamp_ms: 42,
            extra: serde_json::Map::new(),
        };
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(json["event_type"], "TRACK_PUBLISHED");
        assert_eq!(json["track"]["kind"], "video");
        assert_eq!(json["track"]["source"], "camera");
        assert_eq!(json["timestamp_ms"], 42);
        let room_event = CallbackEvent {
            user_id: None,
            track: None,
            event_type: EventType::RoomCreated,
            ..event
        };
        let json = serde_json::to_value(&room_event).expect("serialises");
        assert!(json.get("user_id").is_none() && json.get("track").is_none());
    }

    #[test]
    fn extra_fields_sit_at_the_top_level_and_round_trip() {
        let mut extra = serde_json::Map::new();
        extra.insert("recording_id".into(), "rec_1".into());
        extra.insert("duration_ms".into(), 1500.into());
        let event = CallbackEvent {
            event_id: "ev_2".into(),
            event_type: EventType::RoomDissolved,
            app_id: "app_1".into(),
            room_id: "room".into(),
            user_id: None,
            track: None,
            timestamp_ms: 7,
            extra,
        };
        let text = serde_json::to_string(&event).expect("serialises");
        let json: serde_json::Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(json["recording_id"], "rec_1");
        assert_eq!(json["duration_ms"], 1500);
        let back: CallbackEvent = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, event);
    }

    #[test]
    fn event_type_names_round_trip() {
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
            assert_eq!(
                serde_json::to_string(&event).expect("serialises"),
                format!("\"{}\"", event.as_str())
            );
        }
        assert_eq!(EventType::parse("room_created"), None);
    }
}
