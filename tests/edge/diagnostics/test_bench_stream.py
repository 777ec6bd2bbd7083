"""`minicpmv-edge bench stream`: a real run over real sockets reports both transports, the ratio, and no drops."""
from __future__ import annotations

import json

import pytest

from edge.cli.main import main


@pytest.mark.parametrize("dtype,itemsize", [("fp16", 2), ("fp32", 4)])
def test_bench_stream_reports_stream_and_raw(capsys, dtype, itemsize):
    capsys.readouterr()
    assert main(["bench", "stream", "--frames", "12", "--dtype", dtype, "--rounds", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frame"] == {"shape": [10, 64, 3584], "rows": 640, "width": 3584, "dtype": dtype,
                               "bytes": 640 * 3584 * itemsize}
    for side in ("stream", "raw"):
        figures = report[side]
        assert figures["mb_per_s"] > 0 and figures["frames_per_s"] > 0
        assert 0 < figures["latency_ms"]["p50"] <= figures["latency_ms"]["p99"]
    assert report["throughput_ratio"] == pytest.approx(report["stream"]["mb_per_s"] / report["raw"]["mb_per_s"])
    assert report["dropped"] == 0 and report["rejected"] == {} and report["in_order"] is True
    assert report["rounds"] == 2 and len(report["round_ratios"]) == 2 and all(r > 0 for r in report["round_ratios"])
    handover = report["handover"]
    assert 0 < handover["write_ms_p50"] <= handover["write_ms_p99"] and handover["cast_ms_p50"] > 0
    assert handover["write_over_cast"] == pytest.approx(handover["write_ms_p50"] / handover["cast_ms_p50"])


def test_bench_stream_text_and_bad_frames(capsys):
    assert main(["bench", "stream", "--frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "stream / raw throughput" in out and "640 x 3584 fp16" in out and "the frame loop's write" in out
    with pytest.raises(SystemExit) as stop:
        main(["bench", "stream", "--frames", "0"])
    assert stop.value.code == 2
