"""The token stream's wire format: length-prefixed messages, each a fixed prefix, a JSON header and raw bytes.

Prefix (20 bytes, big-endian): magic ``MCVT``, protocol version (u16), message kind (u16), header length (u32),
payload length (u64). Decoding checks the prefix before reading anything else, so a bad or oversized message never
makes the reader allocate or read past the limits. Every problem is one `FrameError`; docs/stream.md has the bytes.

Version 3 is a FRAME that also carries its rows' (t, h, w) positions and/or its blocks' row counts (MiniCPM-V 4.7,
4.6); every other message, and every frame without them (2.x to 4.5 bundles), stays version 2, byte for byte.
"""
from __future__ import annotations

import json
import math
import socket
import struct
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

MAGIC = b"MCVT"
VERSION = 2
VERSION_FRAME_EXTRAS = 3  # a FRAME with positions or block_rows
VERSIONS = (VERSION, VERSION_FRAME_EXTRAS)
PREFIX = struct.Struct(">4sHHIQ")
MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
HELLO, SUBSCRIBE, ACCEPT, REFUSE, FRAME, ENCODE, FAILED = 1, 2, 3, 4, 5, 6, 7
KINDS = (HELLO, SUBSCRIBE, ACCEPT, REFUSE, FRAME, ENCODE, FAILED)
WITH_PAYLOAD = (FRAME, ENCODE)  # the kinds that carry bytes after the header
DTYPES = {"fp16": np.dtype("<f2"), "fp32": np.dtype("<f4")}
FRAME_KEYS = ("frame_id", "timestamp_s", "model_version", "grid", "dtype", "shape", "reused_from", "request_id")
GROUP_KEY = "frames"  # in a FRAME header only for a 4.5 video group: how many camera frames its tokens cover
FRAME_KEYS_V3 = FRAME_KEYS + ("positions", "block_rows")
POSITIONS_DTYPE = np.dtype("<i4")  # (t, h, w) per token row, ahead of the tokens in a version 3 payload
MAX_POSITION = 1 << 30
MAX_BLOCKS = 64  # an overview and its slices
ENCODE_KEYS = ("request_id", "shape", "dtype")
FAILED_KEYS = ("request_id", "code", "reason")
FAILURE_CODES = ("busy", "bad-image", "stopped", "error")
MAX_TEXT = 64  # model version, and any other short string in a header


class FrameError(Exception):
    """A message that breaks the protocol. `reason` is a short category (magic, version, kind, oversized,
    truncated, header, payload); `resync` is True when the whole message was consumed, so the stream can go on."""

    def __init__(self, reason: str, detail: str, resync: bool = False) -> None:
        super().__init__("%s: %s" % (reason, detail))
        self.reason, self.detail, self.resync = reason, detail, resync


class ConnectionClosed(EOFError):
    """The peer closed the connection between two messages."""


class Message(NamedTuple):
    kind: int
    header: Dict[str, Any]
    payload: Any  # bytes, or a memoryview of the reader's buffer
    version: int = VERSION


class StreamFrame(NamedTuple):
    """One frame's tokens as they travel: `tokens` is [rows, width] or [slices, query_num, width]. A camera frame
    has `request_id` None; the answer to a subscriber's ENCODE request carries the request's id."""

    frame_id: int
    timestamp_s: float
    model_version: str
    grid: Optional[Tuple[int, int]]
    dtype: str
    tokens: np.ndarray
    reused_from: Optional[int] = None
    request_id: Optional[int] = None
    frames: int = 1  # camera frames the tokens cover (> 1: a 4.5 video group ending at frame_id)
    positions: Optional[np.ndarray] = None  # int32 [rows, 3]: each token row's (t, h, w) (4.7's canvas), or None
    block_rows: Optional[Tuple[int, ...]] = None  # the rows of each block (overview, slices) when they differ

    @property
    def rows(self) -> int:
        """The number of token rows (the product of every dimension but the width)."""
        return math.prod(self.tokens.shape[:-1])


class Failure(NamedTuple):
    """A FAILED message: the ENCODE request `request_id` was not served; `code` is one of FAILURE_CODES."""

    request_id: int
    code: str
    reason: str


