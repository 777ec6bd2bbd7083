"""A real HTTP server receiving webhook POSTs: it answers each with the next of the statuses it was given (then
200) and keeps what it was sent."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List


class Receiver(ThreadingHTTPServer):
    """Answers each POST with the next of `statuses` (then 200), keeping what it was sent."""

    daemon_threads = True

    def __init__(self, statuses: List[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses, self.posts, self.accepted = list(statuses), [], []

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/hook" % self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        post = {"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body), "status": status}
        self.server.posts.append(post)
        if status == 200:
            self.server.accepted.append(post)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
