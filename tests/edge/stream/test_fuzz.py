"""Thousands of broken messages (random bytes, truncated, oversized, wrong version, bad headers, payloads that do
not match their shape) through a real Unix socket into a real subscriber: each is rejected with its reason and
counted, nothing crashes or stalls, and a good frame sent after them arrives intact."""
from __future__ import annotations

import collections
import json
import random
import socket
import struct
import threading
from typing import List, Tuple

import numpy as np

from edge.stream import protocol as wire
from edge.stream.address import Address
from edge.stream.handshake import answer, hello, reply
from edge.stream.protocol import PREFIX, MessageReader, StreamFrame, encode_frame
from edge.stream.subscriber import StreamSubscriber

WIDTH = 64
MAX_FRAME_BYTES = 1 << 20
Case = Tuple[bytes, str, bool]  # the bytes, the reason the subscriber must give, whether the connection ends


def good_frame(rng: random.Random, frame_id: int) -> StreamFrame:
    """A 2.6-like frame (version 2), or one with rows of differing blocks and their positions (4.7, version 3)."""
    slices = rng.randint(1, 4)
    tokens = np.random.default_rng(frame_id).standard_normal((slices, 4, WIDTH)).astype(np.float32)
    frame = StreamFrame(frame_id, 1.0 + frame_id, "2.6", (slices - 1, 1) if slices > 1 else None,
                        rng.choice(["fp16", "fp32"]), tokens, rng.choice([None, frame_id - 1]) if frame_id else None)
    if rng.random() < 0.5:
        return frame
    rows = tokens.reshape(-1, WIDTH)
    split = [2] + [len(part) for part in np.array_split(np.arange(len(rows) - 2), slices - 1)] if slices > 1 \
        else [len(rows)]
    blocks = rng.choice([None, tuple(split)])
    positions = np.random.default_rng(frame_id).integers(0, 1000, (len(rows), 3), dtype=np.int32)
    return frame._replace(model_version="4.7", tokens=rows, positions=positions if blocks is None or rng.random() < 0.7
                          else None, block_rows=blocks)


def header_of(frame: StreamFrame) -> Tuple[dict, int]:
    """The frame's header and its protocol version."""
    data = encode_frame(frame)
    _, version, _, header_len, _ = PREFIX.unpack(data[:PREFIX.size])
    return json.loads(data[PREFIX.size:PREFIX.size + header_len]), version


