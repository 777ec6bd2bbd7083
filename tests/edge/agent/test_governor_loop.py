"""The frame loop's knobs and the governor driving them: `paused` takes no camera frame while encode requests are
still served, `frame_interval_s` holds frames back, a failing hook is counted while the loop goes on; and the
scenario issue 12 asks for, through make_pipeline and a real Pipeline on a tiny bundle: RAM climbs to the limit, the
slices drop, then the overview alone is encoded, then capture pauses, and all of it comes back as RAM falls. The
snapshots come from a scripted monitor, one per loop turn, with their own clock: nothing depends on how fast this
machine is."""
from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence

import numpy as np

from edge.agent.config import load_agent_config
from edge.agent.pipeline import Pipeline
from edge.agent.runner import make_pipeline
from edge.encoder.vision_encoder import EncodedImage
from edge.monitor.governor_hook import GovernorHook
from edge.monitor.snapshot import Snapshot
from edge.stream.requests import EncodeRequests
from tests.edge.agent.fakes import EndlessCamera, ListSink

TOTAL_KB = 8_000_000


class CountingEncoder:
    """An encoder by the Encoder protocol that counts what it encodes (no engines)."""

    def __init__(self) -> None:
        self.encoded: List[str] = []

    def encode(self, image: Any, color: str = "rgb") -> EncodedImage:
        self.encoded.append(color)
        timings = {"preprocess": 0.0, "vpm": 0.0, "resampler": 0.0, "total": 0.0}
        return EncodedImage(np.zeros((1, 2, 2), np.float32), None, timings, [])

    def close(self) -> None:
        """Nothing to free."""


class Turns:
    """A hook that runs `act(turn, pipeline)` at each turn and stops the loop after `turns` turns."""

    def __init__(self, turns: int, act=lambda turn, pipeline: None) -> None:
        self.turns, self.act, self.turn = turns, act, 0

    def tick(self, pipeline: Pipeline) -> None:
        self.act(self.turn, pipeline)
        self.turn += 1
        if self.turn >= self.turns:
            pipeline.stop()


class Failing:
    def tick(self, pipeline: Pipeline) -> None:
        raise RuntimeError("metrics endpoint gone")


def test_paused_takes_no_camera_frame_while_requests_are_still_served():
    camera, encoder, requests = EndlessCamera(np.zeros((8, 8, 3), np.uint8)), CountingEncoder(), EncodeRequests(4)
    answers = []

    def act(turn: int, pipeline: Pipeline) -> None:
        if turn == 1:
            pipeline.paused = True
        if turn in (3, 5):
            refused = requests.submit(np.zeros((8, 8, 3), np.uint8), lambda encoded, failure: answers.append(failure))
            assert refused is None

    pipeline = Pipeline(encoder, camera, ListSink(), requests=requests, hooks=[Turns(8, act)])
    report = pipeline.run(poll_s=0.01)
    assert camera.taken == 2 and report["frames"] == 2  # turns 0 and 1; none once paused
    assert answers == [None, None] and report["requests"]["served"] == 2
    assert encoder.encoded == ["bgr", "bgr", "rgb", "rgb"]


def test_frame_interval_holds_frames_back():
    camera = EndlessCamera(np.zeros((8, 8, 3), np.uint8))
    pipeline = Pipeline(CountingEncoder(), camera, ListSink(), hooks=[Turns(6)])
    pipeline.frame_interval_s = 3600.0
    assert pipeline.run(poll_s=0.01)["frames"] == 1 and camera.taken == 1  # the first, then an hour to wait
    camera = EndlessCamera(np.zeros((8, 8, 3), np.uint8))
    pipeline = Pipeline(CountingEncoder(), camera, ListSink(), hooks=[Turns(6)])
    assert pipeline.run(poll_s=0.01)["frames"] == 6 and camera.taken == 6  # no interval: a frame every turn


