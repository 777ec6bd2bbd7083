"""The page's way to the LLM API: requests under /llm/ forwarded to the LLM process (its bearer token added), the
answer passed back as it arrives (server-sent events included), and whether the LLM answered lately."""
from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from typing import Dict, Optional, Tuple

TIMEOUT_S = 300.0  # an answer may take long on a busy box
PROBE_TIMEOUT_S = 1.0
PROBE_EVERY_S = 2.0
CHUNK_BYTES = 1 << 14


class LlmProxy:
    """Forwards to `base_url` (http://host:port); `token`: the LLM API's bearer token, or None."""

    def __init__(self, base_url: str, token: Optional[str] = None) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.base_url, self.token = base_url, token
        self._https = parsed.scheme == "https"
        self._host, self._port, self._prefix = parsed.hostname or "127.0.0.1", parsed.port, parsed.path.rstrip("/")
        self._lock = threading.Lock()
        self._status: Tuple[float, Optional[str]] = (-float("inf"), None)  # (when, why down or None)

    def open(self, method: str, path: str, body: Optional[bytes] = None,
             timeout_s: float = TIMEOUT_S) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """The connection and the response to `method path` (path under the API: /v1/...); OSError when the LLM
        cannot be reached, which also marks it down."""
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=timeout_s)
        headers: Dict[str, str] = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = "Bearer " + self.token
        try:
            connection.request(method, self._prefix + path, body, headers)
            response = connection.getresponse()
        except OSError as exc:
            connection.close()
            self._mark("%s: %s" % (type(exc).__name__, exc))
            raise
        self._mark(None)
        return connection, response

    def down(self) -> Optional[str]:
        """Why the LLM API cannot be reached (None: it answered), asked again at most every PROBE_EVERY_S."""
        with self._lock:
            at, why = self._status
        if time.monotonic() - at >= PROBE_EVERY_S:
            try:
                connection, response = self.open("GET", "/v1/models", timeout_s=PROBE_TIMEOUT_S)
                response.read()
                connection.close()
            except OSError:
                pass
            with self._lock:
                why = self._status[1]
        return why

    def _mark(self, why: Optional[str]) -> None:
        with self._lock:
            self._status = (time.monotonic(), why)
