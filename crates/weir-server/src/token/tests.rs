use serde_json::json;

use super::*;

const NOW: u64 = 1_700_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn app(id: &str, secret_char: char) -> AppKey {
    AppKey {
        app_id: id.to_string(),
        secret: secret_char.to_string().repeat(40),
        enabled: true,
        room_permission_required: false,
    }
}

fn store() -> Vec<AppKey> {
    let mut disabled = app("app_off", 'c');
    disabled.enabled = false;
    vec![app("app_a", 'a'), app("app_b", 'b'), disabled]
}

fn app_a() -> AppKey {
    app("app_a", 'a')
}

/// Signs arbitrary JSON claims with `secret` and `alg`.
fn sign(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encodes")
}

fn claims(iss: &str) -> serde_json::Value {
    json!({
        "iss": iss, "sub": "alice", "room": "lobby",
        "grants": ["publish", "subscribe"], "exp": NOW + 60, "iat": NOW,
    })
}

#[test]
fn mint_then_verify_round_trips() {
    let token = mint(&app_a(), "lobby", "alice", &Grant::ALL, HOUR, NOW).expect("mints");
    let verified = verify(&store(), &token, Some("lobby"), NOW).expect("verifies");
    assert_eq!(
        verified,
        VerifiedToken {
            app_id: "app_a".into(),
            user_id: "alice".into(),
            room: "lobby".into(),
            grants: Grant::ALL.to_vec(),
            expires_at: NOW + 3600,
        }
    );
    assert!(verified.allows(Grant::Publish));
    // No room to check.
    assert_eq!(verify(&store(), &token, None, NOW), Ok(verified));
}

#[test]
fn the_payload_has_the_documented_claims() {
    let token = mint(&app_a(), "lobby", "alice", &[Grant::Subscribe], HOUR, NOW).expect("mints");
    let data =
        jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token).expect("decodes");
    assert_eq!(data.header.alg, Algorithm::HS256);
    assert_eq!(
        data.claims,
        json!({
            "iss": "app_a", "sub": "alice", "room": "lobby",
            "grants": ["subscribe"], "exp": NOW + 3600, "iat": NOW,
        })
    );
}

#[test]
fn grants_are_checked_and_deduplicated() {
    let grants = [Grant::Subscribe, Grant::Subscribe, Grant::Data];
    let token = mint(&app_a(), "lobby", "u", &grants, HOUR, NOW).expect("mints");
    let verified = verify(&store(), &token, None, NOW).expect("verifies");
    assert_eq!(verified.grants, vec![Grant::Subscribe, Grant::Data]);
    assert!(!verified.allows(Grant::Publish));
    assert!(verified.allows(Grant::Data));
}

#[test]
fn a_token_from_another_issuer_library_verifies() {
    let token = sign(claims("app_b"), &"b".repeat(40), Algorithm::HS256);
    let verified = verify(&store(), &token, Some("lobby"), NOW).expect("verifies");
    assert_eq!(verified.app_id, "app_b");
    assert_eq!(verified.grants, vec![Grant::Publish, Grant::Subscribe]);
}

#[test]
fn iat_is_optional_and_other_claims_are_ignored() {
    let mut c = claims("app_b");
    let object = c.as_object_mut().expect("an object");
    object.remove("iat");
    object.insert("jti".into(), json!("abc"));
    object.insert("nbf".into(), json!(NOW - 10));
    let token = sign(c, &"b".repeat(40), Algorithm::HS256);
    let verified = verify(&store(), &token, Some("lobby"), NOW).expect("verifies");
    assert_eq!(verified.user_id, "alice");
}

#[test]
fn expiry_is_exact() {
    let token = mint(&app_a(), "lobby", "alice", &Grant::ALL, HOUR, NOW).expect("mints");
    let exp = NOW + 3600;
    assert!(verify(&store(), &token, None, exp - 1).is_ok());
    for now in [exp, exp + 1, u64::MAX] {
        let err = verify(&store(), &token, None, now).expect_err("expired");
        assert_eq!(err, TokenError::Expired);
        assert_eq!(err.code(), ErrorCode::TokenExpired);
    }
}