def test_a_hook_that_raises_is_counted_and_the_loop_goes_on(caplog):
    camera = EndlessCamera(np.zeros((8, 8, 3), np.uint8))
    pipeline = Pipeline(CountingEncoder(), camera, ListSink(), hooks=[Failing(), Turns(5)])
    with caplog.at_level(logging.WARNING, logger="minicpmv-edge"):
        report = pipeline.run(poll_s=0.01)
    assert report["hook_errors"] == 5 and report["frames"] == 5 and report["errors"] == 0
    assert "loop hook Failing failed: RuntimeError: metrics endpoint gone" in caplog.text


class ScriptedMonitor:
    """A monitor by edge.monitor's Monitor protocol: RAM used as scripted, one snapshot per loop turn (`advance`),
    one second apart on the snapshots' clock."""

    def __init__(self, used_fractions: Sequence[float]) -> None:
        self.snapshots = [Snapshot(float(t), "test", ram_total_kb=TOTAL_KB, ram_used_kb=int(TOTAL_KB * f))
                          for t, f in enumerate(used_fractions)]
        self.index, self.closed = 0, False

    def latest(self) -> Optional[Snapshot]:
        return self.snapshots[self.index]

    def advance(self) -> bool:
        """On to the next snapshot; False when the script is done."""
        self.index += 1
        return self.index < len(self.snapshots)

    def close(self) -> None:
        self.closed = True


class Recorder:
    """After the governor: each turn's slice budget, pause and frames handled so far, then the next snapshot; stops
    the loop at the end of the script."""

    def __init__(self, monitor: ScriptedMonitor) -> None:
        self.monitor, self.turns = monitor, []

    def tick(self, pipeline: Pipeline) -> None:
        self.turns.append((pipeline.encoder.max_slice_nums, pipeline.paused, pipeline.counters["frames"]))
        if not self.monitor.advance():
            pipeline.stop()


class Scrapes:
    """A hook that scrapes the agent's metrics after each turn, as Prometheus would read them."""

    def __init__(self, registry: Any) -> None:
        self.registry, self.turns = registry, []

    def tick(self, pipeline: Pipeline) -> None:
        from prometheus_client import generate_latest
        from prometheus_client.parser import text_string_to_metric_families

        samples = [s for family in text_string_to_metric_families(generate_latest(self.registry).decode())
                   for s in family.samples]
        value = {s.name: s.value for s in samples if not s.labels}
        state = {s.labels["key"]: s.value for s in samples if s.name == "minicpmv_edge_governor_state"}
        self.turns.append({
            "paused": value["minicpmv_edge_paused"], "max_slice_nums": value["minicpmv_edge_max_slice_nums"],
            "memory_level": state["levels.memory"], "memory_used_bytes": value["minicpmv_edge_memory_used_bytes"],
            "decisions": {(s.labels["policy"], s.labels["action"]): s.value for s in samples
                          if s.name == "minicpmv_edge_governor_decisions_total"}})


RAMP = ([0.50] * 3 + [0.86] * 3 + [0.91] * 3 + [0.96] * 4  # up: fewer slices, overview only, paused
        + [0.84] * 3 + [0.81] * 3 + [0.79] * 3)  # down: 84% < 95% - 5% and < 90% - 5%; 81% not < 80%, 79% is


