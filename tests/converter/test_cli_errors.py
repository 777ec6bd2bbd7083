"""Bad input to minicpmv-convert and minicpmv-edge: one clear line, exit 2, nothing half-written; and what export
writes per target, precision and size (opset, dtypes, external data)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file, save_file

import converter.bundle as converter_bundle
from converter.checkpoint import load_vision_checkpoint
from converter.cli import main as convert_main
from converter.export import example_feeds
from edge.bundle.manifest import MANIFEST, MODULES, Bundle
from edge.cli.main import main as edge_main
from edge.device.profiles import load_profile
from edge.engines.onnxrt import open_session
from edge.errors import InputError
from edge.fsutil import sha256_file
from edge.preprocess.graph_inputs import pack_slices
from edge.version import __version__

_ELEM_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
               onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}


def _convert(capsys: pytest.CaptureFixture, args: Sequence[str]) -> Tuple[int, List[str]]:
    """Run minicpmv-convert in-process: (exit code, stderr lines)."""
    capsys.readouterr()
    code = convert_main([str(a) for a in args])
    return code, capsys.readouterr().err.splitlines()


def _edge(capsys: pytest.CaptureFixture, args: Sequence[str]) -> Tuple[int, List[str]]:
    """Run minicpmv-edge in-process: (exit code, stderr lines)."""
    capsys.readouterr()
    code = edge_main([str(a) for a in args])
    return code, capsys.readouterr().err.splitlines()


def _assert_nothing_written(out: Path) -> None:
    """Neither the bundle nor a temporary `.<name>.*` directory beside it exists."""
    assert not out.exists()
    assert not list(out.parent.glob("." + out.name + ".*"))


def _export_args(checkpoint: Path, out: Path, *extra: str) -> List[str]:
    return ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--no-check", *extra]


def _resave_weights(ck_dir: Path, change: Callable[[Dict[str, torch.Tensor]], None]) -> None:
    tensors = dict(load_file(str(ck_dir / "model.safetensors")))
    change(tensors)
    save_file(tensors, str(ck_dir / "model.safetensors"), metadata={"format": "pt"})


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _run_graph(path: Path, feeds: Dict[str, np.ndarray]) -> np.ndarray:
    return open_session(path).run(None, feeds)[0]


# --- checkpoint problems -------------------------------------------------------------------------------------


def test_missing_checkpoint_directory(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """One line naming the directory; no bundle and no temporary directory left."""
    missing, out = tmp_path / "no-such-checkpoint", tmp_path / "bundle"
    code, err = _convert(capsys, _export_args(missing, out))
    assert code == 2
    assert len(err) == 1 and str(missing) in err[0] and err[0].startswith("minicpmv-convert: error:")
    _assert_nothing_written(out)


def test_missing_tensor(capsys: pytest.CaptureFixture, make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """A checkpoint without one vision tensor is refused, naming that tensor."""
    ck_dir = shutil.copytree(make_checkpoint("2.6"), tmp_path / "ck")
    _resave_weights(ck_dir, lambda t: t.pop("vpm.encoder.layers.1.mlp.fc2.bias"))
    out = tmp_path / "bundle"
    code, err = _convert(capsys, _export_args(ck_dir, out))
    assert code == 2
    assert len(err) == 1 and "vpm.encoder.layers.1.mlp.fc2.bias" in err[0]
    _assert_nothing_written(out)


def test_misshaped_tensor(capsys: pytest.CaptureFixture, make_checkpoint: Callable[..., Path],
                          tmp_path: Path) -> None:
    """A tensor of the wrong shape is refused with its name, the shape found and the shape expected."""
    ck_dir = shutil.copytree(make_checkpoint("2.6"), tmp_path / "ck")

    def reshape(tensors: Dict[str, torch.Tensor]) -> None:
        assert tuple(tensors["resampler.query"].shape) == (64, 256)
        tensors["resampler.query"] = torch.zeros(32, 256, dtype=tensors["resampler.query"].dtype)

    _resave_weights(ck_dir, reshape)
    out = tmp_path / "bundle"
    code, err = _convert(capsys, _export_args(ck_dir, out))
    assert code == 2
    assert len(err) == 1
    assert "resampler.query" in err[0] and "(32, 256)" in err[0] and "(64, 256)" in err[0]
    _assert_nothing_written(out)


def test_bad_config_json(capsys: pytest.CaptureFixture, make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """Invalid JSON in config.json: exit 2 naming config.json (inspect and export alike)."""
    ck_dir = shutil.copytree(make_checkpoint("2.6"), tmp_path / "ck")
    (ck_dir / "config.json").write_text('{"model_type": "minicpmv", "version": 2.6,')
    for args in (["inspect", "--checkpoint", ck_dir], _export_args(ck_dir, tmp_path / "bundle")):
        code, err = _convert(capsys, args)
        assert code == 2
        assert len(err) == 1 and str(ck_dir / "config.json") in err[0] and "JSON" in err[0]
    _assert_nothing_written(tmp_path / "bundle")


def test_unknown_target(capsys: pytest.CaptureFixture, make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """An unknown --target is refused naming it, before anything is written."""
    out = tmp_path / "bundle"
    code, err = _convert(capsys, _export_args(make_checkpoint("2.6"), out, "--target", "jetson-nano-2gb"))
    assert code == 2
    assert len(err) == 1 and "'jetson-nano-2gb'" in err[0] and "orin-nano-8gb" in err[0]
    _assert_nothing_written(out)


# --- --out handling ------------------------------------------------------------------------------------------


def test_existing_out_needs_force(capsys: pytest.CaptureFixture, make_checkpoint: Callable[..., Path],
                                  tmp_path: Path) -> None:
    """An existing --out is kept without --force; with --force it is replaced by a bundle that loads."""
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    code, err = _convert(capsys, _export_args(make_checkpoint("2.6"), out))
    assert code == 2
    assert "error:" in err[-1] and str(out) in err[-1] and "--force" in err[-1]
    assert (out / "keep.txt").read_text() == "user data"
    assert not list(tmp_path.glob(".bundle.*"))

    code, _ = _convert(capsys, _export_args(make_checkpoint("2.6"), out, "--force"))
    assert code == 0
    assert not (out / "keep.txt").exists()
    bundle = Bundle.load(out)
    assert bundle.model.version == "2.6" and bundle.precisions("vpm") == ["fp32"]
    assert not list(tmp_path.glob(".bundle.*"))


def test_failed_export_leaves_old_bundle(capsys: pytest.CaptureFixture, make_checkpoint: Callable[..., Path],
                                         make_bundle: Callable[..., Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that fails after its first graph leaves --force's old bundle intact and no temporary files."""
    out = shutil.copytree(make_bundle("2.6"), tmp_path / "bundle")
    manifest_before = (out / MANIFEST).read_text()
    real_export_graph = converter_bundle.export_graph
    exported: List[str] = []

    def failing_export_graph(module, name, *args, **kwargs):
        if name == "resampler":
            raise InputError("simulated failure exporting the resampler")
        exported.append(name)
        return real_export_graph(module, name, *args, **kwargs)

    monkeypatch.setattr(converter_bundle, "export_graph", failing_export_graph)
    code, err = _convert(capsys, _export_args(make_checkpoint("4.0"), out, "--force"))
    assert code == 2 and exported == ["vpm"]
    assert "simulated failure" in err[-1]
    assert (out / MANIFEST).read_text() == manifest_before
    assert Bundle.load(out).model.version == "2.6"
    assert not list(tmp_path.glob(".bundle.*"))


