"""The publisher: serves frames to any number of subscribers, each with its own bounded queue and sender thread.

`write` (the agent's frame loop) only encodes the frame once and appends it to every queue; a full queue drops its
oldest frame and counts it, so a slow or dead subscriber never holds the loop up. A new subscriber gets the newest
frame at once. It is an agent sink (edge/agent/contracts.py: describe, write, close).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Tuple

from ..errors import InputError
from .address import Address
from .handshake import answer, hello, reply
from .protocol import DEFAULT_MAX_FRAME_BYTES, DTYPES, FrameError, MessageReader, StreamFrame, frame_parts

if TYPE_CHECKING:  # annotations only: the stream sits below the agent
    from ..agent.contracts import FrameResult

log = logging.getLogger("minicpmv-edge.stream")
SOCKET_MODE = 0o660  # owner and group (the LLM and page services' group) may connect, as jtop's socket
Parts = Tuple[bytes, memoryview]


class _Subscriber:
    """One connection: its queue (newest `queue_length` frames), counters, and the thread that sends."""

    def __init__(self, sock: socket.socket, name: str, queue_length: int) -> None:
        self.sock, self.name = sock, name
        self.queue: Deque[Parts] = collections.deque()
        self.queue_length = queue_length
        self.ready = threading.Condition()
        self.sent = self.dropped = 0
        self.closed = self.draining = False
        self.thread = threading.current_thread()  # the sender

    def put(self, parts: Parts) -> None:
        with self.ready:
            if len(self.queue) >= self.queue_length:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(parts)
            self.ready.notify()

    def take(self) -> Optional[Parts]:
        with self.ready:
            while not self.queue and not self.closed and not self.draining:
                self.ready.wait()
            return None if self.closed or not self.queue else self.queue.popleft()

    def drain(self) -> None:
        """Send what is queued, then stop."""
        with self.ready:
            self.draining = True
            self.ready.notify()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def stats(self) -> Dict[str, Any]:
        return {"name": self.name, "sent": self.sent, "dropped": self.dropped, "queued": len(self.queue)}


class StreamPublisher:
    """Serve `model_version` tokens of width `token_width` at `address`; `start()` binds and starts accepting."""

    def __init__(self, address: Address, model_version: str, token_width: int, dtype: str = "fp16",
                 queue_length: int = 4, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 secret: Optional[bytes] = None, handshake_timeout_s: float = 10.0, drain_s: float = 2.0) -> None:
        if dtype not in DTYPES:
            raise InputError("stream.dtype must be fp16 or fp32, got %r" % (dtype,))
        if address.is_tcp and not secret:
            raise InputError("stream.tcp needs stream.secret_file: TCP subscribers must prove the shared secret")
        self.address, self.dtype, self.secret = address, dtype, secret
        self.model_version, self.token_width = str(model_version), int(token_width)
        self.queue_length, self.max_frame_bytes = queue_length, max_frame_bytes
        self.handshake_timeout_s, self.drain_s = handshake_timeout_s, drain_s
        self.subscribers: List[_Subscriber] = []
        self.gone: Dict[str, int] = collections.Counter()  # dropped frames of subscribers that left, and refusals
        self.latest: Optional[Parts] = None
        self.lock = threading.Lock()
        self.listener: Optional[socket.socket] = None
        self.accepted = 0

    def start(self) -> StreamPublisher:
        self.listener = self._tcp_listener() if self.address.is_tcp else self._unix_listener()
        self.listener.listen(16)
        threading.Thread(target=self._accept_loop, name="stream-accept", daemon=True).start()
        return self

    def _tcp_listener(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in str(self.address.host) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.address.host, self.address.port))
        except OSError as exc:
            sock.close()
            raise InputError("stream.tcp: cannot listen on %s (%s): choose a free port" % (self.address, exc)) from exc
        self.address = self.address._replace(port=sock.getsockname()[1])  # port 0: the one the system chose
        return sock

    def _unix_listener(self) -> socket.socket:
        path = self.address.path
        assert path is not None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError("stream.socket: cannot create %s (%s): run as a user that may, or let systemd's "
                             "RuntimeDirectory make it" % (path.parent, exc.strerror or exc)) from exc
        if path.exists() or path.is_symlink():
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(path))
                raise InputError("stream.socket: %s is served by another publisher: stop it, or choose another "
                                 "path" % path)
            path.unlink()  # left by a publisher that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(str(path), SOCKET_MODE)
        except OSError as exc:
            sock.close()
            raise InputError("stream.socket: cannot serve %s (%s): choose a path the agent's user can write"
                             % (path, exc.strerror or exc)) from exc
        return sock

    def _accept_loop(self) -> None:
        listener = self.listener
        assert listener is not None
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            threading.Thread(target=self._serve, args=(sock, "subscriber-%d" % self.accepted),
                             name="stream-send", daemon=True).start()

    def _serve(self, sock: socket.socket, name: str) -> None:
        """Handshake, then send the subscriber's queue until it or the publisher goes away."""
        subscriber = _Subscriber(sock, name, self.queue_length)
        try:
            if not self._handshake(sock, name):
                return
            sock.settimeout(None)
            with self.lock:
                if self.listener is None:
                    return
                self.subscribers.append(subscriber)
                if self.latest is not None:
                    subscriber.put(self.latest)
            while True:
                parts = subscriber.take()
                if parts is None:
                    return
                sock.sendall(parts[0])
                sock.sendall(parts[1])
                subscriber.sent += 1
        except (OSError, FrameError, EOFError) as exc:
            log.log(logging.INFO if subscriber in self.subscribers else logging.DEBUG, "%s left: %s", name, exc)
        finally:
            with self.lock:
                if subscriber in self.subscribers:
                    self.subscribers.remove(subscriber)
                    self.gone["dropped"] += subscriber.dropped
            subscriber.close()
            sock.close()

    def _handshake(self, sock: socket.socket, name: str) -> bool:
        sock.settimeout(self.handshake_timeout_s)
        offer, message = hello(self.model_version, self.token_width, self.dtype, self.secret)
        sock.sendall(message)
        reason = answer(offer, MessageReader(0).read(sock), self.secret)
        if reason is not None:
            self.gone["refused"] += 1
            log.warning("%s refused: %s", name, reason)
        sock.sendall(reply(reason))
        return reason is None

    def describe(self) -> str:
        return "the token stream at %s (%s, %d frames queued per subscriber)" % (self.address, self.dtype,
                                                                                 self.queue_length)

    def publish(self, frame: StreamFrame) -> None:
        """Queue `frame` for every subscriber, dropping each full queue's oldest; never blocks on a subscriber."""
        parts = frame_parts(frame)
        if len(parts[1]) > self.max_frame_bytes:
            raise ValueError("frame %d is %d bytes, over stream.max_frame_bytes %d"
                             % (frame.frame_id, len(parts[1]), self.max_frame_bytes))
        with self.lock:
            self.latest = parts
            subscribers = list(self.subscribers)
        for subscriber in subscribers:
            subscriber.put(parts)

    def write(self, result: FrameResult) -> None:
        """The sink's method: one frame's result as a FRAME (tokens [slices, query_num, width] in self.dtype)."""
        self.publish(StreamFrame(result.sequence, result.timestamp_s, self.model_version, result.grid, self.dtype,
                                 result.tokens, result.reused_from))

    def stats(self) -> Dict[str, Any]:
        with self.lock:
            current = [s.stats() for s in self.subscribers]
        return {"subscribers": current, "dropped": sum(s["dropped"] for s in current) + self.gone["dropped"],
                "refused": self.gone["refused"], "accepted": self.accepted}

    def close(self) -> None:
        """Stop accepting, give each subscriber up to `drain_s` seconds to take what is queued for it, disconnect
        them, remove the socket file."""
        with self.lock:
            listener, self.listener = self.listener, None
            subscribers = list(self.subscribers)
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        deadline = time.monotonic() + self.drain_s
        for subscriber in subscribers:
            subscriber.drain()
        for subscriber in subscribers:
            subscriber.thread.join(max(0.0, deadline - time.monotonic()))
            subscriber.close()
        log.info("token stream at %s closed: %s", self.address, self.stats())
        if not self.address.is_tcp and self.address.path is not None:
            with contextlib.suppress(OSError):
                self.address.path.unlink()