def test_ram_climbing_to_the_limit_drops_slices_then_keeps_the_overview_then_pauses_and_recovers(
        make_bundle, tmp_path, caplog):
    image = np.zeros((720, 1280, 3), np.uint8)  # the bundle's 448 px scale: 3x2 tiles, 3x1 under 4 slices
    config_path = tmp_path / "agent.yaml"
    config_path.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nresize: fast\n"
                           "governor: {enabled: true, min_dwell_s: 2, memory: {reduced_slices: 4}}\n"
                           % make_bundle())
    monitor, sink, camera = ScriptedMonitor(RAMP), ListSink(), EndlessCamera(image)
    pipeline = make_pipeline(load_agent_config(config_path), source=camera, sink=sink, monitor=monitor)
    [hook] = pipeline.hooks
    assert isinstance(hook, GovernorHook) and hook.base_max_slices == pipeline.encoder.max_slice_nums == 9
    from prometheus_client import CollectorRegistry

    from edge.service.agent_metrics import AgentMetrics

    registry = CollectorRegistry(auto_describe=False)
    pipeline.hooks.append(AgentMetrics(pipeline, monitor, hook.governor, registry))
    scrapes = Scrapes(registry)
    recorder = Recorder(monitor)
    pipeline.hooks += [scrapes, recorder]
    with caplog.at_level(logging.INFO, logger="minicpmv-edge"):
        pipeline.run(poll_s=0.01)
    pipeline.close()
    assert not monitor.closed  # a monitor handed in stays its giver's (serve_agent's): the metrics read it too

    decisions = [(d.time_s, d.level_from, d.level_to, d.action) for d in hook.governor.recent]
    assert decisions == [(3.0, 0, 1, "fewer_slices"), (6.0, 1, 2, "overview_only"), (9.0, 2, 3, "pause_capture"),
                         (13.0, 3, 2, "overview_only"), (15.0, 2, 1, "fewer_slices"), (19.0, 1, 0, "normal")]
    assert hook.governor.decisions_total == {("memory", "fewer_slices"): 2, ("memory", "overview_only"): 2,
                                             ("memory", "pause_capture"): 1, ("memory", "normal"): 1}
    slices = [turn[0] for turn in recorder.turns]
    assert slices == [9] * 3 + [4] * 3 + [1] * 9 + [4] * 4 + [9] * 3
    paused = [turn for turn, (_, is_paused, _) in enumerate(recorder.turns) if is_paused]
    assert paused == [9, 10, 11, 12]
    frames = [turn[2] for turn in recorder.turns]
    assert frames[9] == frames[13] < frames[14]  # turns 10 to 13 began paused: no frame taken

    grids = [r.grid for r in sink.results]
    # a turn's frame is encoded with the budget the turn before set
    assert grids == [(3, 2)] * 4 + [(3, 1)] * 3 + [None] * 5 + [(3, 1)] * 4 + [(3, 2)] * 2
    assert all(r.tokens.shape[0] == 1 + (0 if r.grid is None else r.grid[0] * r.grid[1]) for r in sink.results)
    changed = [i for i in range(1, len(grids)) if grids[i] != grids[i - 1]]
    assert all(sink.results[i].reused_from is None for i in changed)  # frame reuse was reset: re-encoded
    assert sum(r.reused for r in sink.results) > 0  # the same picture otherwise reuses its tokens

    # the decisions as the metrics show them, scraped after each turn (the Prometheus text format, parsed)
    assert [scrape["paused"] for scrape in scrapes.turns] == [float(p) for _, p, _ in recorder.turns]
    assert [scrape["max_slice_nums"] for scrape in scrapes.turns] == [float(s) for s in slices]
    assert [scrape["memory_level"] for scrape in scrapes.turns] == [float(n) for n in
                                                                   [0] * 3 + [1] * 3 + [2] * 3 + [3] * 4 + [2] * 2
                                                                   + [1] * 4 + [0] * 3]
    assert scrapes.turns[-1]["decisions"] == {(p, a): float(n) for (p, a), n in hook.governor.decisions_total.items()}
    assert scrapes.turns[12]["memory_used_bytes"] == 0.96 * TOTAL_KB * 1024

    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("governor:")]
    assert logged.pop(0) == ("WARNING", "governor: temperature held at level 0: no temperature reading")  # once
    assert logged[0] == ("WARNING", "governor: memory level 0 -> 1 (fewer_slices): RAM 86.0% used >= 85% "
                                    "(enter level 1)")
    assert [level for level, _ in logged] == ["WARNING"] * 3 + ["INFO"] * 3
    assert logged[3][1] == ("governor: memory level 3 -> 2 (overview_only): RAM 84.0% used < 90% "
                            "(95% - 5% margin: leave level 3)")


def test_without_governor_enabled_the_pipeline_has_no_hook_and_leaves_the_monitor_alone(make_bundle, tmp_path):
    config_path = tmp_path / "agent.yaml"
    config_path.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\n" % make_bundle())
    monitor = ScriptedMonitor([0.99])
    pipeline = make_pipeline(load_agent_config(config_path), source=EndlessCamera(np.zeros((8, 8, 3), np.uint8)),
                             sink=ListSink(), monitor=monitor)
    assert pipeline.hooks == []
    pipeline.close()
    assert not monitor.closed
