//! Join token verification, as the join path does it (`serve/ws.rs`,
//! WHIP/WHEP through `app_keys.rs`): `weir_server::token::issuer` (the
//! unverified `iss`, to find the application key) and
//! `weir_server::token::verify_with_key` (HS256 signature, expiry, names,
//! room, grants). The application key is taken as cached (the cache
//! lookup is not measured). Throughput counts tokens.
//!
//! `cargo bench -p weir-benches --bench token`
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_protocol::Grant;
use weir_server::token::{issuer, mint, verify_with_key, AppKey};

const NOW: u64 = 1_700_000_000;

fn token(c: &mut Criterion) {
    let key = AppKey {
        app_id: "app_7Hq2kLmN".to_string(),
        secret: "s3cr3t-0123456789abcdef0123456789abcdef0123456789abcdef".to_string(),
        enabled: true,
        room_permission_required: false,
    };
    let token = mint(
        &key,
        "standup",
        "alice@example.com",
        &[Grant::Publish, Grant::Subscribe],
        Duration::from_secs(3600),
        NOW,
    )
    .expect("a token");
    eprintln!("token: {} bytes", token.len());

    let mut group = c.benchmark_group("token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("issuer", |b| {
        b.iter(|| {
            let app = issuer(black_box(&token)).expect("an issuer");
            assert_eq!(app.len(), key.app_id.len());
            app
        })
    });
    group.bench_function("issuer_and_verify_with_key", |b| {
        b.iter(|| {
            let app = issuer(black_box(&token)).expect("an issuer");
            assert_eq!(app, key.app_id);
            let verified =
                verify_with_key(&key, black_box(&token), Some("standup"), NOW + 60).expect("valid");
            assert_eq!(verified.grants.len(), 2);
            verified
        })
    });
    group.finish();
}

criterion_group!(benches, token);
criterion_main!(benches);