#[test]
fn room_claims_are_enforced() {
    let token = mint(&app_a(), "lobby", "alice", &Grant::ALL, HOUR, NOW).expect("mints");
    let err = verify(&store(), &token, Some("other"), NOW).expect_err("wrong room");
    assert_eq!(
        err,
        TokenError::WrongRoom {
            token_room: "lobby".into(),
            requested: "other".into()
        }
    );
    assert_eq!(err.code(), ErrorCode::TokenWrongRoom);
    // A token for `*` is for any valid room, not for the room literally named `*`.
    let any = mint(&app_a(), ANY_ROOM, "alice", &Grant::ALL, HOUR, NOW).expect("mints");
    let verified = verify(&store(), &any, Some("other"), NOW).expect("any room");
    assert_eq!(verified.room, ANY_ROOM);
    for bad in ["*", "", "a/b", "x".repeat(129).as_str()] {
        let err = verify(&store(), &any, Some(bad), NOW).expect_err("not a room name");
        assert_eq!(err.code(), ErrorCode::BadRequest, "{bad:?}: {err}");
    }
    let err = verify(&store(), &token, Some("*"), NOW).expect_err("not any room");
    assert_eq!(err.code(), ErrorCode::TokenWrongRoom);
}

#[test]
fn bad_signatures_are_refused() {
    // Signed with app_b's secret but claiming app_a.
    let forged = sign(claims("app_a"), &"b".repeat(40), Algorithm::HS256);
    let err = verify(&store(), &forged, None, NOW).expect_err("forged");
    assert_eq!(err, TokenError::BadSignature);
    assert_eq!(err.code(), ErrorCode::TokenInvalid);

    // A valid token with its payload swapped for another room.
    let token = mint(&app_a(), "lobby", "alice", &Grant::ALL, HOUR, NOW).expect("mints");
    let other = mint(&app_a(), "vip", "alice", &Grant::ALL, HOUR, NOW).expect("mints");
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    let err = verify(&store(), &spliced, None, NOW).expect_err("spliced");
    assert_eq!(err, TokenError::BadSignature);

    // A flipped signature character.
    let mut tampered = token.clone();
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let err = verify(&store(), &tampered, None, NOW).expect_err("tampered");
    assert_eq!(err.code(), ErrorCode::TokenInvalid);
}

#[test]
fn unknown_and_disabled_apps_are_refused() {
    let token = sign(claims("app_zzz"), &"a".repeat(40), Algorithm::HS256);
    let err = verify(&store(), &token, None, NOW).expect_err("unknown");
    assert_eq!(err, TokenError::UnknownApp("app_zzz".into()));
    assert_eq!(err.code(), ErrorCode::UnknownApp);

    let token = sign(claims("app_off"), &"c".repeat(40), Algorithm::HS256);
    let err = verify(&store(), &token, None, NOW).expect_err("disabled");
    assert_eq!(err, TokenError::AppDisabled("app_off".into()));
    assert_eq!(err.code(), ErrorCode::AppDisabled);

    // A disabled app's name is not confirmed to someone without its secret.
    let forged = sign(claims("app_off"), &"a".repeat(40), Algorithm::HS256);
    assert_eq!(
        verify(&store(), &forged, None, NOW),
        Err(TokenError::BadSignature)
    );

    let mut disabled = app("app_off", 'c');
    disabled.enabled = false;
    assert_eq!(
        mint(&disabled, "lobby", "alice", &Grant::ALL, HOUR, NOW),
        Err(TokenError::AppDisabled("app_off".into()))
    );
}

#[test]
fn missing_tokens_are_refused() {
    for token in ["", "   ", "\n"] {
        let err = verify(&store(), token, None, NOW).expect_err("missing");
        assert_eq!(err, TokenError::Missing);
        assert_eq!(err.code(), ErrorCode::TokenMissing);
    }
}

