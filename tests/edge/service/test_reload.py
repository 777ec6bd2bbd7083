"""A reload on a real pipeline: live keys change the encoder and the loop, a slice budget the bundle cannot take
refuses the whole new config (nothing of it applied), and `max_slice_nums: null` goes back to the bundle's."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.agent.config import load_agent_config
from edge.agent.runner import make_pipeline
from edge.preprocess.preprocessor import slice_config
from edge.service.notify import Notifier
from edge.service.reload import ConfigReloader
from tests.edge.camera.fakes import moving_frames, write_video

pytest.importorskip("cv2")


def write(folder: Path, bundle: Path, extra: str = "") -> Path:
    config = folder / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nresize: fast\n%s" % (bundle, extra))
    return config


def test_live_keys_apply_and_a_bad_budget_refuses_the_whole_config(make_bundle, tmp_path, caplog):
    bundle = make_bundle("2.6")
    write_video(tmp_path / "clip.avi", moving_frames(2))
    path = write(tmp_path, bundle)
    pipeline = make_pipeline(load_agent_config(path))
    try:
        reloader = ConfigReloader(path, load_agent_config(path), Notifier(socket_path=None))
        bundles = slice_config(pipeline.encoder.bundle).max_slice_nums
        assert pipeline.reuse is not None and pipeline.encoder.max_slice_nums == bundles > 1

        write(tmp_path, bundle, "max_slice_nums: 1\nreuse: {enabled: false}\nmax_frames: 5\n")
        reloader.request()
        reloader.tick(pipeline)
        assert (pipeline.encoder.max_slice_nums, pipeline.reuse, pipeline.max_frames) == (1, None, 5)

        write(tmp_path, bundle, "max_slice_nums: 99\nreuse: {enabled: true}\n")
        with caplog.at_level(logging.ERROR, "minicpmv-edge"):
            reloader.reload(pipeline)
        assert [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()][0].startswith(
            "reload refused, the config in use stays: %s: max_slice_nums must be an integer 1..%d" % (path, bundles))
        assert (pipeline.encoder.max_slice_nums, pipeline.reuse, pipeline.max_frames) == (1, None, 5)

        write(tmp_path, bundle, "reuse: {enabled: true}\n")
        reloader.reload(pipeline)
        assert pipeline.encoder.max_slice_nums == bundles and pipeline.reuse is not None
        assert pipeline.max_frames is None
    finally:
        pipeline.close()
