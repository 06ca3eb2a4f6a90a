use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::*;

const SAMPLE: &str = include_str!("../../../../deploy/weir.toml");

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("create a temp file");
    file.write_all(text.as_bytes())
        .expect("write the temp file");
    file
}

/// The error and its causes, as a binary prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.data_dir, PathBuf::from("./weir-data"));
    assert!(!c.dev);
    assert_eq!(c.http.listen, addr("127.0.0.1:7880"));
    assert_eq!(c.media.udp_listen, addr("127.0.0.1:7882"));
    assert_eq!(c.media.advertise_ip, None);
    assert_eq!(c.rooms.empty_timeout_seconds, 30);
    assert_eq!(c.rooms.max_participants, 100);
    assert!(c.rooms.auto_subscribe);
    assert_eq!(c.signalling.ping_interval_seconds, 10);
    assert_eq!(c.signalling.ping_timeout_seconds, 30);
    assert_eq!(c.log.filter, "info,str0m=warn");
    assert!(!c.log.json);
    assert_eq!(c.callbacks.retry_initial_ms, 1000);
    assert_eq!(c.callbacks.retry_max_delay_seconds, 300);
    assert_eq!(c.callbacks.give_up_after_seconds, 3600);
    assert_eq!(c.callbacks.retention_days, 7);
    c.validate().expect("the defaults are valid");
}

#[test]
fn sample_file_equals_the_defaults() {
    let sample = Config::from_toml(SAMPLE).expect("deploy/weir.toml parses");
    assert_eq!(sample, Config::default());
}

#[test]
fn sample_file_mentions_every_key() {
    // Every key of the serialised defaults, plus the optional ones that
    // serialise to nothing, must appear as `key =` (commented out or not).
    let value = toml::Value::try_from(Config::default()).expect("the defaults serialise");
    let mut keys = vec![
        "advertise_ip".to_string(),
        "admin".to_string(),
        "database".to_string(),
        "key".to_string(),
        "url".to_string(),
    ];
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        if let toml::Value::Table(table) = value {
            for (key, value) in table {
                keys.push(key);
                stack.push(value);
            }
        }
    }
    for key in keys {
        let as_table = format!("[{key}]");
        let as_key = format!("{key} =");
        assert!(
            SAMPLE.contains(&as_table) || SAMPLE.contains(&as_key),
            "deploy/weir.toml does not mention `{key}`"
        );
    }
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(
        Config::from_toml("").expect("empty parses"),
        Config::default()
    );
}

#[test]
fn load_without_any_layer_is_the_defaults() {
    let c = Config::load(None, &no_env(), &CliOverrides::default()).expect("loads");
    assert_eq!(c, Config::default());
}

#[test]
fn file_overrides_defaults_and_keeps_the_rest() {
    let file = toml_file(
        r#"
        data_dir = "/var/lib/weir"
        [http]
        listen = "0.0.0.0:8080"
        [rooms]
        max_participants = 0
        "#,
    );
    let c = Config::load(Some(file.path()), &no_env(), &CliOverrides::default()).expect("loads");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/weir"));
    assert_eq!(c.http.listen, addr("0.0.0.0:8080"));
    assert_eq!(c.rooms.max_participants, 0);
    assert_eq!(c.rooms.empty_timeout_seconds, 30);
    assert_eq!(c.media, MediaConfig::default());
}

#[test]
fn precedence_is_defaults_file_env_cli() {
    let file = toml_file(
        r#"
        data_dir = "/from/file"
        dev = false
        [http]
        listen = "127.0.0.1:1001"
        [media]
        udp_listen = "127.0.0.1:2001"
        advertise_ip = "10.0.0.1"
        [rooms]
        empty_timeout_seconds = 5
        "#,
    );
    let env = vars(&[
        ("WEIR_DATA_DIR", "/from/env"),
        ("WEIR_HTTP_LISTEN", "127.0.0.1:1002"),
        ("WEIR_UDP_LISTEN", "127.0.0.1:2002"),
        ("WEIR_EMPTY_TIMEOUT_SECONDS", "6"),
    ]);
    let cli = CliOverrides {
        data_dir: Some(PathBuf::from("/from/cli")),
        http_listen: Some(addr("127.0.0.1:1003")),
        udp_listen: None,
        advertise_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))),
        dev: true,
    };
    let c = Config::load(Some(file.path()), &env, &cli).expect("loads");
    assert_eq!(c.data_dir, PathBuf::from("/from/cli"));
    assert_eq!(c.http.listen, addr("127.0.0.1:1003"));
    assert_eq!(c.media.udp_listen, addr("127.0.0.1:2002"), "env beats file");
    assert_eq!(
        c.media.advertise_ip,
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)))
    );
    assert_eq!(c.rooms.empty_timeout_seconds, 6, "env beats file");
    assert!(c.dev, "--dev beats the file");
}

