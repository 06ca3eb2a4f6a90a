//! A tiny scenario against an in-process server on 127.0.0.1: 1 room,
//! 1 publisher, 2 subscribers, 3 s, recorded, after a 1 s warm-up call. The
//! report must be plausible.
//!
//! This starts WebRTC peers: run it in a loopback-only network namespace,
//! `unshare -n bash -c 'ip link set lo up; exec cargo test -p weir-load'`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use weir_load::Args;
use weir_server::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_recorded_scenario_reports_plausible_numbers() {
    let data_dir = tempfile::tempdir().expect("a temporary data dir");
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        ..Config::default()
    };
    config.http.listen = SocketAddr::new(localhost, 0);
    config.media.udp_listen = SocketAddr::new(localhost, 0);
    config.media.advertise_ip = Some(localhost);
    let server = weir_server::serve::start(config)
        .await
        .expect("the server starts");
    let admin_key = server
        .generated_admin_key
        .clone()
        .expect("a fresh data dir generates an admin key");
    let json_path = data_dir.path().join("report.json");
    let url = format!("ws://{}/rtc/v1", server.http_addr);
    let pid = std::process::id().to_string();
    let data_dir_arg = data_dir.path().display().to_string();
    let json_arg = json_path.display().to_string();
    let args = Args::try_parse_from([
        "weir-load",
        "--url",
        &url,
        "--data-dir",
        &data_dir_arg,
        "--rooms",
        "1",
        "--publishers",
        "1",
        "--subscribers",
        "2",
        "--media",
        "av",
        "--video-kbps",
        "500",
        "--duration",
        "3",
        "--ramp",
        "0.5",
        "--warmup",
        "1s",
        "--server-pid",
        &pid,
        "--record",
        "--admin-key",
        &admin_key,
        "--json",
        &json_arg,
        "--no-progress",
    ])
    .expect("valid flags");

    let report = tokio::time::timeout(Duration::from_secs(120), weir_load::run(&args))
        .await
        .expect("the run ends by itself")
        .expect("the run succeeds");
    print!("{}", report.summary());

    let text = std::fs::read_to_string(&json_path).expect("the JSON report was written");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    for field in [
        "scenario",
        "duration_s",
        "rooms",
        "publishers",
        "subscribers",
        "packets_sent",
        "packets_expected",
        "packets_received",
        "loss_ratio",
        "forwarded_pps",
        "server_cpu_seconds",
        "forwarded_packets_per_cpu_second",
        "client_cpu_seconds",
        "recording",
        "warmup_s",
    ] {
        assert!(json.get(field).is_some(), "{field} in {text}");
    }
    for (group, keys) in [
        ("latency_ms", &["p50", "p95", "p99", "max"][..]),
        ("join_ms", &["p50", "p99"][..]),
        ("server_rss_bytes", &["start", "peak", "end"][..]),
        ("server_anon_rss_bytes", &["start", "peak", "end"][..]),
        (
            "server_memory_per_video_track",
            &["video_tracks", "rss_bytes", "anon_bytes"][..],
        ),
    ] {
        for key in keys {
            assert!(json[group].get(*key).is_some(), "{group}.{key} in {text}");
        }
    }

    assert_eq!(
        (report.rooms, report.publishers, report.subscribers),
        (1, 1, 2)
    );
    // The warm-up call's two clients are not the run's.
    assert_eq!(report.clients_joined, 3);
    assert_eq!(report.warmup_s, 1.0);
    assert_eq!(report.join_failures, 0, "{:?}", report.errors);
    assert!(
        (2.9..4.0).contains(&report.duration_s),
        "{}",
        report.duration_s
    );
    // 3 s of 30 fps video and 50 pkt/s audio.
    assert!(report.packets_sent > 300, "sent {}", report.packets_sent);
    assert_eq!(report.packets_expected, 2 * report.packets_sent);
    assert!(report.packets_received > 0);
    assert!(
        report.packets_received <= report.packets_expected,
        "duplicates are not counted"
    );
    assert!(report.loss_ratio < 0.05, "loss {}", report.loss_ratio);
    assert!(report.forwarded_pps > 0.0);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
    assert!(report.latency_ms.p99 < 1000.0, "{:?}", report.latency_ms);
    assert!(report.join_ms.p50 > 0.0);
    assert!(report.server_cpu_seconds.is_some_and(|cpu| cpu > 0.0));
    let rss = report.server_rss_bytes.expect("RSS was sampled");
    assert!(rss.start > 0 && rss.peak >= rss.start && rss.peak >= rss.end);
    let anon = report
        .server_anon_rss_bytes
        .expect("anonymous RSS was sampled");
    assert!(anon.start > 0 && anon.start < rss.start && anon.peak >= anon.end);
    let per_track = report
        .server_memory_per_video_track
        .expect("memory per track");
    assert_eq!(per_track.video_tracks, 2);
    assert_eq!(per_track.rss_bytes, (rss.peak - rss.start) / 2);

    // Only the run's room was recorded, not the warm-up call's.
    assert!(report.recording);
    assert_eq!(report.recordings.len(), 1);
    let recording = &report.recordings[0];
    assert!(!recording.files.is_empty(), "{recording:?}");
    for file in &recording.files {
        assert_eq!(file.status, "complete", "{file:?}");
        let stored = data_dir.path().join("recordings").join(&file.object);
        assert!(stored.is_file(), "{} is stored", stored.display());
    }

    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .ok();
}
