//! The server configuration (`weir_server::config`): a TOML file, the
//! `WEIR_*` environment layer and the command-line overrides, then
//! `validate`.
//!
//! Input: a count byte, that many environment variables (a byte choosing
//! the name, then the value as a string), then the TOML text (the rest).
//!
//! Invariants: no panic; a parsed file serializes to TOML and parses back
//! to the same configuration; a configuration that validates (from any
//! layers) does too, and still validates; what it derives (the advertised
//! IP) never panics.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use weir_fuzz::Reader;
use weir_server::config::{CliOverrides, Config};

const VARIABLES: &[&str] = &[
    "WEIR_DATA_DIR",
    "WEIR_DEV",
    "WEIR_HTTP_LISTEN",
    "WEIR_UDP_LISTEN",
    "WEIR_ADVERTISE_IP",
    "WEIR_EMPTY_TIMEOUT_SECONDS",
    "WEIR_MAX_PARTICIPANTS",
    "WEIR_AUTO_SUBSCRIBE",
    "WEIR_PING_INTERVAL_SECONDS",
    "WEIR_PING_TIMEOUT_SECONDS",
    "WEIR_ADMIN_KEY",
    "WEIR_DATABASE_URL",
    "WEIR_CALLBACKS_RETRY_INITIAL_MS",
    "WEIR_CALLBACKS_RETRY_MAX_DELAY_SECONDS",
    "WEIR_CALLBACKS_GIVE_UP_AFTER_SECONDS",
    "WEIR_CALLBACKS_RETENTION_DAYS",
    "WEIR_RECORDING_PREFER_H264",
    "WEIR_LOG",
    // Not a variable of the environment layer: ignored.
    "WEIR_UNKNOWN",
];

fn round_trip(config: &Config) {
    let text = toml::to_string(config).expect("a configuration serializes to TOML");
    let back = Config::from_toml(&text).expect("serialized TOML parses");
    assert_eq!(&back, config, "TOML round trip:\n{text}");
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mut env = HashMap::new();
    for _ in 0..r.u8() % 8 {
        let name = VARIABLES[usize::from(r.u8()) % VARIABLES.len()];
        env.insert(name.to_string(), r.string());
    }
    let Ok(text) = std::str::from_utf8(r.rest()) else {
        return;
    };

    let file = Config::from_toml(text);
    if let Ok(config) = &file {
        round_trip(config);
        if config.validate().is_ok() {
            let _ = config.advertised_ip();
        }
    }

    // The environment and flags on top of the defaults (the file layer is
    // `Config::from_file`, i.e. `from_toml` above; `WEIR_CONFIG` is never
    // set here, so nothing is read from disk).
    let overrides = CliOverrides {
        dev: env.len() % 2 == 1,
        ..CliOverrides::default()
    };
    match Config::load(None, &env, &overrides) {
        Ok(config) => {
            config.validate().expect("a loaded configuration is valid");
            round_trip(&config);
            let _ = config.advertised_ip();
        }
        Err(e) => {
            let _ = (e.key(), e.to_string());
        }
    }
});
