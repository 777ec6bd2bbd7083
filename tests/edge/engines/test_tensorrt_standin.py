"""The TensorRT builder and runner against stand-in `tensorrt` modules of 8.5, 8.6, 10.3 and 11.1.

The stand-ins (tests/standins) expose only the names of each release, so a name a release lacks fails here; their
"engine" runs the bundle's ONNX graph with ONNX Runtime on the bytes behind the runner's device pointers, so the
runner's own logic (profiles, shapes, buffers, the VPM -> Resampler hand-over) must produce the onnxruntime
backend's tokens. This exercises the project's TensorRT code paths, not TensorRT: no engine is really built.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.bundle.manifest import Bundle
from edge.encoder.vision_encoder import VisionEncoder
from edge.engines.factory import open_engines
from edge.engines.tensorrt.build import BuildSettings
from edge.engines.tensorrt.builder import BuildFailed, BuildOptions, build_engine, profile_shapes
from edge.engines.tensorrt.cache import EngineCache
from edge.preprocess.scenes import synthetic_scene
from tests.standins.fake_pycuda import device_memory
from tests.standins.fake_tensorrt import RELEASES, api_names, make_tensorrt
from tests.standins.fake_tensorrt import profile_shapes as built_shapes

REAL_RTX = "rtx-1.7"  # tools/make_trt_api_lists.py --module tensorrt_rtx_bindings rtx-1.7
TRT_DIR = Path(__file__).resolve().parents[3] / "edge" / "engines" / "tensorrt"
TRT_MODULES = sorted(p.name for p in TRT_DIR.glob("*.py"))


def _engines(trt, bundle, memory, tmp_path, precision="fp32"):
    """Both modules on the stand-in through the engine factory, built and cached in tmp_path (the check against
    ONNX Runtime after a build is test_build's; here the tokens are compared whole)."""
    settings = BuildSettings(timing_cache=tmp_path / "timing.cache", workspace_bytes=1 << 28, check=False)
    return open_engines(bundle, "tensorrt", precision, tmp_path / "cache", settings, runtime=(trt, memory))


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_standin_tokens_equal_onnxruntime(release, precision, converted_bundle, tmp_path):
    bundle = Bundle.load(converted_bundle)
    memory, adapter = device_memory()
    trt = make_tensorrt(release, adapter)
    engines = _engines(trt, bundle, memory, tmp_path, precision)
    shapes = bundle.shapes("vpm")
    assert built_shapes(engines["vpm"].engine)["position_ids"][2] == [shapes.batch.max, shapes.patches.max]
    image = synthetic_scene(1280, 720, seed=4)
    want = VisionEncoder.from_bundle(converted_bundle, precision=precision).encode(image).tokens
    got = VisionEncoder(bundle, engines).encode(image).tokens
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    allocations = getattr(memory, "allocations", None)
    VisionEncoder(bundle, engines).encode(synthetic_scene(640, 480, seed=5))
    assert allocations is None or memory.allocations == allocations  # buffers made once, not per frame


@pytest.mark.parametrize("release", RELEASES)
def test_the_encoder_hands_the_vpm_output_to_the_resampler_on_device(release, converted_bundle, tmp_path):
    bundle = Bundle.load(converted_bundle)
    memory, adapter = device_memory()
    engines = _engines(make_tensorrt(release, adapter), bundle, memory, tmp_path)
    image = synthetic_scene(800, 600, seed=6)
    copied = len(getattr(memory, "to_host_bytes", []))
    tokens = VisionEncoder(bundle, engines).encode(image).tokens
    want = VisionEncoder.from_bundle(converted_bundle, precision="fp32").encode(image).tokens
    np.testing.assert_allclose(tokens, want, rtol=0, atol=1e-5)
    # the Resampler read the VPM's output buffer itself ...
    assert engines["resampler"].context._addresses["vision_embeds"] == engines["vpm"].device["vision_embeds"]
    if hasattr(memory, "to_host_bytes"):  # ... and only tokens came back to the host, never vision_embeds
        token_bytes = tokens.shape[1] * tokens.shape[2] * 4
        assert all(n % token_bytes == 0 and n <= bundle.shapes("vpm").batch.max * token_bytes
                   for n in memory.to_host_bytes[copied:])


def test_close_frees_every_device_buffer(converted_bundle, tmp_path):
    """With the fake memory every allocation is counted; with real pycuda (MINICPMV_REAL_PYCUDA=1) the device's
    free memory comes back after close()."""
    memory, adapter = device_memory()
    real = not hasattr(memory, "buffers")
    free_before = memory.device_memory()["device_free_bytes"] if real else None
    engines = _engines(make_tensorrt("10.3", adapter), Bundle.load(converted_bundle), memory, tmp_path)
    if real:
        assert memory.device_memory()["device_free_bytes"] < free_before - (16 << 20)  # the strips alone: 19 MiB
    else:
        assert memory.buffers and memory.frees == 0
    with VisionEncoder(Bundle.load(converted_bundle), engines) as encoder:
        encoder.encode(synthetic_scene(320, 240, seed=2))
    if real:
        assert memory.device_memory()["device_free_bytes"] >= free_before - (4 << 20)
    else:
        assert memory.buffers == {} and memory.frees == memory.allocations
    with pytest.raises(RuntimeError, match="closed"):
        engines["vpm"].infer({})


def test_a_misspelled_tensorrt_name_fails(converted_bundle, tmp_path, monkeypatch):
    source = (TRT_DIR / "builder.py").read_text().replace("set_memory_pool_limit", "set_memory_pool_limt")
    path = tmp_path / "misspelled_builder.py"
    # a module outside the package: absolute imports
    path.write_text(source.replace("from ...", "from edge.").replace("from .", "from edge.engines.tensorrt."))
    spec = importlib.util.spec_from_file_location("misspelled_builder", path)
    misspelled = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "misspelled_builder", misspelled)  # dataclasses look their module up
    spec.loader.exec_module(misspelled)
    bundle = Bundle.load(converted_bundle)
    graph = bundle.graph("vpm", "fp32")
    options = misspelled.BuildOptions("fp32", profile_shapes(graph.inputs, bundle.shapes("vpm")), 1 << 28)
    memory, adapter = device_memory()
    with pytest.raises(AttributeError, match="set_memory_pool_limt"):
        misspelled.build_engine(make_tensorrt("10.3", adapter), bundle.graph_path("vpm", "fp32"), options,
                                log=lambda m: None)


