// The join page as a human uses it on a `--dev` server: a name instead of a
// token, the Join button, then a second visitor (autojoin, VP9). Each sees
// and hears the other; an administrator mutes and kicks the second through
// the REST API and the pages show it. Without `--dev` the page asks for a
// token.
//
// Runs inside a loopback-only network namespace (scripts/test.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, startServer, waitFor } from "./helpers.mjs";

/** Frames decoded / audio packets received from `user`, per the page. */
async function received(page, user) {
  const stats = await page.evaluate(() => window.weir.stats());
  const video = stats.find((s) => s.kind === "video" && s.userId === user);
  const audio = stats.find((s) => s.kind === "audio" && s.userId === user);
  return {
    frames: video ? video.framesDecoded : 0,
    packets: audio ? audio.packetsReceived : 0,
    codec: video ? video.codec : null,
  };
}

test("a --dev server lets a visitor join with just a name", { timeout: 60_000 }, async () => {
  const server = await startServer(["--dev"]);
  const browser = await launchChromium();
  const errors = [];
  try {
    const context = await browser.newContext();
    const alice = await context.newPage();
    alice.on("pageerror", (e) => errors.push(`alice: ${e}`));
    await alice.goto(`${server.base}/`);
    await alice.locator("#user").waitFor({ state: "visible", timeout: 5_000 });
    assert.equal(await alice.locator("#token-field").isVisible(), false, "the token field is replaced by a name");
    await alice.fill("#room", "lobby");
    await alice.fill("#user", "alice");
    await alice.click("#join");
    await waitFor(() => alice.evaluate(() => window.weir.state === "connected"), 10_000, "alice to connect");
    assert.match(await alice.locator("#status").textContent(), /lobby/);
    assert.equal(await alice.locator("#leave").isEnabled(), true);

    const bob = await context.newPage();
    bob.on("pageerror", (e) => errors.push(`bob: ${e}`));
    await bob.goto(`${server.base}/?room=lobby&user=bob&codec=VP9&autojoin=1`);

    const aliceGets = await waitFor(
      async () => {
        const r = await received(alice, "bob");
        return { ok: r.frames >= 30 && r.packets >= 50, ...r };
      },
      15_000,
      "alice to decode bob",
    );
    const bobGets = await waitFor(
      async () => {
        const r = await received(bob, "alice");
        return { ok: r.frames >= 30 && r.packets >= 50, ...r };
      },
      15_000,
      "bob to decode alice",
    );
    assert.equal(aliceGets.codec, "video/VP9", "bob asked for VP9");
    console.log(`dev page: alice <- bob ${JSON.stringify(aliceGets)}; bob <- alice ${JSON.stringify(bobGets)}`);
    console.log(`dev page: bob join-to-first-decoded-frame ${await bob.evaluate(() => window.weir.firstFrameMs)} ms`);

    // One tile per remote participant, labelled with the name.
    assert.deepEqual(await alice.locator(".tile:not(.local) .label").allTextContents(), ["bob"]);

    // An administrator mutes bob's microphone through the REST API: alice's
    // tile for bob says so. Then bob is kicked: his page is told why.
    const room = await server.api("GET", `/apps/${server.appId}/rooms/lobby`);
    assert.equal(room.status, 200, JSON.stringify(room.body));
    const bobInfo = room.body.participants.find((p) => p.user_id === "bob");
    const bobMic = bobInfo.tracks.find((t) => t.kind === "audio");
    const muted = await server.api("POST", `/apps/${server.appId}/rooms/lobby/tracks/${bobMic.track_id}/mute`, { muted: true });
    assert.equal(muted.status, 204, JSON.stringify(muted.body));
    await alice.locator(".tile:not(.local) .label", { hasText: "mic off" }).waitFor({ timeout: 5_000 });
    const kicked = await server.api("POST", `/apps/${server.appId}/rooms/lobby/participants/bob/kick`);
    assert.equal(kicked.status, 204, JSON.stringify(kicked.body));
    await waitFor(() => bob.evaluate(() => window.weir.state === "idle"), 5_000, "bob's page to leave");
    assert.match(await bob.locator("#status").textContent(), /kicked/);
    await waitFor(
      () =>
        alice.evaluate(() =>
          window.weir.events.some((e) => e.type === "participant_left" && e.message.user_id === "bob" && e.message.reason === "kicked"),
        ),
      5_000,
      "alice to see bob kicked",
    );
    assert.equal(await alice.locator(".tile:not(.local)").count(), 0);

    // Leave with the button: the page resets and the server forgets alice.
    await alice.click("#leave");
    await waitFor(
      async () => {
        const { body } = await server.api("GET", `/apps/${server.appId}/rooms/lobby`);
        return { ok: body.participants && body.participants.length === 0, body };
      },
      10_000,
      "the room to be empty",
    );
    assert.equal(await alice.evaluate(() => window.weir.state), "idle");
    assert.equal(await alice.locator("#join").isEnabled(), true);
    assert.equal(await alice.locator(".tile").count(), 0);
    assert.deepEqual(errors, []);
  } catch (e) {
    console.log(server.logs().split("\n").slice(-40).join("\n"));
    throw e;
  } finally {
    await browser.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `the server exits 0 on SIGTERM (got ${JSON.stringify(status)})`);
  }
});

test("without --dev the page asks for a token and shows refusals", { timeout: 30_000 }, async () => {
  const server = await startServer();
  const browser = await launchChromium();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.base}/`);
    await page.waitForFunction(() => window.weir !== undefined);
    assert.equal(await page.locator("#token-field").isVisible(), true);
    assert.equal(await page.locator("#user").isVisible(), false);
    const devToken = await fetch(`${server.base}/dev/token?room=x&user=y`);
    assert.equal(devToken.status, 404, "no dev tokens without --dev");

    // A token for another room is refused; the page says why.
    await page.fill("#room", "here");
    await page.fill("#token", server.token("elsewhere", "eve"));
    await page.click("#join");
    await page.locator("#error").waitFor({ state: "visible", timeout: 10_000 });
    assert.match(await page.locator("#error").textContent(), /TOKEN_WRONG_ROOM|room/i);
    await waitFor(() => page.evaluate(() => window.weir.state !== "connecting"), 10_000, "the page to give up");
    assert.equal(await page.locator("#join").isEnabled(), true);
  } finally {
    await browser.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `the server exits 0 on SIGTERM (got ${JSON.stringify(status)})`);
  }
});
