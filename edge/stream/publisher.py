"""The publisher: serves frames to any number of subscribers, each with its own bounded queue and sender thread.

`write` (the agent's frame loop) only appends the frame, unpacked, to every queue; the first sender thread that
takes it casts it to the stream's dtype and packs it, once for all subscribers (and once only for a reused frame's
tokens), so the cast is never the loop's. A full queue drops its oldest frame and counts it, so a slow or dead
subscriber never holds the loop up. Nobody subscribed: nothing is packed. A new subscriber gets the newest frame at
once. A reader thread per subscriber takes its ENCODE requests to the agent's
EncodeRequests and queues each answer ahead of the frames. It is an agent sink (edge/agent/contracts.py).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import InputError
from .address import Address
from .handshake import answer, hello, reply
from .protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    DTYPES,
    ENCODE,
    POSITIONS_DTYPE,
    ConnectionClosed,
    FrameError,
    MessageReader,
    StreamFrame,
    failed,
    frame_parts,
    image_of,
)
from .requests import EncodeRequests, Failure

if TYPE_CHECKING:  # annotations only: the stream sits below the agent
    from ..agent.contracts import FrameResult

log = logging.getLogger("minicpmv-edge.stream")
SOCKET_MODE = 0o660  # owner and group (the LLM and page services' group) may connect, as jtop's socket
Parts = Tuple[bytes, memoryview]


class _Packed:
    """A frame that is packed when a sender first needs it, once, whichever sender that is."""

    def __init__(self, frame: StreamFrame, pack: Callable[[StreamFrame], Parts]) -> None:
        self.frame, self._pack = frame, pack
        self._parts: Optional[Parts] = None
        self._lock = threading.Lock()

    def parts(self) -> Parts:
        with self._lock:
            if self._parts is None:
                self._parts = self._pack(self.frame)
            return self._parts


Reply = Union[StreamFrame, bytes]  # an encoded image (packed by the sender), or a FAILED message
MAX_REPLIES = 64  # answers a subscriber leaves unread before it is disconnected


class _Subscriber:
    """One connection: its queue (newest `queue_length` frames), counters, and the thread that sends."""

    def __init__(self, sock: socket.socket, name: str, queue_length: int) -> None:
        self.sock, self.name = sock, name
        self.wants_frames = True  # False: a connection for encode requests alone
        self.queue: Deque[_Packed] = collections.deque()
        self.replies: Deque[Reply] = collections.deque()  # sent before any frame, never dropped
        self.queue_length = queue_length
        self.ready = threading.Condition()
        self.sent = self.dropped = 0
        self.closed = self.draining = False
        self.thread = threading.current_thread()  # the sender

    def put(self, parts: _Packed) -> None:
        with self.ready:
            if len(self.queue) >= self.queue_length:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(parts)
            self.ready.notify()

    def reply(self, item: Reply) -> None:
        """Queue an answer to one of this subscriber's requests; one that leaves too many unread is dropped."""
        with self.ready:
            if len(self.replies) >= MAX_REPLIES:
                log.warning("%s leaves its answers unread; disconnecting it", self.name)
                self.closed = True
            self.replies.append(item)
            self.ready.notify()

    def take(self) -> Optional[Union[_Packed, Reply]]:
        with self.ready:
            while not self.queue and not self.replies and not self.closed and not self.draining:
                self.ready.wait()
            if self.closed:
                return None
            if self.replies:
                return self.replies.popleft()
            return self.queue.popleft() if self.queue else None

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
        return {"name": self.name, "frames": self.wants_frames, "sent": self.sent, "dropped": self.dropped,
                "queued": len(self.queue)}