def pack(kind: int, header: Dict[str, Any], payload: Any = b"", version: int = VERSION) -> bytes:
    """One whole message as bytes (control messages, tests)."""
    return b"".join(message_parts(kind, header, payload, version))


def message_parts(kind: int, header: Dict[str, Any], payload: Any = b"", version: int = VERSION,
                  lead: bytes = b"") -> Tuple[bytes, memoryview]:
    """Prefix + header (+ `lead`, the payload's first bytes) as bytes, and the rest of the payload as a view (not
    copied): what a sender writes in turn."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    view = memoryview(payload).cast("B")
    return PREFIX.pack(MAGIC, version, kind, len(head), len(lead) + view.nbytes) + head + lead, view


def frame_parts(frame: StreamFrame) -> Tuple[bytes, memoryview]:
    """A FRAME message for `frame`, its tokens cast to `frame.dtype` (little-endian); version 3, its positions
    (int32) going ahead of the tokens, only when it has positions or block_rows."""
    tokens = np.ascontiguousarray(frame.tokens, dtype=DTYPES[frame.dtype])
    header = {"frame_id": int(frame.frame_id), "timestamp_s": float(frame.timestamp_s),
              "model_version": str(frame.model_version),
              "grid": None if frame.grid is None else [int(v) for v in frame.grid], "dtype": frame.dtype,
              "shape": [int(v) for v in tokens.shape],
              "reused_from": None if frame.reused_from is None else int(frame.reused_from),
              "request_id": None if frame.request_id is None else int(frame.request_id)}
    if frame.frames != 1:
        header[GROUP_KEY] = int(frame.frames)
    if frame.positions is None and frame.block_rows is None:
        return message_parts(FRAME, header, tokens)
    lead = b"" if frame.positions is None else np.ascontiguousarray(frame.positions, dtype=POSITIONS_DTYPE).tobytes()
    header["positions"] = None if frame.positions is None else [int(v) for v in np.shape(frame.positions)]
    header["block_rows"] = None if frame.block_rows is None else [int(v) for v in frame.block_rows]
    return message_parts(FRAME, header, tokens, VERSION_FRAME_EXTRAS, lead)


def encode_request(request_id: int, image: np.ndarray) -> Tuple[bytes, memoryview]:
    """An ENCODE message: ask the publisher to encode `image` (uint8 RGB [height, width, 3]) with its engines."""
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    header = {"request_id": int(request_id), "shape": [int(v) for v in pixels.shape], "dtype": "uint8"}
    return message_parts(ENCODE, header, pixels)


def failed(request_id: int, code: str, reason: str) -> bytes:
    """A FAILED message answering the ENCODE request `request_id`."""
    return pack(FAILED, {"request_id": int(request_id), "code": code, "reason": reason[:1000]})


def encode_frame(frame: StreamFrame) -> bytes:
    return b"".join(frame_parts(frame))


def check_prefix(prefix: bytes, max_payload_bytes: int) -> Tuple[int, int, int, int]:
    """(kind, header length, payload length, version) of a valid prefix; a FrameError otherwise."""
    magic, version, kind, header_len, payload_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise FrameError("magic", "expected %r, got %r" % (MAGIC, magic))
    if version not in VERSIONS:
        raise FrameError("version", "protocol version %d, this side speaks %s: run the same minicpmv-edge release "
                                    "on both sides" % (version, " and ".join(map(str, VERSIONS))))
    if kind not in KINDS:
        raise FrameError("kind", "unknown message kind %d" % kind)
    if version == VERSION_FRAME_EXTRAS and kind != FRAME:
        raise FrameError("version", "protocol version %d is for frames only, got message kind %d" % (version, kind))
    if header_len > MAX_HEADER_BYTES:
        raise FrameError("oversized", "header of %d bytes, limit %d" % (header_len, MAX_HEADER_BYTES))
    limit = max_payload_bytes if kind in WITH_PAYLOAD else 0
    if payload_len > limit:
        raise FrameError("oversized", "payload of %d bytes, limit %d for this kind" % (payload_len, limit))
    return kind, header_len, payload_len, version


def parse_header(data: bytes) -> Dict[str, Any]:
    try:
        header = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError("header", "not UTF-8 JSON (%s)" % type(exc).__name__, resync=True) from None
    if not isinstance(header, dict):
        raise FrameError("header", "not a JSON object", resync=True)
    return header


def decode(data: bytes, max_payload_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Message:
    """One whole message from `data` (nothing before or after it)."""
    if len(data) < PREFIX.size:
        raise FrameError("truncated", "%d bytes, shorter than the %d-byte prefix" % (len(data), PREFIX.size))
    kind, header_len, payload_len, version = check_prefix(data[:PREFIX.size], max_payload_bytes)
    size = PREFIX.size + header_len + payload_len
    if len(data) != size:
        raise FrameError("truncated" if len(data) < size else "payload",
                         "%d bytes, the prefix says %d" % (len(data), size))
    return Message(kind, parse_header(data[PREFIX.size:PREFIX.size + header_len]), data[PREFIX.size + header_len:],
                   version)


def decode_frame(data: bytes, max_payload_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> StreamFrame:
    message = decode(data, max_payload_bytes)
    if message.kind != FRAME:
        raise FrameError("kind", "expected a frame, got message kind %d" % message.kind, resync=True)
    return frame_of(message)


def _int(header: Dict[str, Any], key: str, low: int = 0) -> int:
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value >= 1 << 63:
        raise FrameError("header", "%s must be an integer >= %d, got %r" % (key, low, value), resync=True)
    return value


def _ints(value: Any, key: str, lengths: Tuple[int, ...]) -> List[int]:
    if not isinstance(value, list) or len(value) not in lengths or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < 1 << 31 for v in value):
        raise FrameError("header", "%s must be a list of %s integers >= 1, got %r"
                         % (key, " or ".join(map(str, lengths)), value), resync=True)
    return value


def _keys(header: Dict[str, Any], expected: Tuple[str, ...]) -> None:
    if sorted(header) != sorted(expected):
        raise FrameError("header", "keys %s, expected %s" % (sorted(header), ", ".join(expected)), resync=True)


def frame_of(message: Message) -> StreamFrame:
    """Check a FRAME message's header field by field and against its payload; the frame, tokens not copied."""
    header = message.header
    keys = FRAME_KEYS_V3 if message.version == VERSION_FRAME_EXTRAS else FRAME_KEYS
    _keys(header, keys + ((GROUP_KEY,) if GROUP_KEY in header else ()))
    frames = _int(header, GROUP_KEY, low=2) if GROUP_KEY in header else 1
    frame_id = _int(header, "frame_id")
    timestamp = header["timestamp_s"]
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        raise FrameError("header", "timestamp_s must be a finite number, got %r" % (timestamp,), resync=True)
    version = header["model_version"]
    if not isinstance(version, str) or not 0 < len(version) <= MAX_TEXT:
        raise FrameError("header", "model_version must be a string of 1..%d characters" % MAX_TEXT, resync=True)
    grid = None if header["grid"] is None else tuple(_ints(header["grid"], "grid", (2,)))
    dtype = header["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise FrameError("header", "dtype must be fp16 or fp32, got %r" % (dtype,), resync=True)
    shape = _ints(header["shape"], "shape", (2, 3))
    reused_from = None if header["reused_from"] is None else _int(header, "reused_from")
    request_id = None if header["request_id"] is None else _int(header, "request_id")
    rows = math.prod(shape[:-1])
    positions_shape = _positions_shape(header.get("positions"), rows)
    block_rows = _block_rows(header.get("block_rows"), rows)
    lead = 0 if positions_shape is None else POSITIONS_DTYPE.itemsize * rows * 3
    expected = lead + DTYPES[dtype].itemsize * math.prod(shape)  # Python ints: sides < 2**31 cannot overflow
    if expected != len(message.payload):
        raise FrameError("payload", "%d bytes, but %s%s %s takes %d" % (
            len(message.payload), "int32 positions and " if lead else "", dtype, shape, expected), resync=True)
    positions = None
    if positions_shape is not None:
        positions = np.frombuffer(message.payload, dtype=POSITIONS_DTYPE, count=rows * 3).reshape(rows, 3)
        if positions.size and (positions.min() < 0 or positions.max() >= MAX_POSITION):
            raise FrameError("payload", "positions must lie in 0..2^30, got %d..%d"
                             % (positions.min(), positions.max()), resync=True)
    tokens = np.frombuffer(message.payload, dtype=DTYPES[dtype], offset=lead).reshape(shape)
    return StreamFrame(frame_id, float(timestamp), version, grid, dtype, tokens,  # type: ignore[arg-type]
                       reused_from, request_id, frames, positions, block_rows)


def _positions_shape(value: Any, rows: int) -> Optional[List[int]]:
    """A version 3 header's `positions`: null, or [rows, 3] for the token rows the shape gives."""
    if value is None:
        return None
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value) \
            or value != [rows, 3]:
        raise FrameError("header", "positions must be null or [%d, 3] (one (t, h, w) per token row), got %r"
                         % (rows, value), resync=True)
    return value


