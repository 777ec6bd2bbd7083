"""The pipelined frame loop (agent config `pipeline: pipelined`) against the sequential one: the same tokens per frame
on a tiny bundle, frames to the sink in order, at most one frame in each stage while the stages do overlap, faults in
each stage counted while the loop goes on, stop() ending every thread, encode requests and the engines on the
caller's thread, hooks ticking, and the slice budget applying to frames not yet prepared. The fakes record what ran
at once; a slow fake waits on events (with a generous timeout that only a broken loop reaches), never on a clock."""
from __future__ import annotations

import json
import threading
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from edge.agent.frame_reuse import FrameReuse
from edge.agent.pipeline import Pipeline
from edge.agent.pipelined import PipelinedPipeline
from edge.camera.source import Frame
from edge.cli.main import main
from edge.encoder.vision_encoder import EncodedImage, VisionEncoder
from edge.preprocess.scenes import synthetic_scene
from edge.stream.requests import EncodeRequests
from tests.edge.agent.fakes import EndlessCamera, FrameList, ListSink

GENEROUS_S = 30.0  # only a loop that does not overlap (or hangs) waits this long


class Activity:
    """How many calls of each stage run at once, and how many frames are between capture and sink (most seen)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Dict[str, int] = {"prepare": 0, "encode": 0, "sink": 0, "frames": 0}
        self.most = dict(self.now)
        self.together: set = set()  # pairs of stages seen running at the same time

    def enter(self, stage: str) -> None:
        with self.lock:
            self.now[stage] += 1
            self.most[stage] = max(self.most[stage], self.now[stage])
            running = [s for s in ("prepare", "encode", "sink") if self.now[s]]
            self.together.update((a, b) for a in running for b in running if a < b)

    def leave(self, stage: str) -> None:
        with self.lock:
            self.now[stage] -= 1


class StagedEncoder:
    """An encoder with prepare/encode_prepared (no engines): tokens say which frame they came from (the image's
    first pixel), the prepared batch carries the slice budget read when it was prepared. With `overlap` = n, encoding
    each of frames 0..n-2 waits until the next frame's preparation has begun (a sequential loop never gets there)."""

    def __init__(self, activity: Activity, overlap: int = 0, fail_prepare=(), fail_encode=()) -> None:
        self.activity, self.overlap = activity, overlap
        self.fail_prepare, self.fail_encode = set(fail_prepare), set(fail_encode)
        self.max_slice_nums = 9
        self.prepared: List[tuple] = []  # (frame id, slice budget) in the order prepared
        self.prepare_began = threading.Condition()
        self.engine_threads: set = set()
        self.waited_in_vain = 0

    def prepare(self, image: np.ndarray, color: str = "rgb") -> tuple:
        self.activity.enter("prepare")
        try:
            frame_id = int(image[0, 0, 0])
            with self.prepare_began:
                self.prepared.append((frame_id, self.max_slice_nums))
                self.prepare_began.notify_all()
            if frame_id in self.fail_prepare:
                raise ValueError("bad frame %d" % frame_id)
            return frame_id, self.max_slice_nums
        finally:
            self.activity.leave("prepare")

    def encode_prepared(self, prepared: tuple) -> EncodedImage:
        self.engine_threads.add(threading.get_ident())
        self.activity.enter("encode")
        try:
            frame_id, slices = prepared
            if frame_id + 1 < self.overlap:
                with self.prepare_began:
                    if not self.prepare_began.wait_for(lambda: any(f > frame_id for f, _ in self.prepared),
                                                       GENEROUS_S):
                        self.waited_in_vain += 1
            if frame_id in self.fail_encode:
                raise RuntimeError("engine fault on frame %d" % frame_id)
            tokens = np.full((1, 2, 2), frame_id, np.float32)
            return EncodedImage(tokens, None, {"preprocess": 0.0, "vpm": 0.0, "resampler": 0.0, "total": 0.0}, [])
        finally:
            self.activity.leave("encode")

    def encode(self, image: Any, color: str = "rgb") -> EncodedImage:
        return self.encode_prepared(self.prepare(image, color))

    def close(self) -> None:
        """Nothing to free."""


