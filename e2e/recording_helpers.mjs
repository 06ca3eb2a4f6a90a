// Shared helpers of the recording end-to-end tests (recording.test.mjs,
// recording_gaps.test.mjs): independent validators (ffmpeg, ffprobe,
// Python's m3u8), a signed callback receiver, a file server for playback,
// and a Chromium publisher on the join page.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { cpSync, existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { waitFor } from "./helpers.mjs";

/** ffmpeg decodes the whole file with -xerror and prints nothing. (Frames
 * keep their own timestamps, in the input's time base: a camera's frame
 * rate varies, and both the default constant-rate conversion of the null
 * output and its default 1/frame-rate time base would collide two frames
 * less than a nominal frame interval apart, e.g. 41 ms at 20 fps.) */
export function decodesCleanly(path) {
  const run = spawnSync(
    "ffmpeg",
    ["-v", "error", "-xerror", "-i", path, "-fps_mode", "passthrough", "-enc_time_base:v", "-1", "-f", "null", "-"],
    { encoding: "utf8" },
  );
  return { ok: run.status === 0 && run.stderr.trim() === "", stderr: run.stderr };
}

/** The streams, the duration and the first video packets, per ffprobe. */
export function probe(path) {
  const info = JSON.parse(
    execFileSync("ffprobe", ["-v", "error", "-show_streams", "-show_format", "-of", "json", path], { encoding: "utf8" }),
  );
  return { info, packets: packets(path, "v:0") };
}

/** ffprobe's packets of one stream (`v:0`, `a:0`): pts_time, dts_time,
 * duration_time and flags. */
export function packets(path, stream) {
  return JSON.parse(
    execFileSync(
      "ffprobe",
      ["-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time,dts_time,duration_time,flags", "-of", "json", path],
      { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
    ),
  ).packets;
}

/** The largest step between consecutive packets' dts (s), and whether
 * every step is positive. */
export function timeline(list) {
  let maxStep = 0;
  let increasing = true;
  for (let i = 1; i < list.length; i++) {
    const step = Number(list[i].dts_time) - Number(list[i - 1].dts_time);
    if (!(step > 0)) increasing = false;
    maxStep = Math.max(maxStep, step);
  }
  return { maxStep, increasing };
}

export const CALLBACK_KEY = "recordingCallbackKey0123456789abcdefXYZ";

/** A callback receiver on 127.0.0.1 that checks each signature with
 * node's own HMAC and keeps the bodies (and, in `arrivals`, when each came:
 * `{at: Date.now(), body}`). */
export async function callbackReceiver() {
  const bodies = [];
  const arrivals = [];
  const badSignatures = [];
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      const timestamp = req.headers["x-weir-timestamp"];
      const expected = createHmac("sha256", CALLBACK_KEY).update(`${timestamp}.${raw}`).digest("hex");
      if (req.headers["x-weir-signature"] !== expected) badSignatures.push(raw);
      const body = JSON.parse(raw);
      bodies.push(body);
      arrivals.push({ at: Date.now(), body });
      res.writeHead(200).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    bodies,
    arrivals,
    badSignatures,
    /** The bodies of one event type (and job, when given). */
    events: (type, jobId) => bodies.filter((b) => b.event_type === type && (jobId === undefined || b.job_id === jobId)),
    close: () => server.close(),
  };
}

const VENV_PYTHON = join(process.env.WEIR_CACHE || join(process.env.HOME, ".cache/weir"), "venv/bin/python");
const HLS_JS = new URL("./node_modules/hls.js/dist/hls.min.js", import.meta.url).pathname;

/** Serves `root` (and hls.js) on 127.0.0.1 with the right media types. */
export async function serveRecordings(root) {
  const types = { ".m3u8": "application/vnd.apple.mpegurl", ".mp4": "video/mp4", ".m4s": "video/mp4" };
  const files = createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (pathname === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>player</title>");
      return;
    }
    const path = pathname === "/hls.min.js" ? HLS_JS : join(root, pathname);
    if ((path !== HLS_JS && !path.startsWith(root)) || !existsSync(path) || !statSync(path).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const bytes = readFileSync(path);
    const ext = path.slice(path.lastIndexOf("."));
    res.writeHead(200, { "content-type": types[ext] || "application/javascript", "content-length": bytes.length }).end(bytes);
  });
  await new Promise((resolve) => files.listen(0, "127.0.0.1", resolve));
  return { base: `http://127.0.0.1:${files.address().port}`, close: () => files.close() };
}

/** Plays `src` in a <video> (through hls.js for a playlist) for 2.5 s;
 * resolves to the element's state and any fatal hls.js error. */