class StreamPublisher:
    """Serve `model_version` tokens of width `token_width` at `address`; `start()` binds and starts accepting.
    `requests`: where subscribers' ENCODE requests go (the agent's frame loop serves them); None refuses them."""

    name = "stream"

    def __init__(self, address: Address, model_version: str, token_width: int, dtype: str = "fp16",
                 queue_length: int = 4, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 secret: Optional[bytes] = None, handshake_timeout_s: float = 10.0, drain_s: float = 2.0,
                 requests: Optional[EncodeRequests] = None) -> None:
        if dtype not in DTYPES:
            raise InputError("stream.dtype must be fp16 or fp32, got %r" % (dtype,))
        if address.is_tcp and not secret:
            raise InputError("stream.tcp needs stream.secret_file: TCP subscribers must prove the shared secret")
        self.address, self.dtype, self.secret, self.requests = address, dtype, secret, requests
        self.model_version, self.token_width = str(model_version), int(token_width)
        self.queue_length, self.max_frame_bytes = queue_length, max_frame_bytes
        self.handshake_timeout_s, self.drain_s = handshake_timeout_s, drain_s
        self.subscribers: List[_Subscriber] = []
        self.counters: Dict[str, int] = collections.Counter()  # published, packed, refused, rejected ...
        self.latest: Optional[_Packed] = None  # the newest frame, or None
        self.lock = threading.Lock()
        self.listener: Optional[socket.socket] = None
        self.accepted = 0
        self._cast: Tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None)  # (tokens, as cast)
        self._cast_lock = threading.Lock()

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
        """Handshake, then send the subscriber's answers and frames until it or the publisher goes away."""
        subscriber = _Subscriber(sock, name, self.queue_length)
        try:
            wants_frames = self._handshake(sock, name)
            if wants_frames is None:
                return
            subscriber.wants_frames = wants_frames
            sock.settimeout(None)
            with self.lock:
                if self.listener is None:
                    return
                self.subscribers.append(subscriber)
                if wants_frames and self.latest is not None:
                    subscriber.put(self.latest)
            threading.Thread(target=self._receive, args=(subscriber,), name="stream-receive", daemon=True).start()
            while True:
                item = subscriber.take()
                if item is None:
                    return
                if isinstance(item, bytes):
                    sock.sendall(item)
                    continue
                parts = frame_parts(item) if isinstance(item, StreamFrame) else item.parts()
                sock.sendall(parts[0])
                sock.sendall(parts[1])
                subscriber.sent += 1
        except (OSError, FrameError, EOFError) as exc:
            log.log(logging.INFO if subscriber in self.subscribers else logging.DEBUG, "%s left: %s", name, exc)
        finally:
            with self.lock:
                if subscriber in self.subscribers:
                    self.subscribers.remove(subscriber)
                    self.counters["dropped"] += subscriber.dropped
            subscriber.close()
            sock.close()

    def _handshake(self, sock: socket.socket, name: str) -> Optional[bool]:
        """Whether the accepted subscriber takes camera frames; None when it was refused."""
        sock.settimeout(self.handshake_timeout_s)
        offer, message = hello(self.model_version, self.token_width, self.dtype, self.secret)
        sock.sendall(message)
        request = MessageReader(0).read(sock)
        reason = answer(offer, request, self.secret)
        if reason is not None:
            self.counters["refused"] += 1
            log.warning("%s refused: %s", name, reason)
        sock.sendall(reply(reason))
        return None if reason is not None else bool(request.header["frames"])

    def _receive(self, subscriber: _Subscriber) -> None:
        """The subscriber's requests, until it goes: each ENCODE to `requests`, anything else rejected and logged
        (a message that breaks the prefix ends the connection)."""
        reader = MessageReader(self.max_frame_bytes)
        while not subscriber.closed:
            try:
                message = reader.read(subscriber.sock)
                if message.kind != ENCODE:
                    raise FrameError("kind", "a subscriber may send only encode requests, got kind %d"
                                     % message.kind, resync=True)
                request_id, image = image_of(message)
            except FrameError as exc:
                self.counters["rejected"] += 1
                log.warning("%s sent a message that was rejected (%s)", subscriber.name, exc)
                if not exc.resync:
                    break
                continue
            except (ConnectionClosed, OSError):
                break
            self._request(subscriber, request_id, image)
        subscriber.close()

    def _request(self, subscriber: _Subscriber, request_id: int, image: np.ndarray) -> None:
        """Hand `image` to the agent's frame loop; its tokens (or why not) go back to `subscriber` alone."""
        def done(encoded: Any, failure: Optional[Failure]) -> None:
            if failure is not None:
                subscriber.reply(failed(request_id, *failure))
                return
            subscriber.reply(StreamFrame(request_id, time.monotonic(), self.model_version, encoded.grid,
                                         self.dtype, encoded.tokens, None, request_id, positions=encoded.positions,
                                         block_rows=None if encoded.token_counts is None
                                         else tuple(encoded.token_counts)))

        refused = ("error", "this publisher encodes no images (only the agent's does)") if self.requests is None \
            else self.requests.submit(image, done)
        if refused is not None:
            subscriber.reply(failed(request_id, *refused))

    def describe(self) -> str:
        return "the token stream at %s (%s, %d frames queued per subscriber)" % (self.address, self.dtype,
                                                                                 self.queue_length)

    def publish(self, frame: StreamFrame) -> None:
        """Queue `frame` for every subscriber that takes frames, dropping each full queue's oldest; never blocks on
        a subscriber, and leaves the packing to the senders."""
        size = DTYPES[frame.dtype].itemsize * int(np.prod(frame.tokens.shape))
        size += 0 if frame.positions is None else POSITIONS_DTYPE.itemsize * int(np.prod(np.shape(frame.positions)))
        if size > self.max_frame_bytes:
            raise ValueError("frame %d is %d bytes, over stream.max_frame_bytes %d"
                             % (frame.frame_id, size, self.max_frame_bytes))
        packed = _Packed(frame, self._packed)
        with self.lock:
            self.latest = packed
            self.counters["published"] += 1
            subscribers = [s for s in self.subscribers if s.wants_frames]
        for subscriber in subscribers:
            subscriber.put(packed)

    def write(self, result: FrameResult) -> None:
        """The sink's method: one frame's result as a FRAME (tokens [slices, query_num, width] in self.dtype, or
        [rows, width] with the rows' positions and blocks for 4.6 and 4.7)."""
        self.publish(StreamFrame(result.sequence, result.timestamp_s, self.model_version, result.grid, self.dtype,
                                 result.tokens, result.reused_from, frames=result.frames,
                                 positions=result.positions, block_rows=result.block_rows))

    def _packed(self, frame: StreamFrame) -> Parts:
        """`frame` as a FRAME message; a reused frame's tokens (the same array again) are cast only once."""
        with self._cast_lock:
            source, cast = self._cast
            if frame.tokens is not source or cast is None:
                cast = np.ascontiguousarray(frame.tokens, dtype=DTYPES[frame.dtype])
                self._cast = (frame.tokens, cast)
                self.counters["packed"] += 1
        return frame_parts(frame._replace(tokens=cast))

    def stats(self) -> Dict[str, Any]:
        with self.lock:
            current = [s.stats() for s in self.subscribers]
        counters = self.counters
        stats = {"subscribers": current, "dropped": sum(s["dropped"] for s in current) + counters["dropped"],
                 "refused": counters["refused"], "accepted": self.accepted, "published": counters["published"],
                 "packed": counters["packed"], "rejected": counters["rejected"]}
        if self.requests is not None:
            stats["requests"] = self.requests.stats()
        return stats

    def close(self) -> None:
        """Stop accepting, give each subscriber up to `drain_s` seconds to take what is queued for it, disconnect
        them, remove the socket file."""
        with self.lock:
            listener, self.listener = self.listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        deadline = time.monotonic() + self.drain_s
        with self.lock:
            subscribers = list(self.subscribers)
        for subscriber in subscribers:
            subscriber.drain()
        for subscriber in subscribers:
            subscriber.thread.join(max(0.0, deadline - time.monotonic()))
            subscriber.close()
        log.info("token stream at %s closed: %s", self.address, self.stats())
        if not self.address.is_tcp and self.address.path is not None:
            with contextlib.suppress(OSError):
                self.address.path.unlink()
