//! Recording real publishers (our webrtc-rs client) through the server's
//! recorder, checked with ffmpeg/ffprobe rather than our own parser:
//!
//! - an H.264 + Opus file publisher whose media has a known alignment (a
//!   white frame and a beep at the same instants) is recorded by a job as
//!   MP4 and HLS; the files decode cleanly, start on a keyframe, have
//!   increasing timestamps, the job's duration and the fixture's size, and
//!   keep audio and video aligned within 20 ms;
//! - `auto_record` records at most 25 publishers of a room: the first 25 by
//!   join time.
//!
//! Media peers: run in a loopback-only namespace (scripts/test.sh,
//! `unshare -n`). The tests take turns (one at a time), so that the
//! alignment test's real-time pacing has the machine to itself.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::fixtures::{
    av_offsets, decodes_cleanly, flash_beep_fixture, flashes_and_beeps, have_ffmpeg, probe,
};
use support::{TestServer, ALL_GRANTS, WAIT};
use weir_client::media_file::{FilePlayer, H264FileSource, OggOpusSource};
use weir_client::synthetic::{OpusConfig, OpusSource, Vp8Config, Vp8Source};
use weir_client::weir_protocol::{TrackKind, TrackSource};
use weir_client::{Client, Codec, JoinOptions, LocalTrack};

/// One test at a time (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How far apart a flash and its beep may be in a recording.
const MAX_AV_OFFSET: f64 = 0.020;

/// Joins without subscribing to anything and without delivering received
/// media (these publishers only send).
async fn join_publisher(server: &TestServer, room: &str, user: &str) -> Client {
    let options = JoinOptions {
        auto_subscribe: false,
        media_buffer: 0,
        ..JoinOptions::default()
    };
    Client::connect(
        &server.ws_url(),
        &server.token(room, user, &ALL_GRANTS),
        options,
    )
    .await
    .unwrap_or_else(|e| panic!("{user} joins {room}: {e}"))
}