#[test]
fn garbage_is_malformed_and_never_panics() {
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    let cases = [
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig",
        "\u{0}\u{1}\u{2}",
        "é.é.é",
        long.as_str(),
    ];
    for token in cases {
        let err = verify(&store(), token, None, NOW).expect_err("garbage");
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "{token:?}: {err:?}"
        );
        assert_eq!(err.code(), ErrorCode::TokenInvalid);
    }
}

#[test]
fn alg_none_is_refused() {
    let real = mint(&app_a(), "lobby", "alice", &Grant::ALL, HOUR, NOW).expect("mints");
    let payload = real.split('.').nth(1).expect("a payload");
    // {"alg":"none","typ":"JWT"} and {"alg":"None"}
    for header in ["eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJhbGciOiJOb25lIn0"] {
        for signature in ["", "AAAA"] {
            let token = format!("{header}.{payload}.{signature}");
            let err = verify(&store(), &token, None, NOW).expect_err("alg none");
            assert_eq!(err.code(), ErrorCode::TokenInvalid, "{token}: {err}");
        }
    }
}

#[test]
fn other_algorithms_are_refused_even_with_the_right_secret() {
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(claims("app_a"), &"a".repeat(40), alg);
        let err = verify(&store(), &token, None, NOW).expect_err("not HS256");
        assert!(matches!(err, TokenError::Malformed(_)), "{alg:?}: {err:?}");
    }
}

#[test]
fn claims_with_wrong_shapes_are_malformed() {
    let secret = "a".repeat(40);
    let mut cases = Vec::new();
    // (`grants` may be absent: see a_token_without_grants_holds_every_grant.)
    for key in ["iss", "sub", "room", "exp"] {
        let mut c = claims("app_a");
        c.as_object_mut().expect("an object").remove(key);
        cases.push((format!("without {key}"), c));
    }
    let wrong: [(&str, serde_json::Value); 8] = [
        ("exp", json!("soon")),
        ("exp", json!(-1)),
        ("exp", json!(1.5e9)),
        ("grants", json!(["publish", "admin"])),
        ("grants", json!("publish")),
        ("sub", json!("bad user")),
        ("sub", json!("")),
        ("room", json!("a/b")),
    ];
    for (key, value) in wrong {
        let mut c = claims("app_a");
        c[key] = value.clone();
        cases.push((format!("{key}={value}"), c));
    }
    for (what, c) in cases {
        let token = sign(c, &secret, Algorithm::HS256);
        let err = verify(&store(), &token, None, NOW).expect_err("refused");
        assert!(matches!(err, TokenError::Malformed(_)), "{what}: {err:?}");
    }
    // An iss that is not even an app id never reaches the store lookup.
    let token = sign(claims(&"x".repeat(500)), &secret, Algorithm::HS256);
    let err = verify(&store(), &token, None, NOW).expect_err("refused");
    assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
}

#[test]
fn mint_checks_its_inputs() {
    let a = app_a();
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let max = "x".repeat(MAX_NAME_LEN);
    for user in ["", "a b", "*", "ü", "a/b", long.as_str()] {
        let err = mint(&a, "lobby", user, &Grant::ALL, HOUR, NOW).expect_err("bad user");
        assert!(
            matches!(
                err,
                TokenError::InvalidName {
                    field: "user id",
                    ..
                }
            ),
            "{user:?}: {err:?}"
        );
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }
    for room in ["", "a b", "**", "a*", long.as_str()] {
        let err = mint(&a, room, "alice", &Grant::ALL, HOUR, NOW).expect_err("bad room");
        assert!(
            matches!(err, TokenError::InvalidName { field: "room", .. }),
            "{room:?}: {err:?}"
        );
    }
    for ok in ["a", "A-z_0.9@x", max.as_str()] {
        mint(&a, ok, ok, &Grant::ALL, HOUR, NOW).expect("valid names");
    }
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(999),
        MAX_TTL + Duration::from_secs(1),
    ] {
        let err = mint(&a, "lobby", "alice", &Grant::ALL, ttl, NOW).expect_err("bad ttl");
        assert!(matches!(err, TokenError::InvalidTtl(_)), "{ttl:?}: {err:?}");
    }
    mint(&a, "lobby", "alice", &Grant::ALL, MAX_TTL, NOW).expect("the maximum is allowed");
    let err = mint(&a, "lobby", "alice", &Grant::ALL, HOUR, u64::MAX).expect_err("overflow");
    assert!(matches!(err, TokenError::InvalidTtl(_)), "{err:?}");
}

