"""aiortc interop: one aiortc peer publishes through WHIP, a second one
plays through WHEP, and decoded frames must arrive; then both sessions are
deleted. Once with VP8, once with H.264.

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

import aiortc.rtcrtpreceiver  # noqa: E402
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack  # noqa: E402
from av import VideoFrame  # noqa: E402

# Which codecs aiortc's receivers actually decoded (the SDP answer may list
# more than the one the server sends).
DECODED_CODECS = set()
_get_decoder = aiortc.rtcrtpreceiver.get_decoder


def _recording_get_decoder(codec):
    DECODED_CODECS.add(codec.mimeType)
    return _get_decoder(codec)


aiortc.rtcrtpreceiver.get_decoder = _recording_get_decoder

WEIR_BIN = os.environ.get("WEIR_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/weir-target")), "debug", "weir"
)
CODECS = ("VP8", "H264")
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


def start_server(data_dir, log):
    """Starts `weir serve` on ephemeral ports; its log goes to the file `log`."""
    proc = subprocess.Popen(
        [WEIR_BIN, "serve", "--data-dir", data_dir, "--http-listen", "127.0.0.1:0", "--udp-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=log,
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
    raise RuntimeError("the server did not start")


def token(data_dir, room, user, grants):
    return subprocess.check_output(
        [WEIR_BIN, "token", "create", "--data-dir", data_dir, "--room", room, "--user", user, "--grants", grants],
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


async def count_frames(track, result, started):
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        result[track.kind] += 1
        if track.kind == "video" and result["first_frame_ms"] is None:
            result["first_frame_ms"] = round((time.monotonic() - started) * 1000)
            result["size"] = (frame.width, frame.height)


async def run(base, data_dir, codec):
    """Publishes `codec` video and audio through WHIP, plays them through WHEP;
    returns what the viewer got."""
    room = f"interop-{codec.lower()}"
    publisher = RTCPeerConnection()
    video = publisher.addTransceiver(MovingBars(), direction="sendonly")
    video.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() in (f"video/{codec.lower()}", "video/rtx")
        ]
    )
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    publish_location = await negotiate(
        publisher, f"{base}/whip/v1/rooms/{room}", token(data_dir, room, "camera", "publish")
    )

    DECODED_CODECS.clear()
    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    viewer.addTransceiver("audio", direction="recvonly")
    result = {"codec": None, "video": 0, "audio": 0, "first_frame_ms": None, "size": None}
    readers = []
    started = time.monotonic()

    @viewer.on("track")
    def on_track(track):
        readers.append(asyncio.ensure_future(count_frames(track, result, started)))

    view_location = await negotiate(
        viewer, f"{base}/whep/v1/rooms/{room}", token(data_dir, room, "viewer", "subscribe")
    )

    while time.monotonic() - started < DEADLINE_S:
        if result["video"] >= WANT_VIDEO_FRAMES and result["audio"] >= WANT_AUDIO_FRAMES:
            break
        await asyncio.sleep(0.2)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    result["codec"] = sorted(c for c in DECODED_CODECS if c.startswith("video/"))

    result["deletes"] = []
    for location in (view_location, publish_location):
        status, _, _ = await asyncio.to_thread(http, "DELETE", base + location)
        result["deletes"].append(status)
    result["delete_again"], _, _ = await asyncio.to_thread(http, "DELETE", base + publish_location)

    for reader in readers:
        reader.cancel()
    await viewer.close()
    await publisher.close()
    return result


def problems_of(codec, result):
    problems = []
    if result["codec"] != [f"video/{codec}"]:
        problems.append(f"the viewer decoded {result['codec']}, want video/{codec}")
    if result["video"] < WANT_VIDEO_FRAMES:
        problems.append(f"only {result['video']} video frames decoded (want {WANT_VIDEO_FRAMES})")
    if result["size"] not in (None, (WIDTH, HEIGHT)):
        problems.append(f"frames of {result['size']}, want {(WIDTH, HEIGHT)}")
    if result["audio"] < WANT_AUDIO_FRAMES:
        problems.append(f"only {result['audio']} audio frames (want {WANT_AUDIO_FRAMES})")
    if any(status not in (200, 204) for status in result["deletes"]):
        problems.append(f"DELETE answered {result['deletes']}")
    if result["delete_again"] != 404:
        problems.append(f"a second DELETE answered {result['delete_again']}, want 404")
    return problems


async def run_all(base, data_dir):
    results = {}
    for codec in CODECS:
        results[codec] = await asyncio.wait_for(run(base, data_dir, codec), 60)
    return results


def main():
    if not os.path.exists(WEIR_BIN):
        print(f"whip_whep: FAILED: no server binary at {WEIR_BIN}")
        return 1
    data_dir = tempfile.mkdtemp(prefix="weir-interop-")
    log = tempfile.TemporaryFile(mode="w+")
    problems = []
    results = {}
    proc = None
    try:
        proc, base = start_server(data_dir, log)
        results = asyncio.run(run_all(base, data_dir))
    except Exception as error:  # noqa: BLE001 - report any failure as a test failure
        problems.append(repr(error))
    finally:
        code = None
        if proc is not None:
            proc.terminate()
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    if proc is not None and code != 0:
        problems.append(f"the server exited with {code} on SIGTERM")

    for codec, result in results.items():
        summary = (
            f"{codec}: {result['video']} {'+'.join(result['codec'])} frames ({result['size'][0]}x{result['size'][1]}, first after "
            f"{result['first_frame_ms']} ms), {result['audio']} audio frames in {result['elapsed_s']} s; "
            f"DELETE {result['deletes']}, again {result['delete_again']}"
            if result["size"]
            else f"{codec}: no video frame; {result}"
        )
        print(f"whip_whep {summary}")
        problems.extend(f"{codec}: {p}" for p in problems_of(codec, result))

    if problems:
        log.seek(0)
        print("server log (last lines):")
        print("".join(log.readlines()[-40:]))
        print(f"whip_whep: FAILED: {'; '.join(problems)}")
        return 1
    print(f"whip_whep: ok ({', '.join(CODECS)} through WHIP and WHEP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