#[test]
fn every_env_variable_is_applied() {
    let env = vars(&[
        ("WEIR_DATA_DIR", "/d"),
        ("WEIR_DEV", "yes"),
        ("WEIR_HTTP_LISTEN", "[::1]:9000"),
        ("WEIR_UDP_LISTEN", "0.0.0.0:9001"),
        ("WEIR_ADVERTISE_IP", "192.0.2.1"),
        ("WEIR_EMPTY_TIMEOUT_SECONDS", "0"),
        ("WEIR_MAX_PARTICIPANTS", "7"),
        ("WEIR_AUTO_SUBSCRIBE", "off"),
        ("WEIR_PING_INTERVAL_SECONDS", "2"),
        ("WEIR_PING_TIMEOUT_SECONDS", "3"),
        ("WEIR_LOG", "debug"),
        ("WEIR_ADMIN_KEY", "K0123456789abcdefghijklmnopqrstuvwxyz"),
        ("WEIR_DATABASE_URL", "postgres://weir@127.0.0.1/weir"),
        ("WEIR_CALLBACKS_RETRY_INITIAL_MS", "50"),
        ("WEIR_CALLBACKS_RETRY_MAX_DELAY_SECONDS", "2"),
        ("WEIR_CALLBACKS_GIVE_UP_AFTER_SECONDS", "120"),
        ("WEIR_CALLBACKS_RETENTION_DAYS", "0"),
        ("WEIR_RECORDING_PREFER_H264", "false"),
        ("WEIR_NACK_HISTORY_MS", "800"),
        ("WEIR_OWN_EGRESS", "false"),
    ]);
    let c = Config::load(None, &env, &CliOverrides::default()).expect("loads");
    let expected = Config {
        data_dir: PathBuf::from("/d"),
        dev: true,
        http: HttpConfig {
            listen: addr("[::1]:9000"),
        },
        media: MediaConfig {
            udp_listen: addr("0.0.0.0:9001"),
            advertise_ip: Some("192.0.2.1".parse().expect("an ip")),
            nack_history_ms: 800,
            own_egress: false,
        },
        rooms: RoomsConfig {
            empty_timeout_seconds: 0,
            max_participants: 7,
            auto_subscribe: false,
        },
        signalling: SignallingConfig {
            ping_interval_seconds: 2,
            ping_timeout_seconds: 3,
        },
        log: LogConfig {
            filter: "debug".into(),
            json: false,
        },
        admin: AdminConfig {
            key: Some("K0123456789abcdefghijklmnopqrstuvwxyz".into()),
        },
        database: DatabaseConfig {
            url: Some("postgres://weir@127.0.0.1/weir".into()),
        },
        callbacks: CallbacksConfig {
            retry_initial_ms: 50,
            retry_max_delay_seconds: 2,
            give_up_after_seconds: 120,
            retention_days: 0,
        },
        recording: RecordingConfig { prefer_h264: false },
    };
    assert_eq!(c, expected);
    // The table and the list of documented names agree.
    assert_eq!(env::VARIABLES.len(), env.len());
}

