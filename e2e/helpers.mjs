// Shared helpers of the browser tests: start `weir serve` on ephemeral
// ports, mint tokens with the CLI, launch Debian Chromium with the flags a
// loopback-only machine needs (see ../shared/notes/clients.md).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const WEIR_BIN =
  process.env.WEIR_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, ".cache/weir-target"), "debug/weir");

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/** Starts the server; resolves once it printed its ready line. With
 * `options.dataDir` it starts on that data dir (a restart); `options.env`
 * adds environment variables (e.g. WEIR_ADMIN_KEY). */
export async function startServer(extraArgs = [], options = {}) {
  const dataDir = options.dataDir || mkdtempSync(join(tmpdir(), "weir-e2e-"));
  const child = spawn(
    WEIR_BIN,
    ["serve", "--data-dir", dataDir, "--http-listen", "127.0.0.1:0", "--udp-listen", "127.0.0.1:0", ...extraArgs],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WEIR_LOG: process.env.WEIR_LOG || "info,str0m=warn", ...(options.env || {}) },
    },
  );
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const ready = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${stderr}`)), 15_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/weir ready http=(\S+) udp=(\S+)/);
      if (m) {
        clearTimeout(timer);
        const app = out.match(/app_id=(\S+)/);
        const key = out.match(/generated admin key[^:]*: (\S+)/);
        resolve({
          http: m[1],
          udp: m[2],
          appId: app && app[1],
          adminKey: (key && key[1]) || (options.env && options.env.WEIR_ADMIN_KEY),
        });
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${stderr}`)));
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const base = `http://${ready.http}`;
  return {
    base,
    dataDir,
    /** The `default` application created on first start. */
    appId: ready.appId,
    logs: () => stderr,
    /** Calls the REST API with the admin key; resolves to {status, body}. */
    async api(method, path, body) {
      const response = await fetch(`${base}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${ready.adminKey}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    token(room, user, grants = "publish,subscribe,data") {
      return execFileSync(WEIR_BIN, ["token", "create", "--data-dir", dataDir, "--room", room, "--user", user, "--grants", grants], {
        encoding: "utf8",
      }).trim();
    },
    /** SIGKILL (a crash): the data dir stays for a restart. */
    async crash() {
      child.kill("SIGKILL");
      return exited;
    },
    /** SIGTERM, then the exit status. */
    async stop() {
      child.kill("SIGTERM");
      const status = await Promise.race([
        exited,
        new Promise((resolve) => setTimeout(() => resolve({ code: null, signal: "timeout" }), 10_000)),
      ]);
      if (status.signal === "timeout") child.kill("SIGKILL");
      rmSync(dataDir, { recursive: true, force: true });
      return status;
    },
  };
}

export async function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      "--allow-loopback-in-peer-connection",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
}

/** Polls `check` until it returns a truthy value or `ms` elapse. */
export async function waitFor(check, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last && last.ok !== false) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
}
