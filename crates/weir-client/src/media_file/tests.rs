//! The file sources (hand-made streams, and files made by ffmpeg when it is
//! installed), and a [`FilePlayer`] between two of the client's own peers:
//! byte-identical H.264 frames, timestamps from the media position, and
//! sender reports that agree across audio and video.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use webrtc::media_stream::track_remote::TrackRemoteEvent;
use weir_protocol::TrackSource;

use super::*;
use crate::keyframe_interceptor::is_keyframe_request;
use crate::local_track::NewTrack;
use crate::peer::Peer;

const WAIT: Duration = Duration::from_secs(10);

fn annex_b(nals: &[(&[u8], bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (nal, long_start_code) in nals {
        if *long_start_code {
            out.push(0);
        }
        out.extend_from_slice(&[0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

fn with_start_codes(nals: &[&[u8]]) -> Vec<u8> {
    nals.iter()
        .flat_map(|nal| START_CODE.iter().chain(nal.iter()).copied())
        .collect()
}

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x8d, 0x40];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

#[test]
fn nal_units_are_grouped_into_access_units() {
    let idr_first_slice: &[u8] = &[0x65, 0x88, 0x84, 0x21];
    // first_mb_in_slice != 0: the first bit after the header is 0.
    let idr_second_slice: &[u8] = &[0x65, 0x20, 0x84, 0x21];
    let p1: &[u8] = &[0x41, 0x9a, 0x02, 0x03];
    let p2: &[u8] = &[0x41, 0x9b, 0x04, 0x05];
    let stream = annex_b(&[
        (&[0x09, 0xf0], true),
        (SPS, true),
        (PPS, true),
        (&[0x06, 0x05, 0x02, 0x11, 0x22, 0x80], true),
        (idr_first_slice, true),
        (idr_second_slice, false),
        (p1, false),
        (&[0x09, 0xf0], true),
        (p2, true),
    ]);
    let source = H264FileSource::from_reader(&stream[..], 30).expect("parses");
    let frames = source.frames();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(
        frames[0].data,
        with_start_codes(&[SPS, PPS, idr_first_slice, idr_second_slice])
    );
    assert!(frames[0].keyframe);
    assert_eq!(frames[1].data, with_start_codes(&[p1]));
    assert_eq!(frames[2].data, with_start_codes(&[p2]));
    assert!(!frames[1].keyframe && !frames[2].keyframe);
    assert_eq!(source.duration(), Duration::from_millis(100));
    assert_eq!(source.frame_ticks(30), 90_000);
    assert_eq!(source.frame_time_us(1), 33_333);

    assert!(H264FileSource::from_reader(&stream[..], 0).is_err());
    assert!(H264FileSource::from_reader(&b"not h264 at all"[..], 30).is_err());
    assert!(H264FileSource::from_reader(&annex_b(&[(SPS, true)])[..], 30).is_err());
}

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok();
    if !ok {
        eprintln!("skipped: ffmpeg is not installed (scripts/test.sh installs it)");
    }
    ok
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn files_made_by_ffmpeg_are_read() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let h264 = dir.path().join("v.h264");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
        "-bf",
        "0",
        "-g",
        "10",
        "-sc_threshold",
        "0",
        "-x264-params",
        "repeat-headers=1",
        "-f",
        "h264",
        path_str(&h264),
    ]);
    let video = H264FileSource::open(&h264, 30).expect("the H.264 file");
    let keyframes: Vec<usize> = video
        .frames()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(video.frames().len(), 30);
    assert_eq!(keyframes, [0, 10, 20]);
    assert_eq!(video.duration(), Duration::from_secs(1));

    let ogg = dir.path().join("a.ogg");
    let opus_args = |page_duration: &'static str, out: &Path| {
        let out = path_str(out).to_string();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=1",
            "-c:a",
            "libopus",
            "-frame_duration",
            "20",
            "-page_duration",
            page_duration,
            &out,
        ]);
    };
    opus_args("20000", &ogg);
    let audio = OggOpusSource::open(&ogg).expect("the Ogg file");
    let packets = audio.packets();
    assert!(packets.len() >= 50, "{} packets", packets.len());
    for (i, packet) in packets.iter().enumerate() {
        assert_eq!(packet.position, 960 * i as u64, "packet {i}");
        assert!(!packet.data.is_empty());
    }
    assert_eq!(audio.pre_skip(), 312, "libopus's pre-skip");
    assert_eq!(audio.packet_time_us(&packets[0]), -6_500);
    assert_eq!(audio.duration(), Duration::from_secs(1));

    // ffmpeg's default pages hold a second of packets each.
    let paged = dir.path().join("paged.ogg");
    opus_args("1000000", &paged);
    let refused = OggOpusSource::open(&paged).expect_err("several packets per page");
    assert!(refused.to_string().contains("page_duration"), "{refused}");
}