def _block_rows(value: Any, rows: int) -> Optional[Tuple[int, ...]]:
    """A version 3 header's `block_rows`: null, or 1..MAX_BLOCKS counts >= 1 that add up to the token rows."""
    if value is None:
        return None
    if not isinstance(value, list) or not 0 < len(value) <= MAX_BLOCKS or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < 1 << 31 for v in value) \
            or sum(value) != rows:
        raise FrameError("header", "block_rows must be null or 1..%d integers >= 1 adding up to the %d token rows, "
                                   "got %r" % (MAX_BLOCKS, rows, value), resync=True)
    return tuple(value)


def image_of(message: Message) -> Tuple[int, np.ndarray]:
    """(request id, uint8 RGB image [height, width, 3], not copied) of an ENCODE message, checked."""
    header = message.header
    _keys(header, ENCODE_KEYS)
    request_id = _int(header, "request_id")
    shape = _ints(header["shape"], "shape", (3,))
    if shape[2] != 3 or header["dtype"] != "uint8":
        raise FrameError("header", "an image to encode is uint8 [height, width, 3], got %r %s"
                         % (header["dtype"], shape), resync=True)
    if math.prod(shape) != len(message.payload):
        raise FrameError("payload", "%d bytes, but uint8 %s takes %d" % (len(message.payload), shape,
                                                                         math.prod(shape)), resync=True)
    return request_id, np.frombuffer(message.payload, dtype=np.uint8).reshape(shape)