export async function playInChromium(browser, base, src) {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/`);
  if (src.endsWith(".m3u8")) await page.addScriptTag({ url: `${base}/hls.min.js` });
  return await page.evaluate(async (src) => {
    const video = document.createElement("video");
    video.muted = true;
    document.body.appendChild(video);
    const fatal = [];
    if (src.endsWith(".m3u8")) {
      const hls = new window.Hls();
      hls.on(window.Hls.Events.ERROR, (_, data) => data.fatal && fatal.push(`${data.type}: ${data.details}`));
      hls.loadSource(src);
      hls.attachMedia(video);
      await new Promise((resolve) => hls.on(window.Hls.Events.MANIFEST_PARSED, resolve));
    } else {
      video.src = src;
    }
    await video.play();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    return { currentTime: video.currentTime, duration: video.duration, error: video.error && video.error.message, fatal };
  }, src);
}

/** Lints an HLS recording with Python's `m3u8` package (not our parser). */
export function lintHls(multivariantPath) {
  const script = `
import json, sys, os, m3u8
top = m3u8.load(sys.argv[1])
assert top.is_variant, "a multivariant playlist"
variant = top.playlists[0]
media = m3u8.load(os.path.join(os.path.dirname(sys.argv[1]), variant.uri))
durations = [s.duration for s in media.segments]
print(json.dumps({
    "codecs": variant.stream_info.codecs,
    "resolution": list(variant.stream_info.resolution or []),
    "version": media.version,
    "endlist": media.is_endlist,
    "independent": media.is_independent_segments,
    "target": media.target_duration,
    "segments": len(durations),
    "discontinuities": sum(1 for s in media.segments if s.discontinuity),
    "max_rounded": max(round(d) for d in durations),
    "total": sum(durations),
    "map": bool(media.segments[0].init_section),
    "program_date_time": media.segments[0].program_date_time is not None,
}))
`;
  return JSON.parse(execFileSync(VENV_PYTHON, ["-c", script, multivariantPath], { encoding: "utf8" }));
}

/** An HLS recording as stored: the multivariant playlist at `path`, its
 * media playlist's text, and every file they name (playlists, init
 * segments, media segments) with their sizes. */
export function hlsFiles(path) {
  const dir = dirname(path);
  const multivariant = readFileSync(path, "utf8");
  const mediaUri = multivariant.split("\n").find((line) => line.trim().endsWith(".m3u8"));
  assert.ok(mediaUri, `${path} names a media playlist:\n${multivariant}`);
  const media = readFileSync(join(dir, mediaUri.trim()), "utf8");
  const named = new Set([path, join(dir, mediaUri.trim())]);
  for (const line of media.split("\n")) {
    const map = line.match(/^#EXT-X-MAP:URI="([^"]+)"/);
    if (map) named.add(join(dir, map[1]));
    else if (line && !line.startsWith("#")) named.add(join(dir, line.trim()));
  }
  const bytes = [...named].reduce((sum, p) => sum + statSync(p).size, 0);
  return { multivariant, media, files: [...named], bytes };
}

/** Every byte stored for a recording file: the MP4, or an HLS recording's
 * playlists and segments. Also checks, for HLS, that its directory holds
 * nothing else (the default naming template gives each file its own). */
export function storedBytes(path) {
  if (!path.endsWith(".m3u8")) return statSync(path).size;
  const hls = hlsFiles(path);
  const dir = dirname(path);
  const inDir = readdirSync(dir).map((name) => join(dir, name));
  assert.deepEqual(inDir.sort(), [...hls.files].sort(), `${dir} holds exactly the recording's files`);
  return hls.bytes;
}

/** Opens the join page as `user` in `room` (a new browser context, so a
 * new session) and resolves once the room lists its audio and video. */
export async function publish(server, browser, room, user, codec = "H264") {
  const page = await (await browser.newContext()).newPage();
  // Keep the picture size: on 2 vCPUs with several software encoders,
  // Chrome's CPU adaptation may drop 640x480 to 480x360 mid-call, which
  // (as designed) cuts an MP4 at the format change; these tests count the
  // files their gaps and cycles make. Set on the page's peer connections.
  await page.addInitScript(() => {
    const connections = [];
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = function (...args) {
      const pc = new Native(...args);
      connections.push(pc);
      return pc;
    };
    window.RTCPeerConnection.prototype = Native.prototype;
    Object.setPrototypeOf(window.RTCPeerConnection, Native);
    window.__keepResolution = async () => {
      const senders = connections.flatMap((pc) => pc.getSenders()).filter((s) => s.track && s.track.kind === "video");
      for (const sender of senders) {
        const parameters = sender.getParameters();
        parameters.degradationPreference = "maintain-resolution";
        await sender.setParameters(parameters);
      }
      return senders.map((s) => s.getParameters().degradationPreference);
    };
  });
  const token = server.token(room, user);
  await page.goto(`${server.base}/?room=${room}&token=${encodeURIComponent(token)}&codec=${codec}&autojoin=1`);
  await waitFor(
    async () => {
      const r = await server.api("GET", `/apps/${server.appId}/rooms/${room}`);
      const tracks = r.status === 200 ? r.body.participants.filter((p) => p.user_id === user).flatMap((p) => p.tracks) : [];
      return tracks.some((t) => t.kind === "video" && t.codec) && tracks.some((t) => t.kind === "audio");
    },
    20_000,
    `${user} to publish audio and video in ${room}`,
  );
  const preferences = await page.evaluate(() => window.__keepResolution());
  assert.deepEqual(preferences, ["maintain-resolution"], `${user}'s video keeps its resolution`);
  return page;
}

/** Resolves once the room lists no participant (the server saw them go). */
export async function roomEmpty(server, room) {
  await waitFor(
    async () => {
      const r = await server.api("GET", `/apps/${server.appId}/rooms/${room}`);
      return r.status === 200 && r.body.participants.length === 0;
    },
    20_000,
    `${room} to be empty`,
  );
}

/** A job as the REST API describes it, once `done(job)` holds. */
export async function jobWhen(server, jobId, done, ms, what) {
  return waitFor(
    async () => {
      const r = await server.api("GET", `/apps/${server.appId}/recordings/${jobId}`);
      return { ok: r.status === 200 && done(r.body), ...r.body };
    },
    ms,
    what,
  );
}

/** With WEIR_E2E_KEEP=DIR, copies a failed test's recordings (and the
 * server's spool) to DIR/LABEL-TIME for a closer look. */
export function keepRecordings(server, label) {
  const root = process.env.WEIR_E2E_KEEP;
  if (!root) return;
  const to = join(root, `${label}-${Date.now()}`);
  cpSync(server.dataDir, to, { recursive: true });
  console.log(`kept the recordings in ${to}`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Seconds since the epoch of a callback's `YYYY-MM-DDThh:mm:ssZ`. */
export const callbackSeconds = (text) => Date.parse(text) / 1000;
