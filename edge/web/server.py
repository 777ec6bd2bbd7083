"""The page's HTTP server (stdlib, a thread per client): `/` and `/static/...` (the page), `/frame.mjpg` (the
preview as multipart MJPEG), `/state` (JSON) and `/llm/v1/...` (the LLM API through `LlmProxy`). Served on loopback
unless a token is set; with a token every request must carry it (`?token=`, which also sets a cookie, or
`Authorization: Bearer`)."""
from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import InputError
from ..stream.address import listen_address
from .llm_proxy import CHUNK_BYTES, LlmProxy
from .preview import Preview
from .state import Telemetry

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
COOKIE = "minicpmv_token"
BOUNDARY = "frame"
FRAME_WAIT_S = 5.0  # an MJPEG client with no new frame for this long gets the same question again
LLM_PATHS = {("GET", "/v1/alerts"), ("GET", "/v1/scene/latest"), ("POST", "/v1/chat/completions")}
MAX_BODY_BYTES = 1 << 20
log = logging.getLogger("minicpmv-edge")


def read_token(path: Path, key: str) -> str:
    """A token file's first line, at least 16 characters; `key` names the setting in the error."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("%s: cannot read %s (%s)" % (key, path, exc)) from None
    token = lines[0].strip() if lines else ""
    if len(token) < 16:
        raise InputError("%s: %s must hold a token of at least 16 characters on its first line (for example `head "
                         "-c 32 /dev/urandom | base64 > %s`)" % (key, path, path))
    return token


class WebServer(ThreadingHTTPServer):
    """The page at http://`listen`/, in a thread of its own until closed."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, listen: str, preview: Preview, telemetry: Telemetry, proxy: LlmProxy,
                 token: Optional[str] = None) -> None:
        host, port = listen_address(listen, "web.listen")
        self.preview, self.telemetry, self.proxy, self.token = preview, telemetry, proxy, token
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            raise InputError("web.listen %s: cannot listen there (%s): choose another port, or web.enabled: false"
                             % (listen, exc.strerror or exc)) from None
        self._thread = threading.Thread(target=self.serve_forever, name="web", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return "http://%s:%d/" % ("[%s]" % host if ":" in host else host, port)

    def state(self) -> Dict[str, Any]:
        """The JSON of /state: the loop's newest sample, the newest frame's facts, the LLM's reachability."""
        sample = dict(self.telemetry.sample() or {"banners": [], "history": [], "report": None, "governor": None})
        facts = self.preview.facts
        llm_down = self.proxy.down()
        banners = list(sample["banners"])
        if llm_down is not None:
            banners.append({"kind": "llm", "text": "llm down: %s (%s)" % (llm_down, self.proxy.base_url)})
        return dict(sample, banners=banners, frame=None if facts is None else facts.as_dict(),
                    llm={"url": self.proxy.base_url, "down": llm_down})

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class Handler(BaseHTTPRequestHandler):
    server: WebServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web: " + format, *args)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if not self._allowed(query):
            self._json(401, {"error": "this page needs its token: open /?token=<the token in web.token_file>"})
            return
        path = url.path
        routes: Dict[Tuple[str, str], Callable[[], None]] = {
            ("GET", "/"): lambda: self._static("index.html", query),
            ("GET", "/frame.mjpg"): self._mjpeg,
            ("GET", "/state"): lambda: self._json(200, self.server.state())}
        if method == "GET" and path.startswith("/static/"):
            self._static(path[len("/static/"):], query)
        elif (method, path) in routes:
            routes[(method, path)]()
        elif path.startswith("/llm/") and (method, path[len("/llm"):]) in LLM_PATHS:
            self._proxy(method, path[len("/llm"):])
        else:
            self._json(404, {"error": "no such page: %s (/, /frame.mjpg, /state, /llm/v1/...)" % path})

    def _allowed(self, query: Dict[str, Any]) -> bool:
        token = self.server.token
        if token is None:
            return True
        cookies = dict(part.strip().split("=", 1) for part in self.headers.get("Cookie", "").split(";")
                       if "=" in part)
        bearer = self.headers.get("Authorization", "")
        given = [query.get("token", [""])[0], cookies.get(COOKIE, ""),
                 bearer[len("Bearer "):] if bearer.startswith("Bearer ") else ""]
        return any(hmac.compare_digest(value.encode(), token.encode()) for value in given if value)

    def _static(self, name: str, query: Dict[str, Any]) -> None:
        path = (STATIC / name).resolve()
        if path.parent != STATIC or path.suffix not in TYPES or not path.is_file():
            self._json(404, {"error": "no such file: %s" % name})
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", TYPES[path.suffix])
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        token = self.server.token
        if token is not None and hmac.compare_digest(query.get("token", [""])[0].encode(), token.encode()):
            # the page's own requests carry the token as a cookie from here on
            self.send_header("Set-Cookie", "%s=%s; HttpOnly; SameSite=Strict; Path=/" % (COOKIE, token))
        self.end_headers()
        self.wfile.write(data)

    def _mjpeg(self) -> None:
        preview = self.server.preview
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=%s" % BOUNDARY)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        preview.watch()
        sequence = -1
        try:
            while True:
                jpeg = preview.next_jpeg(sequence, FRAME_WAIT_S)
                if jpeg is None:
                    if preview.closed:
                        return
                    continue
                sequence, data = jpeg
                self.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame-Sequence: %d"
                                 b"\r\n\r\n" % (BOUNDARY.encode(), len(data), sequence) + data + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            preview.unwatch()

    def _proxy(self, method: str, path: str) -> None:
        body = None
        if method == "POST":
            length_text = self.headers.get("Content-Length", "")
            length = int(length_text) if length_text.isdigit() else 0
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._json(413, {"error": "the body is over %d bytes" % MAX_BODY_BYTES})
                return
            body = self.rfile.read(length)
        try:
            connection, response = self.server.proxy.open(method, path, body)
        except OSError as exc:
            self._json(502, {"error": {"message": "the LLM API at %s cannot be reached: %s"
                                       % (self.server.proxy.base_url, exc), "code": 502}})
            return
        try:
            self.close_connection = True
            self.send_response(response.status)
            for name in ("Content-Type", "Cache-Control"):
                if response.getheader(name):
                    self.send_header(name, response.getheader(name))
            self.send_header("Connection", "close")
            self.end_headers()
            while True:
                chunk = response.read1(CHUNK_BYTES)
                if not chunk:
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log.info("web: the page left before the LLM's answer ended")
        finally:
            connection.close()

    def _json(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(data)
