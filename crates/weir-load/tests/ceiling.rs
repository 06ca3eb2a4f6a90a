//! The forwarding ceiling on loopback: a short 1 -> 5 run forwards every
//! packet to every subscriber, video frames as GSO messages (or, with GSO
//! off, a datagram per message, many per `sendmmsg`), and answers the
//! subscribers' STUN checks.
//!
//! Run in a loopback-only network namespace (`scripts/test.sh` does).

use std::time::Duration;

use weir_load::ceiling::{self, CeilingConfig, CeilingReport, Segmentation, Wakeups};
use weir_load::scenario::VideoProfile;

#[test]
fn a_short_run_forwards_every_packet_to_every_subscriber() {
    check(Wakeups::Poll);
}

#[test]
fn the_same_on_tokio() {
    check(Wakeups::Tokio);
}

fn check(wakeups: Wakeups) {
    let report = run(wakeups, Segmentation::Gso);
    // A frame's packets to one subscriber leave as one GSO message.
    assert!(
        report.messages * 2 < report.forwarded,
        "GSO not used: {report:?}"
    );
    assert!(report.send_calls <= report.media_passes * 3, "{report:?}");
}

#[test]
fn without_gso_every_datagram_is_a_message_many_per_call() {
    let report = run(Wakeups::Poll, Segmentation::OnePerMessage);
    assert!(!report.gso);
    assert_eq!(report.messages, report.forwarded, "{report:?}");
    // Still batched: a call carries the whole fan-out of a pass, up to
    // the per-call limit.
    assert!(report.send_calls * 4 < report.messages, "{report:?}");
    assert!(report.summary().contains("a datagram per message"));
}

/// A 2 s 1 -> 5 run; checks what holds however the packets are sent.
fn run(wakeups: Wakeups, segmentation: Segmentation) -> CeilingReport {
    let config = CeilingConfig {
        wakeups,
        segmentation,
        subscribers: 5,
        duration: Duration::from_secs(2),
        video_kbps: 1500,
        fps: 30,
        keyframe_interval: 60,
        feedback: true,
        forwarder_cpu: None,
        harness_cpu: None,
    };
    let report: CeilingReport = ceiling::run(&config).expect("the run completes");

    // Every frame due before 2 s (33 333 us apart; a keyframe every 60th,
    // the first included) and every audio packet (20 ms apart, from 6.7 ms).
    let video = VideoProfile::from_bitrate(1500, 30, 60);
    let frame_interval_us = 1_000_000 / 30;
    let frames = (0..).take_while(|k| k * frame_interval_us < 2_000_000);
    let video_packets: u64 = frames
        .map(|k| {
            if k % 60 == 0 {
                u64::from(video.keyframe_packets)
            } else {
                u64::from(video.delta_packets)
            }
        })
        .sum();
    let audio_packets = (0..)
        .take_while(|k| 20_000 / 3 + k * 20_000 < 2_000_000)
        .count() as u64;
    let sent = report.publisher_packets;
    assert_eq!(sent, video_packets + audio_packets, "{report:?}");
    assert_eq!(report.packets_expected, sent * 5);
    assert_eq!(report.forwarded, report.packets_expected, "{report:?}");
    assert!(
        report.received_by_subscribers >= report.packets_expected * 99 / 100,
        "{report:?}"
    );
    // Each subscriber sent feedback (3 datagrams a second, phased within
    // the first second) and a STUN check (half a second after).
    assert!(report.feedback_received >= 5 * 4, "{report:?}");
    assert!(report.forwarder_cpu_seconds > 0.0);
    assert!(report.forwarded_packets_per_cpu_second > 0.0);
    assert!(report.summary().contains("forwarded pkt per cpu-second"));
    report
}
