"""The frame follower: a thread on the token stream that keeps only the newest frame (tokens and header).

When the stream goes away the last frame stays and the subscriber reconnects (``edge.stream.subscriber``); a refused
handshake (token width, secret) ends the thread and is kept in `error`. Each frame is kept with the number of the
connection it came on: frame ids start over when the agent restarts, so a frame id names a frame within one
connection only.
"""
from __future__ import annotations

import logging
import threading
from typing import Optional, Tuple

import numpy as np

from ..stream.address import Address
from ..stream.handshake import HandshakeRefused
from ..stream.protocol import StreamFrame
from ..stream.subscriber import StreamSubscriber

log = logging.getLogger("minicpmv-edge.llm")


class FrameFollower:
    """Subscribes to `address` for tokens `token_width` wide; `latest` is the newest frame, float32, or None."""

    def __init__(self, address: Address, token_width: int, secret: Optional[bytes] = None) -> None:
        self.subscriber = StreamSubscriber(address, token_width, secret)
        self.received = 0
        self.error: Optional[str] = None
        self._newest: Optional[Tuple[StreamFrame, int]] = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, name="frame-follower", daemon=True)

    def start(self) -> FrameFollower:
        self._thread.start()
        return self

    @property
    def latest(self) -> Optional[StreamFrame]:
        newest = self.newest()
        return None if newest is None else newest[0]

    def newest(self) -> Optional[Tuple[StreamFrame, int]]:
        """The newest frame and the number of the connection it came on (1, 2, ...), or None."""
        with self._lock:
            return self._newest

    def _follow(self) -> None:
        try:
            for frame in self.subscriber.frames():
                tokens = np.array(frame.tokens, dtype=np.float32)  # a copy: the frame is a view of the read buffer
                positions = None if frame.positions is None else np.array(frame.positions)
                with self._lock:
                    self._newest = (frame._replace(tokens=tokens, dtype="fp32", positions=positions),
                                    self.subscriber.connections)
                    self.received += 1
        except HandshakeRefused as exc:
            self.error = str(exc)
            log.error("the token stream refused this LLM: %s", exc)

    def close(self, timeout_s: float = 5.0) -> None:
        self.subscriber.close()
        self._thread.join(timeout_s)
