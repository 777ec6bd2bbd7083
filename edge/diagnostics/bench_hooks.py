"""``minicpmv-edge bench hooks``: what the unattended service adds to each turn of the frame loop, against the frame's
own work, in one run.

The frame: a 1280x720 synthetic scene encoded by the bundle's VisionEncoder (ONNX Runtime here). The hooks, each
timed alone on a real Pipeline of that encoder: the governor's (a fresh Snapshot from the procfs fallback reader
each turn, so it decides and applies every time), the metrics' per-turn update, the watchdog's (a real ping to a
notify socket of the bench's own each turn); apart: one reading of the fallback monitor, and one metrics scrape (a
Prometheus client's request, not the loop's). Medians over ``--repeats``.
"""
from __future__ import annotations

import platform
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..agent.pipeline import Pipeline
from ..agent.sinks import NullSink
from ..encoder.vision_encoder import VisionEncoder
from ..monitor.fallback_reader import FallbackReader
from ..monitor.governor import Governor
from ..monitor.governor_hook import GovernorHook
from ..monitor.policy import GovernorConfig
from ..monitor.snapshot import Snapshot
from ..preprocess.scenes import synthetic_scene
from ..service.notify import Notifier, WatchdogHook

SIZE = (1280, 720)


class _NoCamera:
    """The Pipeline's source here: the hooks are timed one by one, no frame is taken."""

    finished = True

    def latest(self, timeout: Optional[float] = None) -> None:
        return None

    def stats(self) -> Dict[str, Any]:
        return {}


class _FreshReadings:
    """A monitor whose every reading is new (the fallback's figures, a new clock): the governor decides each turn."""

    def __init__(self, reader: FallbackReader) -> None:
        self.reader, self.clock = reader, 0.0

    def latest(self) -> Snapshot:
        self.clock += 1.0
        snapshot = self.reader.latest()
        return Snapshot(**dict(vars(snapshot), time_s=self.clock))

    def close(self) -> None:
        self.reader.close()


def _drain(listener: socket.socket) -> None:
    """Read the pings as they come (a full datagram queue would block the sender)."""
    try:
        while listener.recv(4096):
            pass
    except OSError:
        return


def _median_ms(step: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(1e3 * (time.perf_counter() - start))
    return float(np.median(times))


def run_bench(bundle: Path, repeats: int = 50) -> Dict[str, Any]:
    """The report: the frame's encode ms, each hook's ms per turn, their sum over the frame's, and the extras."""
    from prometheus_client import CollectorRegistry, generate_latest

    from ..service.agent_metrics import AgentMetrics

    image = synthetic_scene(*SIZE, seed=1)
    reader = FallbackReader()
    with VisionEncoder.from_bundle(bundle, backend="onnxruntime") as encoder, \
            tempfile.TemporaryDirectory(prefix="mcv-bench-") as folder:
        pipeline = Pipeline(encoder, _NoCamera(), NullSink())
        encoder.encode(image)  # warm-up: the first run pays for allocations
        frame_ms = _median_ms(lambda: encoder.encode(image), max(3, repeats // 10))
        governor = GovernorHook(Governor(GovernorConfig(enabled=True)), _FreshReadings(reader), encoder.max_slice_nums)
        registry = CollectorRegistry(auto_describe=False)
        metrics = AgentMetrics(pipeline, reader, governor.governor, registry)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(Path(folder) / "notify"))
        threading.Thread(target=_drain, args=(listener,), daemon=True).start()  # as systemd reads them
        notifier = Notifier(str(Path(folder) / "notify"))
        watchdog = WatchdogHook(notifier, interval_s=0.0)  # a ping every turn: the most it can cost
        try:
            hooks_ms = {"governor": _median_ms(lambda: governor.tick(pipeline), repeats),
                        "metrics": _median_ms(lambda: metrics.tick(pipeline), repeats),
                        "watchdog": _median_ms(lambda: watchdog.tick(pipeline), repeats)}
            extras_ms = {"monitor_reading": _median_ms(reader.latest, repeats),
                         "metrics_scrape": _median_ms(lambda: generate_latest(registry), repeats)}
        finally:
            notifier.close()
            listener.close()
            reader.close()
    per_turn = sum(hooks_ms.values())
    return {"bundle": str(bundle), "frame": {"size": list(SIZE), "encode_ms": frame_ms}, "repeats": repeats,
            "hooks_ms_per_turn": hooks_ms, "hooks_total_ms": per_turn, "hooks_over_frame": per_turn / frame_ms,
            "apart_ms": extras_ms, "pings_sent": watchdog.pings,
            "machine": {"python": platform.python_version(), "processor": platform.machine()}}


def format_report(report: Dict[str, Any]) -> str:
    lines: List[str] = ["a %dx%d frame encoded in %.1f ms (ONNX Runtime, %s); the service's hooks per loop turn "
                        "(median of %d):" % (*report["frame"]["size"], report["frame"]["encode_ms"],
                                             report["bundle"], report["repeats"])]
    for name, ms in report["hooks_ms_per_turn"].items():
        lines.append("  %-9s %8.3f ms" % (name, ms))
    lines.append("  together %.3f ms = %.4f of the frame's work" % (report["hooks_total_ms"],
                                                                     report["hooks_over_frame"]))
    lines.append("  apart: one monitor reading %.3f ms, one metrics scrape %.3f ms"
                 % (report["apart_ms"]["monitor_reading"], report["apart_ms"]["metrics_scrape"]))
    return "\n".join(lines)