# --- bundle integrity ----------------------------------------------------------------------------------------


def test_corrupt_graph_refused(capsys: pytest.CaptureFixture, make_bundle: Callable[..., Path],
                               tmp_path: Path) -> None:
    """One flipped byte in fp32/vpm.onnx: Bundle.load and `minicpmv-edge inspect` refuse it, naming the file."""
    bundle_dir = shutil.copytree(make_bundle("2.6"), tmp_path / "bundle")
    assert _edge(capsys, ["inspect", "--bundle", bundle_dir]) == (0, [])
    _flip_middle_byte(bundle_dir / "fp32" / "vpm.onnx")
    with pytest.raises(InputError, match="fp32/vpm.onnx does not match its sha256"):
        Bundle.load(bundle_dir)
    Bundle.load(bundle_dir, verify=False)  # the manifest itself is still fine
    code, err = _edge(capsys, ["inspect", "--bundle", bundle_dir])
    assert code == 2
    assert len(err) == 1 and err[0].startswith("minicpmv-edge: error:") and "fp32/vpm.onnx" in err[0]


def test_deleted_graph_refused(capsys: pytest.CaptureFixture, make_bundle: Callable[..., Path],
                               tmp_path: Path) -> None:
    """A file listed in the manifest but absent is refused, naming it."""
    bundle_dir = shutil.copytree(make_bundle("2.6"), tmp_path / "bundle")
    (bundle_dir / "fp32" / "resampler.onnx").unlink()
    with pytest.raises(InputError, match="fp32/resampler.onnx is missing"):
        Bundle.load(bundle_dir)
    code, err = _edge(capsys, ["inspect", "--bundle", bundle_dir])
    assert code == 2 and len(err) == 1 and "fp32/resampler.onnx" in err[0]


