// The recorder's file boundaries on a real server, with a Chromium
// publisher: gap merging (a publisher who leaves and comes back as the
// same user), `new_file`, and cycles. Every file is checked by ffmpeg and
// ffprobe, its callbacks (signed) and the REST API's job view against the
// stored bytes and the wall clock of the test.
//
// Runs inside a loopback-only network namespace (scripts/test.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { launchChromium, startServer, waitFor } from "./helpers.mjs";
import {
  CALLBACK_KEY,
  callbackReceiver,
  callbackSeconds,
  decodesCleanly,
  hlsFiles,
  jobWhen,
  keepRecordings,
  lintHls,
  packets,
  probe,
  publish,
  roomEmpty,
  sleep,
  storedBytes,
  timeline,
} from "./recording_helpers.mjs";

const FORMATS = ["HLS", "MP4"];

/** Sets the application's rule and starts a job in `room` (the job keeps
 * the rule it started with); resolves to the job id. */
async function startJob(server, room, rule) {
  const put = await server.api("PUT", `/apps/${server.appId}/recording-rule`, { ...rule, storage: { kind: "local" } });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const started = await server.api("POST", `/apps/${server.appId}/recordings`, { room_id: room });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  return started.body.job_id;
}

/** Leaves like a user closing the tab (`close`) or pressing Leave, and
 * resolves with when it left once the room lists nobody. */
async function leave(server, page, room, how) {
  const at = Date.now();
  if (how === "leave") await page.evaluate(() => window.weir.leave());
  await page.close();
  await roomEmpty(server, room);
  return at;
}

/** Waits until the job is stopped and has `count` complete files; returns
 * them by format, each sorted by file_index. */
async function completeFiles(server, receiver, jobId, count) {
  const job = await jobWhen(
    server,
    jobId,
    (j) => j.files.length >= count && j.files.every((f) => f.status === "complete"),
    30_000,
    `${count} complete files of ${jobId}`,
  );
  assert.equal(job.files.length, count, JSON.stringify(job.files));
  // The API shows a file complete once it is recorded; its
  // RECORD_FILE_COMPLETE callback comes after, from the callback sender.
  await waitFor(
    () =>
      job.files.every((f) =>
        receiver.events("RECORD_FILE_COMPLETE", jobId).some((b) => b.obs_object.endsWith(f.object)),
      ),
    20_000,
    `the RECORD_FILE_COMPLETE callbacks of ${jobId}`,
  );
  const byFormat = {};
  for (const format of FORMATS) {
    byFormat[format] = job.files.filter((f) => f.record_format === format).sort((a, b) => a.file_index - b.file_index);
  }
  return byFormat;
}

/** What every stored file must be, whatever its boundaries: decodes
 * cleanly; audio and video; first video packet a keyframe; increasing
 * timestamps and no giant sample (a gap is filled: the last keyframe
 * repeated once a second, Opus silence); ffprobe's duration that of the
 * job; one RECORD_NEW_FILE_START and one signed RECORD_FILE_COMPLETE whose
 * size is every stored byte and whose span is its duration. Returns when
 * the complete callback came (`done`) and ffprobe's duration. */
