"""``minicpmv-edge bench stream``: the token stream against a raw copy of the same bytes over the same kind of
socket, in one run.

The frame is a 10-slice MiniCPM-V 2.6 frame: [10, 64, 3584], 640 rows of width 3584, in fp16 by default (the
tokens are made in that dtype, so no cast is timed; the cast an fp32 encoder output needs is reported apart).
Each side is measured twice on a Unix socket in a temporary folder: throughput (a sender thread sends every frame
as fast as it can, the main thread receives them all; the publisher's queue holds them all, so none is dropped)
and latency (one frame at a time: handed over, then received whole). The stream's side includes everything the
agent and an LLM process would do: encoding the header, the publisher's queue and sender thread, the handshake
(once), and the subscriber's checks of every message.

Apart, the hand-over: what the agent's frame loop pays per frame in `write` when its encoder makes float32 tokens
for an fp16 stream (the cast is the packing thread's), against the cast itself, in the same run.
"""
from __future__ import annotations

import collections
import platform
import queue
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..agent.contracts import FrameResult
from ..stream.address import Address
from ..stream.protocol import DTYPES
from ..stream.publisher import StreamPublisher
from ..stream.subscriber import StreamSubscriber

SHAPE = (10, 64, 3584)  # 2.6: overview + 9 tiles, Q = 64, D = 3584
WAIT_S = 60.0
WARM_UP = 10  # frames per side before the measured run


def _figures(frames: int, frame_bytes: int, elapsed_s: float, latencies_s: List[float]) -> Dict[str, Any]:
    latencies_ms = 1e3 * np.asarray(latencies_s)
    return {"mb_per_s": frames * frame_bytes / elapsed_s / 1e6, "frames_per_s": frames / elapsed_s,
            "latency_ms": {"p50": float(np.percentile(latencies_ms, 50)),
                           "p99": float(np.percentile(latencies_ms, 99))}}


def _timed(frames: int, send: Callable[[int], None], receive: Callable[[], None]) -> Dict[str, Any]:
    """Throughput (every frame queued for the sender thread at once) and latency (one frame at a time: queued,
    then received whole) of one transport; `send` runs in one sender thread, `receive` here."""
    jobs: queue.Queue[Optional[int]] = queue.Queue()

    def sender() -> None:
        for job in iter(jobs.get, None):
            send(job)

    thread = threading.Thread(target=sender, name="bench-sender", daemon=True)
    thread.start()
    try:
        start = time.perf_counter()
        for i in range(frames):
            jobs.put(i)
        for _ in range(frames):
            receive()
        elapsed = time.perf_counter() - start
        latencies = []
        for i in range(frames):
            start = time.perf_counter()
            jobs.put(frames + i)
            receive()
            latencies.append(time.perf_counter() - start)
    finally:
        jobs.put(None)
    thread.join(WAIT_S)
    return {"elapsed_s": elapsed, "latencies_s": latencies}


def bench_raw(folder: Path, payload: np.ndarray, frames: int) -> Dict[str, Any]:
    """The same bytes with sendall / recv_into over a Unix stream socket, nothing else."""
    data, path = memoryview(payload).cast("B"), folder / "raw.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    conn, _ = server.accept()
    buffer = memoryview(bytearray(data.nbytes))

    def send(_: int) -> None:
        client.sendall(data)

    def receive() -> None:
        filled = 0
        while filled < data.nbytes:
            count = conn.recv_into(buffer[filled:])
            if count == 0:
                raise ConnectionError("the raw sender closed")
            filled += count

    try:
        return _timed(frames, send, receive)
    finally:
        for sock in (conn, client, server):
            sock.close()
        path.unlink()


def bench_stream(folder: Path, payload: np.ndarray, frames: int, dtype: str) -> Dict[str, Any]:
    """FrameResults through a StreamPublisher (an agent sink) to a StreamSubscriber."""
    address = Address(path=folder / "tokens.sock")
    publisher = StreamPublisher(address, "2.6", SHAPE[-1], dtype=dtype, queue_length=2 * frames).start()
    subscriber = StreamSubscriber(address, SHAPE[-1])
    received: List[int] = []
    try:
        if not subscriber.connect(WAIT_S):
            raise RuntimeError("the subscriber could not connect to %s" % address)
        while not publisher.stats()["subscribers"]:
            time.sleep(0.001)

        def send(i: int) -> None:
            publisher.write(FrameResult(i, time.monotonic(), (3, 3), payload, {}))

        def receive() -> None:
            frame = subscriber.receive(WAIT_S)
            if frame is None:
                raise RuntimeError("no frame from the stream in %.0f s" % WAIT_S)
            received.append(frame.frame_id)

        timed = _timed(frames, send, receive)
        timed["dropped"], timed["rejected"] = publisher.stats()["dropped"], dict(subscriber.rejected)
        timed["in_order"] = received == list(range(2 * frames))
        return timed
    finally:
        subscriber.close()
        publisher.close()


