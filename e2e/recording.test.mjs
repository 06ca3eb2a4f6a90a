// The embedded recorder end to end: a Chromium page publishes its fake
// camera and microphone (H.264, then VP8); a recording job records it to
// local storage; the stored files are checked by ffmpeg and ffprobe, not by
// our own parser: they decode without a single error, the first video
// packet is a keyframe, timestamps increase, and duration and resolution
// match what the job reports. (Gap merging and cycles:
// recording_gaps.test.mjs.)
//
// Runs inside a loopback-only network namespace (scripts/test.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:http";
import { join } from "node:path";
import { launchChromium, startServer, waitFor } from "./helpers.mjs";
import {
  CALLBACK_KEY,
  callbackReceiver,
  decodesCleanly,
  hlsFiles,
  lintHls,
  playInChromium,
  probe,
  serveRecordings,
  storedBytes,
} from "./recording_helpers.mjs";

async function recordOnePublisher(codec, formats) {
  const server = await startServer();
  const browser = await launchChromium();
  const receiver = await callbackReceiver();
  const room = `rec-${codec.toLowerCase()}`;
  try {
    const app = server.appId;
    const hook = await server.api("PUT", `/apps/${app}/callbacks`, { url: receiver.url, key: CALLBACK_KEY });
    assert.equal(hook.status, 200, JSON.stringify(hook.body));
    const rule = await server.api("PUT", `/apps/${app}/recording-rule`, {
      formats,
      storage: { kind: "local" },
    });
    assert.equal(rule.status, 200, JSON.stringify(rule.body));

    const page = await (await browser.newContext()).newPage();
    const token = server.token(room, "anchor");
    await page.goto(`${server.base}/?room=${room}&token=${encodeURIComponent(token)}&codec=${codec}&autojoin=1`);
    await waitFor(
      async () => {
        const r = await server.api("GET", `/apps/${app}/rooms/${room}`);
        const tracks = r.status === 200 ? r.body.participants.flatMap((p) => p.tracks) : [];
        return tracks.some((t) => t.kind === "video" && t.codec) && tracks.some((t) => t.kind === "audio");
      },
      15_000,
      "the page to publish audio and video",
    );

    const started = await server.api("POST", `/apps/${app}/recordings`, { room_id: room });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const jobId = started.body.job_id;
    const described = await server.api("GET", `/apps/${app}/rooms/${room}`);
    assert.equal(described.body.recording.job_id, jobId, "the room shows its recording");
    assert.deepEqual(described.body.recording.user_ids, ["anchor"]);
    // A second job for the same room is refused.
    const second = await server.api("POST", `/apps/${app}/recordings`, { room_id: room });
    assert.equal(second.status, 409);
    assert.equal(second.body.error.code, "RECORDING_ACTIVE");

    await new Promise((r) => setTimeout(r, 6_000));
    const stopped = await server.api("DELETE", `/apps/${app}/recordings/${jobId}`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.status, "stopped");

    const job = await waitFor(
      async () => {
        const r = await server.api("GET", `/apps/${app}/recordings/${jobId}`);
        const files = r.body.files;
        const ok = files.length >= formats.length && files.every((f) => f.status === "complete");
        return { ok, ...r.body };
      },
      20_000,
      "the files to be finalized and stored",
    );
    for (const format of formats) {
      assert.ok(job.files.some((f) => f.record_format === format), `a ${format} file: ${JSON.stringify(job.files)}`);
    }
    for (const file of job.files) {
      const path = join(server.dataDir, "recordings", file.object);
      assert.ok(existsSync(path), `${path} is stored`);
      const decoded = decodesCleanly(path);
      assert.ok(decoded.ok, `${file.object} decodes cleanly: ${decoded.stderr}`);
      const { info, packets } = probe(path);
      const video = info.streams.find((s) => s.codec_type === "video");
      const audio = info.streams.find((s) => s.codec_type === "audio");
      assert.ok(video && audio, `${file.object} has audio and video: ${JSON.stringify(info.streams.map((s) => s.codec_name))}`);
      assert.equal(video.codec_name, codec === "H264" ? "h264" : "vp8");
      assert.equal(audio.codec_name, "opus");
      assert.equal(video.width, file.width, "width as reported");
      assert.equal(video.height, file.height, "height as reported");
      assert.ok(packets.length > 0 && packets[0].flags.startsWith("K"), `the first video packet is a keyframe`);
      for (let i = 1; i < packets.length; i++) {
        assert.ok(Number(packets[i].dts_time) > Number(packets[i - 1].dts_time), "video timestamps increase");
      }
      const duration = Number(info.format.duration);
      assert.ok(
        Math.abs(duration - file.duration_ms / 1000) <= 0.1,
        `${file.object}: ffprobe says ${duration} s, the job ${file.duration_ms} ms`,
      );
      assert.ok(duration >= 4, `about 6 s were recorded (${duration} s)`);
      console.log(`${codec} ${file.record_format}: ${file.object} ${duration.toFixed(2)} s ${video.width}x${video.height} ${file.size_bytes} bytes`);
    }

    // Chromium plays what it can play (H.264 + Opus; not VP8 in MP4): a
    // <video> plays the MP4 and, through hls.js, the HLS recording; an
    // independent parser lints the playlists.
    if (codec === "H264") {
      const files = await serveRecordings(join(server.dataDir, "recordings"));
      try {
        for (const file of job.files) {
          const played = await playInChromium(browser, files.base, `${files.base}/${file.object}`);
          assert.ok(played.currentTime >= 1.5, `Chromium played the ${file.record_format}: ${JSON.stringify(played)}`);
          assert.deepEqual(played.fatal || [], [], "no fatal hls.js error");
          assert.ok(
            Math.abs(played.duration - file.duration_ms / 1000) <= 0.2,
            `<video> duration ${played.duration} for ${file.record_format}`,
          );
        }
      } finally {
        files.close();
      }
      const hls = job.files.find((f) => f.record_format === "HLS");
      const lint = lintHls(join(server.dataDir, "recordings", hls.object));
      assert.match(lint.codecs, /^avc1\.[0-9a-f]{6},opus$/);
      assert.deepEqual(lint.resolution, [hls.width, hls.height]);
      assert.equal(lint.version, 7);
      assert.ok(lint.endlist && lint.independent && lint.map && lint.program_date_time, JSON.stringify(lint));
      assert.ok(lint.max_rounded <= lint.target, `round(EXTINF) <= TARGETDURATION: ${JSON.stringify(lint)}`);
      assert.ok(Math.abs(lint.total - hls.duration_ms / 1000) <= 0.1, `segments add up: ${JSON.stringify(lint)}`);
    }

    // The seed's recording callbacks, signed, with fields that match the
    // stored objects.
    const complete = await waitFor(
      () => {
        const done = receiver.bodies.filter((b) => b.event_type === "RECORD_FILE_COMPLETE");
        return { ok: done.length >= formats.length, done };
      },
      15_000,
      "RECORD_FILE_COMPLETE for every file",
    );
    assert.deepEqual(receiver.badSignatures, [], "every callback's signature verifies");
    const startsFor = (object) =>
      receiver.bodies.filter((b) => b.event_type === "RECORD_NEW_FILE_START" && b.obs_object === object);
    for (const body of complete.done) {
      const file = job.files.find((f) => body.obs_object.endsWith(f.object));
      assert.ok(file, `the callback names a file of the job: ${body.obs_object}`);
      assert.equal(startsFor(file.object).length, 1, "RECORD_NEW_FILE_START once, before");
      assert.equal(body.job_id, jobId);
      assert.equal(body.room_id, room);
      assert.equal(body.user_id, "anchor");
      assert.equal(body.stream_name, `${room}_anchor`);
      assert.equal(body.record_format, file.record_format);
      assert.equal(body.file_size, file.size_bytes);
      assert.equal(body.width, file.width);
      assert.equal(body.height, file.height);
      assert.equal(body.recovered, false);
      assert.match(body.start_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.match(body.end_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.ok(Math.abs(body.record_duration - file.duration_ms / 1000) < 0.01);
      assert.ok(body.download_url.startsWith("file://"), body.download_url);
      // file_size counts every stored byte (HLS: playlists + segments).
      const stored = join(server.dataDir, "recordings", file.object);
      assert.equal(storedBytes(stored), body.file_size, "file_size == bytes stored (HLS: playlists + segments)");
      if (file.record_format === "HLS") {
        // The multivariant playlist names the media playlist, which is
        // finished.
        const { multivariant, media } = hlsFiles(stored);
        assert.match(multivariant, /CODECS="avc1\.[0-9a-f]{6},opus",RESOLUTION=\d+x\d+/);
        assert.match(media, /#EXT-X-ENDLIST/);
        assert.match(media, /#EXT-X-MAP:URI=/);
      }
    }
  } catch (e) {
    console.log(server.logs().split("\n").slice(-80).join("\n"));
    throw e;
  } finally {
    receiver.close();
    await browser.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `the server exits 0 on SIGTERM (got ${JSON.stringify(status)})`);
  }
}

test("a recording job records an H.264 publisher as MP4 and HLS that ffmpeg decodes and Chromium plays", { timeout: 90_000 }, () =>
  recordOnePublisher("H264", ["MP4", "HLS"]),
);
test("a recording job records a VP8 publisher as MP4 that ffmpeg decodes", { timeout: 90_000 }, () =>
  recordOnePublisher("VP8", ["MP4"]),
);

test("auto_record records rooms opened after it was switched on, not those already open", { timeout: 90_000 }, async () => {
  const server = await startServer();
  const browser = await launchChromium();
  try {
    const app = server.appId;
    const publish = async (room, user) => {
      const page = await (await browser.newContext()).newPage();
      const token = server.token(room, user);
      await page.goto(`${server.base}/?room=${room}&token=${encodeURIComponent(token)}&codec=H264&autojoin=1`);
      await waitFor(
        async () => {
          const r = await server.api("GET", `/apps/${app}/rooms/${room}`);
          return r.status === 200 && r.body.participants.some((p) => p.tracks.some((t) => t.kind === "video" && t.codec));
        },
        15_000,
        `${user} to publish in ${room}`,
      );
      return page;
    };
    // A room open before auto-recording is switched on.
    const early = await publish("before", "early");
    const rule = await server.api("PUT", `/apps/${app}/recording-rule`, {
      formats: ["MP4"],
      mp4: { cycle_minutes: 60, gap_merge: { mode: "new_file" } },
      storage: { kind: "local" },
      auto_record: true,
    });
    assert.equal(rule.status, 200, JSON.stringify(rule.body));
    const late = await publish("after", "late");

    const before = await server.api("GET", `/apps/${app}/rooms/before`);
    assert.equal(before.body.recording, undefined, "the room open before is not recorded");
    const after = await server.api("GET", `/apps/${app}/rooms/after`);
    assert.ok(after.body.recording, "the room opened after is recorded");
    assert.deepEqual(after.body.recording.user_ids, ["late"]);
    const jobs = await server.api("GET", `/apps/${app}/recordings?room_id=after`);
    assert.equal(jobs.status, 200);
    assert.equal(jobs.body.jobs.length, 1);
    assert.equal(jobs.body.jobs[0].origin, "auto");
    const jobId = jobs.body.jobs[0].job_id;

    await new Promise((r) => setTimeout(r, 5_000));
    // The publisher leaves: with `new_file` the file is finished at once.
    await late.evaluate(() => window.weir.leave());
    const job = await waitFor(
      async () => {
        const r = await server.api("GET", `/apps/${app}/recordings/${jobId}`);
        const files = r.body.files;
        return { ok: files.length === 1 && files[0].status === "complete", ...r.body };
      },
      20_000,
      "the auto-recorded file to be stored",
    );
    const path = join(server.dataDir, "recordings", job.files[0].object);
    const decoded = decodesCleanly(path);
    assert.ok(decoded.ok, decoded.stderr);
    const { info } = probe(path);
    assert.ok(Number(info.format.duration) >= 3, `recorded ${info.format.duration} s`);
    assert.equal((await server.api("GET", `/apps/${app}/recordings?room_id=before`)).body.jobs.length, 0);
    await early.close();
  } catch (e) {
    console.log(`failed: ${e.stack || e}`);
    console.log(server.logs().split("\n").slice(-60).join("\n"));
    throw e;
  } finally {
    await browser.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `the server exits 0 on SIGTERM (got ${JSON.stringify(status)})`);
  }
});

const S3S_FS = process.env.WEIR_S3S_FS || join(process.env.WEIR_CACHE || join(process.env.HOME, ".cache/weir"), "bin/s3s-fs");

/** A real S3-compatible server (s3s-fs) on 127.0.0.1; a bucket is a folder. */
async function s3sFs(bucket) {
  const root = mkdtempSync(join(tmpdir(), "weir-s3-"));
  mkdirSync(join(root, bucket));
  const probe = createServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = probe.address().port;
  await new Promise((resolve) => probe.close(resolve));
  const child = spawn(S3S_FS, ["--host", "127.0.0.1", "--port", String(port), "--access-key", "weiraccess", "--secret-key", "weir-secret-0123456789", root], {
    stdio: "ignore",
  });
  await waitFor(
    async () => {
      try {
        await fetch(`http://127.0.0.1:${port}/`);
        return true;
      } catch {
        return false;
      }
    },
    10_000,
    "s3s-fs to listen",
  );
  return {
    endpoint: `http://127.0.0.1:${port}`,
    root,
    stop: () => {
      child.kill();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

test("a recording is stored in S3-compatible storage (s3s-fs)", { timeout: 90_000, skip: !existsSync(S3S_FS) && "s3s-fs is not installed (scripts/test.sh installs it)" }, async () => {
  const s3 = await s3sFs("rec-bucket");
  const server = await startServer();
  const browser = await launchChromium();
  const receiver = await callbackReceiver();
  try {
    const app = server.appId;
    await server.api("PUT", `/apps/${app}/callbacks`, { url: receiver.url, key: CALLBACK_KEY });
    const rule = await server.api("PUT", `/apps/${app}/recording-rule`, {
      formats: ["MP4"],
      storage: {
        kind: "s3",
        endpoint: s3.endpoint,
        region: "us-east-1",
        bucket: "rec-bucket",
        prefix: "weir",
        access_key: "weiraccess",
        secret_key: "weir-secret-0123456789",
      },
    });
    assert.equal(rule.status, 200, JSON.stringify(rule.body));
    const room = "rec-s3";
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.base}/?room=${room}&token=${encodeURIComponent(server.token(room, "anchor"))}&codec=H264&autojoin=1`);
    await waitFor(
      async () => {
        const r = await server.api("GET", `/apps/${app}/rooms/${room}`);
        return r.status === 200 && r.body.participants.some((p) => p.tracks.some((t) => t.kind === "video" && t.codec));
      },
      15_000,
      "the page to publish",
    );
    const started = await server.api("POST", `/apps/${app}/recordings`, { room_id: room });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    await new Promise((r) => setTimeout(r, 4_000));
    await server.api("DELETE", `/apps/${app}/recordings/${started.body.job_id}`);
    const done = await waitFor(
      () => {
        const body = receiver.bodies.find((b) => b.event_type === "RECORD_FILE_COMPLETE");
        return { ok: Boolean(body), body };
      },
      20_000,
      "RECORD_FILE_COMPLETE",
    );
    const body = done.body;
    assert.deepEqual(receiver.badSignatures, []);
    assert.equal(body.obs_bucket, "rec-bucket");
    assert.equal(body.obs_location, s3.endpoint);
    assert.ok(body.obs_object.startsWith("weir/"), body.obs_object);
    assert.equal(body.download_url, `${s3.endpoint}/rec-bucket/${body.obs_object}`);
    // s3s-fs keeps objects as files under ROOT/BUCKET/KEY.
    const stored = join(s3.root, "rec-bucket", body.obs_object);
    assert.equal(statSync(stored).size, body.file_size, "file_size == bytes in the bucket");
    const decoded = decodesCleanly(stored);
    assert.ok(decoded.ok, decoded.stderr);
    const fetched = await fetch(body.download_url);
    assert.notEqual(fetched.status, 404, "the download URL names the object");
    console.log(`S3: ${body.obs_object} ${body.file_size} bytes ${body.record_duration} s`);
  } catch (e) {
    console.log(`failed: ${e.stack || e}`);
    console.log(server.logs().split("\n").slice(-60).join("\n"));
    throw e;
  } finally {
    receiver.close();
    await browser.close();
    await server.stop();
    s3.stop();
  }
});

test("recordings survive kill -9: MP4 and HLS recovered, stored and announced once with recovered: true", { timeout: 120_000 }, async () => {
  const env = { WEIR_ADMIN_KEY: "crashTestAdminKey0123456789abcdefXYZ" };
  const first = await startServer([], { env });
  const browser = await launchChromium();
  const receiver = await callbackReceiver();
  const formats = ["HLS", "MP4"];
  let second = null;
  try {
    const app = first.appId;
    await first.api("PUT", `/apps/${app}/callbacks`, { url: receiver.url, key: CALLBACK_KEY });
    const rule = await first.api("PUT", `/apps/${app}/recording-rule`, {
      formats,
      // Short segments: the crash leaves listed segments and an open one.
      hls: { slice_seconds: 2 },
      storage: { kind: "local" },
    });
    assert.equal(rule.status, 200, JSON.stringify(rule.body));
    const room = "crash";
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${first.base}/?room=${room}&token=${encodeURIComponent(first.token(room, "anchor"))}&codec=H264&autojoin=1`);
    await waitFor(
      async () => {
        const r = await first.api("GET", `/apps/${app}/rooms/${room}`);
        return r.status === 200 && r.body.participants.some((p) => p.tracks.some((t) => t.kind === "video" && t.codec));
      },
      15_000,
      "the page to publish",
    );
    const started = await first.api("POST", `/apps/${app}/recordings`, { room_id: room });
    assert.equal(started.status, 201);
    const jobId = started.body.job_id;
    await waitFor(
      () => ({ ok: receiver.events("RECORD_NEW_FILE_START").length === formats.length }),
      10_000,
      "the files to start",
    );
    await new Promise((r) => setTimeout(r, 5_000));
    const crashedAt = Date.now();
    await first.crash();
    await page.close();

    second = await startServer([], { env, dataDir: first.dataDir });
    const complete = await waitFor(
      () => {
        const done = receiver.events("RECORD_FILE_COMPLETE");
        return { ok: done.length >= formats.length, done };
      },
      30_000,
      "the recovered files to be announced",
    );
    assert.deepEqual(complete.done.map((b) => b.record_format).sort(), formats, "one recovered file per format");
    const job = await second.api("GET", `/apps/${app}/recordings/${jobId}`);
    assert.equal(job.body.status, "stopped");
    assert.equal(job.body.files.length, formats.length, JSON.stringify(job.body.files));
    assert.ok(job.body.files.every((f) => f.status === "complete" && f.recovered), JSON.stringify(job.body.files));
    for (const body of complete.done) {
      assert.equal(body.recovered, true, "announced as recovered");
      assert.equal(body.job_id, jobId);
      assert.equal(body.file_index, 0);
      const stored = join(second.dataDir, "recordings", body.obs_object);
      const decoded = decodesCleanly(stored);
      assert.ok(decoded.ok, `${body.obs_object}: ${decoded.stderr}`);
      const { info, packets } = probe(stored);
      assert.ok(packets.length > 0 && packets[0].flags.startsWith("K"), `${body.obs_object}: the first video packet is a keyframe`);
      assert.ok(info.streams.some((s) => s.codec_type === "audio") && info.streams.some((s) => s.codec_type === "video"));
      const duration = Number(info.format.duration);
      assert.ok(duration >= 3, `${body.record_format}: ${duration} s recovered of about 5`);
      assert.ok(Math.abs(duration - body.record_duration) <= 0.2, `${body.record_format}: ${duration} vs ${body.record_duration}`);
      // file_size counts every stored byte (HLS: playlists + segments).
      assert.equal(storedBytes(stored), body.file_size, `${body.record_format}: file_size == bytes stored`);
      if (body.record_format === "HLS") {
        const { media } = hlsFiles(stored);
        assert.match(media, /#EXT-X-ENDLIST/, "the recovered media playlist is finished");
        const lint = lintHls(stored);
        assert.ok(lint.endlist && lint.map && lint.segments >= 1, JSON.stringify(lint));
        assert.ok(lint.max_rounded <= lint.target, `round(EXTINF) <= TARGETDURATION: ${JSON.stringify(lint)}`);
        assert.ok(Math.abs(lint.total - body.record_duration) <= 0.1, `segments add up: ${JSON.stringify(lint)}`);
      }
      const file = job.body.files.find((f) => f.record_format === body.record_format);
      // What was recorded before the crash, less at most the fragment
      // being written (about 1 s).
      const recordedBeforeCrash = (crashedAt - file.started_at) / 1000;
      console.log(`${body.record_format}: ${body.record_duration} s of ${recordedBeforeCrash} s, started ${file.started_at} ended ${file.ended_at}`);
      assert.ok(
        body.record_duration <= recordedBeforeCrash + 0.3 && body.record_duration >= recordedBeforeCrash - 2,
        `${body.record_format}: ${body.record_duration} s recovered of ${recordedBeforeCrash} s recorded before the crash`,
      );
      assert.equal(file.size_bytes, body.file_size);
      assert.ok(Math.abs(file.duration_ms / 1000 - body.record_duration) < 0.01);
      console.log(`recovered ${body.record_format}: ${duration.toFixed(2)} s, ${body.file_size} bytes`);
    }
    // Exactly once: no other RECORD_FILE_COMPLETE comes later.
    await new Promise((r) => setTimeout(r, 2_000));
    const done = receiver.events("RECORD_FILE_COMPLETE");
    assert.equal(new Set(done.map((b) => b.event_id)).size, formats.length, "one RECORD_FILE_COMPLETE per file");
    assert.equal(done.length, formats.length, "and it came once");
    assert.deepEqual(receiver.badSignatures, []);
  } catch (e) {
    console.log(`failed: ${e.stack || e}`);
    if (second) console.log(second.logs().split("\n").slice(-40).join("\n"));
    throw e;
  } finally {
    receiver.close();
    await browser.close();
    if (second) await second.stop();
  }
});