class CountingCamera(EndlessCamera):
    """An endless camera whose frame i has i in its first pixel; counts the frames in the loop (with the sink)."""

    def __init__(self, activity: Activity) -> None:
        super().__init__(np.zeros((4, 4, 3), np.uint8))
        self.activity = activity

    def latest(self, timeout: Optional[float] = None) -> Frame:
        frame = super().latest(timeout)
        image = np.zeros((4, 4, 3), np.uint8)
        image[0, 0, 0] = frame.sequence % 256
        self.activity.enter("frames")
        return frame._replace(image=image)


class CountingSink(ListSink):
    """A sink that records its writes in `activity`, fails the frames in `fail`, and lets a frame leave the loop."""

    def __init__(self, activity: Activity, fail=()) -> None:
        super().__init__()
        self.activity, self.fail = activity, set(fail)

    def write(self, result) -> None:
        self.activity.enter("sink")
        try:
            if result.sequence in self.fail:
                raise OSError("disk full on frame %d" % result.sequence)
            super().write(result)
        finally:
            self.activity.leave("sink")
            self.activity.leave("frames")


def _scenes(count: int, static_from: int = 99) -> List[np.ndarray]:
    """Frames of a scene with a block moving right; from `static_from` on the picture stops changing."""
    base = synthetic_scene(640, 360, seed=3)
    images = []
    for i in range(count):
        image = base.copy()
        x = 20 + 40 * min(i, static_from)
        image[100:180, x:x + 80] = (255, 0, 0)
        images.append(image)
    return images


@pytest.mark.parametrize("reuse", [False, True])
def test_the_pipelined_loop_gives_the_sequential_loops_tokens_frame_by_frame(converted_bundle, reuse):
    images = _scenes(7, static_from=3)  # frames 4..6 unchanged after 3: reused when reuse is on
    results = {}
    with VisionEncoder.from_bundle(converted_bundle, resize="fast") as encoder:
        for loop in (Pipeline, PipelinedPipeline):
            sink = ListSink()
            checker = FrameReuse(max_reuse_age_s=None) if reuse else None
            report = loop(encoder, FrameList(images, interval_s=1.0, start_s=1.0), sink, checker).run(poll_s=0.01)
            assert report["pipeline"] == loop.mode and report["errors"] == 0 and report["frames"] == 7
            assert report["latency_ms"]["frames"] == 7
            results[loop.mode] = sink.results
    sequential, pipelined = results["sequential"], results["pipelined"]
    assert [r.sequence for r in pipelined] == [r.sequence for r in sequential] == list(range(7))
    assert [r.reused_from for r in pipelined] == [r.reused_from for r in sequential]
    assert any(r.reused for r in sequential) == reuse
    for want, got in zip(sequential, pipelined):
        assert got.grid == want.grid and got.timestamp_s == want.timestamp_s
        np.testing.assert_array_equal(got.tokens, want.tokens)
        assert set(got.timings_ms) == set(want.timings_ms)


def test_at_most_one_frame_in_each_stage_in_order_while_the_stages_overlap():
    activity = Activity()
    encoder, sink = StagedEncoder(activity, overlap=12), CountingSink(activity)
    report = PipelinedPipeline(encoder, CountingCamera(activity), sink, max_frames=12).run(poll_s=0.01)
    assert report["frames"] == 12 and report["errors"] == 0 and report["encoded"] == 12
    assert [r.sequence for r in sink.results] == list(range(12))
    assert [int(r.tokens[0, 0, 0]) for r in sink.results] == list(range(12))
    assert activity.most["prepare"] == activity.most["encode"] == activity.most["sink"] == 1
    assert activity.most["frames"] <= 3, "one frame in each of the three stages at most"
    assert encoder.waited_in_vain == 0, "each encode but the last saw the next frame's preparation begin"
    assert ("encode", "prepare") in activity.together, "preparing overlapped encoding"
    assert report["latency_ms"]["frames"] == 12 and report["latency_ms"]["median"] >= 0