def bench_handover(folder: Path, frames: int) -> Dict[str, Any]:
    """Per frame: `write` of float32 tokens (a new array each frame, as the encoder makes them) to an fp16 stream
    with a subscriber reading, against numpy's float32 -> float16 cast of the same tokens."""
    tokens = [np.random.default_rng(i).standard_normal(SHAPE).astype(np.float32) for i in range(2)]
    address = Address(path=folder / "tokens.sock")
    publisher = StreamPublisher(address, "2.6", SHAPE[-1], dtype="fp16", queue_length=2).start()
    writes, casts = [], []
    with StreamSubscriber(address, SHAPE[-1]) as subscriber:
        if not subscriber.connect(WAIT_S):
            raise RuntimeError("the subscriber could not connect to %s" % address)
        reader = threading.Thread(target=lambda: [subscriber.receive(WAIT_S) for _ in range(frames)], daemon=True)
        reader.start()
        try:
            for i in range(frames):
                start = time.perf_counter()
                publisher.write(FrameResult(i, time.monotonic(), (3, 3), tokens[i % 2], {}))
                writes.append(1e3 * (time.perf_counter() - start))
                start = time.perf_counter()
                tokens[(i + 1) % 2].astype(np.float16)
                casts.append(1e3 * (time.perf_counter() - start))
            reader.join(WAIT_S)
        finally:
            publisher.close()
    write_ms, cast_ms = float(np.median(writes)), float(np.median(casts))
    return {"write_ms_p50": write_ms, "write_ms_p99": float(np.percentile(writes, 99)), "cast_ms_p50": cast_ms,
            "write_over_cast": write_ms / cast_ms}


def _medians(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One transport's rounds as one: the median elapsed time, every latency."""
    return {"elapsed_s": float(np.median([r["elapsed_s"] for r in runs])),
            "latencies_s": [t for r in runs for t in r["latencies_s"]]}


def run_bench(frames: int = 200, dtype: str = "fp16", rounds: int = 3) -> Dict[str, Any]:
    """The report: per transport MB/s (median of `rounds`, raw and stream measured in turn, so both see the same
    machine), frames/s, latency p50/p99, and stream / raw."""
    payload = np.random.default_rng(0).standard_normal(SHAPE).astype(DTYPES[dtype])
    folder = Path(tempfile.mkdtemp(prefix="mcv-bench-", dir="/tmp"))
    raws, streams = [], []
    try:
        bench_raw(folder, payload, min(WARM_UP, frames))  # the first run of each pays for first touches of memory
        bench_stream(folder, payload, min(WARM_UP, frames), dtype)
        for _ in range(rounds):
            raws.append(bench_raw(folder, payload, frames))
            streams.append(bench_stream(folder, payload, frames, dtype))
        handover = bench_handover(folder, min(frames, 50))
    finally:
        shutil.rmtree(str(folder), ignore_errors=True)
    raw, stream = _medians(raws), _medians(streams)
    report = {
        "frame": {"shape": list(SHAPE), "rows": SHAPE[0] * SHAPE[1], "width": SHAPE[2], "dtype": dtype,
                  "bytes": payload.nbytes},
        "frames": frames, "socket": "unix", "machine": {"python": platform.python_version(),
                                                        "processor": platform.machine()},
        "stream": _figures(frames, payload.nbytes, stream["elapsed_s"], stream["latencies_s"]),
        "raw": _figures(frames, payload.nbytes, raw["elapsed_s"], raw["latencies_s"]),
        "dropped": sum(s["dropped"] for s in streams), "rejected": dict(sum(
            (collections.Counter(s["rejected"]) for s in streams), collections.Counter())),
        "in_order": all(s["in_order"] for s in streams), "rounds": rounds,
        "round_ratios": [r["elapsed_s"] / s["elapsed_s"] for r, s in zip(raws, streams)], "handover": handover}
    report["throughput_ratio"] = report["stream"]["mb_per_s"] / report["raw"]["mb_per_s"]
    return report


def format_report(report: Dict[str, Any]) -> str:
    frame = report["frame"]
    lines = ["%d frames of %d x %d %s (%.2f MB) over a Unix socket, median of %d rounds"
             % (report["frames"], frame["rows"], frame["width"], frame["dtype"], frame["bytes"] / 1e6,
                report["rounds"])]
    for side in ("stream", "raw"):
        figures = report[side]
        lines.append("  %-6s %8.0f MB/s %8.1f frames/s  latency p50 %.2f ms, p99 %.2f ms"
                     % (side, figures["mb_per_s"], figures["frames_per_s"], figures["latency_ms"]["p50"],
                        figures["latency_ms"]["p99"]))
    handover = report["handover"]
    lines.append("  stream / raw throughput %.2f (rounds: %s); dropped %d, rejected %d"
                 % (report["throughput_ratio"], ", ".join("%.2f" % r for r in report["round_ratios"]),
                    report["dropped"], sum(report["rejected"].values())))
    lines.append("  the frame loop's write of fp32 tokens to an fp16 stream: p50 %.3f ms, p99 %.3f ms; the cast it no "
                 "longer pays: %.2f ms (write / cast %.4f)" % (handover["write_ms_p50"], handover["write_ms_p99"],
                                                               handover["cast_ms_p50"], handover["write_over_cast"]))
    return "\n".join(lines)