#[test]
fn weir_config_names_the_file_and_the_flag_beats_it() {
    let from_env = toml_file("data_dir = \"/from/weir_config\"");
    let from_flag = toml_file("data_dir = \"/from/flag\"");
    let vars = vars(&[("WEIR_CONFIG", path_str(from_env.path()))]);
    let c = Config::load(None, &vars, &CliOverrides::default()).expect("loads");
    assert_eq!(c.data_dir, PathBuf::from("/from/weir_config"));
    let c = Config::load(Some(from_flag.path()), &vars, &CliOverrides::default()).expect("loads");
    assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn empty_env_values_count_as_unset() {
    let vars = vars(&[("WEIR_HTTP_LISTEN", ""), ("WEIR_CONFIG", "  ")]);
    let c = Config::load(None, &vars, &CliOverrides::default()).expect("loads");
    assert_eq!(c, Config::default());
}

#[test]
fn bad_env_values_name_the_variable() {
    let cases = [
        ("WEIR_DEV", "maybe"),
        ("WEIR_HTTP_LISTEN", "localhost"),
        ("WEIR_UDP_LISTEN", "127.0.0.1"),
        ("WEIR_ADVERTISE_IP", "example.com"),
        ("WEIR_EMPTY_TIMEOUT_SECONDS", "-1"),
        ("WEIR_MAX_PARTICIPANTS", "99999999999"),
        ("WEIR_AUTO_SUBSCRIBE", "2"),
        ("WEIR_PING_INTERVAL_SECONDS", "10s"),
        ("WEIR_PING_TIMEOUT_SECONDS", "x"),
    ];
    for (key, value) in cases {
        let err = Config::load(None, &vars(&[(key, value)]), &CliOverrides::default())
            .expect_err("a bad value is refused");
        assert!(matches!(err, ConfigError::Env { .. }), "{key}: {err:?}");
        assert_eq!(err.key(), Some(key));
        let message = err.to_string();
        assert!(
            message.contains(key) && message.contains(value),
            "{message}"
        );
    }
}

#[test]
fn unknown_keys_are_refused() {
    for text in [
        "datadir = \"/x\"",
        "[http]\nlisten = \"127.0.0.1:1\"\nport = 1",
        "[rooms]\nmax_participant = 3",
        "[nonsense]",
    ] {
        let file = toml_file(text);
        let err = Config::load(Some(file.path()), &no_env(), &CliOverrides::default())
            .expect_err("unknown keys are refused");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let text = chain(&err);
        assert!(text.contains("unknown field"), "{text}");
    }
}

#[test]
fn bad_file_values_are_refused_with_the_file_named() {
    for text in [
        "[http]\nlisten = \"not an address\"",
        "[rooms]\nmax_participants = -1",
        "dev = \"yes\"",
        "data_dir = ",
    ] {
        let file = toml_file(text);
        let err = Config::load(Some(file.path()), &no_env(), &CliOverrides::default())
            .expect_err("bad values are refused");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(
            err.to_string().contains(path_str(file.path())),
            "the message names the file: {err}"
        );
    }
}

#[test]
fn a_missing_named_file_is_an_error() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let missing = dir.path().join("nope.toml");
    let err = Config::load(Some(&missing), &no_env(), &CliOverrides::default())
        .expect_err("a missing file is refused");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    let text = chain(&err);
    assert!(
        text.contains("nope.toml") && text.contains("No such file"),
        "{text}"
    );
}

/// Makes a valid config invalid.
type Breaker = fn(&mut Config);

