"""The agent's metrics, scraped over HTTP from the real endpoint, equal the pipeline's own report and a count kept
by the test beside it: frames, encoded and reused, stage histograms, stream frames, encode requests; a monitor's
Snapshot and a governor's state show when given. The config's `metrics:` section is checked at load."""
from __future__ import annotations

import collections
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from edge.agent.config import load_agent_config
from edge.agent.runner import make_pipeline, run_pipeline
from edge.agent.sinks import SinkSet
from edge.bundle.manifest import Bundle
from edge.errors import InputError
from edge.monitor.snapshot import Snapshot
from edge.service.agent_metrics import AgentMetrics
from edge.service.metrics_server import MetricsServer
from edge.stream.address import Address
from edge.stream.publisher import StreamPublisher
from edge.stream.requests import EncodeRequests
from tests.edge.camera.fakes import moving_frames, write_video

pytest.importorskip("cv2")

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class Counting:
    """A sink that counts what it is given, apart from the pipeline's own counters."""

    name = "counting"

    def __init__(self) -> None:
        self.results: List[Any] = []

    def describe(self) -> str:
        return "a count"

    def write(self, result: Any) -> None:
        self.results.append(result)

    def close(self) -> None:
        """Nothing held."""

    def stats(self) -> Dict[str, Any]:
        return {"written": len(self.results)}


class Monitor:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def latest(self) -> Snapshot:
        return self.snapshot


class Governor:
    """The duck-typed face the metrics read: state() and decisions_total."""

    decisions_total = collections.Counter({("thermal", "lower_slices"): 2, ("memory", "pause"): 1})

    def state(self) -> Dict[str, Any]:
        return {"thermal": {"level": 1, "target": 3, "name": "warm"}, "memory": {"level": 0, "target": 4}}


def agent_yaml(folder: Path, bundle: Path, extra: str = "") -> Path:
    frames = moving_frames(4, size=(160, 120))
    write_video(folder / "clip.avi", frames + [frames[-1]] * 6, fps=10)  # 4 moving, then still: reuse
    config = folder / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi, loop: false}\nresize: fast\n%s"
                      % (bundle, extra))
    return config


def test_scraped_metrics_equal_the_pipelines_own_count(make_bundle, tmp_path, sock_dir):
    bundle = make_bundle("2.6")
    config = load_agent_config(agent_yaml(tmp_path, bundle))
    model = Bundle.load(bundle).model
    requests = EncodeRequests(2)
    publisher = StreamPublisher(Address(path=sock_dir / "s.sock"), model.version, model.embed_dim,
                                requests=requests).start()
    counting = Counting()
    pipeline = make_pipeline(config, source=None, sink=SinkSet([counting, publisher]))
    pipeline.requests = requests
    snapshot = Snapshot(time_s=0.0, source="fallback", ram_total_kb=8 << 20, ram_used_kb=3 << 20,
                        power_total_mw=7500.0, temperatures_c={"cpu": 51.5, "gpu": 49.0})
    metrics = AgentMetrics(pipeline, Monitor(snapshot), Governor())
    pipeline.hooks.append(metrics)
    server = MetricsServer(metrics.registry, "127.0.0.1:0")
    try:
        report = run_pipeline(pipeline)
        samples = scrape(server.url)
    finally:
        server.close()
    frames, encoded = len(counting.results), sum(not r.reused for r in counting.results)
    assert frames == report["frames"] >= 4 and encoded == report["encoded"] and report["reused"] >= 1
    assert value(samples, "minicpmv_edge_frames_total") == frames
    assert value(samples, "minicpmv_edge_frames_encoded_total") == encoded
    assert value(samples, "minicpmv_edge_frames_reused_total") == frames - encoded
    assert value(samples, "minicpmv_edge_reuse_ratio") == pytest.approx(report["reused_share"])
    assert value(samples, "minicpmv_edge_camera_dropped_frames_total") == report["dropped"]
    for stage in ("reuse_check", "sink"):
        assert value(samples, "minicpmv_edge_stage_seconds_count", stage=stage) == frames
    for stage in ("preprocess", "vpm", "resampler"):
        assert value(samples, "minicpmv_edge_stage_seconds_count", stage=stage) == encoded
        assert value(samples, "minicpmv_edge_stage_seconds_sum", stage=stage) > 0
    assert value(samples, "minicpmv_edge_stream_published_frames_total") == report["sinks"]["stream"]["published"]
    assert value(samples, "minicpmv_edge_stream_published_frames_total") == frames
    assert value(samples, "minicpmv_edge_stream_dropped_frames_total") == 0
    assert value(samples, "minicpmv_edge_encode_requests_total", outcome="served") == 0
    assert value(samples, "minicpmv_edge_memory_used_bytes") == (3 << 20) * 1024
    assert value(samples, "minicpmv_edge_power_watts") == 7.5
    assert value(samples, "minicpmv_edge_temperature_celsius", sensor="cpu") == 51.5
    assert value(samples, "minicpmv_edge_governor_state", key="thermal.level") == 1
    assert value(samples, "minicpmv_edge_governor_state", key="memory.target") == 4
    assert ("minicpmv_edge_governor_state", (("key", "thermal.name"),)) not in samples  # numbers only
    assert value(samples, "minicpmv_edge_governor_decisions_total", policy="thermal", action="lower_slices") == 2
    assert value(samples, "minicpmv_edge_max_slice_nums") == pipeline.encoder.max_slice_nums


@pytest.mark.parametrize("section, error", [
    ("metrics: {listen: '0.0.0.0:9108'}", "metrics.listen: 0.0.0.0 is not a loopback address"),
    ("metrics: {llm_listen: '10.0.0.2:9109'}", "metrics.llm_listen: 10.0.0.2 is not a loopback address"),
    ("metrics: {listen: 9108}", "metrics.listen must be HOST:PORT on loopback"),
    ("metrics: {enabled: yes please}", "metrics.enabled must be true or false"),
    ("metrics: {port: 9108}", "metrics: unknown key 'port'"),
])
def test_a_bad_metrics_section_is_one_line_at_load(tmp_path, section, error):
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: b\ncamera: {kind: file, path: v.avi}\n%s\n" % section)
    with pytest.raises(InputError, match=error) as caught:
        load_agent_config(config)
    assert "\n" not in str(caught.value)


def test_metrics_default_to_loopback_and_a_taken_port_is_one_line(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: b\ncamera: {kind: file, path: v.avi}\n")
    metrics = load_agent_config(config).metrics
    assert (metrics.enabled, metrics.listen, metrics.llm_listen) == (True, "127.0.0.1:9108", "127.0.0.1:9109")
    first = MetricsServer(CollectorRegistry(), "127.0.0.1:0")
    try:
        with pytest.raises(InputError, match="metrics.listen 127.0.0.1:%d: cannot listen there" % first.address[1]):
            MetricsServer(CollectorRegistry(), "127.0.0.1:%d" % first.address[1])
    finally:
        first.close()
