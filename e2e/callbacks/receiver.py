"""A Weir event-callback receiver for tests, on the Python standard library.

Checks each request's X-Weir-Signature with Python's hmac (an
implementation that is not Weir's): the lowercase hex HMAC-SHA256, keyed
with the callback key, of X-Weir-Timestamp + "." + the raw body. Answers 200
when it verifies and 401 when it does not, and appends one JSON line per
request to the log file:

    {"verified": true, "path": "/hook", "content_type": "application/json",
     "timestamp": "1763880000123", "signature": "...", "body": "<raw body>"}

Usage:

    python3 receiver.py --key KEY --log FILE [--port PORT]

Listens on 127.0.0.1:PORT (0, the default, picks a free port) and prints
`listening PORT` on stdout once ready. Stops on SIGTERM or SIGINT.
"""

import argparse
import hashlib
import hmac
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def expected_signature(key: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def make_handler(key: str, log_path: str, log_lock: threading.Lock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            timestamp = self.headers.get("X-Weir-Timestamp") or ""
            signature = (self.headers.get("X-Weir-Signature") or "").strip().lower()
            verified = bool(timestamp) and hmac.compare_digest(
                expected_signature(key, timestamp, body), signature
            )
            record = {
                "verified": verified,
                "path": self.path,
                "content_type": self.headers.get("Content-Type") or "",
                "timestamp": timestamp,
                "signature": signature,
                "body": body.decode("utf-8", errors="replace"),
            }
            with log_lock, open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            status = 200 if verified else 401
            answer = b"{}" if verified else b'{"error": "bad signature"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="the callback key")
    parser.add_argument("--log", required=True, help="the JSON-lines file to append to")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()

    handler = make_handler(args.key, args.log, threading.Lock())
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True

    def stop(_signum, _frame):
        # shutdown() waits for serve_forever(), which runs in this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