/// Sets the application's recording rule.
async fn put_rule(server: &TestServer, rule: Value) {
    let path = format!("/apps/{}/recording-rule", server.app.app_id);
    let (status, body) = server.api(Method::PUT, &path, Some(rule)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn room_view(server: &TestServer, room: &str) -> Value {
    let path = format!("/apps/{}/rooms/{room}", server.app.app_id);
    let (status, body) = server.api(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The users a room's recording lists.
fn recorded_user_ids(room: &Value) -> Vec<String> {
    room["recording"]["user_ids"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the job has at least `files` files and all are complete.
async fn wait_for_complete_files(server: &TestServer, job_id: &str, files: usize) -> Value {
    let path = format!("/apps/{}/recordings/{job_id}", server.app.app_id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, job) = server.api(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        let listed = job["files"].as_array().cloned().unwrap_or_default();
        if listed.len() >= files && listed.iter().all(|f| f["status"] == "complete") {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "the job's files were not all complete in time: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_job(server: &TestServer, job_id: &str) {
    let path = format!("/apps/{}/recordings/{job_id}", server.app.app_id);
    let (status, body) = server.api(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "stopped", "{body}");
}

// ------------------------------------------------------------------------
// A/V alignment of a recorded H.264 + Opus file publisher.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_file_publisher_keeps_audio_and_video_aligned() {
    if !have_ffmpeg() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let media = tempfile::tempdir().expect("temp dir");
    let fixture = flash_beep_fixture(media.path(), 6);
    let video_source = H264FileSource::open(&fixture.h264, fixture.fps).expect("the H.264 file");
    let audio_source = OggOpusSource::open(&fixture.ogg).expect("the Ogg file");
    // The measurement itself, on the fixture: flash and beep coincide.
    let h264 = fixture.h264.to_str().expect("UTF-8");
    let ogg = fixture.ogg.to_str().expect("UTF-8");
    let fps = fixture.fps.to_string();
    let source = flashes_and_beeps(&["-r", &fps, "-i", h264, "-i", ogg]);
    println!(
        "fixture: flashes {:?}, beeps {:?}",
        source.flashes, source.beeps
    );
    assert_eq!(source.flashes, fixture.flashes, "the fixture's flashes");
    for (flash, beep, offset) in av_offsets(&source) {
        assert!(
            offset.abs() <= 0.002,
            "the fixture's beep at {beep} s is not at its flash {flash} s"
        );
    }

    let storage = tempfile::tempdir().expect("storage dir");
    let server = TestServer::start().await;
    let app = server.app.app_id.clone();
    put_rule(
        &server,
        json!({
            "formats": ["MP4", "HLS"],
            "hls": {"slice_seconds": 2},
            "storage": {"kind": "local", "path": storage.path().display().to_string()},
        }),
    )
    .await;

    let room = "av-sync";
    let client = join_publisher(&server, room, "anchor").await;
    let tracks = client
        .publish_codecs(&[
            (Codec::H264, TrackSource::Camera),
            (Codec::Opus, TrackSource::Microphone),
        ])
        .await
        .expect("publish H.264 and Opus");
    let (video, audio) = (tracks[0].clone(), tracks[1].clone());
    client.wait_connected(WAIT).await.expect("connected");

    let (status, job) = server
        .api(
            Method::POST,
            &format!("/apps/{app}/recordings"),
            Some(json!({"room_id": room})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let job_id = job["job_id"].as_str().expect("a job id").to_string();
    assert_eq!(
        recorded_user_ids(&room_view(&server, room).await),
        ["anchor"]
    );

    // The files from their first frame, in real time.
    let stats = FilePlayer::new()
        .video(video.clone(), video_source)
        .audio(audio.clone(), audio_source)
        .play()
        .await
        .expect("the files are sent");
    println!("sent: {stats:?}");
    // The server saw H.264 (a track's codec is known from its media).
    let described = room_view(&server, room).await;
    let codecs: Vec<&str> = described["participants"][0]["tracks"]
        .as_array()
        .map(|tracks| tracks.iter().filter_map(|t| t["codec"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        codecs.iter().any(|c| c.eq_ignore_ascii_case("video/H264")),
        "the server received H.264: {described}"
    );
    // The last packets reach the recorder, then the job stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_job(&server, &job_id).await;
    let job = wait_for_complete_files(&server, &job_id, 2).await;
    let files = job["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(files.len(), 2, "one MP4 and one HLS file: {job}");

    for file in &files {
        let format = file["record_format"].as_str().unwrap_or_default();
        let object = file["object"].as_str().expect("an object");
        let path = storage.path().join(object);
        assert!(path.is_file(), "{} is stored", path.display());
        check_recording(format, &path, file, &fixture);
    }
    client.leave().await.expect("leave");
    server.shutdown().await;
    println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
}

/// The ffmpeg/ffprobe checks of one recorded file.
fn check_recording(
    format: &str,
    path: &Path,
    file: &Value,
    fixture: &support::fixtures::FlashBeepFixture,
) {
    if let Err(e) = decodes_cleanly(path) {
        panic!("{format} {} does not decode cleanly: {e}", path.display());
    }
    let probe = probe(path);
    assert_eq!(probe.video_codec, "h264", "{format}");
    assert_eq!(probe.audio_codec.as_deref(), Some("opus"), "{format}");
    assert_eq!(
        (probe.width, probe.height),
        (fixture.width, fixture.height),
        "{format}: the fixture's size"
    );
    assert_eq!(
        (file["width"].as_u64(), file["height"].as_u64()),
        (
            Some(u64::from(fixture.width)),
            Some(u64::from(fixture.height))
        ),
        "{format}: the size the job reports"
    );
    let packets = &probe.video_packets;
    assert!(
        packets.first().is_some_and(|p| p.keyframe),
        "{format}: the first video packet is a keyframe"
    );
    for (i, pair) in packets.windows(2).enumerate() {
        assert!(
            pair[1].dts > pair[0].dts && pair[1].pts > pair[0].pts,
            "{format}: video timestamps increase at packet {}: {:?}",
            i + 1,
            pair
        );
    }
    let reported = file["duration_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0;
    assert!(
        (probe.duration - reported).abs() <= 0.1,
        "{format}: ffprobe says {} s, the job {reported} s",
        probe.duration
    );
    assert!(
        probe.duration >= f64::from(fixture.seconds) - 0.5,
        "{format}: the whole file was recorded ({} s)",
        probe.duration
    );

    let found = flashes_and_beeps(&["-i", path.to_str().expect("UTF-8")]);
    let offsets = av_offsets(&found);
    let size = file["size_bytes"].as_u64().unwrap_or_default();
    println!(
        "{format}: {:.3} s, {}x{}, {} video packets, {size} bytes ({:.2} Mbit/s); \
         flashes {:?}, beeps {:?}",
        probe.duration,
        probe.width,
        probe.height,
        packets.len(),
        size as f64 * 8.0 / probe.duration / 1e6,
        found.flashes,
        found.beeps
    );
    assert_eq!(
        found.flashes.len(),
        fixture.flashes.len(),
        "{format}: every flash was recorded: {found:?}"
    );
    for (flash, beep, offset) in offsets {
        println!(
            "{format}: flash at {flash:.4} s, beep at {beep:.4} s: A/V offset {:+.1} ms",
            offset * 1000.0
        );
        assert!(
            offset.abs() <= MAX_AV_OFFSET,
            "{format}: the beep at {beep} s is {:.1} ms from its flash at {flash} s",
            offset * 1000.0
        );
    }
    let spacing = found.flashes[1] - found.flashes[0];
    assert!(
        (spacing - (fixture.flashes[1] - fixture.flashes[0])).abs() < 0.001,
        "{format}: the flashes are {spacing} s apart"
    );
}

// ------------------------------------------------------------------------
// Synthetic publishers.

/// A cheap synthetic publisher: VP8 at 10 fps (one small packet per delta
/// frame, a keyframe a second, the first frame one) from `video_after` on,
/// and Opus at 50 small packets a second, until `stop`.
fn spawn_cheap_sender(
    video: LocalTrack,
    audio: LocalTrack,
    video_after: Duration,
    stop: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let mut vp8 = Vp8Source::new(Vp8Config {
            fps: 10,
            packet_size: 300,
            keyframe_packets: 2,
            delta_packets: 1,
            keyframe_interval: 10,
            ..Vp8Config::default()
        });
        let mut opus = OpusSource::new(OpusConfig {
            packet_size: 40,
            ptime_ms: 20,
        });
        let mut video_tick = tokio::time::interval_at(
            tokio::time::Instant::now() + video_after,
            vp8.frame_interval(),
        );
        let mut audio_tick = tokio::time::interval(opus.packet_interval());
        let mut frame = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let sent = tokio::select! {
                _ = video_tick.tick() => video.send_vp8_frame(&mut vp8, &mut frame).await,
                _ = audio_tick.tick() => audio.send_opus_packet(&mut opus).await.map(|_| ()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
}

// ------------------------------------------------------------------------
// A publisher whose video starts after its audio.

/// A publisher's audio reaches the recorder first (here its video starts
/// 2.5 s later; in a browser the encoder starts later, and a job started
/// mid-call may tap an audio packet first). The server tells the recorder
/// of the video track when it taps it, so the audio waits for the first
/// keyframe and the one file has both tracks from the first audio on —
/// not an audio-only file (or, since a keyframe cuts an audio-only file,
/// an audio-only file of 2.5 s and then one with video). The video's first
/// picture is repeated from the file's start, so the live video is at its
/// time and no sample is longer than a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_that_starts_after_the_audio_is_in_the_publishers_one_file() {
    if !have_ffmpeg() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let storage = tempfile::tempdir().expect("storage dir");
    let server = TestServer::start().await;
    let app = server.app.app_id.clone();
    put_rule(
        &server,
        json!({
            "formats": ["MP4"],
            "storage": {"kind": "local", "path": storage.path().display().to_string()},
        }),
    )
    .await;
    let room = "late-video";
    let client = join_publisher(&server, room, "anchor").await;
    let tracks = client
        .publish_tracks(&[
            (TrackKind::Video, TrackSource::Camera),
            (TrackKind::Audio, TrackSource::Microphone),
        ])
        .await
        .expect("publish");
    client.wait_connected(WAIT).await.expect("connected");
    let (status, job) = server
        .api(
            Method::POST,
            &format!("/apps/{app}/recordings"),
            Some(json!({"room_id": room})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let job_id = job["job_id"].as_str().expect("a job id").to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let sending = Instant::now();
    spawn_cheap_sender(
        tracks[0].clone(),
        tracks[1].clone(),
        Duration::from_millis(2_500),
        Arc::clone(&stop),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let sent_for = sending.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_job(&server, &job_id).await;
    let job = wait_for_complete_files(&server, &job_id, 1).await;
    let files = job["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(files.len(), 1, "one file: {job}");
    let path = storage
        .path()
        .join(files[0]["object"].as_str().expect("an object"));
    let probed = probe(&path);
    println!(
        "sent for {sent_for:.2} s; file: {} s, {} {}x{}, audio {:?}",
        probed.duration, probed.video_codec, probed.width, probed.height, probed.audio_codec
    );
    assert_eq!(probed.video_codec, "vp8");
    assert_eq!(probed.audio_codec.as_deref(), Some("opus"));
    // From the first audio packet (the 2.5 s before the video included),
    // less what the sender report timing moves.
    assert!(
        probed.duration > sent_for - 0.7,
        "the file lasts {} s of {sent_for:.2} s sent",
        probed.duration
    );
    // The video track starts with the file, its first picture frozen
    // (repeated once a second) until the publisher's video starts, 2.5 s
    // after its audio: 10 frames a second from there, in step with the
    // audio. (The synthetic VP8 is no decodable picture: no decode check.)
    let packets = &probed.video_packets;
    let first = packets.first().expect("video packets");
    assert!(first.keyframe && first.pts.abs() < 0.05, "{packets:?}");
    let live_from = packets
        .windows(2)
        .find(|pair| (pair[1].pts - pair[0].pts - 0.1).abs() < 0.02)
        .map(|pair| pair[0].pts)
        .unwrap_or_else(|| panic!("no 10 fps run: {packets:?}"));
    assert!(
        (live_from - 2.5).abs() < 0.3,
        "the live video starts {live_from} s into the file, 2.5 s expected: {packets:?}"
    );
    // No sample longer than the 1 s of a repeated picture (not one 2.5 s
    // first sample).
    assert!(
        packets
            .windows(2)
            .all(|pair| pair[1].pts - pair[0].pts <= 1.01),
        "{packets:?}"
    );
    client.leave().await.expect("leave");
    server.shutdown().await;
}

// ------------------------------------------------------------------------
// auto_record: at most 25 publishers.

/// The seed rule (TRTC): "Single stream recording can record a maximum of
/// 25 anchors in a room. If more than 25 anchors are recorded, the first 25
/// anchors will be recorded according to the check-in time." Here every
/// publisher publishes right after joining, so join order is publish order
/// (the server takes publishers on when their first track is published).
///
/// When a recorded publisher leaves, the seed says nothing about giving its
/// place to a later one, and the server does not: the 25 places belong to
/// the first 25 publishers for the job's life (a publisher who comes back
/// continues its recording). The 26th is not recorded then either; this
/// test pins that down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_record_records_the_first_25_publishers_by_join_time() {
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let storage = tempfile::tempdir().expect("storage dir");
    let server = TestServer::start().await;
    let app = server.app.app_id.clone();
    put_rule(
        &server,
        json!({
            "formats": ["MP4"],
            "mp4": {"gap_merge": {"mode": "new_file"}},
            "storage": {"kind": "local", "path": storage.path().display().to_string()},
            "auto_record": true,
        }),
    )
    .await;

    let room = "auto-25";
    let users: Vec<String> = (0..26).map(|i| format!("publisher-{i:02}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for user in &users {
        let client = join_publisher(&server, room, user).await;
        let tracks = client
            .publish_tracks(&[
                (TrackKind::Video, TrackSource::Camera),
                (TrackKind::Audio, TrackSource::Microphone),
            ])
            .await
            .unwrap_or_else(|e| panic!("{user} publishes: {e}"));
        spawn_cheap_sender(
            tracks[0].clone(),
            tracks[1].clone(),
            Duration::ZERO,
            Arc::clone(&stop),
        );
        clients.push(client);
    }
    println!(
        "26 publishers joined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let first_25: Vec<String> = users[..25].to_vec();
    let described = room_view(&server, room).await;
    assert_eq!(
        described["participants"].as_array().map(Vec::len),
        Some(26),
        "{described}"
    );
    assert_eq!(
        recorded_user_ids(&described),
        first_25,
        "the first 25 by join time, in that order"
    );
    let (status, jobs) = server
        .api(
            Method::GET,
            &format!("/apps/{app}/recordings?room_id={room}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{jobs}");
    let listed = jobs["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "one automatic job: {jobs}");
    assert_eq!(listed[0]["origin"], "auto");
    let job_id = listed[0]["job_id"].as_str().expect("a job id").to_string();

    // Every recorded publisher's file has started (media reached the
    // recorder); nothing of the 26th.
    let job_path = format!("/apps/{app}/recordings/{job_id}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, job) = server.api(Method::GET, &job_path, None).await;
        let recording: BTreeSet<String> = job["files"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f["user_id"].as_str().map(str::to_string))
            .collect();
        if recording.len() == 25 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "25 files did not start in time ({} did): {job}",
            recording.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A recorded publisher leaves: its place is not given to the 26th.
    clients.remove(0).leave().await.expect("leave");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let described = room_view(&server, room).await;
    assert_eq!(described["participants"].as_array().map(Vec::len), Some(25));
    let recorded = recorded_user_ids(&described);
    assert!(
        !recorded.contains(&users[25]),
        "the 26th publisher is not recorded after the first left: {recorded:?}"
    );
    assert_eq!(recorded, first_25, "the places stay with the first 25");

    stop_job(&server, &job_id).await;
    let job = wait_for_complete_files(&server, &job_id, 25).await;
    let files = job["files"].as_array().cloned().unwrap_or_default();
    let recorded_users: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f["user_id"].as_str().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = first_25.iter().cloned().collect();
    assert_eq!(
        recorded_users, expected,
        "the job's files cover exactly the first 25"
    );
    assert_eq!(files.len(), 25, "one file each: {job}");
    for file in &files {
        let object = file["object"].as_str().expect("an object");
        let size = std::fs::metadata(storage.path().join(object))
            .map(|m| m.len())
            .unwrap_or_default();
        assert!(size > 0, "{object} is stored");
        assert_eq!(file["size_bytes"].as_u64(), Some(size), "{object}");
    }

    stop.store(true, Ordering::Relaxed);
    futures_util::future::join_all(clients.into_iter().map(|c| c.leave())).await;
    server.shutdown().await;
    println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
}
