"""A stand-in for Slack's incoming webhook on 127.0.0.1, for tests of alert delivery and of secret leaks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The secret part of a Slack webhook URL is its path: tests look for it wherever it could leak.
SECRET_PATH = "/services/T0TEST/B0TEST/s3cr3tT0kenValue"


class Receiver:
    """A stand-in for Slack's incoming webhook on 127.0.0.1: records bodies, answers with planned statuses."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append({"path": self.path, "status": status, "body": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"internal_error")

            def log_message(self, *args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def delivered(self) -> list[dict]:
        return [r["body"] for r in self.requests if r["status"] == 200]