def test_a_fault_in_each_stage_skips_that_frame_and_the_loop_goes_on():
    activity = Activity()

    class FailingReuse(FrameReuse):
        def should_encode(self, frame, color="bgr"):
            if int(frame[0, 0, 0]) == 2:
                raise ValueError("thumbnail failed")
            return True

    encoder = StagedEncoder(activity, fail_prepare={4}, fail_encode={6})
    sink = CountingSink(activity, fail={8})
    report = PipelinedPipeline(encoder, CountingCamera(activity), sink, FailingReuse(), max_frames=10).run(poll_s=0.01)
    assert report["frames"] == 10 and report["errors"] == 4
    assert [r.sequence for r in sink.results] == [0, 1, 3, 5, 7, 9]
    assert report["encoded"] == 7  # all but the reuse check's and the preparation's faults, the sink's included


def test_frames_that_would_reuse_a_failed_encode_are_skipped_and_the_next_is_encoded_afresh():
    activity = Activity()
    images = [np.zeros((36, 64, 3), np.uint8) for _ in range(6)]  # one unchanged picture
    for index, image in enumerate(images):
        image[0, 0, 0] = index  # the fake's frame id; one cell of 64x36, far under the reuse thresholds
    encoder = StagedEncoder(activity, fail_encode={0})
    sink = ListSink()
    report = PipelinedPipeline(encoder, FrameList(images, interval_s=1.0, start_s=1.0), sink,
                               FrameReuse(max_reuse_age_s=None)).run(poll_s=0.01)
    written = [(r.sequence, r.reused_from) for r in sink.results]
    assert report["frames"] == 6 and report["errors"] == len(images) - len(written) >= 1
    encoded = [sequence for sequence, source in written if source is None]
    assert encoded and all(source == encoded[0] for _, source in written if source is not None)
    assert written[0][1] is None and written[0][0] <= 2, "at most the frame in flight lost besides the failed one"


def test_stop_ends_every_thread_and_finishes_the_frames_in_the_loop():
    activity = Activity()
    sink = CountingSink(activity)

    class StopAt:
        def tick(self, pipeline):
            if pipeline.counters["encoded"] >= 5:
                pipeline.stop()

    pipeline = PipelinedPipeline(StagedEncoder(activity), CountingCamera(activity), sink, hooks=[StopAt()])
    before = set(threading.enumerate())
    runner = threading.Thread(target=lambda: pipeline.run(poll_s=0.01))
    runner.start()
    runner.join(GENEROUS_S)
    assert not runner.is_alive()
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()], "no stage thread left"
    report = pipeline.report()
    assert report["frames"] == len(sink.results) >= 5 and activity.now["frames"] == 0, "every frame taken was written"


def test_a_camera_that_raises_ends_the_run_with_its_error_and_no_thread_left():
    class Broken(EndlessCamera):
        def latest(self, timeout=None):
            if self.taken == 3:
                raise RuntimeError("camera gone")
            return super().latest(timeout)

    before = set(threading.enumerate())
    pipeline = PipelinedPipeline(StagedEncoder(Activity()), Broken(np.zeros((4, 4, 3), np.uint8)), ListSink())
    with pytest.raises(RuntimeError, match="camera gone"):
        pipeline.run(poll_s=0.01)
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert len(pipeline.sink.results) == 3


def test_requests_and_every_encode_run_on_the_thread_that_runs_the_loop_and_hooks_tick():
    activity = Activity()
    encoder, requests, answers, turns = StagedEncoder(activity), EncodeRequests(4), [], []

    class Asks:
        def tick(self, pipeline):
            turns.append(pipeline.counters["frames"])
            if len(turns) in (2, 4):
                image = np.zeros((4, 4, 3), np.uint8)
                assert requests.submit(image, lambda encoded, failure: answers.append(failure)) is None
            if len(turns) == 8:
                pipeline.stop()

    report = PipelinedPipeline(encoder, CountingCamera(activity), CountingSink(activity), requests=requests,
                               hooks=[Asks()]).run(poll_s=0.01)
    assert answers == [None, None] and report["requests"]["served"] == 2
    assert encoder.engine_threads == {threading.get_ident()}, "the engines have one thread: the loop's caller's"
    assert len(turns) >= 8 and turns == sorted(turns)  # stop() finishes the frames in the loop, a turn each