def test_bad_manifest_yaml_refused(capsys: pytest.CaptureFixture, make_bundle: Callable[..., Path],
                                   tmp_path: Path) -> None:
    """A manifest.yaml that is not YAML: exit 2 with one line naming it."""
    bundle_dir = shutil.copytree(make_bundle("2.6"), tmp_path / "bundle")
    (bundle_dir / MANIFEST).write_text("schema_version: 1\nmodules: [vpm, {resampler: \n  - :\n")
    with pytest.raises(InputError, match="not valid YAML"):
        Bundle.load(bundle_dir)
    code, err = _edge(capsys, ["inspect", "--bundle", bundle_dir])
    assert code == 2 and len(err) == 1 and MANIFEST in err[0]


# --- what export writes --------------------------------------------------------------------------------------


def test_external_data(make_checkpoint: Callable[..., Path], make_bundle: Callable[..., Path],
                       tmp_path: Path) -> None:
    """Above the size threshold weights go to <graph>.onnx.data, listed and hashed; the graph runs the same."""
    ck = load_vision_checkpoint(make_checkpoint("2.6"))
    out = tmp_path / "bundle"
    manifest = converter_bundle.write_bundle(ck, out, load_profile("host-x86"), ["fp32"],
                                             external_threshold_bytes=1024, log=lambda message: None)
    for module in MODULES:
        data = out / "fp32" / ("%s.onnx.data" % module)
        relative = "fp32/%s.onnx.data" % module
        assert data.is_file()
        assert manifest["modules"][module]["graphs"]["fp32"]["files"] == ["fp32/%s.onnx" % module, relative]
        assert manifest["files"][relative]["sha256"] == sha256_file(data)
        assert manifest["files"][relative]["bytes"] == data.stat().st_size
        proto = onnx.load(str(out / "fp32" / ("%s.onnx" % module)), load_external_data=False)
        external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert external and data.stat().st_size > (out / "fp32" / ("%s.onnx" % module)).stat().st_size
    Bundle.load(out)

    normal = Bundle.load(make_bundle("2.6"))
    assert all(len(normal.graph(m, "fp32").files) == 1 for m in MODULES)
    feeds = example_feeds(ck, ck.facts.slice_layout)
    for module in MODULES:
        got = _run_graph(out / "fp32" / ("%s.onnx" % module), feeds[module])
        want = _run_graph(normal.graph_path(module, "fp32"), feeds[module])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)

    _flip_middle_byte(out / "fp32" / "vpm.onnx.data")
    with pytest.raises(InputError, match=r"fp32/vpm\.onnx\.data does not match"):
        Bundle.load(out)


def _graph_ops(path: Path) -> Tuple[int, set]:
    model = onnx.load(str(path))
    opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"]
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.elem_type != onnx.TensorProto.INT64, (path, value.name)
    return opset, {node.op_type for node in model.graph.node}


def test_opset_per_target(make_checkpoint: Callable[..., Path], make_bundle: Callable[..., Path]) -> None:
    """TensorRT 8.5 (xavier-nx) gets opset 16 without LayerNormalization, 10.3 gets 17 with it; same outputs."""
    ck = load_vision_checkpoint(make_checkpoint("2.6"))
    feeds = example_feeds(ck, ck.facts.slice_layout)
    xavier = Bundle.load(make_bundle("2.6", "fp32", "xavier-nx"))
    orin = Bundle.load(make_bundle("2.6", "fp32", "orin-nano-8gb"))
    assert (xavier.manifest["target"]["opset"], orin.manifest["target"]["opset"]) == (16, 17)
    assert (xavier.manifest["target"]["tensorrt"], orin.manifest["target"]["tensorrt"]) == ("8.5", "10.3")
    for module in MODULES:
        old_opset, old_ops = _graph_ops(xavier.graph_path(module, "fp32"))
        new_opset, new_ops = _graph_ops(orin.graph_path(module, "fp32"))
        assert (old_opset, new_opset) == (16, 17)
        assert xavier.graph(module, "fp32").opset == 16 and orin.graph(module, "fp32").opset == 17
        assert "LayerNormalization" not in old_ops
        assert "LayerNormalization" in new_ops
        old = _run_graph(xavier.graph_path(module, "fp32"), feeds[module])
        new = _run_graph(orin.graph_path(module, "fp32"), feeds[module])
        assert old.shape == new.shape
        assert float(np.abs(old - new).max()) < 1e-4


