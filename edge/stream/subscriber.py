"""The subscriber: connect, handshake, receive frames; reconnect with backoff when the publisher goes away.

A message that breaks the protocol is logged with its reason and counted in `rejected`. When the whole message was
read (a bad header, a payload that does not match its shape) the stream goes on with the next one; when the prefix
itself cannot be trusted (magic, version, an oversized length) or the connection ends inside a message, the
connection is opened again at once. Only a refused handshake (token width, secret) ends the subscription.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
import time
from typing import Dict, Iterator, Optional

from .address import Address, connect
from .handshake import subscribe, verdict
from .protocol import DEFAULT_MAX_FRAME_BYTES, FRAME, ConnectionClosed, FrameError, MessageReader, StreamFrame, frame_of

log = logging.getLogger("minicpmv-edge.stream")


class StreamSubscriber:
    """Frames from the publisher at `address` for an LLM that takes tokens `token_width` wide."""

    def __init__(self, address: Address, token_width: int, secret: Optional[bytes] = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, backoff_initial_s: float = 0.1,
                 backoff_max_s: float = 2.0, connect_timeout_s: float = 10.0) -> None:
        self.address, self.token_width, self.secret = address, int(token_width), secret
        self.max_frame_bytes = max_frame_bytes
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.rejected: Dict[str, int] = collections.Counter()  # reason -> messages rejected
        self.received = self.connections = 0
        self.model_version: Optional[str] = None  # as the publisher announced it
        self.sock: Optional[socket.socket] = None
        self.reader = MessageReader(max_frame_bytes)
        self.closing = threading.Event()

    def connect(self, timeout_s: Optional[float] = None) -> bool:
        """Connect and handshake now (receive() does it when needed); False when `timeout_s` passed first."""
        return self.sock is not None or self._open(None if timeout_s is None else time.monotonic() + timeout_s)

    def frames(self, poll_s: float = 0.5) -> Iterator[StreamFrame]:
        """Every frame until close(); reconnecting as often as needed."""
        while not self.closing.is_set():
            frame = self.receive(poll_s)
            if frame is not None:
                yield frame

    def receive(self, timeout_s: Optional[float] = None) -> Optional[StreamFrame]:
        """The next frame, or None when `timeout_s` passes (None: wait as long as it takes) or after close().
        Raises HandshakeRefused when the publisher refuses this subscriber."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.closing.is_set():
            if self.sock is None and not self._open(deadline):
                return None
            assert self.sock is not None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                self.sock.settimeout(remaining)
                message = self.reader.read(self.sock)
                if message.kind != FRAME:
                    raise FrameError("kind", "expected a frame, got message kind %d" % message.kind, resync=True)
                frame = frame_of(message)
            except socket.timeout:
                return None  # what was read so far is kept for the next call
            except FrameError as exc:
                self.rejected[exc.reason] += 1
                log.warning("stream message rejected (%s)%s", exc, "" if exc.resync else "; reconnecting")
                if not exc.resync:
                    self._disconnect()
                continue
            except (ConnectionClosed, OSError) as exc:
                log.info("stream connection lost (%s); reconnecting", exc)
                self._disconnect()
                continue
            self.received += 1
            return frame
        return None

    def _open(self, deadline: Optional[float]) -> bool:
        """Connect and handshake, with backoff between failed tries, until `deadline`; True when connected."""
        backoff = self.backoff_initial_s
        while not self.closing.is_set():
            try:
                self.sock = self._handshake(connect(self.address, self.connect_timeout_s))
                self.reader = MessageReader(self.max_frame_bytes)
                self.connections += 1
                return True
            except (OSError, FrameError, ConnectionClosed) as exc:
                log.info("token stream at %s not reachable (%s); trying again in %.1f s", self.address, exc, backoff)
            wait = backoff if deadline is None else min(backoff, deadline - time.monotonic())
            if wait <= 0 or self.closing.wait(wait):
                return False
            backoff = min(2 * backoff, self.backoff_max_s)
        return False

    def _handshake(self, sock: socket.socket) -> socket.socket:
        try:
            reader = MessageReader(0)
            offer = reader.read(sock)
            sock.sendall(subscribe(offer, self.token_width, self.secret))
            verdict(reader.read(sock))
        except BaseException:
            sock.close()
            raise
        self.model_version = offer.header.get("model_version")
        return sock

    def _disconnect(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def close(self) -> None:
        """Stop: a receive() in another thread returns None."""
        self.closing.set()
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> StreamSubscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        self._disconnect()
