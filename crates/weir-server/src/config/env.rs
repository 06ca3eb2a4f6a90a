//! The `WEIR_*` environment layer: one entry per variable, each parsing its
//! value into one config field.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use super::{Config, ConfigError};

/// Names the TOML file when `--config` is not given.
pub(crate) const CONFIG_FILE: &str = "WEIR_CONFIG";

type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// Every variable of the environment layer (besides [`CONFIG_FILE`]).
pub(crate) const VARIABLES: &[(&str, Setter)] = &[
    ("WEIR_DATA_DIR", |c, v| {
        c.data_dir = PathBuf::from(v);
        Ok(())
    }),
    ("WEIR_DEV", |c, v| {
        c.dev = parse_bool(v)?;
        Ok(())
    }),
    ("WEIR_HTTP_LISTEN", |c, v| {
        c.http.listen = parse_socket_addr(v)?;
        Ok(())
    }),
    ("WEIR_UDP_LISTEN", |c, v| {
        c.media.udp_listen = parse_socket_addr(v)?;
        Ok(())
    }),
    ("WEIR_ADVERTISE_IP", |c, v| {
        c.media.advertise_ip = Some(parse_ip(v)?);
        Ok(())
    }),
    ("WEIR_NACK_HISTORY_MS", |c, v| {
        c.media.nack_history_ms = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_OWN_EGRESS", |c, v| {
        c.media.own_egress = parse_bool(v)?;
        Ok(())
    }),
    ("WEIR_EMPTY_TIMEOUT_SECONDS", |c, v| {
        c.rooms.empty_timeout_seconds = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_MAX_PARTICIPANTS", |c, v| {
        c.rooms.max_participants = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_AUTO_SUBSCRIBE", |c, v| {
        c.rooms.auto_subscribe = parse_bool(v)?;
        Ok(())
    }),
    ("WEIR_PING_INTERVAL_SECONDS", |c, v| {
        c.signalling.ping_interval_seconds = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_PING_TIMEOUT_SECONDS", |c, v| {
        c.signalling.ping_timeout_seconds = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_ADMIN_KEY", |c, v| {
        c.admin.key = Some(v.to_string());
        Ok(())
    }),
    ("WEIR_DATABASE_URL", |c, v| {
        c.database.url = Some(v.to_string());
        Ok(())
    }),
    ("WEIR_CALLBACKS_RETRY_INITIAL_MS", |c, v| {
        c.callbacks.retry_initial_ms = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_CALLBACKS_RETRY_MAX_DELAY_SECONDS", |c, v| {
        c.callbacks.retry_max_delay_seconds = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_CALLBACKS_GIVE_UP_AFTER_SECONDS", |c, v| {
        c.callbacks.give_up_after_seconds = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_CALLBACKS_RETENTION_DAYS", |c, v| {
        c.callbacks.retention_days = parse_number(v)?;
        Ok(())
    }),
    ("WEIR_RECORDING_PREFER_H264", |c, v| {
        c.recording.prefer_h264 = parse_bool(v)?;
        Ok(())
    }),
    ("WEIR_LOG", |c, v| {
        c.log.filter = v.to_string();
        Ok(())
    }),
];

/// The value of `key`, treating an empty value as unset.
pub(crate) fn value<'a>(env: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Applies every set variable to `config`.
pub(crate) fn apply(config: &mut Config, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    for (key, set) in VARIABLES {
        if let Some(text) = value(env, key) {
            set(config, text).map_err(|reason| ConfigError::Env {
                key: key.to_string(),
                value: text.to_string(),
                reason,
            })?;
        }
    }
    Ok(())
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off)".to_string()),
    }
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(text)
        .map_err(|_| "expected IP:PORT, like 127.0.0.1:7880 or [::]:7880".to_string())
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(text).map_err(|_| "expected an IP address, like 203.0.113.7".to_string())
}

fn parse_number<T: FromStr<Err = std::num::ParseIntError>>(text: &str) -> Result<T, String> {
    T::from_str(text).map_err(|e| format!("expected a whole number ({e})"))
}