/// 3 s of H.264-shaped frames at 30 fps (an IDR with SPS/PPS every 30
/// frames; frames of 3000 bytes, so FU-A) and 150 Opus silence packets
/// with libopus's pre-skip.
fn synthetic_sources() -> (H264FileSource, OggOpusSource) {
    let mut stream = Vec::new();
    for frame in 0..90u32 {
        let mut slice = vec![if frame % 30 == 0 { 0x65 } else { 0x41 }, 0x88];
        slice.extend((0..3000u32).map(|i| ((i + frame) % 200 + 2) as u8));
        if frame % 30 == 0 {
            stream.extend(annex_b(&[(SPS, true), (PPS, true)]));
        }
        stream.extend(annex_b(&[(&slice, true)]));
    }
    let video = H264FileSource::from_reader(&stream[..], 30).expect("frames");
    assert_eq!(video.frames().len(), 90);
    let packets: Vec<OpusPacket> = (0..150u64)
        .map(|i| OpusPacket {
            data: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
            position: 960 * i,
            samples: 960,
        })
        .collect();
    let audio = OggOpusSource {
        packets: packets.into(),
        pre_skip: 312,
        end: 150 * 960,
    };
    (video, audio)
}

#[derive(Default)]
struct Received {
    packets: Vec<rtc::rtp::Packet>,
    reports: Vec<(u64, u32)>,
}

fn is_sender_report_or_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    packet.as_any().is::<SenderReport>() || is_keyframe_request(packet)
}

