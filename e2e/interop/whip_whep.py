"""aiortc interop: one aiortc peer publishes through WHIP, a second one
plays through WHEP, and frames must arrive; then both sessions are deleted.

aiortc is an independent WebRTC stack (Python), so this catches interop
bugs our own client cannot. Run inside a loopback-only namespace
(scripts/test.sh does): it starts `weir serve` itself.

Exit status 0 on success; prints a one-line result either way.
"""

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import aioice.ice

# On a loopback-only network aioice skips 127.0.0.1 and gathers nothing.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack  # noqa: E402
from av import VideoFrame  # noqa: E402

WEIR_BIN = os.environ.get("WEIR_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/weir-target")), "debug", "weir"
)
ROOM = "interop"
WANT_VIDEO_FRAMES = 30
WANT_AUDIO_FRAMES = 30
DEADLINE_S = 20.0


WIDTH, HEIGHT = 320, 240
# One luma row per horizontal position; shifted each frame so bars move.
LUMA_ROW = bytes((x * 255) // WIDTH for x in range(WIDTH))


class MovingBars(VideoStreamTrack):
    """Synthetic 320x240 video: bars that move, so the encoder has work."""

    def __init__(self):
        super().__init__()
        self.counter = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        shift = (self.counter * 4) % WIDTH
        row = LUMA_ROW[shift:] + LUMA_ROW[:shift]
        self.counter += 1
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        for plane, (width, height, fill) in zip(
            frame.planes, ((WIDTH, HEIGHT, None), (WIDTH // 2, HEIGHT // 2, 90), (WIDTH // 2, HEIGHT // 2, 160))
        ):
            line = row if fill is None else bytes([fill]) * width
            padding = bytes(plane.line_size - width)
            plane.update((line + padding) * height)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def start_server(data_dir):
    proc = subprocess.Popen(
        [WEIR_BIN, "serve", "--data-dir", data_dir, "--http-listen", "127.0.0.1:0", "--udp-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"weir ready http=(\S+) udp=(\S+)", line or "")
        if match:
            return proc, "http://" + match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the server did not start: " + proc.stderr.read())


def token(data_dir, user, grants):
    return subprocess.check_output(
        [WEIR_BIN, "token", "create", "--data-dir", data_dir, "--room", ROOM, "--user", user, "--grants", grants],
        text=True,
    ).strip()


def http(method, url, body=None, bearer=None, content_type=None):
    request = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    if bearer:
        request.add_header("Authorization", "Bearer " + bearer)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


async def negotiate(pc, url, bearer):
    """POSTs a complete offer (aiortc does not trickle) and applies the answer."""
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await asyncio.to_thread(
        http, "POST", url, pc.localDescription.sdp, bearer, "application/sdp"
    )
    if status != 201:
        raise RuntimeError(f"POST {url} -> {status}: {answer}")
    location = headers.get("Location") or headers.get("location")
    if not location:
        raise RuntimeError(f"POST {url}: no Location header")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return location


async def count_frames(track, counter, key):
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        counter[key] += 1


async def run(base, data_dir):
    publisher = RTCPeerConnection()
    publisher.addTrack(MovingBars())
    publisher.addTrack(AudioStreamTrack())
    publish_location = await negotiate(
        publisher, f"{base}/whip/v1/rooms/{ROOM}", token(data_dir, "camera", "publish")
    )

    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    viewer.addTransceiver("audio", direction="recvonly")
    counter = {"video": 0, "audio": 0}
    readers = []

    @viewer.on("track")
    def on_track(track):
        readers.append(asyncio.ensure_future(count_frames(track, counter, track.kind)))

    view_location = await negotiate(viewer, f"{base}/whep/v1/rooms/{ROOM}", token(data_dir, "viewer", "subscribe"))

    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        if counter["video"] >= WANT_VIDEO_FRAMES and counter["audio"] >= WANT_AUDIO_FRAMES:
            break
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started

    deletes = []
    for location in (view_location, publish_location):
        status, _, _ = await asyncio.to_thread(http, "DELETE", base + location)
        deletes.append(status)
    again, _, _ = await asyncio.to_thread(http, "DELETE", base + publish_location)

    for reader in readers:
        reader.cancel()
    await viewer.close()
    await publisher.close()
    return counter, elapsed, deletes, again


def main():
    if not os.path.exists(WEIR_BIN):
        print(f"whip_whep: FAILED: no server binary at {WEIR_BIN}")
        return 1
    data_dir = tempfile.mkdtemp(prefix="weir-interop-")
    proc, base = start_server(data_dir)
    try:
        counter, elapsed, deletes, again = asyncio.run(asyncio.wait_for(run(base, data_dir), 60))
    except Exception as error:  # noqa: BLE001 - report any failure as a test failure
        proc.terminate()
        print(proc.stderr.read()[-4000:])
        print(f"whip_whep: FAILED: {error!r}")
        return 1
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        shutil.rmtree(data_dir, ignore_errors=True)

    problems = []
    if counter["video"] < WANT_VIDEO_FRAMES:
        problems.append(f"only {counter['video']} video frames decoded (want {WANT_VIDEO_FRAMES})")
    if counter["audio"] < WANT_AUDIO_FRAMES:
        problems.append(f"only {counter['audio']} audio frames (want {WANT_AUDIO_FRAMES})")
    if any(status not in (200, 204) for status in deletes):
        problems.append(f"DELETE answered {deletes}")
    if again != 404:
        problems.append(f"a second DELETE answered {again}, want 404")
    if code != 0:
        problems.append(f"the server exited with {code} on SIGTERM")
    summary = f"video frames {counter['video']}, audio frames {counter['audio']} in {elapsed:.1f} s; DELETE {deletes}, again {again}"
    if problems:
        print(f"whip_whep: FAILED: {'; '.join(problems)} ({summary})")
        return 1
    print(f"whip_whep: ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
