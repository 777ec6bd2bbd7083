"""`minicpmv-edge build`: a bundle's graphs -> TensorRT engines in the engine cache, each checked against ONNX
Runtime on a sample frame before it is trusted.

The cache key holds everything that makes an engine unportable (docs/tensorrt.md): graph sha256, TensorRT version,
compute capability, module, L4T, precision, profile shapes, DLA core, workspace limit, optimization level.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ...bundle.manifest import MODULES, Bundle
from ...device.facts import l4t_release, module_model
from ...errors import InputError
from ...fsutil import atomic_write_bytes
from ...preprocess.graph_inputs import pack_slices
from ...preprocess.preprocessor import Preprocessor
from ...preprocess.scenes import synthetic_scene
from ..onnxrt import OnnxRuntimeEngine
from .builder import BuildOptions, build_engine, profile_shapes
from .cache import EngineCache
from .runner import TensorRTEngine

# Largest accepted difference from ONNX Runtime on the sample, relative to the output scale, per precision.
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.25}


@dataclass
class BuildSettings:
    """trtexec-like choices (CLI flags)."""

    precision: Optional[str] = None  # None: the bundle target's default
    cache_dir: Path = Path("/var/cache/minicpmv-edge/engines")
    workspace_bytes: Optional[int] = None  # None: the profile's limit recorded at export
    dla_core: Optional[int] = None
    timing_cache: Optional[Path] = None
    optimization_level: Optional[int] = None
    force: bool = False
    check: bool = True


def cache_fields(bundle: Bundle, module: str, precision: str, shapes: Dict[str, Any], trt: Any, memory: Any,
                 settings: BuildSettings, workspace: int) -> Dict[str, Any]:
    graph = bundle.graph(module, precision)
    return {"graph_module": module, "graph_sha256": bundle.manifest["files"][graph["files"][0]]["sha256"],
            "tensorrt": trt.__version__, "compute_capability": memory.compute_capability(),
            "module": module_model(), "l4t": l4t_release(), "precision": precision,
            "shapes": {k: [list(s) for s in v] for k, v in shapes.items()}, "dla_core": settings.dla_core,
            "workspace_bytes": workspace, "optimization_level": settings.optimization_level}


def _workspace(bundle: Bundle, settings: BuildSettings) -> int:
    if settings.workspace_bytes is not None:
        return settings.workspace_bytes
    memory = bundle.manifest["target"].get("memory") or {}
    return int(memory.get("vision_estimates", {}).get(bundle.manifest["target"]["default_precision"], {})
               .get("workspace_bytes", 1 << 30))


def sample_feeds(bundle: Bundle) -> Dict[str, Dict[str, np.ndarray]]:
    """Graph feeds of one synthetic 1280x720 frame (its first two slices), for the post-build check."""
    layout = bundle.model["slice"]["layout"]
    slices = Preprocessor()(synthetic_scene(1280, 720, seed=11)).slices
    packed = pack_slices(slices if layout == "unmasked-1d" else slices[:2], layout)
    return {"vpm": packed.vpm, "resampler": packed.resampler}


def check_engine(engine: TensorRTEngine, reference: OnnxRuntimeEngine, feeds: Dict[str, np.ndarray],
                 precision: str) -> float:
    """Max abs difference from ONNX Runtime relative to the output scale; raises past the tolerance."""
    got, want = engine.infer(feeds), reference.infer(feeds)
    worst = 0.0
    for name, value in want.items():
        scale = max(float(np.abs(value).max()), 1e-12)
        worst = max(worst, float(np.abs(got[name].astype(np.float32) - value.astype(np.float32)).max()) / scale)
    if worst > TOLERANCE[precision]:
        raise RuntimeError("engine differs from ONNX Runtime by %.3g of the output scale (%s tolerance %.3g): "
                           "rebuild with --force or file a bug" % (worst, precision, TOLERANCE[precision]))
    return worst


def build_bundle(bundle: Bundle, trt: Any, memory: Any, settings: BuildSettings,
                 log: Callable[[str], None] = print) -> Tuple[Dict[str, Any], Dict[str, TensorRTEngine]]:
    """Build (or find in the cache) and check each module's engine: a report and the ready engines per module."""
    precision = settings.precision or bundle.manifest["target"]["default_precision"]
    if precision not in bundle.precisions("vpm"):
        raise InputError("bundle %s has no %s graphs (it has %s): convert it for this target, or pass --precision"
                         % (bundle.path, precision, ", ".join(bundle.precisions("vpm"))))
    if settings.dla_core is not None and settings.dla_core < 0:
        raise InputError("--useDLACore must be 0 or more, got %d" % settings.dla_core)
    cache, workspace = EngineCache(settings.cache_dir), _workspace(bundle, settings)
    feeds, report, engines = sample_feeds(bundle), {}, {}
    references = {m: OnnxRuntimeEngine(bundle.graph_path(m, precision)) for m in MODULES} if settings.check else {}
    if settings.check:
        feeds["resampler"] = dict(feeds["resampler"],
                                  vision_embeds=references["vpm"].infer(feeds["vpm"])["vision_embeds"])
    for module in MODULES:
        shapes = profile_shapes(bundle.graph(module, precision)["inputs"], bundle.manifest["modules"][module]["shapes"])
        fields = cache_fields(bundle, module, precision, shapes, trt, memory, settings, workspace)
        engine_bytes = None if settings.force else cache.load(fields)
        start, cached = time.perf_counter(), engine_bytes is not None
        if engine_bytes is None:
            log("building %s %s engine (TensorRT %s) ..." % (module, precision, trt.__version__))
            options = BuildOptions(precision, shapes, workspace, settings.dla_core, settings.timing_cache,
                                   settings.optimization_level)
            engine_bytes, timing = build_engine(trt, bundle.graph_path(module, precision), options, log)
            if timing is not None and settings.timing_cache is not None:
                atomic_write_bytes(settings.timing_cache, timing)
        seconds = time.perf_counter() - start
        engine = TensorRTEngine(trt, engine_bytes, memory)
        engine.allocate(_output_elements(bundle, module))
        error = check_engine(engine, references[module], feeds[module], precision) if settings.check else None
        path = cache.path(fields) if cached else cache.store(fields, engine_bytes)
        log("%s %s engine %s: %s (%.1f s), vs ONNX Runtime %s" % (
            module, precision, "from cache" if cached else "built", path, seconds,
            "unchecked" if error is None else "%.2e of the output scale" % error))
        report[module] = {"engine": str(path), "cached": cached, "seconds": round(seconds, 2),
                          "bytes": len(engine_bytes), "precision": precision, "check_relative_error": error}
        engines[module] = engine
    return report, engines


def import_tensorrt() -> Tuple[Any, Any]:
    """JetPack's tensorrt module and pycuda device memory, or an InputError saying how to get them."""
    try:
        import tensorrt as trt
    except ImportError:
        raise InputError("TensorRT's Python module is not importable: on a Jetson run with JetPack's python3 (a venv "
                         "made with --system-site-packages reaches it); elsewhere use --backend onnxruntime") from None
    try:
        from .device_memory import PycudaMemory

        return trt, PycudaMemory()
    except ImportError:
        raise InputError("pycuda is not importable: pip install pycuda (it builds against JetPack's CUDA in a "
                         "few minutes)") from None


def _output_elements(bundle: Bundle, module: str) -> Dict[str, int]:
    shapes, model = bundle.manifest["modules"][module]["shapes"], bundle.model
    batch, patches = shapes["batch"]["max"], shapes["patches"]["max"]
    if module == "vpm":
        return {"vision_embeds": batch * patches * model["vision"]["width"]}
    return {"image_tokens": batch * model["query_num"] * model["embed_dim"]}
