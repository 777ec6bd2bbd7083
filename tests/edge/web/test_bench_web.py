"""`minicpmv-edge bench web` on a looping generated video: both phases handle frames, the open one sends JPEGs to
its client, and the ratio is the medians'."""
from __future__ import annotations

import json

import pytest

from edge.cli.main import main
from tests.edge.web.agent import write_config

pytest.importorskip("cv2")


def test_bench_web_reports_fps_closed_and_open(make_bundle, tmp_path, capsys):
    config = write_config(tmp_path, make_bundle("2.6"), "{preview_fps: 5}")
    config.write_text(config.read_text().replace("fps: 10}", "fps: 0}"))
    capsys.readouterr()  # the bundle's export, when made here
    assert main(["bench", "web", "--config", str(config), "--seconds", "2", "--rounds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frame"] == [320, 240] and report["preview_fps"] == 5
    assert report["median_fps_closed"] > 0 and report["median_fps_open"] > 0
    assert report["open_over_closed"] == pytest.approx(report["median_fps_open"] / report["median_fps_closed"], 1e-3)
    assert report["jpegs_sent"] > 0