#[test]
fn name_syntax() {
    assert!(is_valid_name("alice@example.com"));
    assert!(is_valid_name("room-1_2.3"));
    assert!(!is_valid_name(""));
    assert!(!is_valid_name("*"));
    assert!(!is_valid_name("a\nb"));
    assert!(!is_valid_name(&"x".repeat(MAX_NAME_LEN + 1)));
}

fn strict_app() -> AppKey {
    AppKey {
        room_permission_required: true,
        ..app("app_strict", 's')
    }
}

#[test]
fn a_token_without_grants_holds_every_grant() {
    let mut claims = claims("app_a");
    claims.as_object_mut().expect("an object").remove("grants");
    let token = sign(claims, &"a".repeat(40), Algorithm::HS256);
    let verified = verify(&store(), &token, Some("lobby"), NOW).expect("verifies");
    assert_eq!(verified.grants, Grant::ALL.to_vec());
}

#[test]
fn room_permission_required_wants_an_exact_room_and_explicit_grants() {
    let strict = strict_app();
    let keys = vec![strict.clone()];
    let secret = strict.secret.clone();
    // What mint produces for an exact room is accepted.
    let good = mint(&strict, "lobby", "alice", &[Grant::Subscribe], HOUR, NOW).expect("mints");
    let verified = verify(&keys, &good, Some("lobby"), NOW).expect("verifies");
    assert_eq!(verified.grants, vec![Grant::Subscribe]);
    // It still names one room only.
    assert!(matches!(
        verify(&keys, &good, Some("other"), NOW),
        Err(TokenError::WrongRoom { .. })
    ));
    // Mint refuses the wildcard room and empty grants.
    for (room, grants) in [("*", &Grant::ALL[..]), ("lobby", &[][..])] {
        let err = mint(&strict, room, "alice", grants, HOUR, NOW).expect_err("refused");
        assert_eq!(err.code(), ErrorCode::RoomPermissionRequired, "{err}");
    }
    // Tokens signed elsewhere: a wildcard room, no grants, empty grants.
    let base = json!({
        "iss": "app_strict", "sub": "alice", "room": "lobby",
        "grants": ["publish"], "exp": NOW + 60,
    });
    let mut wildcard = base.clone();
    wildcard["room"] = json!("*");
    let mut no_grants = base.clone();
    no_grants.as_object_mut().expect("object").remove("grants");
    let mut empty_grants = base.clone();
    empty_grants["grants"] = json!([]);
    for claims in [wildcard, no_grants, empty_grants] {
        let token = sign(claims.clone(), &secret, Algorithm::HS256);
        let err = verify(&keys, &token, Some("lobby"), NOW).expect_err("refused");
        assert_eq!(err.code(), ErrorCode::RoomPermissionRequired, "{claims}");
    }
    // The same wildcard token is fine for an application without the rule.
    let relaxed = vec![AppKey {
        room_permission_required: false,
        ..strict
    }];
    let mut wildcard = base;
    wildcard["room"] = json!("*");
    let token = sign(wildcard, &secret, Algorithm::HS256);
    assert!(verify(&relaxed, &token, Some("lobby"), NOW).is_ok());
}

#[test]
fn app_keys_never_show_their_secret() {
    let key = app_a();
    let text = format!("{key:?}");
    assert!(!text.contains(&key.secret), "{text}");
    assert!(text.contains("app_a"));
}