/// NTP 32.32 → µs.
fn ntp_us(ntp: u64) -> i128 {
    i128::from(ntp >> 32) * 1_000_000 + ((i128::from(ntp & 0xffff_ffff) * 1_000_000) >> 32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn played_files_keep_their_alignment_in_rtp_and_sender_reports() {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let sender = Peer::build(localhost, None).await.expect("sender");
    let mut receiver =
        Peer::build_delivering(localhost, None, is_sender_report_or_keyframe_request)
            .await
            .expect("receiver");
    let mut added = Vec::new();
    for codec in [Codec::H264, Codec::Opus] {
        let track = NewTrack::new(codec, TrackSource::Camera);
        let transceiver = sender.add_sendonly(&track).await.expect("transceiver");
        added.push((track, transceiver));
    }
    let offer = sender.offer().await.expect("offer");
    assert!(
        offer.contains("H264/90000") && offer.contains("packetization-mode=1"),
        "{offer}"
    );
    assert!(
        !offer.contains("VP8/90000"),
        "an H.264 track offers only H.264:\n{offer}"
    );
    let answer = receiver.answer(&offer).await.expect("answer");
    sender.accept_answer(&answer).await.expect("accept");
    let mut tracks = Vec::new();
    for (track, transceiver) in added {
        let mid = transceiver.mid().await.expect("mid").expect("some mid");
        tracks.push(track.into_local(mid, None));
    }
    sender.wait_connected(WAIT).await.expect("sender connected");
    receiver
        .wait_connected(WAIT)
        .await
        .expect("receiver connected");

    let (_, empty) = tokio::sync::mpsc::unbounded_channel();
    let mut remote_tracks = std::mem::replace(&mut receiver.remote_tracks, empty);
    let received: Arc<std::sync::Mutex<HashMap<u32, Received>>> = Arc::default();
    let sink = Arc::clone(&received);
    tokio::spawn(async move {
        while let Some(track) = remote_tracks.recv().await {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                while let Some(event) = track.poll().await {
                    let mut received = sink.lock().expect("not poisoned");
                    match event {
                        TrackRemoteEvent::OnRtpPacket(packet) => received
                            .entry(packet.header.ssrc)
                            .or_default()
                            .packets
                            .push(packet),
                        TrackRemoteEvent::OnRtcpPacket(packets) => {
                            for packet in packets {
                                if let Some(sr) = packet.as_any().downcast_ref::<SenderReport>() {
                                    received
                                        .entry(sr.ssrc)
                                        .or_default()
                                        .reports
                                        .push((sr.ntp_time, sr.rtp_time));
                                }
                            }
                        }
                        TrackRemoteEvent::OnEnded => break,
                        _ => {}
                    }
                }
            });
        }
    });

    let (video_source, audio_source) = synthetic_sources();
    let (video, audio) = (tracks[0].clone(), tracks[1].clone());
    let stats = FilePlayer::new()
        .video(video.clone(), video_source.clone())
        .audio(audio.clone(), audio_source.clone())
        .play()
        .await
        .expect("played");
    assert_eq!(stats.video_frames, 90);
    assert_eq!(stats.audio_packets, 150);
    // Let the last packets and a final report arrive.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let received = std::mem::take(&mut *received.lock().expect("not poisoned"));
    println!("sent {stats:?}");

    // Video: every frame byte-identical, 3000 ticks apart from the base.
    let got = received.get(&video.ssrc()).expect("video arrived");
    let mut depacketizer = H264Packet::default();
    let mut frames: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut current = Vec::new();
    for packet in &got.packets {
        let nal = depacketizer
            .depacketize(&packet.payload)
            .expect("a valid H.264 payload");
        current.extend_from_slice(&nal);
        if packet.header.marker {
            frames.push((packet.header.timestamp, std::mem::take(&mut current)));
        }
    }
    assert_eq!(frames.len(), 90, "every frame arrived");
    for (i, (timestamp, data)) in frames.iter().enumerate() {
        let expected = stats.video_rtp_base.wrapping_add(3000 * i as u32);
        assert_eq!(*timestamp, expected, "frame {i}'s timestamp");
        assert_eq!(
            data[..],
            video_source.frames()[i].data[..],
            "frame {i} is byte-identical"
        );
    }
    // Audio: the packet position minus the pre-skip.
    let got_audio = received.get(&audio.ssrc()).expect("audio arrived");
    assert_eq!(got_audio.packets.len(), 150);
    for (i, packet) in got_audio.packets.iter().enumerate() {
        let expected = stats
            .audio_rtp_base
            .wrapping_add(960 * i as u32)
            .wrapping_sub(312);
        assert_eq!(packet.header.timestamp, expected, "audio packet {i}");
        assert_eq!(packet.header.marker, i == 0);
    }

    // Sender reports: NTP minus media time is the same on both tracks (the
    // shared clock's origin), within the pacing jitter.
    let mut offsets = Vec::new();
    for (ssrc, base, rate) in [
        (video.ssrc(), stats.video_rtp_base, 90_000),
        (audio.ssrc(), stats.audio_rtp_base, 48_000),
    ] {
        let reports = &received.get(&ssrc).expect("reports").reports;
        assert!(reports.len() >= 2, "{ssrc}: reports {reports:?}");
        for (ntp, rtp) in reports {
            let media_us = i128::from(rtp.wrapping_sub(base) as i32) * 1_000_000 / rate;
            offsets.push(ntp_us(*ntp) - media_us);
        }
    }
    let spread = offsets.iter().max().expect("offsets") - offsets.iter().min().expect("offsets");
    println!(
        "sender reports: NTP - media time spread {spread} µs over {} reports (max lateness {:?})",
        offsets.len(),
        stats.max_lateness
    );
    assert!(
        spread <= stats.max_lateness.as_micros() as i128 + 2_000,
        "sender reports disagree by {spread} µs"
    );

    sender.pc.close().await.expect("close");
    receiver.pc.close().await.expect("close");
}

#[tokio::test]
async fn a_file_needs_a_track_of_its_codec() {
    let (video_source, _) = synthetic_sources();
    let vp8 = NewTrack::new(Codec::Vp8, TrackSource::Camera).into_local("0".to_string(), None);
    let refused = FilePlayer::new()
        .video(vp8, video_source)
        .play()
        .await
        .expect_err("a VP8 track");
    assert!(refused.to_string().contains("H264"), "{refused}");
}
