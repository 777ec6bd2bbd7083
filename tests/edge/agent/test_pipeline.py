"""The frame loop's contract on the onnxruntime backend: one FrameResult per handled frame (sequence, capture time,
grid, tokens, per-stage timings, and the frame a reused result came from), frame reuse keeping the whole encoded
result, the engines freed when a run ends, faults counted while the loop goes on, and what `run` and `profile` say
(generous bounds: the tests assert that things happen, not how fast)."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from edge.agent.config import load_agent_config
from edge.agent.contracts import FrameResult
from edge.agent.runner import make_pipeline, run_pipeline
from edge.camera.source import FrameSource
from edge.cli.main import main
from edge.errors import InputError
from tests.edge.agent.fakes import ListSink
from tests.edge.camera.fakes import moving_frames, write_video

pytest.importorskip("cv2")


def _config(tmp_path: Path, bundle: Path, frames: int, static: bool, fps: float = 10, extra: str = "") -> Path:
    images = moving_frames(1, size=(320, 240)) * frames if static else moving_frames(frames, size=(320, 240))
    write_video(tmp_path / "clip.avi", images, fps=30)
    path = tmp_path / "agent.yaml"
    path.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi, fps: %g}\nbackend: onnxruntime\nresize: fast\n"
                    "sink: {kind: npy, directory: tokens, keep: 100}\n%s" % (bundle, fps, extra))
    return path


def _engines_closed(pipeline) -> bool:
    return all(engine.session is None for engine in pipeline.encoder.engines.values())


def test_the_sink_gets_one_frame_result_per_frame_and_reused_ones_name_their_encoded_frame(converted_bundle,
                                                                                           tmp_path):
    config = load_agent_config(_config(tmp_path, converted_bundle, 8, static=True))  # reuse on: the default
    sink = ListSink()
    pipeline = make_pipeline(config, sink=sink)
    report = run_pipeline(pipeline)
    results = sink.results
    assert len(results) == report["frames"] >= 3 and report["errors"] == 0
    assert [r.sequence for r in results] == sorted({r.sequence for r in results})
    assert all(a.timestamp_s <= b.timestamp_s for a, b in zip(results, results[1:]))
    assert results[-1].timestamp_s <= time.monotonic()
    first = results[0]
    assert first.reused_from is None and not first.reused
    assert {"reuse_check", "preprocess", "vpm", "resampler"} <= set(first.timings_ms)
    assert first.tokens.shape[1:] == (64, 256) and first.tokens.shape[0] == 1 + (
        0 if first.grid is None else first.grid[0] * first.grid[1])
    by_sequence = {r.sequence: r for r in results}
    reused = [r for r in results if r.reused]
    assert reused and report["reused"] == len(reused) and report["encoded"] == len(results) - len(reused)
    for result in reused:
        encoded = by_sequence[result.reused_from]
        assert encoded.reused_from is None and encoded.sequence < result.sequence
        assert result.tokens is encoded.tokens and result.grid == encoded.grid
        assert result.timestamp_s >= encoded.timestamp_s and set(result.timings_ms) == {"reuse_check"}
    kept = pipeline.reuse.result
    assert isinstance(kept, FrameResult) and kept.reused_from is None and kept.grid == first.grid
    assert sink.closed and _engines_closed(pipeline), "the run frees the engines and closes the sink"


def test_the_engines_are_freed_when_the_camera_cannot_start(converted_bundle, tmp_path):
    config = load_agent_config(_config(tmp_path, converted_bundle, 2, static=True))
    source = FrameSource({"kind": "file", "path": str(tmp_path / "missing.avi")})
    pipeline = make_pipeline(config, source=source, sink=ListSink())
    with pytest.raises(InputError, match="camera.path"):
        run_pipeline(pipeline)
    assert _engines_closed(pipeline)


@pytest.mark.parametrize("fault", ["encode", "sink"])
def test_a_failing_encode_or_sink_write_is_counted_and_the_loop_goes_on(converted_bundle, tmp_path, fault):
    config = load_agent_config(_config(tmp_path, converted_bundle, 6, static=False))
    pipeline = make_pipeline(config, reuse=False)
    if fault == "encode":
        pipeline.encoder.close()  # every encode now raises
    else:
        shutil.rmtree(pipeline.sink.sinks[0].directory)  # every write now fails
    report = run_pipeline(pipeline)
    assert report["frames"] >= 2 and report["errors"] == report["frames"]
    assert report["frames"] + report["dropped"] == 6, "every frame of the file was handled or dropped, none lost"


def test_run_says_how_many_frames_the_camera_dropped(converted_bundle, tmp_path, capsys):
    config = _config(tmp_path, converted_bundle, 12, static=False, fps=0)  # unpaced: faster than the encoder
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"frames (\d+) \(encoded (\d+), reused (\d+), errors (\d+)\), dropped (\d+)", line)
    assert match, line
    frames, dropped = int(match.group(1)), int(match.group(5))
    assert frames >= 1 and frames + dropped == 12


def test_profile_writes_no_tokens_says_so_and_follows_the_configs_reuse(converted_bundle, tmp_path, capsys):
    static = _config(tmp_path, converted_bundle, 10, static=True, extra="reuse: {enabled: false}\n")
    capsys.readouterr()
    assert main(["profile", "--config", str(static), "--frames", "6"]) == 0
    out = capsys.readouterr().out
    assert "tokens: none written" in out and re.search(r"0 reused = 0%, 0 errors\), dropped \d+", out), out
    assert not (tmp_path / "tokens").exists()
    static.write_text(static.read_text().replace("reuse: {enabled: false}\n", ""))
    assert main(["profile", "--config", str(static), "--frames", "6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reused"] >= 1 and report["sink"] == "no tokens written (profile)"
    assert not (tmp_path / "tokens").exists()