function checkFile(server, receiver, jobId, file) {
  const label = `${file.record_format} file ${file.file_index} (${file.object})`;
  const path = join(server.dataDir, "recordings", file.object);
  assert.ok(existsSync(path), `${label} is stored`);
  const decoded = decodesCleanly(path);
  assert.ok(decoded.ok, `${label} decodes cleanly: ${decoded.stderr}`);
  const { info, packets: video } = probe(path);
  const audio = packets(path, "a:0");
  assert.deepEqual(info.streams.map((s) => s.codec_name).sort(), ["h264", "opus"], label);
  assert.ok(video.length > 0 && video[0].flags.startsWith("K"), `${label}: the first video packet is a keyframe`);
  const v = timeline(video);
  const a = timeline(audio);
  assert.ok(v.increasing && a.increasing, `${label}: timestamps increase`);
  assert.ok(v.maxStep <= 1.05, `${label}: no video sample over 1 s (largest step ${v.maxStep} s)`);
  assert.ok(a.maxStep <= 0.15, `${label}: no audio hole (largest step ${a.maxStep} s)`);
  const duration = Number(info.format.duration);
  assert.ok(Math.abs(duration - file.duration_ms / 1000) <= 0.1, `${label}: ffprobe says ${duration} s, the job ${file.duration_ms} ms`);
  // The wall-clock span is the duration (gaps inside a file are filled).
  assert.ok(Math.abs((file.ended_at - file.started_at) - file.duration_ms) <= 100, `${label}: span ${file.ended_at - file.started_at} ms vs ${file.duration_ms} ms`);

  const starts = receiver.events("RECORD_NEW_FILE_START", jobId).filter((b) => b.obs_object === file.object);
  assert.equal(starts.length, 1, `${label}: RECORD_NEW_FILE_START once`);
  assert.equal(starts[0].file_index, file.file_index);
  const completes = receiver.arrivals.filter(
    ({ body }) => body.event_type === "RECORD_FILE_COMPLETE" && body.job_id === jobId && body.obs_object.endsWith(file.object),
  );
  assert.equal(completes.length, 1, `${label}: RECORD_FILE_COMPLETE once`);
  const body = completes[0].body;
  assert.equal(body.record_format, file.record_format);
  assert.equal(body.file_index, file.file_index);
  assert.equal(body.recovered, false);
  assert.equal(body.file_size, file.size_bytes);
  assert.equal(storedBytes(path), body.file_size, `${label}: file_size == bytes stored`);
  assert.ok(Math.abs(body.record_duration - file.duration_ms / 1000) < 0.01);
  const span = callbackSeconds(body.end_time) - callbackSeconds(body.start_time);
  assert.ok(Math.abs(span - body.record_duration) <= 1, `${label}: end_time - start_time ${span} s vs ${body.record_duration} s`);
  console.log(
    `${label}: ${duration.toFixed(2)} s, ${file.size_bytes} bytes, video step <= ${v.maxStep.toFixed(3)} s, audio step <= ${a.maxStep.toFixed(3)} s`,
  );
  return { done: completes[0].at, probed: duration };
}

/** HLS (the sum of EXTINF) and MP4 of the same stretch last as long: the
 * same frames, cut at the same keyframes. */
function sameLength(hls, mp4) {
  assert.ok(
    Math.abs(hls.probed - mp4.probed) <= 0.05,
    `the HLS playlist lasts ${hls.probed} s, the MP4 ${mp4.probed} s`,
  );
}

