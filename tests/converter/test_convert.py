"""`minicpmv-convert convert`: the whole pipeline per target, publishing only what passed every step."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converter.cli import main
from edge import VisionEncoder
from edge.bundle.manifest import Bundle
from edge.preprocess.scenes import synthetic_scene

FAST = ["--count", "2", "--eval-images", "1", "--verify-images", "1"]


def _convert(capsys, checkpoint, out, *extra):
    capsys.readouterr()
    code = main(["convert", "--checkpoint", str(checkpoint), "--out", str(out), "--json"] + FAST + list(extra))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


@pytest.mark.parametrize("target,jetpack,tensorrt", [("orin-nano-8gb", None, "10.3"), ("xavier-nx", None, "8.5"),
                                                     ("orin-nx-16gb", "6.0", "8.6")])
def test_jetson_bundle_carries_every_precision(make_checkpoint, tmp_path, capsys, target, jetpack, tensorrt):
    out = tmp_path / "bundle"
    code, summary, _ = _convert(capsys, make_checkpoint("2.6"), out, "--target", target,
                                *(["--jetpack", jetpack] if jetpack else []))
    assert code == 0
    bundle = Bundle.load(out)
    assert all(bundle.precisions(m) == ["fp32", "fp16", "int8"] for m in ("vpm", "resampler"))
    assert bundle.manifest["target"]["default_precision"] == "int8" == summary["default_precision"]
    assert bundle.manifest["checks"]["tensorrt_ops"][tensorrt]["passed"]
    assert bundle.manifest["mixed_precision"]["met"]
    assert set(bundle.manifest["verification"]["precisions"]) == {"fp32", "fp16", "int8"}
    assert (out / bundle.manifest["verification"]["report"]).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging left behind
    image = synthetic_scene(640, 480, seed=3)
    default = VisionEncoder.from_bundle(out).encode(image).tokens  # the target's default: int8
    np.testing.assert_array_equal(default, VisionEncoder.from_bundle(out, precision="int8").encode(image).tokens)
    assert not np.array_equal(default, VisionEncoder.from_bundle(out, precision="fp32").encode(image).tokens)


def test_host_bundle_is_fp32_only(make_checkpoint, tmp_path, capsys):
    code, summary, _ = _convert(capsys, make_checkpoint("2.5"), tmp_path / "b", "--target", "host-x86")
    assert code == 0 and summary["precisions"]["vpm"] == ["fp32"] and summary["mixed_precision"] is None


def test_unreachable_accuracy_target_publishes_nothing(make_checkpoint, tmp_path, capsys):
    out = tmp_path / "bundle"
    code, _, err = _convert(capsys, make_checkpoint("2.6"), out, "--target", "orin-nano-8gb",
                            "--target-cosine", "1.5")
    assert code == 1 and "conversion failed" in err
    assert not list(tmp_path.iterdir())


def test_bad_input_exits_2_and_writes_nothing(make_checkpoint, tmp_path, capsys):
    code, _, err = _convert(capsys, make_checkpoint("2.6"), tmp_path / "b", "--target", "orin-nano-99gb")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