def _tokens(bundle: Bundle, precision: str, slices: Sequence[np.ndarray]) -> np.ndarray:
    dtype = np.float16 if precision == "fp16" else np.float32
    packed = pack_slices(slices, bundle.model.slice.layout, dtype=dtype)
    features = _run_graph(bundle.graph_path("vpm", precision), packed.vpm)
    assert features.dtype == dtype
    tokens = _run_graph(bundle.graph_path("resampler", precision),
                        {"vision_embeds": features, **packed.resampler})
    assert tokens.dtype == dtype
    return tokens.astype(np.float32)


def test_fp16_export(make_bundle: Callable[..., Path]) -> None:
    """fp16 graphs take and give float16 (manifest and graph agree) and track fp32 tokens (cosine > 0.999)."""
    fp16 = Bundle.load(make_bundle("2.6", "fp16"))
    fp32 = Bundle.load(make_bundle("2.6", "fp32"))
    assert fp16.precisions("vpm") == ["fp16"] and fp16.graph_path("vpm").name == "vpm.onnx"
    assert fp16.graph_path("vpm").parent.name == "fp16"
    for module in MODULES:
        entry = fp16.graph(module, "fp16")
        model = onnx.load(str(fp16.graph_path(module, "fp16")))
        in_graph = {v.name: _ELEM_TYPES[v.type.tensor_type.elem_type]
                    for v in list(model.graph.input) + list(model.graph.output)}
        in_manifest = {v.name: v.dtype for v in entry.inputs + entry.outputs}
        assert in_manifest == in_graph
        floats = {n for n, d in in_graph.items() if d.startswith("float")}
        assert floats and all(in_graph[n] == "float16" for n in floats)
        assert all(d in ("float16", "int32") for d in in_graph.values())
        assert entry.bytes < 0.75 * fp32.graph(module, "fp32").bytes  # weights really halved

    rng = np.random.default_rng(7)
    slices = [rng.uniform(-1, 1, (3, 14 * r, 14 * c)).astype(np.float32) for r, c in ((10, 12), (7, 9), (16, 4))]
    half, full = _tokens(fp16, "fp16", slices), _tokens(fp32, "fp32", slices)
    assert half.shape == full.shape == (3, 64, 256)
    assert not np.array_equal(half, full)
    for index in range(len(slices)):
        a, b = half[index].ravel(), full[index].ravel()
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine > 0.999, (index, cosine)


# --- small commands ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("main, prog", [(convert_main, "minicpmv-convert"), (edge_main, "minicpmv-edge")])
def test_version_flag(capsys: pytest.CaptureFixture, main: Callable, prog: str) -> None:
    """--version prints `<prog> <edge/version.py's version>` and exits 0."""
    version_file = Path(__file__).resolve().parents[2] / "edge" / "version.py"
    assert '__version__ = "%s"' % __version__ in version_file.read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == "%s %s" % (prog, __version__)


def test_make_checkpoint(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """make-checkpoint writes config.json + model.safetensors; a second run into the same --out needs --force."""
    out = tmp_path / "ck"
    code, _ = _convert(capsys, ["make-checkpoint", "--model-version", "4.0", "--out", out])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["version"] == 4.0
    ck = load_vision_checkpoint(out)
    assert ck.version == "4.0"
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(out / "model.safetensors")).values())
    weights_before = sha256_file(out / "model.safetensors")

    code, err = _convert(capsys, ["make-checkpoint", "--model-version", "4.0", "--out", out, "--seed", "1"])
    assert code == 2
    assert len(err) == 1 and str(out) in err[0] and "--force" in err[0]
    assert sha256_file(out / "model.safetensors") == weights_before
    assert not list(tmp_path.glob(".ck.*"))
