"""The agent's Prometheus metrics, in a registry of their own (docs/service.md lists them).

As a LoopHook it moves the frame loop's new stage timings into latency histograms and keeps the frame rate; as a
collector it reads the rest when scraped: the loop's counters, the camera's and the token stream's stats, the
encode requests, and, when given, a monitor's newest Snapshot and a governor's state and decisions (duck-typed:
`monitor.latest()`, `governor.state()`, `governor.decisions_total`).
"""
from __future__ import annotations

import collections
import time
from typing import Any, Deque, Dict, Iterator, Optional, Tuple

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..agent.pipeline import STAGES

PREFIX = "minicpmv_edge_"
FPS_WINDOW_S = 10.0  # the frame rate is taken over the last this many seconds
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _numbers(value: Any, key: str = "") -> Iterator[Tuple[str, float]]:
    """The numeric leaves of a nested mapping as (dotted.key, number)."""
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _numbers(inner, "%s.%s" % (key, name) if key else str(name))
    elif isinstance(value, (bool, int, float)):
        yield key, float(value)


class AgentMetrics:
    """Metrics of `pipeline` (an edge.agent.pipeline.Pipeline) in `registry` (None: a new one of their own); add it
    to the pipeline's hooks."""

    def __init__(self, pipeline: Any, monitor: Optional[Any] = None, governor: Optional[Any] = None,
                 registry: Optional[CollectorRegistry] = None) -> None:
        self.pipeline, self.monitor, self.governor = pipeline, monitor, governor
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.latency = Histogram(PREFIX + "stage_seconds", "work time of a frame's stage", ["stage"],
                                 buckets=BUCKETS_S, registry=self.registry)
        self._seen: Dict[str, int] = dict.fromkeys(STAGES, 0)
        self._frames: Deque[Tuple[float, int]] = collections.deque()
        self.fps = 0.0
        self.registry.register(self)

    def tick(self, pipeline: Any) -> None:
        """In the loop's thread: the stage times recorded since the last turn, and the frame rate."""
        for stage in STAGES:
            times = pipeline.times.get(stage, [])
            for ms in times[self._seen[stage]:]:
                self.latency.labels(stage).observe(ms / 1e3)
            self._seen[stage] = len(times)
        now, frames = time.monotonic(), pipeline.counters["frames"]
        self._frames.append((now, frames))
        while now - self._frames[0][0] > FPS_WINDOW_S:
            self._frames.popleft()
        first_at, first = self._frames[0]
        self.fps = (frames - first) / (now - first_at) if now > first_at else 0.0

    def collect(self) -> Iterator[Metric]:
        """What a scrape reads now (the histograms are the registry's own)."""
        pipeline = self.pipeline
        counters = pipeline.counters
        frames = counters.get("frames", 0)
        yield _counter("frames", "camera frames handled", frames)
        yield _counter("frames_encoded", "frames encoded by the engines", counters.get("encoded", 0))
        yield _counter("frames_reused", "frames that reused the last encoded frame's tokens", counters.get("reused", 0))
        yield _counter("frame_errors", "frames skipped after a fault", counters.get("errors", 0))
        yield _counter("hook_errors", "loop hooks that raised", counters.get("hook_errors", 0))
        yield _gauge("fps", "frames handled per second over the last %g s" % FPS_WINDOW_S, self.fps)
        yield _gauge("reuse_ratio", "reused frames over handled frames", counters.get("reused", 0) / max(frames, 1))
        yield _gauge("paused", "1 while the loop takes no camera frame", float(pipeline.paused))
        max_slices = getattr(pipeline.encoder, "max_slice_nums", None)
        if isinstance(max_slices, int):
            yield _gauge("max_slice_nums", "the encoder's slice budget now", max_slices)
        yield _counter("camera_dropped_frames", "frames the camera replaced before the loop took them",
                       pipeline.source.stats().get("dropped", 0))
        yield from self._stream(pipeline.sink.stats())
        yield from self._requests(pipeline.requests)
        if self.monitor is not None:
            yield from self._snapshot(self.monitor.latest())
        if self.governor is not None:
            yield from self._governor()

    def _stream(self, sinks: Dict[str, Any]) -> Iterator[Metric]:
        stream = sinks.get("stream") if isinstance(sinks, dict) else None
        if stream is None:
            return
        yield _counter("stream_published_frames", "frames published on the token stream", stream["published"])
        yield _counter("stream_dropped_frames", "frames dropped from full subscriber queues", stream["dropped"])
        yield _gauge("stream_subscribers", "subscribers connected now", len(stream["subscribers"]))

    def _requests(self, requests: Any) -> Iterator[Metric]:
        if requests is None:
            return
        stats = requests.stats()
        family = CounterMetricFamily(PREFIX + "encode_requests", "images subscribers asked to encode, by outcome",
                                     labels=["outcome"])
        for outcome in ("served", "failed", "refused"):
            family.add_metric([outcome], stats.get(outcome, 0))
        yield family
        yield _gauge("encode_requests_waiting", "images waiting to be encoded", stats.get("waiting", 0))

    def _snapshot(self, snapshot: Any) -> Iterator[Metric]:
        if snapshot is None:
            return
        if snapshot.ram_used_kb is not None:
            yield _gauge("memory_used_bytes", "RAM in use (on a Jetson, the GPU's too)", snapshot.ram_used_kb * 1024)
        if snapshot.ram_total_kb is not None:
            yield _gauge("memory_total_bytes", "RAM in all", snapshot.ram_total_kb * 1024)
        if snapshot.power_total_mw is not None:
            yield _gauge("power_watts", "the board's power draw", snapshot.power_total_mw / 1e3)
        if snapshot.gpu_load_pct is not None:
            yield _gauge("gpu_load_ratio", "GPU load", snapshot.gpu_load_pct / 100)
        temperatures = GaugeMetricFamily(PREFIX + "temperature_celsius", "temperature per sensor", labels=["sensor"])
        for sensor, celsius in snapshot.temperatures_c.items():
            temperatures.add_metric([sensor], celsius)
        yield temperatures
        yield _gauge("monitor_degraded", "1 while monitoring is degraded", float(snapshot.degraded is not None))

    def _governor(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(PREFIX + "governor_state", "the governor's state: its numeric values by key "
                                  "(policy.level, policy.target ...)", labels=["key"])
        for key, value in _numbers(self.governor.state()):
            state.add_metric([key], value)
        yield state
        decisions = CounterMetricFamily(PREFIX + "governor_decisions", "the governor's decisions by policy and action",
                                        labels=["policy", "action"])
        for (policy, action), count in dict(self.governor.decisions_total).items():
            decisions.add_metric([str(policy), str(action)], count)
        yield decisions
