"""`minicpmv-convert check-ops --build` and convert's build check, with the real TensorRT-RTX parser and builder:
what the operator tables cannot see (a Reshape to an impossible shape) fails here with the node named."""
from __future__ import annotations

import json

import pytest
import yaml

import converter.build_check
from converter.cli import main
from tests.rtx import broken_bundle, import_rtx


@pytest.fixture(scope="module")
def rtx():
    return import_rtx()


def test_every_graph_of_a_converted_bundle_parses_and_builds(rtx, converted_bundle, capsys):
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(converted_bundle), "--build"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert sum(": parsed, built in " in line for line in lines) == 6  # vpm and resampler, fp32 / fp16 / int8
    assert lines[-1].startswith("passed: 6 graphs") and "TensorRT-RTX %s" % rtx.__version__ in lines[-1]


def test_convert_records_the_builder_and_its_verdict(rtx, converted_bundle):
    checks = yaml.safe_load((converted_bundle / "manifest.yaml").read_text())["checks"]
    assert checks["tensorrt_build"]["builder"] == "TensorRT-RTX %s" % rtx.__version__
    assert checks["tensorrt_build"]["passed"] is True
    assert all(g["engine_bytes"] > 0 for g in checks["tensorrt_build"]["graphs"].values())
    assert len(checks["tensorrt_build"]["graphs"]) == 6


def test_an_opset_16_xavier_bundle_builds(rtx, make_bundle, capsys):
    bundle = make_bundle("2.6", "fp16", "xavier-nx")
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(bundle), "--build", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["build"]["passed"] and len(report["build"]["graphs"]) == 2


def test_a_graph_only_a_real_parser_refuses(rtx, converted_bundle, tmp_path, capsys):
    name = broken_bundle(converted_bundle, tmp_path / "broken")
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(tmp_path / "broken")]) == 0  # the operator tables pass it
    assert main(["check-ops", "--bundle", str(tmp_path / "broken"), "--build"]) == 1
    out = capsys.readouterr().out
    assert "fp16/resampler.onnx: parse FAILED" in out
    assert "  %s (Reshape): " % name in out and "reshape changes volume" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: 1 of 6 graphs")


def test_build_without_a_builder_is_one_line_exit_2(converted_bundle, monkeypatch, capsys):
    monkeypatch.setattr(converter.build_check, "import_builder", lambda: None)
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(converted_bundle), "--build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorrt-rtx-cu13-libs==1.7.1.116" in err[0]


def test_the_grouped_video_graph_parses_and_builds_at_fp32_and_fp16(rtx, trt_video_bundle, capsys):
    """The grouped Resampler with the profile and workspace limit the engine factory uses (one group x frames 1..6,
    the bundle's patches), int32 ids, through the real builder."""
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(trt_video_bundle), "--build", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    video = {f: g for f, g in report["build"]["graphs"].items() if g["module"] == "resampler_group"}
    assert sorted(g["precision"] for g in video.values()) == ["fp16", "fp32"]
    assert all(g["built"] and g["engine_bytes"] > 0 for g in video.values()) and report["build"]["passed"]
    for graph in video.values():
        assert graph["profile"]["temporal_ids"] == [[1, 1], [1, 6], [1, 6]]
        assert [s[0] for s in graph["profile"]["vision_embeds"]] == [1, 6, 6]
    assert len(report["build"]["graphs"]) == 4  # vpm and resampler fp16, the grouped graph fp32 and fp16