#[test]
fn validation_refuses_nonsense() {
    let cases: [(&str, Breaker); 16] = [
        ("media.nack_history_ms", |c| c.media.nack_history_ms = 49),
        ("media.nack_history_ms", |c| {
            c.media.nack_history_ms = 10_001
        }),
        ("signalling.ping_timeout_seconds", |c| {
            c.signalling.ping_timeout_seconds = c.signalling.ping_interval_seconds
        }),
        ("signalling.ping_interval_seconds", |c| {
            c.signalling.ping_interval_seconds = 0
        }),
        ("signalling.ping_interval_seconds", |c| {
            c.signalling.ping_interval_seconds = 3601
        }),
        ("signalling.ping_timeout_seconds", |c| {
            c.signalling.ping_timeout_seconds = 3601
        }),
        ("rooms.empty_timeout_seconds", |c| {
            c.rooms.empty_timeout_seconds = 86_401
        }),
        ("media.advertise_ip", |c| {
            c.media.advertise_ip = Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        }),
        ("data_dir", |c| c.data_dir = PathBuf::new()),
        ("log.filter", |c| c.log.filter = "info,str0m=loud".into()),
        ("callbacks.retry_initial_ms", |c| {
            c.callbacks.retry_initial_ms = 0
        }),
        ("callbacks.retry_initial_ms", |c| {
            c.callbacks.retry_initial_ms = c.callbacks.retry_max_delay_seconds * 1000 + 1
        }),
        ("callbacks.retry_max_delay_seconds", |c| {
            c.callbacks.retry_max_delay_seconds = 0
        }),
        ("callbacks.retry_max_delay_seconds", |c| {
            c.callbacks.retry_max_delay_seconds = c.callbacks.give_up_after_seconds + 1
        }),
        ("callbacks.give_up_after_seconds", |c| {
            c.callbacks.give_up_after_seconds = 0
        }),
        ("callbacks.retention_days", |c| {
            c.callbacks.retention_days = MAX_CALLBACK_RETENTION_DAYS + 1
        }),
    ];
    for (key, break_it) in cases {
        let mut c = Config::default();
        break_it(&mut c);
        let err = c.validate().expect_err("refused");
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn load_validates() {
    let vars = vars(&[("WEIR_PING_TIMEOUT_SECONDS", "5")]);
    let err = Config::load(None, &vars, &CliOverrides::default()).expect_err("refused");
    assert_eq!(err.key(), Some("signalling.ping_timeout_seconds"));
}

#[test]
fn boundary_values_are_accepted() {
    let mut c = Config::default();
    c.rooms.empty_timeout_seconds = MAX_EMPTY_TIMEOUT_SECONDS;
    c.signalling.ping_interval_seconds = 1;
    c.signalling.ping_timeout_seconds = 2;
    c.callbacks = CallbacksConfig {
        retry_initial_ms: 1,
        retry_max_delay_seconds: 1,
        give_up_after_seconds: 1,
        retention_days: 0,
    };
    c.validate().expect("valid");
    c.callbacks = CallbacksConfig {
        retry_initial_ms: MAX_CALLBACK_GIVE_UP_SECONDS * 1000,
        retry_max_delay_seconds: MAX_CALLBACK_GIVE_UP_SECONDS,
        give_up_after_seconds: MAX_CALLBACK_GIVE_UP_SECONDS,
        retention_days: MAX_CALLBACK_RETENTION_DAYS,
    };
    c.validate().expect("valid");
}

#[test]
fn advertised_ip_falls_back_to_the_listen_ip_then_loopback() {
    let mut c = Config::default();
    assert_eq!(c.advertised_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    c.media.udp_listen = addr("192.0.2.9:7882");
    assert_eq!(
        c.advertised_ip(),
        "192.0.2.9".parse::<IpAddr>().expect("ip")
    );
    c.media.udp_listen = addr("0.0.0.0:7882");
    assert_eq!(c.advertised_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    c.media.udp_listen = addr("[::]:7882");
    assert_eq!(c.advertised_ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    c.media.advertise_ip = Some("203.0.113.7".parse().expect("ip"));
    assert_eq!(
        c.advertised_ip(),
        "203.0.113.7".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn config_round_trips_through_toml() {
    let mut c = Config::default();
    c.media.advertise_ip = Some("203.0.113.7".parse().expect("ip"));
    c.log.json = true;
    let text = toml::to_string(&c).expect("serialises");
    assert_eq!(Config::from_toml(&text).expect("parses"), c);
}

#[test]
fn admin_key_and_database_url_are_validated() {
    let mut config = Config::default();
    config.admin.key = Some("short".into());
    assert_eq!(
        config.validate().map_err(|e| e.key().map(str::to_string)),
        Err(Some("admin.key".into()))
    );
    config.admin.key = Some("a".repeat(40));
    assert!(config.validate().is_ok());
    config.admin.key = Some(format!("{}!", "a".repeat(40)));
    assert!(config.validate().is_err());
    config.admin.key = None;
    config.database.url = Some("mysql://x".into());
    assert_eq!(
        config.validate().map_err(|e| e.key().map(str::to_string)),
        Err(Some("database.url".into()))
    );
    config.database.url = Some("postgres://weir@127.0.0.1/weir".into());
    assert!(config.validate().is_ok());
}

#[test]
fn log_filters_may_have_spaces_after_commas() {
    // Found by fuzz/ (config): tracing-subscriber panicked on non-ASCII
    // text after the space, and misread the target of `info, weir=debug`.
    for filter in [
        "info, é=debug",
        "info,\u{a0}é=debug",
        " info ,  weir=debug ",
    ] {
        let config = Config {
            log: LogConfig {
                filter: filter.into(),
                json: false,
            },
            ..Config::default()
        };
        config.validate().expect("a valid filter");
    }
    let filter = tracing_filter("info, weir=debug").expect("a valid filter");
    assert!(filter.to_string().contains("weir=debug"), "{filter}");
}
