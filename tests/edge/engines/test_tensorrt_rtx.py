"""The project's engine builder against the real TensorRT-RTX parser and builder (strongly typed, as TensorRT 11):
network flags, parser errors, profiles from the manifest, workspace limit, optimization level, progress monitor,
timing cache and atomic writes to the engine cache. TensorRT-RTX builds here without a GPU; its engines run only on
RTX-class GPUs, so nothing is executed."""
from __future__ import annotations

import json

import pytest

from edge.bundle.manifest import MODULES, Bundle
from edge.engines.tensorrt.build import BuildSettings, build_or_load, workspace_limit
from edge.engines.tensorrt.builder import BuildFailed, BuildOptions, build_engine, is_strongly_typed, profile_shapes
from edge.engines.tensorrt.logger import shared_logger
from edge.engines.tensorrt.workspace import attention_scratch_bytes
from edge.errors import InputError
from tests.rtx import break_first_reshape, import_rtx


@pytest.fixture(scope="module")
def rtx():
    return import_rtx()


def _options(bundle, module, precision, workspace, **extra):
    shapes = profile_shapes(bundle.graph(module, precision).inputs, bundle.shapes(module))
    return BuildOptions(precision, shapes, workspace, compute_capability="8.6", **extra)


def test_every_graph_builds_into_the_cache_once(rtx, converted_bundle, tmp_path):
    bundle = Bundle.load(converted_bundle)
    settings = BuildSettings(cache_dir=tmp_path / "cache", timing_cache=tmp_path / "timing.cache",
                             optimization_level=1)
    assert is_strongly_typed(rtx)  # no FP16/INT8 builder flags: the int8 graph's Q/DQ nodes carry its types
    for module in MODULES:
        for precision in ("fp32", "fp16", "int8"):
            lines = []
            built = build_or_load(bundle, module, precision, rtx, "8.6", settings, lines.append)
            assert not built.cached and len(built.engine) > 100_000 and built.path.read_bytes() == built.engine
            key = json.loads(built.path.with_suffix(".json").read_text())
            assert key["tensorrt"] == "TensorRT-RTX %s" % rtx.__version__ and key["compute_capability"] == "8.6"
            assert any("Building engine (" in line for line in lines)  # the progress monitor's top phase
            assert any("Building engine done in" in line for line in lines)
            assert any("timing cache not used" in line for line in lines)  # no-ops in TensorRT-RTX
            again = build_or_load(bundle, module, precision, rtx, "8.6", settings, lines.append)
            assert again.cached and again.engine == built.engine
    assert not (tmp_path / "timing.cache").exists()
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.suffix not in (".engine", ".json")]
    assert leftovers == []  # atomic writes leave no temporary files


def test_the_parser_names_the_node_it_refuses(rtx, converted_bundle, tmp_path):
    bundle = Bundle.load(converted_bundle)
    broken = tmp_path / "resampler.onnx"
    name = break_first_reshape(bundle.graph_path("resampler", "fp16"), broken)
    with pytest.raises(BuildFailed) as failure:
        build_engine(rtx, broken, _options(bundle, "resampler", "fp16", 1 << 28), log=lambda m: None)
    assert failure.value.stage == "parse"
    assert (failure.value.problems[0].node, failure.value.problems[0].operator) == (name, "Reshape")
    assert "reshape changes volume" in failure.value.problems[0].reason


def test_the_profile_it_is_given_is_the_one_it_builds(rtx, converted_bundle):
    """The real builder checks the profile against the graph: a missing input, or a fixed dim the profile
    contradicts, fails the build naming the input."""
    bundle = Bundle.load(converted_bundle)
    options = _options(bundle, "resampler", "fp32", 1 << 28)
    build_engine(rtx, bundle.graph_path("resampler", "fp32"), options, log=lambda m: None)
    del options.shapes["tgt_sizes"]
    with pytest.raises(BuildFailed, match="tgt_sizes"):
        build_engine(rtx, bundle.graph_path("resampler", "fp32"), options, log=lambda m: None)
    options = _options(bundle, "resampler", "fp32", 1 << 28)
    low, opt, high = options.shapes["vision_embeds"]
    options.shapes["vision_embeds"] = (low, opt, high[:2] + (high[2] + 1,))
    with pytest.raises(BuildFailed, match="vision_embeds"):
        build_engine(rtx, bundle.graph_path("resampler", "fp32"), options, log=lambda m: None)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_workspace_limit_covers_unfused_attention(rtx, converted_bundle, precision):
    """Below the attention scratch at the largest shapes the build fails with the limit and the fix; the limit
    workspace_limit gives this builder builds."""
    bundle = Bundle.load(converted_bundle)
    shapes = bundle.shapes("vpm")
    scratch = attention_scratch_bytes(shapes.batch.max, bundle.model.vision_heads, shapes.patches.max, precision,
                                      strongly_typed=True)
    with pytest.raises(BuildFailed, match="workspace limit .*--memPoolSize"):
        build_engine(rtx, bundle.graph_path("vpm", precision), _options(bundle, "vpm", precision, scratch // 2),
                     log=lambda m: None)
    limit = workspace_limit(bundle, precision, rtx)
    assert limit >= scratch
    build_engine(rtx, bundle.graph_path("vpm", precision), _options(bundle, "vpm", precision, limit),
                 log=lambda m: None)


def test_a_later_build_still_hears_its_errors(rtx, converted_bundle):
    """TensorRT keeps the first logger of a process: every build shares it, and each reads its own errors."""
    bundle = Bundle.load(converted_bundle)
    build_engine(rtx, bundle.graph_path("resampler", "fp16"), _options(bundle, "resampler", "fp16", 1 << 28),
                 log=lambda m: None)
    options = _options(bundle, "resampler", "fp16", 1 << 28)
    del options.shapes["vision_embeds"]
    with pytest.raises(BuildFailed) as failure:
        build_engine(rtx, bundle.graph_path("resampler", "fp16"), options, log=lambda m: None)
    assert any("vision_embeds" in error for error in failure.value.errors)
    assert shared_logger(rtx) is shared_logger(rtx)


def test_what_rtx_lacks_is_refused_clearly(rtx, converted_bundle):
    bundle = Bundle.load(converted_bundle)
    path = bundle.graph_path("resampler", "fp16")
    with pytest.raises(InputError, match="0 DLA cores"):
        build_engine(rtx, path, _options(bundle, "resampler", "fp16", 1 << 28, dla_core=0), log=lambda m: None)
    options = _options(bundle, "resampler", "fp16", 1 << 28)
    options.compute_capability = "8.7"  # Orin: not a TensorRT-RTX target
    with pytest.raises(InputError, match="cannot build for compute capability 8.7: it builds for 7.5, 8.0, 8.6"):
        build_engine(rtx, path, options, log=lambda m: None)