test("gap merge: a 3 s absence continues the file, a 15 s one past the 10 s window starts the next; new_file splits at once", { timeout: 150_000 }, async () => {
  const server = await startServer();
  const browser = await launchChromium();
  const receiver = await callbackReceiver();
  try {
    const app = server.appId;
    await server.api("PUT", `/apps/${app}/callbacks`, { url: receiver.url, key: CALLBACK_KEY });
    // Two rooms at once: "merge" with a 10 s window in both formats,
    // "split" with new_file in both.
    const [mergeFirst, splitFirst] = await Promise.all([
      publish(server, browser, "merge", "anchor"),
      publish(server, browser, "split", "anchor"),
    ]);
    const window10 = { gap_merge: { mode: "seconds", seconds: 10 } };
    const mergeJob = await startJob(server, "merge", { formats: FORMATS, hls: { ...window10, slice_seconds: 4 }, mp4: window10 });
    const splitJob = await startJob(server, "split", {
      formats: FORMATS,
      hls: { gap_merge: { mode: "new_file" }, slice_seconds: 4 },
      mp4: { gap_merge: { mode: "new_file" } },
    });
    const filesStarted = (jobId, count) =>
      waitFor(() => receiver.events("RECORD_NEW_FILE_START", jobId).length >= count, 20_000, `${count} files of ${jobId} to start`);

    const merge = {};
    const mergeTimeline = async () => {
      await filesStarted(mergeJob, 2);
      await sleep(4_000);
      // Away 3 s (the tab closes), back as the same user.
      merge.leave1 = await leave(server, mergeFirst, "merge", "close");
      await sleep(merge.leave1 + 3_000 - Date.now());
      const second = await publish(server, browser, "merge", "anchor");
      merge.back1 = Date.now();
      await sleep(5_000);
      // Away 15 s (Leave pressed): the window expires first.
      merge.leave2 = await leave(server, second, "merge", "leave");
      await waitFor(
        () => receiver.events("RECORD_FILE_COMPLETE", mergeJob).length >= 2,
        30_000,
        "the first files to complete once the window expired",
      );
      merge.firstCompleteSeen = Date.now();
      await sleep(merge.leave2 + 15_000 - Date.now());
      const third = await publish(server, browser, "merge", "anchor");
      merge.back2 = Date.now();
      await filesStarted(mergeJob, 4);
      await sleep(3_000);
      merge.stop = Date.now();
      const stopped = await server.api("DELETE", `/apps/${app}/recordings/${mergeJob}`);
      assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
      await third.close();
    };
    const split = {};
    const splitTimeline = async () => {
      await filesStarted(splitJob, 2);
      await sleep(4_000);
      split.leave = await leave(server, splitFirst, "split", "leave");
      await sleep(split.leave + 3_000 - Date.now());
      split.rejoin = Date.now();
      const second = await publish(server, browser, "split", "anchor");
      await filesStarted(splitJob, 4);
      await sleep(3_000);
      split.stop = Date.now();
      await server.api("DELETE", `/apps/${app}/recordings/${splitJob}`);
      await second.close();
    };
    await Promise.all([mergeTimeline(), splitTimeline()]);
    console.log(`merge timeline ${JSON.stringify(merge)}; split ${JSON.stringify(split)}`);

    // The 10 s window, per format.
    const merged = await completeFiles(server, receiver, mergeJob, 4);
    const mergedChecks = {};
    for (const format of FORMATS) {
      const [first, second] = merged[format];
      assert.deepEqual(merged[format].map((f) => f.file_index), [0, 1], `${format}: two files, file_index 0 and 1`);
      mergedChecks[format] = [checkFile(server, receiver, mergeJob, first), checkFile(server, receiver, mergeJob, second)];
      const firstDone = mergedChecks[format][0].done;
      // The first file spans the 3 s absence and ends when the publisher
      // left the second time.
      assert.ok(first.started_at <= merge.leave1 - 3_000, `${format}: file 0 began before the first absence`);
      assert.ok(first.ended_at >= merge.back1 + 3_000, `${format}: file 0 goes on after the return (${first.ended_at} vs back at ${merge.back1})`);
      assert.ok(Math.abs(first.ended_at - merge.leave2) <= 1_500, `${format}: file 0 ends when the publisher left (${first.ended_at} vs ${merge.leave2})`);
      // Completed only once the window expired, not at the absence.
      assert.ok(
        firstDone >= merge.leave2 + 9_500 && firstDone <= merge.leave2 + 20_000,
        `${format}: RECORD_FILE_COMPLETE of file 0 came ${firstDone - merge.leave2} ms after the publisher left (window 10 s)`,
      );
      assert.ok(second.started_at >= merge.leave2 + 14_000, `${format}: file 1 starts after the return`);
      assert.ok(Math.abs(second.ended_at - merge.stop) <= 1_500, `${format}: file 1 ends at the stop`);
    }
    mergedChecks.HLS.forEach((hls, i) => sameLength(hls, mergedChecks.MP4[i]));
    // HLS: the gap is a discontinuity of the first playlist.
    const [hls0, hls1] = merged.HLS;
    const lint0 = lintHls(join(server.dataDir, "recordings", hls0.object));
    assert.ok(/#EXT-X-DISCONTINUITY/.test(hlsFiles(join(server.dataDir, "recordings", hls0.object)).media), "file 0 marks the gap");
    assert.ok(lint0.discontinuities >= 1 && lint0.endlist, JSON.stringify(lint0));
    assert.ok(Math.abs(lint0.total - hls0.duration_ms / 1000) <= 0.1, `segments add up: ${JSON.stringify(lint0)}`);
    assert.ok(lint0.max_rounded <= lint0.target, `round(EXTINF) <= TARGETDURATION: ${JSON.stringify(lint0)}`);
    const lint1 = lintHls(join(server.dataDir, "recordings", hls1.object));
    assert.equal(lint1.discontinuities, 0, JSON.stringify(lint1));

    // new_file: two files per format, the first finished at the absence.
    const splitFiles = await completeFiles(server, receiver, splitJob, 4);
    const splitChecks = {};
    for (const format of FORMATS) {
      const [first, second] = splitFiles[format];
      assert.deepEqual(splitFiles[format].map((f) => f.file_index), [0, 1], `${format}: two files, file_index 0 and 1`);
      splitChecks[format] = [checkFile(server, receiver, splitJob, first), checkFile(server, receiver, splitJob, second)];
      const firstDone = splitChecks[format][0].done;
      assert.ok(Math.abs(first.ended_at - split.leave) <= 1_500, `${format}: file 0 ends at the absence`);
      assert.ok(firstDone < split.rejoin, `${format}: file 0 was complete before the publisher came back`);
      assert.ok(second.started_at >= split.rejoin - 500, `${format}: file 1 starts at the return`);
      assert.notEqual(first.object, second.object);
    }
    splitChecks.HLS.forEach((hls, i) => sameLength(hls, splitChecks.MP4[i]));
    assert.equal(lintHls(join(server.dataDir, "recordings", splitFiles.HLS[0].object)).discontinuities, 0);
    assert.deepEqual(receiver.badSignatures, [], "every callback's signature verifies");
    assert.equal(receiver.events("RECORD_FAILED").length, 0, JSON.stringify(receiver.events("RECORD_FAILED")));
  } catch (e) {
    console.log(`failed: ${e.stack || e}`);
    console.log(server.logs().split("\n").slice(-80).join("\n"));
    keepRecordings(server, "recording-gaps");
    throw e;
  } finally {
    receiver.close();
    await browser.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `the server exits 0 on SIGTERM (got ${JSON.stringify(status)})`);
  }
});

