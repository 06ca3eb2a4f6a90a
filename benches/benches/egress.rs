//! Weir's own SRTP egress (`weir_sfu::egress`), per forwarded packet, to
//! set beside `forwarding/room_to_50_subscribers` (str0m's send path) in
//! the same run.
//!
//! - `egress/seal_{aes128,aes256}_gcm`: one 1150-byte-payload RTP packet
//!   sealed into a reused send buffer (copy, AES-GCM, tag).
//! - `egress/rewrite_and_seal_to_50_subscribers`: what a forwarded packet
//!   costs on that path per subscriber: the subscriber's header written
//!   (payload type, sequence number, timestamp, SSRC; mid and video
//!   orientation extensions with its ids) and the publisher's payload
//!   straight into one batch buffer, sealed there with the subscriber's own
//!   key (as the room does, into a datagram of its own). Throughput counts forwarded packets.
//!
//! `cargo bench -p weir-benches --bench egress`
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use str0m::rtp::{ExtensionValues, VideoOrientation};
use weir_benches::sim::PAYLOAD_BYTES;
use weir_sfu::egress::rtp_header::{write_header, ExtensionIds, HeaderFields, MediaExtensions};
use weir_sfu::egress::srtp_keys::{AeadProfile, MasterKey};
use weir_sfu::egress::srtp_seal::{PacketIndex, RtpSealer};

fn publisher_packet() -> Vec<u8> {
    let mut packet = vec![
        0x90, 96, 0x12, 0x34, 0, 1, 0x5f, 0x90, 0xca, 0xfe, 0xba, 0xbe,
    ];
    // A one-byte header extension block of one word (e.g. abs-send-time).
    packet.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x32, 0x01, 0x02, 0x03]);
    packet.extend((0..PAYLOAD_BYTES).map(|i| i as u8));
    packet
}

fn sealer(profile: AeadProfile, seed: u8) -> RtpSealer {
    let key: Vec<u8> = (0..profile.key_len() as u8).map(|b| b ^ seed).collect();
    let master = MasterKey::new(profile, &key, &[seed; 12]).expect("key lengths");
    RtpSealer::new(&master.rtp_session_key().expect("derive")).expect("sealer")
}

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("egress");
    group.throughput(Throughput::Elements(1));
    for (name, profile) in [
        ("seal_aes128_gcm", AeadProfile::Aes128Gcm),
        ("seal_aes256_gcm", AeadProfile::Aes256Gcm),
    ] {
        let mut sealer = sealer(profile, 1);
        let mut packet = publisher_packet();
        let mut out = Vec::with_capacity(2048);
        let mut seq = 0u16;
        group.bench_function(name, |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                out.clear();
                black_box(sealer.seal_into(black_box(&packet), &mut out)).expect("seal");
            })
        });
    }
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 50;
    let mut group = c.benchmark_group("egress");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    let mut sealers: Vec<RtpSealer> = (0..SUBSCRIBERS as u8)
        .map(|i| sealer(AeadProfile::Aes256Gcm, i))
        .collect();
    let payload: Vec<u8> = (0..PAYLOAD_BYTES).map(|i| i as u8).collect();
    let values = MediaExtensions::from_values(&ExtensionValues {
        video_orientation: Some(VideoOrientation::Deg90),
        ..Default::default()
    });
    let ids = ExtensionIds {
        mid: Some(4),
        video_orientation: Some(13),
        ..Default::default()
    };
    let mut batch = Vec::with_capacity(SUBSCRIBERS * 1300);
    let mut seq = 0u64;
    group.bench_function("rewrite_and_seal_to_50_subscribers", |b| {
        b.iter(|| {
            seq += 1;
            batch.clear();
            for (i, sealer) in sealers.iter_mut().enumerate() {
                // The subscriber's own SSRC, sequence and timestamp offset;
                // sealed with its extended sequence number, as the room does.
                let start = batch.len();
                let out_seq = seq + i as u64 * 1000;
                let index = PacketIndex::from_extended(out_seq).expect("48 bits");
                let fields = HeaderFields {
                    payload_type: 96,
                    marker: false,
                    seq: index.seq(),
                    timestamp: 90_000u32.wrapping_add(i as u32 * 7919),
                    ssrc: 0x1000_0000 + i as u32,
                };
                write_header(fields, &ids, Some("1"), black_box(&values), &mut batch);
                batch.extend_from_slice(&payload);
                sealer
                    .seal_in_place_at(&mut batch, start, index)
                    .expect("seal");
            }
            black_box(batch.len())
        })
    });
    group.finish();
}

criterion_group!(benches, seal, fan_out);
criterion_main!(benches);
