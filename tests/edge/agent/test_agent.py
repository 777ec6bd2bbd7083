"""`minicpmv-edge run` and `profile` on the onnxruntime backend: a video made here runs end to end; a source that
freezes, repeats its last frame, or ends is detected and recovered from while the agent keeps running (generous
time bounds: the tests assert that things happen, not how fast)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.agent.config import load_agent_config
from edge.agent.runner import make_pipeline
from edge.camera.source import FrameSource
from edge.cli.main import main
from edge.preprocess.scenes import synthetic_scene
from tests.edge.camera.fakes import FakeCapture, Opener, fake_config, fresh_frame

cv2 = pytest.importorskip("cv2")


def _video(path: Path, frames: int, moving: bool) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    base = np.ascontiguousarray(synthetic_scene(320, 240, seed=1)[:, :, ::-1])
    for i in range(frames):
        frame = base.copy()
        if moving:
            frame[60:100, 10 + 12 * i: 50 + 12 * i] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


def _config(tmp_path: Path, bundle: Path, video: Path, **extra) -> Path:
    lines = ["bundle: %s" % bundle, "camera: {kind: file, path: %s, loop: false, fps: 4}" % video.name,
             "backend: onnxruntime", "resize: fast", "sink: {kind: npy, directory: tokens, keep: 3}"]
    lines += ["%s: %s" % kv for kv in extra.items()]
    path = tmp_path / "agent.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_end_to_end_on_a_video_file(converted_bundle, tmp_path, capsys):
    config = _config(tmp_path, converted_bundle, _video(tmp_path / "moving.avi", 8, moving=True),
                     reuse="{enabled: false}")
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--json"]) == 0  # returns by itself when the file ends
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] >= 4 and report["encoded"] == report["frames"] and report["errors"] == 0
    assert report["source"]["end_of_stream"] == 1
    written = sorted((tmp_path / "tokens").glob("frame-*.npy"))
    assert 1 <= len(written) <= 3  # the newest `keep` only
    tokens = np.load(written[-1])
    assert tokens.dtype == np.float32 and tokens.shape[1:] == (64, 256)


def test_profile_shares_and_reuse_on_a_static_scene(converted_bundle, tmp_path, capsys):
    config = _config(tmp_path, converted_bundle, _video(tmp_path / "static.avi", 10, moving=False),
                     reuse="{enabled: true}")
    capsys.readouterr()
    assert main(["profile", "--config", str(config), "--frames", "10", "--no-reuse", "--json"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert off["reused"] == 0 and abs(sum(off["stage_shares"].values()) - 1) < 1e-3
    assert off["stage_shares"]["vpm"] > 0 and off["capture_wait_ms_per_frame"] >= 0
    assert main(["profile", "--config", str(config), "--frames", "10", "--json"]) == 0
    on = json.loads(capsys.readouterr().out)
    assert on["reused_share"] > 0.5 and on["encoded"] >= 1


@pytest.mark.parametrize("fault", ["freeze", "repeat"])
def test_agent_keeps_running_through_a_frozen_or_repeating_source(converted_bundle, tmp_path, fault):
    config = load_agent_config(_config(tmp_path, converted_bundle, tmp_path / "unused.avi"))
    first = FakeCapture([fresh_frame(1), fresh_frame(2), "block" if fault == "freeze" else "repeat"])
    source = FrameSource(fake_config(max_repeats=5), opener=Opener(first, FakeCapture(period_s=0.05)))
    pipeline = make_pipeline(config, reuse=False, max_frames=6, source=source)
    handled = []
    original = pipeline.handle

    def record(frame):
        handled.append(frame.connection)
        original(frame)

    pipeline.handle = record
    try:
        with source:
            report = pipeline.run()
    finally:
        first.unblock.set()
    assert report["frames"] == 6 and report["errors"] == 0
    assert max(handled) >= 2  # frames from the reconnected camera were encoded
    assert report["source"]["reconnects"] >= 1


def test_bad_agent_configs_are_one_line_exit_2(tmp_path, capsys):
    cases = {"broken.yaml": "bundle: [unclosed", "unknown.yaml": "bundle: b\ncamera: {kind: file}\ncolour: red\n",
             "nocamera.yaml": "bundle: b\n", "backend.yaml": "bundle: b\ncamera: {kind: file}\nbackend: tpu\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert main(["run", "--config", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(tmp_path / name) in err, err