def cases(rng: random.Random, count: int) -> List[Case]:
    out: List[Case] = []
    bad_values = {"frame_id": [None, "x", -1, 1.5, True, 2 ** 70], "timestamp_s": [None, "x", True, [], float("nan")],
                  "model_version": [None, 5, "", "v" * 65, []], "grid": ["x", [1], [0, 1], [1, 2, 3], True, {}],
                  "dtype": [None, "fp64", [0, 1], 16], "reused_from": ["x", -1, 1.5, True],
                  "request_id": ["x", -1, 1.5, True, [1]],
                  "shape": [None, [1], [0, 4, 64], [1, 2, 3, 4], "x", [2 ** 31, 1]],
                  "positions": ["x", [0, 3], [1.5, 3], [True, 3], [[1], 3], {}, [10 ** 6, 3]],
                  "block_rows": ["x", [], [0], [1.5], [True], [10 ** 6], [1] * 65]}
    for i in range(count):
        kind = i % 9
        frame = good_frame(rng, i)
        data = encode_frame(frame)
        if kind == 0:  # random bytes
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(20, 200)))
            out.append(((b"X" if junk[:1] != b"X" else b"Y") + junk[1:], "magic", True))
        elif kind == 1:  # truncated: the connection ends inside the message
            out.append((data[:rng.randint(1, len(data) - 1)], "truncated", True))
        elif kind == 2:  # another protocol version, or version 3 (frames only) on another kind
            if rng.random() < 0.25:
                out.append((PREFIX.pack(wire.MAGIC, wire.VERSION_FRAME_EXTRAS, wire.HELLO, 2, 0) + b"{}", "version",
                            True))
            else:
                version = rng.choice([0, wire.VERSION - 1, wire.VERSION_FRAME_EXTRAS + 1, 65535])
                out.append((PREFIX.pack(wire.MAGIC, version, wire.FRAME, 2, 0) + b"{}", "version", True))
        elif kind == 3:  # oversized payload or header (only the prefix is sent: the subscriber must not wait)
            too_long = (10, MAX_FRAME_BYTES + rng.randint(1, 1 << 40)) if i % 2 else (wire.MAX_HEADER_BYTES + 1, 0)
            out.append((PREFIX.pack(wire.MAGIC, wire.VERSION, wire.FRAME, *too_long), "oversized", True))
        elif kind == 4:  # an unknown message kind
            unknown = rng.randint(max(wire.KINDS) + 1, 65535)
            out.append((PREFIX.pack(wire.MAGIC, wire.VERSION, unknown, 2, 0) + b"{}", "kind", True))
        elif kind == 5:  # a header that is not JSON, or not an object
            body = rng.choice([b"\xff\xfe", b"{", b"[1, 2]", b"nul", b"[" * 5000])
            out.append((PREFIX.pack(wire.MAGIC, wire.VERSION, wire.FRAME, len(body), 0) + body, "header", False))
        elif kind == 6:  # a header field of the wrong type or range, or a key missing / unknown
            header, version = header_of(frame)
            key = rng.choice(list(header) + ["extra"])
            if key == "extra" or rng.random() < 0.1:
                header.pop("frame_id") if key != "extra" else header.update(extra=1)
            else:
                header[key] = rng.choice(bad_values[key])
            payload = np.zeros(4, np.float16).tobytes()
            out.append((wire.pack(wire.FRAME, header, payload, version), "header", False))
        elif kind == 7:  # a payload that does not match positions + dtype x shape, or positions out of range
            header, version = header_of(frame)
            itemsize = 2 if header["dtype"] == "fp16" else 4
            rows = int(np.prod(header["shape"][:-1]))
            lead = 12 * rows if header.get("positions") else 0
            expected = lead + itemsize * int(np.prod(header["shape"]))
            if lead and rng.random() < 0.3:
                positions = np.zeros((rows, 3), np.int32)
                positions[rng.randrange(rows), rng.randrange(3)] = rng.choice([-1, -2 ** 31, 2 ** 30])
                payload = positions.tobytes() + b"\0" * (expected - lead)
            else:
                wrong = [0, expected - 1, expected + 1, expected // 2] + ([expected - lead] if lead else [])
                payload = b"\0" * rng.choice(wrong)
            out.append((wire.pack(wire.FRAME, header, payload, version), "payload", False))
        else:  # a control message, or a subscriber's encode request, where a frame belongs
            image = np.zeros((2, 2, 3), np.uint8)
            out.append((rng.choice([wire.pack(wire.HELLO, {}), b"".join(wire.encode_request(i, image))]), "kind",
                        False))
    return out


def serve(server: socket.socket, broken: List[Case], last: bytes) -> None:
    """A publisher that talks protocol: handshake each connection, then send cases until one ends it."""
    pending = collections.deque(broken)
    while True:
        conn, _ = server.accept()
        with conn:
            offer, message = hello("2.6", WIDTH, "fp16", None)
            conn.sendall(message)
            conn.sendall(reply(answer(offer, MessageReader(0).read(conn), None)))
            while pending:
                data, _, ends = pending.popleft()
                conn.sendall(data)
                if ends:
                    break
            else:
                conn.sendall(last)
                conn.recv(1)  # until the subscriber goes
                return


def test_fuzzed_messages_are_rejected_with_reasons_and_a_good_frame_still_arrives(sock_dir):
    rng = random.Random(11)
    broken = cases(rng, 3000)
    expected = collections.Counter(reason for _, reason, _ in broken)
    assert set(expected) == {"magic", "truncated", "version", "oversized", "kind", "header", "payload"}
    final = StreamFrame(99999, 42.5, "2.6", (2, 3), "fp32",
                        np.random.default_rng(5).standard_normal((7, 4, WIDTH)).astype(np.float32), 99998)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_dir / "fuzz.sock"))
    server.listen(4)
    thread = threading.Thread(target=serve, args=(server, broken, encode_frame(final)), daemon=True)
    thread.start()
    with StreamSubscriber(Address(path=sock_dir / "fuzz.sock"), WIDTH, max_frame_bytes=MAX_FRAME_BYTES) as sub:
        frame = sub.receive(timeout_s=300)
    server.close()
    assert frame is not None
    assert (frame.frame_id, frame.timestamp_s, frame.grid, frame.dtype, frame.reused_from) == (99999, 42.5, (2, 3),
                                                                                              "fp32", 99998)
    np.testing.assert_array_equal(frame.tokens, final.tokens)
    assert dict(sub.rejected) == dict(expected)
    assert sub.received == 1
    assert sub.connections == 1 + sum(ends for _, _, ends in broken)
    thread.join(60)


def test_the_reader_never_allocates_past_the_limit():
    """An oversized prefix is refused before anything past it is read."""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(PREFIX.pack(wire.MAGIC, wire.VERSION, wire.FRAME, 2, MAX_FRAME_BYTES + 1) + b"{}")
        reader = MessageReader(MAX_FRAME_BYTES)
        try:
            reader.read(right)
        except Exception as exc:  # noqa: BLE001 - the one type is asserted below
            assert type(exc).__name__ == "FrameError" and exc.reason == "oversized"
        assert right.recv(2) == b"{}"  # the header bytes were left unread
        assert struct.calcsize(">4sHHIQ") == PREFIX.size == 20
