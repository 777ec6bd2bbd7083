"""`minicpmv-convert convert`: the whole pipeline per target, publishing only what passed every step."""
from __future__ import annotations

import io
import json
import re
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml

import configs
from converter.cli import main
from edge import VisionEncoder
from edge.bundle.manifest import Bundle
from edge.preprocess.scenes import synthetic_scene

FAST = ["--count", "2", "--eval-images", "1", "--verify-images", "1"]
NO_SEARCH = ["--no-search"]  # for tests about the bundle, not about the mixed-precision search (test_calibrate's)


def _convert(capsys, checkpoint, out, *extra):
    capsys.readouterr()
    code = main(["convert", "--checkpoint", str(checkpoint), "--out", str(out), "--json"] + FAST + list(extra))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


@pytest.mark.parametrize("target,jetpack,tensorrt", [("orin-nano-8gb", None, "10.3"), ("xavier-nx", None, "8.5"),
                                                     ("orin-nx-16gb", "6.0", "8.6")])
def test_jetson_bundle_carries_every_precision(make_checkpoint, tmp_path, capsys, target, jetpack, tensorrt):
    out = tmp_path / "bundle"
    code, summary, _ = _convert(capsys, make_checkpoint("2.6"), out, "--target", target, *NO_SEARCH,
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
    if target != "orin-nano-8gb":
        return  # the encoder's choice of the default precision is the same for every target: checked once
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
                            "--target-cosine", "1.5", *NO_SEARCH)
    assert code == 1 and "conversion failed" in err
    assert not list(tmp_path.iterdir())


def test_bad_input_exits_2_and_writes_nothing(make_checkpoint, tmp_path, capsys):
    code, _, err = _convert(capsys, make_checkpoint("2.6"), tmp_path / "b", "--target", "orin-nano-99gb")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def yaml_target_convert(make_checkpoint, tmp_path_factory):
    """One convert for `--target path/to/profile.yaml` (a profile no shipped name resolves to), counting every
    sha256 taken, every checkpoint read and every build of the torch modules; its bundle, summary, log, counts."""
    import converter.bundle
    import converter.checkpoint
    import converter.convert
    import edge.bundle.manifest

    tmp_path = tmp_path_factory.mktemp("yaml-target")
    profile = yaml.safe_load((Path(configs.__file__).parent / "devices" / "orin-nano-8gb.yaml").read_text())
    profile["name"] = "my-orin-nano"
    path = tmp_path / "profiles" / "my-orin-nano.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(profile))
    hashed, built, read = Counter(), [], []
    real_sha256, real_build, real_load = edge.bundle.manifest.sha256_file, converter.convert.build_modules, \
        converter.checkpoint.load_tensors

    def sha256_file(file):
        hashed[Path(file).name if Path(file).name == "config.json" else str(Path(file))] += 1
        return real_sha256(file)

    out, stdout, stderr = tmp_path / "bundle", io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(stdout), redirect_stderr(stderr):
        patch.setattr(edge.bundle.manifest, "sha256_file", sha256_file)
        patch.setattr(converter.bundle, "sha256_file", sha256_file)
        patch.setattr(converter.convert, "build_modules", lambda *a: built.append(a) or real_build(*a))
        patch.setattr(converter.checkpoint, "load_tensors", lambda *a: read.append(a) or real_load(*a))
        code = main(["convert", "--checkpoint", str(make_checkpoint("2.6")), "--out", str(out), "--json",
                     "--target", str(path)] + FAST + NO_SEARCH)
    assert code == 0, stderr.getvalue()
    return out, json.loads(stdout.getvalue()), stderr.getvalue(), hashed, built, read


def test_target_given_as_a_profile_yaml_path(yaml_target_convert):
    """Converts end to end: calibration takes the profile's int8 default from the manifest, not by loading the
    profile by name."""
    out, summary, _, _, _, _ = yaml_target_convert
    bundle = Bundle.load(out)
    assert bundle.target.profile == "my-orin-nano" == summary["target"]
    assert bundle.target.default_precision == "int8" == bundle.target.profile_default_precision
    assert all(bundle.precisions(m) == ["fp32", "fp16", "int8"] for m in ("vpm", "resampler"))
    assert summary["checks"]["tensorrt_ops"]["10.3"]["passed"]


def test_convert_hashes_each_file_once_and_builds_the_modules_once(yaml_target_convert):
    """Steps hand the bundle and the torch modules on: every file of the published bundle is hashed once (when
    the manifest is written at the end), the checkpoint is read once and the modules are built once. The log
    names the bundle where it is published, never the staging directory, which is gone once convert returns."""
    out, _, err, hashed, built, read = yaml_target_convert
    files = yaml.safe_load((out / "manifest.yaml").read_text())["files"]
    assert len(files) == 8  # fp32, fp16, int8 graphs of both modules and two TensorRT calibration caches
    staging = [name for name in hashed if name != "config.json"]
    assert sorted(Path(name).relative_to(Path(name).parents[1]).as_posix() for name in staging) == sorted(files)
    assert all(hashed[name] == 1 for name in hashed)
    assert len(built) == 1 and len(read) == 1
    assert ".staging-" not in err and "staging" not in err.replace("(staged;", "")
    assert "passed: 6 graphs of %s (staged; published there when every step has passed)" % out in err


def test_make_demo_ends_with_what_it_made_and_where():
    """The demo recipe's last lines name every file or directory its commands write (each --out), and the report."""
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.M).group(1).splitlines()
    commands = [line for line in recipe if not line.startswith("\t@echo")]
    summary = recipe[len(commands):]
    assert recipe[:len(commands)] == commands and summary  # the summary comes last
    assert "$(abspath $(DEMO))" in summary[1]
    made = [m.split("/", 1)[1] for line in commands for m in re.findall(r"--out (\$\(DEMO\)/\S+)", line)]
    assert made == ["checkpoint-$(V)", "bundle-$(V)", "tokens-1920x1080.npy", "llm-$(V).gguf", "clip.avi"]
    for name in made + ["bundle-$(V)/report.html"]:
        assert any(line.split('"')[1].split()[0].rstrip("/,") == name for line in summary[2:]), name
