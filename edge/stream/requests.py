"""Images a stream subscriber asks the agent to encode (an API request's attached photo): a bounded queue between
the publisher's reader threads and the agent's frame loop. The loop owns the engines and serves the queue between
camera frames, so a Jetson holds one set of engines and uses them from one thread."""
from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable, Deque, Dict, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import InputError

log = logging.getLogger("minicpmv-edge.stream")
Failure = Tuple[str, str]  # (code, one-line reason), codes as in protocol.FAILURE_CODES
Done = Callable[[Any, Optional[Failure]], None]  # (the EncodedImage or None, the failure or None)


class EncodeRequest(NamedTuple):
    image: np.ndarray  # uint8 RGB [height, width, 3]
    done: Done  # called once, from the serving thread


class EncodeRequests:
    """At most `limit` images waiting; `submit` from any thread, `serve` from the one thread that owns the engines."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = int(limit)
        self._waiting: Deque[EncodeRequest] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        self.counters: Dict[str, int] = collections.Counter()

    def submit(self, image: np.ndarray, done: Done) -> Optional[Failure]:
        """Queue `image`; the failure instead when the queue is full or closed (`done` is then never called)."""
        with self._lock:
            if self._closed:
                self.counters["refused"] += 1
                return "stopped", "the agent is stopping"
            if len(self._waiting) >= self.limit:
                self.counters["refused"] += 1
                return "busy", "the agent has %d images waiting to be encoded; retry later" % self.limit
            self._waiting.append(EncodeRequest(image, done))
        return None

    def __len__(self) -> int:
        return len(self._waiting)

    def serve(self, encode: Callable[[np.ndarray], Any]) -> int:
        """Encode every waiting image with `encode` and hand each result (or failure) to its `done`; how many."""
        served = 0
        while True:
            with self._lock:
                if not self._waiting:
                    return served
                request = self._waiting.popleft()
            try:
                encoded = encode(request.image)
            except (InputError, ValueError) as exc:
                self._finish(request, None, ("bad-image", str(exc)))
            except Exception as exc:  # noqa: BLE001 - one image's fault is its requester's answer, not the loop's
                log.warning("encoding a requested image failed: %s: %s", type(exc).__name__, exc)
                self._finish(request, None, ("error", "%s: %s" % (type(exc).__name__, exc)))
            else:
                self._finish(request, encoded, None)
            served += 1

    def _finish(self, request: EncodeRequest, encoded: Any, failure: Optional[Failure]) -> None:
        self.counters["failed" if failure else "served"] += 1
        try:
            request.done(encoded, failure)
        except Exception as exc:  # noqa: BLE001 - a requester that went away must not stop the loop
            log.info("an encoded image could not be handed back: %s", exc)

    def close(self) -> None:
        """Refuse new images and fail the waiting ones ("stopped")."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
        for request in waiting:
            self._finish(request, None, ("stopped", "the agent stopped before encoding the image"))

    def stats(self) -> Dict[str, int]:
        return {"served": self.counters["served"], "failed": self.counters["failed"],
                "refused": self.counters["refused"], "waiting": len(self._waiting)}
