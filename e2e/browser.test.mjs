// Three headless Chromium pages join one room through Weir, each publishing
// its fake camera and microphone; every page must decode both others' video
// and receive their audio. Once with VP8, once with H.264. Then one page
// leaves and the others see it go.
//
// Runs inside a loopback-only network namespace (scripts/test.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, startServer, waitFor } from "./helpers.mjs";

const PAGES = ["ann", "ben", "cho"];

async function threeWayCall(codec) {
  const server = await startServer();
  const browser = await launchChromium();
  const room = `call-${codec.toLowerCase()}`;
  const pages = [];
  try {
    for (const user of PAGES) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const consoleErrors = [];
      page.on("console", (m) => {
        if (m.type() !== "error") return;
        consoleErrors.push(m.text());
        console.log(`[${user}] console: ${m.text()}`);
      });
      page.on("pageerror", (e) => {
        consoleErrors.push(String(e));
        console.log(`[${user}] page error: ${e}`);
      });
      const token = server.token(room, user);
      await page.goto(`${server.base}/?room=${room}&token=${encodeURIComponent(token)}&codec=${codec}&autojoin=1`);
      pages.push({ user, page, consoleErrors });
    }

    // Each page decodes both others' video and receives their audio.
    const started = Date.now();
    for (const { user, page } of pages) {
      const others = PAGES.filter((u) => u !== user);
      const result = await waitFor(
        async () => {
          const stats = await page.evaluate(() => window.weir.stats());
          const perUser = Object.fromEntries(
            others.map((u) => {
              const video = stats.find((s) => s.kind === "video" && s.userId === u);
              const audio = stats.find((s) => s.kind === "audio" && s.userId === u);
              return [u, { frames: video ? video.framesDecoded : 0, packets: audio ? audio.packetsReceived : 0, codec: video ? video.codec : null }];
            }),
          );
          const ok = others.every((u) => perUser[u].frames >= 50 && perUser[u].packets >= 100);
          return { ok, perUser };
        },
        Math.max(15_000 - (Date.now() - started), 1000),
        `${user} to decode ${others.join(" and ")} (${codec})`,
      );
      for (const u of others) {
        assert.equal(result.perUser[u].codec, `video/${codec}`, `${user} receives ${u} as ${codec}`);
      }
      console.log(`${codec} ${user}: ${JSON.stringify(result.perUser)}`);
    }

    // Join-to-first-decoded-frame per page (from pressing Join to the first
    // remote video frame decoded), and per pair from the later of the two
    // joins (pages join one after another, so the first pages wait for the
    // others to arrive).
    const joinedAt = {};
    for (const { user, page } of pages) joinedAt[user] = await page.evaluate(() => window.weir.joinedAt);
    for (const { user, page } of pages) {
      const firstFrameMs = await page.evaluate(() => window.weir.firstFrameMs);
      const frames = await page.evaluate(() => window.weir.firstFrames());
      const pairs = frames
        .map((f) => `${f.userId} ${f.at - Math.max(joinedAt[user], joinedAt[f.userId])} ms`)
        .join(", ");
      const steps = await page.evaluate(() => {
        const since = (e) => (e ? e.at - window.weir.joinedAt : null);
        const events = window.weir.events;
        return {
          joined: since(events.find((e) => e.type === "joined")),
          connected: since(events.find((e) => e.type === "pc" && e.state === "connected")),
        };
      });
      assert.ok(firstFrameMs > 0, `${user} recorded its first frame`);
      console.log(
        `${codec} ${user}: join-to-first-decoded-frame ${firstFrameMs} ms ` +
          `(joined +${steps.joined} ms, media connected +${steps.connected} ms; per pair from the later join: ${pairs})`,
      );
    }

    // The first page mutes its microphone; the others are told.
    const muter = pages[0];
    const muterId = await muter.page.evaluate(() => window.weir.participantId);
    await muter.page.evaluate(() => window.weir.mute("audio"));
    for (const { user, page } of pages.slice(1)) {
      await waitFor(
        () =>
          page.evaluate(
            (id) =>
              window.weir.events.some(
                (e) => e.type === "track_muted" && e.message.participant_id === id && e.message.muted === true,
              ),
            muterId,
          ),
        10_000,
        `${user} to see ${muter.user} mute`,
      );
    }

    // One page leaves; the other two see participant_left.
    const leaving = pages[2];
    const leaverId = await leaving.page.evaluate(() => window.weir.participantId);
    await leaving.page.evaluate(() => window.weir.leave());
    for (const { user, page } of pages.slice(0, 2)) {
      await waitFor(
        () =>
          page.evaluate(
            (id) => window.weir.events.some((e) => e.type === "participant_left" && e.message.participant_id === id),
            leaverId,
          ),
        10_000,
        `${user} to see ${leaving.user} leave`,
      );
      const remaining = await page.evaluate(() => window.weir.remoteParticipants().map((p) => p.userId));
      assert.deepEqual(remaining, PAGES.filter((u) => u !== user && u !== leaving.user));
    }
    for (const { user, consoleErrors } of pages) {
      assert.deepEqual(consoleErrors, [], `${user}'s page logged no errors`);
    }
    // What the pages saw was sealed by Weir's own egress (Chromium's DTLS
    // negotiates AES-GCM), not str0m's send path.
    const sealedByWeir = server.logs().match(/forwarded RTP sealed by Weir/g) || [];
    assert.equal(sealedByWeir.length, PAGES.length, "every page's session on Weir's egress");
  } catch (e) {
    console.log(server.logs().split("\n").slice(-60).join("\n"));
    throw e;
  } finally {
    await browser.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `the server exits 0 on SIGTERM (got ${JSON.stringify(status)})`);
  }
}

test("three Chromium pages see and hear each other (VP8)", { timeout: 90_000 }, () => threeWayCall("VP8"));
test("three Chromium pages see and hear each other (H.264)", { timeout: 90_000 }, () => threeWayCall("H264"));
