"""The encode client: asks the agent, over its token stream, to encode an image with the agent's own engines.

It keeps one connection of its own that takes no camera frames (SUBSCRIBE with `frames: false`), sends one ENCODE
at a time and waits for the FRAME that carries the request's id, or a FAILED. A lost connection is opened again at
the next request. So the LLM process answers about a photo without holding a second set of engines.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Optional

import numpy as np

from .address import Address, connect
from .handshake import HandshakeRefused, subscribe, verdict
from .protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    FAILED,
    FRAME,
    ConnectionClosed,
    FrameError,
    MessageReader,
    StreamFrame,
    encode_request,
    failure_of,
    frame_of,
)


class EncodeFailed(Exception):
    """The agent did not encode the image: `code` busy, bad-image, stopped or error (protocol.FAILURE_CODES)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class EncodeClient:
    """Images to tokens through the agent at `address`, for an LLM that takes tokens `token_width` wide."""

    def __init__(self, address: Address, token_width: int, secret: Optional[bytes] = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, connect_timeout_s: float = 5.0) -> None:
        self.address, self.token_width, self.secret = address, int(token_width), secret
        self.max_frame_bytes, self.connect_timeout_s = max_frame_bytes, connect_timeout_s
        self.sock: Optional[socket.socket] = None
        self.lock = threading.Lock()  # one request at a time on the one connection
        self.last_id = 0

    def encode(self, image: np.ndarray, timeout_s: float = 60.0) -> StreamFrame:
        """The tokens of `image` (uint8 RGB [height, width, 3]) as the agent made them; EncodeFailed otherwise."""
        with self.lock:
            deadline = time.monotonic() + timeout_s
            kept = self.sock is not None
            try:
                return self._request(image, deadline, timeout_s)
            except EncodeFailed as exc:
                if not (kept and exc.code == "stopped"):
                    raise
            return self._request(image, deadline, timeout_s)  # the kept connection went with a restarted agent

    def _request(self, image: np.ndarray, deadline: float, timeout_s: float) -> StreamFrame:
        sock = self._connected()
        self.last_id += 1
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            for part in encode_request(self.last_id, image):
                sock.sendall(part)
            return self._answer(sock, self.last_id, deadline)
        except socket.timeout:
            self.close()  # a late answer must not be taken for the next request's
            raise EncodeFailed("error", "the agent did not answer within %.0f s" % timeout_s) from None
        except (OSError, ConnectionClosed, FrameError) as exc:
            self.close()
            raise EncodeFailed("stopped", "the connection to the agent's token stream broke (%s)" % exc) from None

    def _answer(self, sock: socket.socket, request_id: int, deadline: float) -> StreamFrame:
        reader = MessageReader(self.max_frame_bytes)
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            message = reader.read(sock)
            if message.kind == FAILED:
                failure = failure_of(message)
                if failure.request_id == request_id:
                    raise EncodeFailed(failure.code, failure.reason)
            elif message.kind == FRAME:
                frame = frame_of(message)
                if frame.request_id == request_id:
                    return frame._replace(tokens=np.array(frame.tokens, dtype=np.float32), dtype="fp32")
            else:
                raise FrameError("kind", "expected an encoded image, got message kind %d" % message.kind)

    def _connected(self) -> socket.socket:
        if self.sock is not None:
            return self.sock
        try:
            sock = connect(self.address, self.connect_timeout_s)
        except OSError as exc:
            raise EncodeFailed("stopped", "the agent's token stream at %s is not reachable (%s)"
                               % (self.address, exc)) from None
        try:
            sock.settimeout(self.connect_timeout_s)
            reader = MessageReader(0)
            sock.sendall(subscribe(reader.read(sock), self.token_width, self.secret, frames=False))
            verdict(reader.read(sock))
        except HandshakeRefused as exc:
            sock.close()
            raise EncodeFailed("error", str(exc)) from None
        except (OSError, FrameError, ConnectionClosed) as exc:
            sock.close()
            raise EncodeFailed("stopped", "the handshake with the agent failed (%s)" % exc) from None
        self.sock = sock
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def __enter__(self) -> EncodeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