def failure_of(message: Message) -> Failure:
    """The Failure a FAILED message carries, checked."""
    header = message.header
    _keys(header, FAILED_KEYS)
    code, reason = header["code"], header["reason"]
    if code not in FAILURE_CODES or not isinstance(reason, str):
        raise FrameError("header", "code must be one of %s and reason a string" % ", ".join(FAILURE_CODES),
                         resync=True)
    return Failure(_int(header, "request_id"), code, reason)


class MessageReader:
    """Reads whole messages from a socket, never more than the prefix allows. A socket timeout keeps what was read,
    so the next `read` goes on where it stopped."""

    def __init__(self, max_payload_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_payload_bytes = max_payload_bytes
        self._reset()

    def _reset(self) -> None:
        self._prefix = bytearray(PREFIX.size)
        self._kind, self._body, self._filled, self._header_len = 0, memoryview(self._prefix), 0, -1
        self._version = VERSION

    def read(self, sock: socket.socket) -> Message:
        """The next message; raises FrameError, ConnectionClosed, or socket.timeout / OSError from the socket."""
        while True:
            while self._filled < len(self._body):
                count = sock.recv_into(self._body[self._filled:])
                if count == 0:
                    partial = self._filled > 0 or self._header_len >= 0
                    self._reset()
                    if partial:
                        raise FrameError("truncated", "the connection closed inside a message")
                    raise ConnectionClosed("the publisher closed the connection")
                self._filled += count
            if self._header_len >= 0:
                body, header_len, kind, version = self._body, self._header_len, self._kind, self._version
                self._reset()
                return Message(kind, parse_header(bytes(body[:header_len])), body[header_len:], version)
            try:
                self._kind, self._header_len, payload_len, self._version = check_prefix(bytes(self._prefix),
                                                                                        self.max_payload_bytes)
            except FrameError:
                self._reset()
                raise
            self._body, self._filled = memoryview(bytearray(self._header_len + payload_len)), 0
