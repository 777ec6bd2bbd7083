"""`minicpmv-edge bench engines`: figures per precision on onnxruntime, and on the stand-in tensorrt (build times,
cache hits) — the stand-in's figures are not TensorRT's; the command's real figures come from a Jetson."""
from __future__ import annotations

import json

import edge.engines.tensorrt.build as build_module
from edge.cli.main import main
from tests.standins.fake_pycuda import device_memory
from tests.standins.fake_tensorrt import make_tensorrt


def _bench(capsys, *args):
    capsys.readouterr()
    assert main(["bench", "engines", "--size", "320x240", "--repeats", "2", "--json"] + list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_every_precision_on_onnxruntime(converted_bundle, capsys):
    report = _bench(capsys, "--bundle", str(converted_bundle), "--backend", "onnxruntime")
    assert [p["precision"] for p in report["precisions"]] == ["fp32", "fp16", "int8"]
    for entry in report["precisions"]:
        stages = entry["stages"]
        assert all(stages[s]["min_ms"] > 0 and stages[s]["median_ms"] >= stages[s]["min_ms"]
                   for s in ("preprocess", "vpm", "resampler"))
        assert entry["memory"]["peak_rss_bytes"] >= entry["memory"]["rss_bytes"] > 0


def test_tensorrt_build_times_and_cache(converted_bundle, capsys, tmp_path, monkeypatch):
    memory, adapter = device_memory()
    monkeypatch.setattr(build_module, "import_tensorrt", lambda: (make_tensorrt("8.6", adapter), memory))
    args = ["--bundle", str(converted_bundle), "--precision", "int8", "--cache-dir", str(tmp_path)]
    first = _bench(capsys, *args)["precisions"][0]
    assert set(first["build"]) == {"vpm", "resampler"} and not any(b["cached"] for b in first["build"].values())
    again = _bench(capsys, *args)["precisions"][0]
    assert all(b["cached"] for b in again["build"].values())
