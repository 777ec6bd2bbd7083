"""`minicpmv-edge bench hooks`: a real run on a tiny bundle reports each hook's cost per turn against the frame's
encode, and the watchdog's pings really went out (one per timed turn)."""
from __future__ import annotations

import json

import pytest

from edge.cli.main import main

pytest.importorskip("prometheus_client", reason="prometheus-client is not installed (pip install -e '.[edge]')")


def test_bench_hooks_reports_each_hook_against_the_frame(make_bundle, capsys):
    bundle = str(make_bundle("2.6"))
    capsys.readouterr()
    assert main(["bench", "hooks", "--bundle", bundle, "--repeats", "7", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    hooks = report["hooks_ms_per_turn"]
    assert set(hooks) == {"governor", "metrics", "watchdog"} and all(ms > 0 for ms in hooks.values())
    assert report["hooks_total_ms"] == pytest.approx(sum(hooks.values()))
    assert report["hooks_over_frame"] == pytest.approx(report["hooks_total_ms"] / report["frame"]["encode_ms"])
    assert report["pings_sent"] == 7 and report["frame"]["size"] == [1280, 720]
    assert report["apart_ms"]["monitor_reading"] > 0 and report["apart_ms"]["metrics_scrape"] > 0
    assert main(["bench", "hooks", "--bundle", bundle, "--repeats", "3"]) == 0
    assert "of the frame's work" in capsys.readouterr().out