def _trt_references(source: str):
    """`trt.A.B` chains, and the names guarded by `_flag(trt, "Enum", "NAME")` or `hasattr(trt, "Name")`."""
    chains, guarded = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            parts, inner = [], node
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "trt" and not parts[-1].startswith("__"):
                chains.add(".".join(reversed([p for p in parts if not p.startswith("__")])))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args and \
                isinstance(node.args[0], ast.Name) and node.args[0].id == "trt":
            literals = [a.value for a in node.args[1:] if isinstance(a, ast.Constant)]
            if node.func.id in ("_flag", "hasattr") and literals:
                guarded.add(".".join(literals))
    return chains, guarded


def _unknown_names(source: str, release: str):
    """Chains used without a guard that TensorRT `release` lacks (nested enum values count on their owner)."""
    known = set(api_names(release))
    known |= {n.replace("ILogger.Severity.", "Logger.") for n in known}
    chains, guarded = _trt_references(source)
    return sorted(c for c in chains if c not in known and not any(c == g or c.startswith(g + ".") for g in guarded))


@pytest.mark.parametrize("release", RELEASES + ("10.16", REAL_RTX))
def test_every_tensorrt_name_exists_or_is_guarded(release):
    """Against each release's name list, and the list introspected from the real TensorRT-RTX module."""
    for module in TRT_MODULES:
        source = (TRT_DIR / module).read_text()
        assert _unknown_names(source, release) == [], "%s uses names TensorRT %s lacks" % (module, release)
        for name in _trt_references(source)[1]:
            assert any(name in api_names(r) for r in RELEASES + (REAL_RTX,)), \
                "guard for %s, which no release has" % name


def test_the_scan_sees_an_unguarded_name():
    assert _unknown_names("flag = trt.BuilderFlag.FP16", "11.1") == ["BuilderFlag.FP16"]
    assert _unknown_names("flag = _flag(trt, 'BuilderFlag', 'FP16')", "11.1") == []
    assert _unknown_names("trt.Builder(l).build_engine", "10.3") == []  # method calls need the stand-in run


def test_engine_cache_keys_and_atomic_store(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    fields = {"graph_module": "vpm", "graph_sha256": "ab" * 32, "tensorrt": "10.3.0.30", "compute_capability": "8.7",
              "module": "p3767-0003", "l4t": "36.4", "precision": "int8", "shapes": [[1, 1], [1, 1024], [4, 2048]],
              "dla_core": None, "workspace_bytes": 1 << 29, "optimization_level": None}
    assert cache.load(fields) is None
    path = cache.store(fields, b"engine-bytes")
    assert cache.load(fields) == b"engine-bytes" and path.with_suffix(".json").is_file()
    for field, other in (("tensorrt", "10.3.0.31"), ("l4t", "36.5"), ("dla_core", 0), ("precision", "fp16")):
        assert cache.load(dict(fields, **{field: other})) is None
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == sorted([path.name, path.with_suffix(".json")
                                                                                .name])


@pytest.mark.parametrize("release", RELEASES)
def test_parse_and_build_failures_carry_what_the_builder_said(release, converted_bundle, tmp_path):
    """As with the real bindings: the parser's errors are ParserError objects (node names from 10.x), a failed build
    logs its error to the process's one logger and returns None; both become BuildFailed."""
    bundle = Bundle.load(converted_bundle)
    memory, adapter = device_memory()
    trt = make_tensorrt(release, adapter)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx graph")
    options = BuildOptions("fp32", profile_shapes(bundle.graph("vpm", "fp32").inputs, bundle.shapes("vpm")), 1 << 28)
    with pytest.raises(BuildFailed) as failure:
        build_engine(trt, corrupt, options, log=lambda m: None)
    assert failure.value.stage == "parse" and failure.value.problems[0].node == "(model)"
    del options.shapes["position_ids"]
    with pytest.raises(BuildFailed, match="position_ids is missing dimensions") as failure:
        build_engine(trt, bundle.graph_path("vpm", "fp32"), options, log=lambda m: None)
    assert failure.value.stage == "build" and failure.value.errors


def test_the_first_logger_is_the_one_kept(converted_bundle):
    memory, adapter = device_memory()
    trt = make_tensorrt("10.3", adapter)
    heard = []

    class Mine(trt.ILogger):
        def log(self, severity, msg):
            heard.append(msg)

    trt.Builder(Mine())
    trt.Builder(trt.Logger(trt.Logger.WARNING))  # ignored, with a warning to the first
    assert len(heard) == 1 and "current new logger is ignored" in heard[0]
