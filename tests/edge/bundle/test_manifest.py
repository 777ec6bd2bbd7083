"""Bundle loading: typed views of the manifest, paths that must stay inside the bundle, and a damaged manifest as
one line naming the key."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import yaml

from edge.bundle.manifest import MANIFEST, Bundle
from edge.cli.main import main
from edge.errors import InputError


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    return copy


def _edit(bundle: Path, change) -> None:
    path = bundle / MANIFEST
    manifest = yaml.safe_load(path.read_text())
    change(manifest)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


def test_typed_views_agree_with_the_manifest(converted_bundle):
    bundle = Bundle.load(converted_bundle)
    raw = bundle.manifest
    assert bundle.model.query_num == raw["model"]["query_num"] and bundle.model.slice.layout == "masked-2d"
    assert bundle.target.profile == "orin-nano-8gb" and bundle.target.tensorrt == "10.3"
    assert bundle.shapes("vpm").patches.max == raw["modules"]["vpm"]["shapes"]["patches"]["max"]
    graph = bundle.graph("vpm", "int8")
    assert graph.files[0] == "int8/vpm.onnx" and [t.name for t in graph.inputs][0] == "pixel_values"
    assert bundle.target.workspace_bytes("int8") == raw["target"]["memory"]["vision_estimates"]["int8"][
        "workspace_bytes"]


@pytest.mark.parametrize("name", ["../../../../../../../../etc/hostname", "/etc/hostname"])
def test_a_manifest_naming_a_file_outside_the_bundle_is_refused(make_bundle, tmp_path, name, capsys):
    bundle = _copy(make_bundle("2.6"), tmp_path)
    outside = Path("/etc/hostname")
    entry = {"sha256": hashlib.sha256(outside.read_bytes()).hexdigest(), "bytes": outside.stat().st_size}
    _edit(bundle, lambda m: m["files"].update({name: entry}))  # a valid hash: only the path gives it away
    with pytest.raises(InputError, match="outside the bundle directory"):
        Bundle.load(bundle)
    capsys.readouterr()
    assert main(["inspect", "--bundle", str(bundle)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_graph_file_that_leaves_the_bundle_through_a_link_is_refused(make_bundle, tmp_path):
    bundle = _copy(make_bundle("2.6"), tmp_path)
    (tmp_path / "elsewhere.onnx").write_bytes((bundle / "fp32" / "vpm.onnx").read_bytes())
    os.remove(bundle / "fp32" / "vpm.onnx")
    os.symlink(tmp_path / "elsewhere.onnx", bundle / "fp32" / "vpm.onnx")
    with pytest.raises(InputError, match="outside the bundle directory"):
        Bundle.load(bundle)


@pytest.mark.parametrize("key,value,message", [
    ("query_num", None, "lacks model.query_num"),
    ("query_num", "64", "model.query_num must be an integer"),
    ("slice", {"layout": "masked-2d"}, "lacks model.slice.scale_resolution"),
])
def test_a_damaged_manifest_is_one_line_naming_the_key(make_bundle, tmp_path, key, value, message):
    bundle = _copy(make_bundle("2.6"), tmp_path)
    _edit(bundle, lambda m: m["model"].pop(key) if value is None else m["model"].update({key: value}))
    with pytest.raises(InputError, match=message):
        Bundle.load(bundle)


def test_a_missing_precision_names_the_command_that_makes_it(make_bundle):
    with pytest.raises(InputError) as refused:
        Bundle.load(make_bundle("2.6")).graph("vpm", "int8")
    assert "minicpmv-convert calibrate --bundle" in str(refused.value)
    assert "export --precision int8" not in str(refused.value)  # export makes fp32 and fp16 only
