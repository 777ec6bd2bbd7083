"""``minicpmv-edge bench pipeline``: the sequential and the pipelined frame loop (agent config `pipeline:`) on the
same engines and the same camera, in turn: frames per second (from the last warm-up frame written to the last frame
written) and each frame's latency from capture to sink written
(median, p90), and the pipelined loop's fps as a ratio of the sequential one's in the same run.

Every frame is encoded (frame reuse off) and goes to no sink, so the figures are the loop's own. The engines are
opened once; each measurement restarts the config's camera and runs `warmup` frames before the `frames` it counts.
For a camera that does not hold the loop back, use a looping video paced faster than the loop (`fps` above its frame
rate; `fps: 0` decodes as fast as it can and takes CPU from the loop).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, List, Optional

from ..agent.config import PIPELINES, AgentConfig
from ..agent.contracts import FrameResult, Source
from ..agent.pipeline import LATENCY, Pipeline, percentile_ms
from ..agent.pipelined import PipelinedPipeline
from ..agent.runner import open_encoder
from ..camera.pipelines import check_camera
from ..camera.source import FrameSource
from ..errors import InputError

LOOPS = {"sequential": Pipeline, "pipelined": PipelinedPipeline}
assert tuple(LOOPS) == PIPELINES


class TimingSink:
    """A sink that keeps only when each result arrived (time.monotonic())."""

    name = "timing"

    def __init__(self) -> None:
        self.arrivals: List[float] = []

    def describe(self) -> str:
        return "no tokens written (bench pipeline)"

    def write(self, result: FrameResult) -> None:
        self.arrivals.append(time.monotonic())

    def close(self) -> None:
        """Nothing held."""

    def stats(self) -> Dict[str, Any]:
        return {"written": len(self.arrivals)}


def _measure(loop: type, encoder: Any, source: Source, frames: int, warmup: int) -> Dict[str, Any]:
    """One run of `loop` for warmup + frames frames: fps over the counted frames, their latencies, the report."""
    sink = TimingSink()
    pipeline = loop(encoder, source, sink, None, warmup + frames)
    source.start()
    try:
        report = pipeline.run()
    finally:
        source.stop()
    arrivals = sink.arrivals
    if report["errors"] or len(arrivals) < warmup + frames:
        raise InputError("bench pipeline: %d of %d frames written (%d errors, camera: %s): use a looping video "
                         "(camera: {kind: file, loop: true})" % (len(arrivals), warmup + frames, report["errors"],
                                                                 report["source"]))
    return {"fps": frames / (arrivals[-1] - arrivals[warmup - 1]), "latencies_ms": pipeline.times[LATENCY][warmup:],
            "stages_ms_per_frame": report["stages_ms_per_frame"], "dropped": report["dropped"]}


def run_bench(config: AgentConfig, frames: int, rounds: int, warmup: int = 2, encoder: Any = None,
              make_source: Optional[Callable[[], Source]] = None) -> Dict[str, Any]:
    """`rounds` of (sequential, pipelined) of `warmup` (>= 1) + `frames` frames each, on the engines of `config`
    (or `encoder`, left open) and its camera (or new sources from `make_source`); medians of fps per mode, latencies
    pooled over the rounds."""
    if make_source is None:
        check_camera(config.camera)

        def make_source() -> Source:
            return FrameSource(config.camera)
    owned = encoder is None
    encoder = open_encoder(config) if owned else encoder
    runs: Dict[str, List[Dict[str, Any]]] = {mode: [] for mode in LOOPS}
    try:
        for _ in range(rounds):
            for mode, loop in LOOPS.items():
                runs[mode].append(_measure(loop, encoder, make_source(), frames, warmup))
    finally:
        if owned:
            encoder.close()
    modes = {}
    for mode, measured in runs.items():
        latencies = [ms for run in measured for ms in run["latencies_ms"]]
        modes[mode] = {"fps": [round(run["fps"], 4) for run in measured],
                       "fps_median": round(statistics.median(run["fps"] for run in measured), 4),
                       "latency_ms": {"median": percentile_ms(latencies, 0.5), "p90": percentile_ms(latencies, 0.9),
                                      "frames": len(latencies)},
                       "stages_ms_per_frame": measured[-1]["stages_ms_per_frame"],
                       "dropped": [run["dropped"] for run in measured]}
    sequential, pipelined = modes["sequential"], modes["pipelined"]
    return {"frames": frames, "warmup": warmup, "rounds": rounds, "modes": modes,
            "fps_ratio": round(pipelined["fps_median"] / sequential["fps_median"], 4),
            "latency_ratio": round(pipelined["latency_ms"]["median"] / sequential["latency_ms"]["median"], 4)}


def format_report(report: Dict[str, Any]) -> str:
    lines = []
    for mode, figures in report["modes"].items():
        lines.append("%-10s fps %s (median %.3f); latency median %.1f ms, p90 %.1f ms"
                     % (mode, ", ".join("%.3f" % fps for fps in figures["fps"]), figures["fps_median"],
                        figures["latency_ms"]["median"], figures["latency_ms"]["p90"]))
    lines.append("pipelined / sequential: fps x%.3f, median latency x%.3f"
                 % (report["fps_ratio"], report["latency_ratio"]))
    return "\n".join(lines)