test("a 1-minute cycle cuts at a keyframe: two files per format that abut, nothing lost between them", { timeout: 150_000 }, async () => {
  const server = await startServer();
  const browser = await launchChromium();
  const receiver = await callbackReceiver();
  try {
    const app = server.appId;
    await server.api("PUT", `/apps/${app}/callbacks`, { url: receiver.url, key: CALLBACK_KEY });
    const page = await publish(server, browser, "cycle", "anchor");
    const jobId = await startJob(server, "cycle", { formats: FORMATS, hls: { cycle_minutes: 1 }, mp4: { cycle_minutes: 1 } });
    await waitFor(() => receiver.events("RECORD_NEW_FILE_START", jobId).length >= 2, 20_000, "the files to start");
    const first = await jobWhen(server, jobId, (j) => j.files.length === 2, 10_000, "the file rows");
    const began = Math.min(...first.files.map((f) => f.started_at));
    // The cut at about 60 s: the first files complete while recording goes on.
    await waitFor(() => receiver.events("RECORD_FILE_COMPLETE", jobId).length >= 2, 90_000, "the cycle to cut the files");
    const cutSeen = Date.now();
    await sleep(began + 75_000 - Date.now());
    const stopped = await server.api("DELETE", `/apps/${app}/recordings/${jobId}`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    const stopAt = Date.now();
    await page.close();

    const files = await completeFiles(server, receiver, jobId, 4);
    const checks = {};
    for (const format of FORMATS) {
      const [a, b] = files[format];
      assert.deepEqual(files[format].map((f) => f.file_index), [0, 1], `${format}: two files`);
      checks[format] = [checkFile(server, receiver, jobId, a), checkFile(server, receiver, jobId, b)];
      const aDone = checks[format][0].done;
      assert.ok(aDone <= cutSeen && cutSeen < stopAt, `${format}: file 0 completed at the cut, before the stop`);
      // Cut at the first keyframe after cycle - lead/2 (a keyframe is asked
      // for 2 s before).
      assert.ok(a.duration_ms >= 58_500 && a.duration_ms <= 61_500, `${format}: file 0 lasts ${a.duration_ms} ms`);
      // They abut: file 1 begins where file 0 ends, and the two durations
      // cover the whole span.
      assert.ok(Math.abs(b.started_at - a.ended_at) <= 100, `${format}: file 0 ends ${a.ended_at}, file 1 begins ${b.started_at}`);
      const total = b.ended_at - a.started_at;
      assert.ok(
        Math.abs(a.duration_ms + b.duration_ms - total) <= 200,
        `${format}: ${a.duration_ms} + ${b.duration_ms} ms vs a span of ${total} ms`,
      );
      assert.ok(Math.abs(b.ended_at - stopAt) <= 1_500, `${format}: file 1 ends at the stop`);
      // File 1 opens on a keyframe (checkFile) with its audio from the start.
      const path = join(server.dataDir, "recordings", b.object);
      const audio = packets(path, "a:0");
      const video = packets(path, "v:0");
      assert.ok(Number(audio[0].pts_time) <= 0.1, `${format}: file 1's audio starts at ${audio[0].pts_time} s`);
      assert.ok(Number(video[0].pts_time) <= 0.05 && video[0].flags.startsWith("K"), `${format}: file 1 starts on a keyframe`);
    }
    checks.HLS.forEach((hls, i) => sameLength(hls, checks.MP4[i]));
    assert.deepEqual(receiver.badSignatures, []);
  } catch (e) {
    console.log(`failed: ${e.stack || e}`);
    console.log(server.logs().split("\n").slice(-80).join("\n"));
    keepRecordings(server, "recording-gaps");
    throw e;
  } finally {
    receiver.close();
    await browser.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `the server exits 0 on SIGTERM (got ${JSON.stringify(status)})`);
  }
});
