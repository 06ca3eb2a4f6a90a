use clap::CommandFactory;

use super::*;

const NOW: u64 = 1_700_000_000;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("weir").chain(args.iter().copied()))
}

fn create_args(data_dir: &std::path::Path, extra: &[&str]) -> TokenCreateArgs {
    let dir = data_dir.to_str().expect("UTF-8 temp path");
    let mut args = vec![
        "token",
        "create",
        "--data-dir",
        dir,
        "--room",
        "r",
        "--user",
        "u",
    ];
    args.extend_from_slice(extra);
    match parse(&args).expect("parses").command {
        Command::Token {
            command: TokenCommand::Create(args),
        } => args,
        other => panic!("not token create: {other:?}"),
    }
}

fn verify_args(data_dir: &std::path::Path, token: &str, room: Option<&str>) -> TokenVerifyArgs {
    TokenVerifyArgs {
        config: ConfigArgs {
            config: None,
            data_dir: Some(data_dir.to_path_buf()),
        },
        room: room.map(str::to_string),
        token: token.to_string(),
    }
}

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn ttl_parsing() {
    let ok = [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("7d", 604_800),
        ("3600", 3600),
        ("1", 1),
        ("180d", 180 * 86_400),
        (" 2h ", 7200),
    ];
    for (text, seconds) in ok {
        assert_eq!(parse_ttl(text), Ok(Duration::from_secs(seconds)), "{text}");
    }
    for bad in [
        "",
        "0",
        "0s",
        "181d",
        "15552001",
        "1w",
        "1.5h",
        "-1",
        "h",
        "1 h",
        "1H",
        "1h30m",
        "99999999999999999999",
        "999999999999999999d",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn token_create_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = create_args(dir.path(), &[]);
    assert_eq!(args.grants, Grant::ALL.to_vec());
    assert_eq!(args.ttl, Duration::from_secs(24 * 3600));
    assert_eq!(args.app, None);
}

#[test]
fn grants_parse_comma_separated_and_refuse_unknown_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = create_args(dir.path(), &["--grants", "subscribe,Data"]);
    assert_eq!(args.grants, vec![Grant::Subscribe, Grant::Data]);
    let err = parse(&[
        "token",
        "create",
        "--room",
        "r",
        "--user",
        "u",
        "--grants",
        "publish,admin",
    ])
    .expect_err("unknown grant");
    assert!(err.to_string().contains("admin"), "{err}");
}

#[test]
fn serve_flags_become_overrides() {
    let cli = parse(&[
        "serve",
        "--config",
        "/etc/weir.toml",
        "--data-dir",
        "/d",
        "--http-listen",
        "0.0.0.0:80",
        "--udp-listen",
        "0.0.0.0:7882",
        "--advertise-ip",
        "203.0.113.7",
        "--dev",
    ])
    .expect("parses");
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    assert_eq!(args.config.config, Some(PathBuf::from("/etc/weir.toml")));
    assert_eq!(
        args.overrides(),
        CliOverrides {
            data_dir: Some(PathBuf::from("/d")),
            http_listen: Some("0.0.0.0:80".parse().expect("addr")),
            udp_listen: Some("0.0.0.0:7882".parse().expect("addr")),
            advertise_ip: Some("203.0.113.7".parse().expect("ip")),
            dev: true,
        }
    );
    assert!(parse(&["serve", "--http-listen", "nonsense"]).is_err());
    assert!(parse(&["serve", "--advertise-ip", "example.com"]).is_err());
}

#[test]
fn create_then_verify_initialises_the_store_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = HashMap::new();
    let first = token_create(&create_args(dir.path(), &[]), &env, NOW).expect("creates");
    let app = first
        .created_app
        .clone()
        .expect("the first call creates the app");
    let second = token_create(&create_args(dir.path(), &[]), &env, NOW).expect("creates");
    assert!(second.created_app.is_none());

    let verified = token_verify(&verify_args(dir.path(), &first.token, Some("r")), &env, NOW)
        .expect("the store opens")
        .expect("the token verifies");
    assert_eq!(verified.app_id, app.app_id);
    assert_eq!(verified.user_id, "u");
    assert_eq!(verified.expires_at, NOW + 24 * 3600);

    let refused = token_verify(&verify_args(dir.path(), &first.token, Some("x")), &env, NOW)
        .expect("the store opens");
    assert!(matches!(refused, Err(TokenError::WrongRoom { .. })));
}

#[test]
fn the_data_dir_comes_from_the_environment_without_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env: HashMap<String, String> = [(
        "WEIR_DATA_DIR".to_string(),
        dir.path().to_str().expect("UTF-8").to_string(),
    )]
    .into();
    let Command::Token {
        command: TokenCommand::Create(args),
    } = parse(&["token", "create", "--room", "r", "--user", "u"])
        .expect("parses")
        .command
    else {
        panic!("not token create");
    };
    let created = token_create(&args, &env, NOW).expect("creates");
    assert_eq!(
        created.store_location,
        dir.path()
            .join(weir_store::SQLITE_FILE)
            .display()
            .to_string()
    );
}

#[test]
fn an_unknown_app_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = create_args(dir.path(), &["--app", "app_nope"]);
    let err = token_create(&args, &HashMap::new(), NOW).expect_err("unknown app");
    let text = format!("{err:#}");
    assert!(text.contains("app_nope"), "{text}");
}

#[test]
fn bad_names_are_refused_at_creation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = create_args(dir.path(), &[]);
    args.user = "not valid".into();
    let err = token_create(&args, &HashMap::new(), NOW).expect_err("bad user");
    assert!(format!("{err:#}").contains("user id"), "{err:#}");
    args.user = "u".into();
    args.grants.clear();
    assert!(token_create(&args, &HashMap::new(), NOW).is_err());
}

#[test]
fn version_names_the_crate_version() {
    assert!(version().contains(env!("CARGO_PKG_VERSION")));
    assert!(parse(&["version"]).is_ok());
}