def test_pause_and_the_slice_budget_apply_from_the_next_frame_not_yet_prepared():
    activity = Activity()
    encoder, camera = StagedEncoder(activity), CountingCamera(activity)
    seen: Dict[str, Any] = {}

    class Governs:
        def tick(self, pipeline):
            if "prepared" not in seen and pipeline.counters["encoded"] >= 2:
                encoder.max_slice_nums = 4
                seen["prepared"] = len(encoder.prepared)  # none is being prepared while hooks tick
            if "taken" not in seen and pipeline.counters["encoded"] >= 5:
                pipeline.paused = True
                seen["taken"], seen["turns"] = camera.taken, 0
            if "taken" in seen:
                seen["turns"] += 1
                if seen["turns"] == 5:
                    pipeline.stop()

    report = PipelinedPipeline(encoder, camera, CountingSink(activity), hooks=[Governs()]).run(poll_s=0.01)
    budgets = [slices for _, slices in encoder.prepared]
    cut = seen["prepared"]
    assert budgets[:cut] == [9] * cut and budgets[cut:] == [4] * (len(budgets) - cut) and cut < len(budgets)
    assert camera.taken <= seen["taken"] + 1, "paused: at most the frame being taken when it paused"
    assert report["frames"] == camera.taken


def test_profile_runs_the_loop_the_flag_names(converted_bundle, tmp_path, capsys):
    from tests.edge.camera.fakes import moving_frames, write_video

    write_video(tmp_path / "clip.avi", moving_frames(6, size=(320, 240)), fps=30)
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi, loop: false, fps: 10}\nresize: fast\n"
                      "metrics: {enabled: false}\n" % converted_bundle)
    capsys.readouterr()
    assert main(["profile", "--config", str(config), "--frames", "3", "--pipeline", "pipelined", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pipeline"] == "pipelined" and report["frames"] == 3 and report["errors"] == 0
    assert report["latency_ms"]["frames"] == 3 and report["stages_ms_per_frame"]["vpm"] > 0


def test_bench_pipeline_runs_both_loops_in_turn_on_the_same_engines():
    from pathlib import Path

    from edge.agent.config import parse_agent_config
    from edge.diagnostics.bench_pipeline import format_report, run_bench

    activity = Activity()
    encoder = StagedEncoder(activity)
    config = parse_agent_config({"bundle": "b", "camera": {"kind": "file", "path": "clip.avi"}}, Path("."))
    report = run_bench(config, frames=4, rounds=2, warmup=1, encoder=encoder,
                       make_source=lambda: CountingCamera(activity))
    assert set(report["modes"]) == {"sequential", "pipelined"}
    for figures in report["modes"].values():
        assert len(figures["fps"]) == 2 and all(fps > 0 for fps in figures["fps"])
        assert figures["latency_ms"]["frames"] == 2 * 4  # the warm-up frame of each run left out
        assert figures["latency_ms"]["p90"] >= figures["latency_ms"]["median"]
    assert report["fps_ratio"] == round(report["modes"]["pipelined"]["fps_median"]
                                        / report["modes"]["sequential"]["fps_median"], 4)
    assert len(encoder.prepared) == 2 * 2 * 5, "every frame of every run was encoded, none reused"
    assert "pipelined / sequential" in format_report(report)


def test_pipelined_with_grouped_video_is_refused_before_anything_is_opened(tmp_path):
    from pathlib import Path

    from edge.agent.config import parse_agent_config
    from edge.agent.runner import make_pipeline
    from edge.errors import InputError

    config = parse_agent_config({"bundle": "missing", "camera": {"kind": "file", "path": "missing.avi"},
                                 "video": {"group_frames": 2}, "pipeline": "pipelined"}, Path(tmp_path))
    with pytest.raises(InputError, match="pipeline: pipelined does not group video frames"):
        make_pipeline(config)
    with pytest.raises(InputError, match="pipeline: pipelined does not group video frames"):
        make_pipeline(parse_agent_config({"bundle": "missing", "camera": {"kind": "file", "path": "missing.avi"},
                                          "video": {"group_frames": 2}}, Path(tmp_path)), mode="pipelined")
