"""The local HTTP API: ``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream: true``) and
``GET /v1/models``, OpenAI's shapes, ``GET /v1/scene/latest`` (the standing question's newest answer) and
``GET /v1/alerts`` (the recent alerts and each rule's state), on a ThreadingHTTPServer; a bearer token when one is
configured."""
from __future__ import annotations

import collections
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from .alerts import Alerts
from .api import DEFAULT_LIMITS, ApiError, Limits, parse_request
from .embeddings import LlmError
from .schedule import StandingQuestion
from .service import ChatService, Reply

log = logging.getLogger("minicpmv-edge.llm")
DRAIN_BYTES = 64 << 20  # a refused body up to this size is read away; a larger one is cut off


class LlmServer(ThreadingHTTPServer):
    """Serves `service` as model `model_id` at `address`, `schedule`'s newest answer and `alerts`' page; `token`,
    when set, must come as a bearer token."""

    daemon_threads = True

    def __init__(self, address: Tuple[str, int], service: ChatService, model_id: str,
                 token: Optional[str] = None, limits: Limits = DEFAULT_LIMITS,
                 schedule: Optional[StandingQuestion] = None, alerts: Optional[Alerts] = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.service, self.model_id, self.token, self.limits = service, model_id, token, limits
        self.schedule, self.alerts = schedule, alerts
        self.created = int(time.time())
        self.statuses: Dict[int, int] = collections.Counter()  # responses by HTTP status
        self._count_lock = threading.Lock()

    def count(self, status: int) -> None:
        with self._count_lock:
            self.statuses[status] += 1

    def start(self) -> LlmServer:
        """Serve in a thread (stop with shutdown() and server_close())."""
        threading.Thread(target=self.serve_forever, name="llm-api", daemon=True).start()
        return self


class _Handler(BaseHTTPRequestHandler):
    server: LlmServer

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Called with each response's status line: counted, then logged."""
        self.server.count(int(code))
        super().log_request(code, size)

    def do_GET(self) -> None:
        routes = {"/v1/models": self._models, "/v1/scene/latest": self._scene, "/v1/alerts": self._alerts}
        self._guarded(routes.get(self.path.rstrip("/"), self._not_found))

    def do_POST(self) -> None:
        self._guarded(self._chat if self.path.rstrip("/") == "/v1/chat/completions" else self._not_found)

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            if self.server.token is not None:
                sent = self.headers.get("Authorization", "")
                if not hmac.compare_digest(sent.encode(), ("Bearer " + self.server.token).encode()):
                    raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
            action()
        except ApiError as exc:
            self._json(exc.status, {"error": {"message": str(exc), "type": _ERROR_TYPES.get(exc.status, "error"),
                                              "code": exc.status}})

    def _not_found(self) -> None:
        raise ApiError(404, "no such endpoint: %s (POST /v1/chat/completions, GET /v1/models, GET /v1/scene/latest, "
                            "GET /v1/alerts)" % self.path)

    def _models(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": self.server.model_id, "object": "model",
                                                     "created": self.server.created, "owned_by": "minicpmv-edge"}]})

    def _scene(self) -> None:
        schedule = self.server.schedule
        if schedule is None:
            raise ApiError(404, "no standing question is configured (--ask and --every, or llm.schedule)")
        latest = schedule.latest
        if latest is None:
            raise ApiError(404, "no answer to the standing question yet: it comes every %g s once a camera frame "
                                "has arrived" % schedule.config.every_s)
        self._json(200, latest)

    def _alerts(self) -> None:
        """The recent alerts and each rule's state; no rules configured: both lists empty."""
        alerts = self.server.alerts
        self._json(200, {"alerts": [], "rules": []} if alerts is None else alerts.page())

    def _chat(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411, "a Content-Length is needed")
        if int(length) > self.server.limits.max_body_bytes:
            self._discard(int(length))
            raise ApiError(413, "the body is over %d bytes" % self.server.limits.max_body_bytes)
        request = parse_request(self.rfile.read(int(length)), self.server.model_id, self.server.limits)
        service = self.server.service
        service.admit()
        try:
            steps = service.answer(request)
            try:
                started = time.perf_counter()
                reply: Reply = next(steps)
                self._prompt_done = time.perf_counter()
                self._prompt_ms = (self._prompt_done - started) * 1e3
                if request.stream:
                    self._stream(reply, steps)
                else:
                    text = "".join(steps)
                    self._json(200, self._completion(reply, {"message": {"role": "assistant", "content": text}}))
            finally:
                steps.close()
        except LlmError as exc:
            log.error("llama.cpp failed: %s", exc)
            raise ApiError(500, "the LLM failed: %s" % exc) from None
        finally:
            service.release()

    def _discard(self, length: int) -> None:
        """Read a refused body away (up to DRAIN_BYTES) so that the client reads the 413 instead of a reset."""
        self.close_connection = True
        while 0 < length <= DRAIN_BYTES:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _completion(self, reply: Reply, choice: Dict[str, Any], chunk: bool = False) -> Dict[str, Any]:
        answer = reply.answer
        body = {"id": self._id, "object": "chat.completion.chunk" if chunk else "chat.completion",
                "created": int(time.time()), "model": self.server.model_id,
                "choices": [dict(choice, index=0, finish_reason=answer.finish_reason)]}
        if not chunk or answer.finish_reason is not None:
            body["usage"] = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                             "total_tokens": answer.prompt_tokens + answer.completion_tokens}
            body["frame"] = reply.frame  # what the answer is about: the camera frame, or null for an attached image
            body["timings"] = {"prompt_ms": round(self._prompt_ms, 3),  # prompt fed (prefill), then the answer
                               "decode_ms": round((time.perf_counter() - self._prompt_done) * 1e3, 3)}
        return body

    @property
    def _id(self) -> str:
        if not hasattr(self, "_request_id"):
            self._request_id = "chatcmpl-" + uuid.uuid4().hex
        return self._request_id

    def _stream(self, reply: Reply, pieces: Iterator[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._event(self._completion(reply, {"delta": {"role": "assistant", "content": ""}}, chunk=True))
        try:
            for piece in pieces:
                self._event(self._completion(reply, {"delta": {"content": piece}}, chunk=True))
        except LlmError as exc:  # the status line is sent: the error goes as an event
            log.error("llama.cpp failed: %s", exc)
            self._event({"error": {"message": "the LLM failed: %s" % exc, "type": "server_error", "code": 500}})
            return
        except (BrokenPipeError, ConnectionResetError):
            log.info("the client left before the answer ended")
            return
        self._event(self._completion(reply, {"delta": {}}, chunk=True))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, body: Dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(body).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                411: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
                500: "server_error", 503: "service_unavailable"}
