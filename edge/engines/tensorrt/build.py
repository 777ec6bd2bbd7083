"""A bundle's graphs -> TensorRT engines in the engine cache, each checked against ONNX Runtime on a sample frame
before it is trusted (what `minicpmv-edge build` and the engine factory call).

The cache key holds everything that makes an engine unportable (docs/tensorrt.md): graph sha256, TensorRT version,
compute capability, module, L4T, precision, profile shapes, DLA core, workspace limit, optimization level.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ...bundle.manifest import MODULES, VIDEO_MODULE, Bundle
from ...bundle.video import video_precision
from ...device.facts import l4t_release, module_model
from ...errors import InputError
from ...fsutil import atomic_write_bytes
from ...monitor.snapshot import Snapshot
from ...preprocess.graph_inputs import PackedSlices, pack_slices
from ...preprocess.preprocessor import Preprocessor, slice_config
from ...preprocess.scenes import synthetic_scene
from ..base import Engine, host_array
from ..onnxrt import OnnxRuntimeEngine
from .build_memory import build_needs_bytes, check_build_fits
from .builder import BuildFailed, BuildOptions, Shapes, build_engine, builder_name, is_strongly_typed, profile_shapes
from .cache import DEFAULT_CACHE_DIR, EngineCache
from .runner import TensorRTEngine
from .workspace import VisionDims, group_workspace_bytes, workspace_limit_bytes

# Largest accepted difference from ONNX Runtime on the sample, relative to the output scale, per precision.
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.25}
DEFAULT_WORKSPACE_BYTES = 1 << 30  # a bundle without a memory estimate (a host target)
Log = Callable[[str], None]


@dataclass
class BuildSettings:
    """trtexec-like choices (CLI flags)."""

    precision: Optional[str] = None  # None: the bundle target's default
    cache_dir: Path = DEFAULT_CACHE_DIR
    workspace_bytes: Optional[int] = None  # None: the limit the converter's memory estimate counted
    dla_core: Optional[int] = None
    timing_cache: Optional[Path] = None
    optimization_level: Optional[int] = None
    force: bool = False
    check: bool = True
    snapshot: Optional[Snapshot] = None  # the box's RAM now: a build that cannot fit is refused (None: not checked)


def import_tensorrt() -> Tuple[Any, Any]:
    """JetPack's tensorrt module and pycuda device memory, or an InputError saying how to get them."""
    try:
        import tensorrt as trt
    except ImportError:
        raise InputError("TensorRT's Python module is not importable: on a Jetson run with JetPack's python3 (a venv "
                         "made with --system-site-packages reaches it); elsewhere set the backend to onnxruntime "
                         "(the agent config's backend:, or VisionEncoder.from_bundle(backend=\"onnxruntime\"))"
                         ) from None
    try:
        from .device_memory import PycudaMemory

        return trt, PycudaMemory()
    except ImportError:
        raise InputError("pycuda is not importable: pip install pycuda (it builds against JetPack's CUDA in a "
                         "few minutes)") from None


def workspace_limit(bundle: Bundle, precision: str, trt: Any, module: str = "vpm") -> int:
    """The workspace limit the converter's memory estimate counted for `precision`, raised to what this builder
    needs at the bundle's largest shapes when its typing differs from the target's (a strongly typed builder,
    TensorRT 11 or TensorRT-RTX, runs an int8 graph's float layers, softmax included, in fp32). The VPM and the
    Resampler share one limit; the grouped (video) Resampler gets its own, from its profile's largest call."""
    model = bundle.model
    dims = VisionDims(model.vision_heads, model.vision_width, model.vision_mlp, model.embed_dim, model.query_num)
    if module == VIDEO_MODULE:
        group = bundle.shapes(VIDEO_MODULE)
        return group_workspace_bytes(dims, group.batch.max, group.patches.max, precision, is_strongly_typed(trt))
    recorded = bundle.target.workspace_bytes(precision) or DEFAULT_WORKSPACE_BYTES
    shapes = bundle.shapes("vpm")
    return workspace_limit_bytes(recorded, dims, shapes.batch.max, shapes.patches.max, precision,
                                 is_strongly_typed(trt))


def cache_fields(bundle: Bundle, module: str, precision: str, shapes: Shapes, trt: Any, compute_capability: str,
                 settings: BuildSettings, workspace: int) -> Dict[str, Any]:
    return {"graph_module": module, "graph_sha256": bundle.file_sha256(bundle.graph(module, precision).onnx_file),
            "tensorrt": builder_name(trt), "compute_capability": compute_capability,
            "module": module_model(), "l4t": l4t_release(), "precision": precision,
            "shapes": {k: [list(s) for s in v] for k, v in shapes.items()}, "dla_core": settings.dla_core,
            "workspace_bytes": workspace, "optimization_level": settings.optimization_level}


@dataclass(frozen=True)
class CachedEngine:
    """A serialized engine in the engine cache: where, its bytes, whether it was found there, its build time."""

    path: Path
    engine: bytes
    cached: bool
    seconds: float
    fields: Dict[str, Any]


def build_or_load(bundle: Bundle, module: str, precision: str, trt: Any, compute_capability: str,
                  settings: BuildSettings, log: Log = print) -> CachedEngine:
    """`module`'s engine at `precision` from the cache, or built for `compute_capability` and stored there (engine and
    key written atomically); needs a TensorRT builder, no GPU (TensorRT-RTX builds ahead of time)."""
    if precision not in bundle.precisions(module):
        raise InputError("bundle %s has no %s graph for %s (it has %s): pass another precision, or convert the "
                         "bundle for this target" % (bundle.path, precision, module,
                                                     ", ".join(bundle.precisions(module))))
    if settings.dla_core is not None and settings.dla_core < 0:
        raise InputError("--useDLACore must be 0 or more, got %d" % settings.dla_core)
    workspace = settings.workspace_bytes or workspace_limit(bundle, precision, trt, module)
    shapes = profile_shapes(bundle.graph(module, precision).inputs, bundle.shapes(module))
    fields = cache_fields(bundle, module, precision, shapes, trt, compute_capability, settings, workspace)
    cache = EngineCache(settings.cache_dir)
    engine_bytes = None if settings.force else cache.load(fields)
    if engine_bytes is not None:
        return CachedEngine(cache.path(fields), engine_bytes, True, 0.0, fields)
    check_build_fits("%s %s" % (module, precision),
                     build_needs_bytes(workspace, bundle.graph(module, precision).bytes), settings.snapshot)
    log("building %s %s engine (%s, workspace limit %d MiB) ..." % (module, precision, builder_name(trt),
                                                                     workspace >> 20))
    options = BuildOptions(precision, shapes, workspace, settings.dla_core, settings.timing_cache,
                           settings.optimization_level, compute_capability)
    try:
        built = build_engine(trt, bundle.graph_path(module, precision), options, log)
    except BuildFailed as failure:
        if failure.stage == "parse":
            raise InputError("%s: run minicpmv-convert check-ops --build on the bundle" % failure) from None
        raise
    if built.timing_cache is not None and settings.timing_cache is not None:
        atomic_write_bytes(settings.timing_cache, built.timing_cache)
    return CachedEngine(cache.store(fields, built.engine), built.engine, False, built.seconds, fields)


class CheckSamples:
    """One synthetic 1280x720 frame (its first two slices) as graph feeds for the post-build checks, and ONNX
    Runtime's outputs on them, each made once per bundle and precision (on first use): the VPM's reference output is
    also the Resampler's input, so the CPU runs the VPM once however many engines are checked."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self._packed: Optional[PackedSlices] = None
        self._expected: Dict[Tuple[str, str], Dict[str, np.ndarray]] = {}

    def feeds(self, module: str, precision: str) -> Dict[str, np.ndarray]:
        """`module`'s feeds; the Resampler's `vision_embeds` are the ONNX Runtime VPM's output at `precision` (the
        VPM's nearest for the grouped Resampler, whose two frames of one group are the two slices, 0.5 s apart)."""
        if self._packed is None:
            layout = self.bundle.model.slice.layout
            slices = Preprocessor(slice_config(self.bundle))(synthetic_scene(1280, 720, seed=11)).slices
            self._packed = pack_slices(slices if layout == "unmasked-1d" else slices[:2], layout)
        if module == "vpm":
            return self._packed.vpm
        if module == VIDEO_MODULE:
            vpm = precision if precision in self.bundle.precisions("vpm") else self.bundle.precision_for("vpm")
            return dict(self._packed.resampler, vision_embeds=self.expected("vpm", vpm)["vision_embeds"],
                        temporal_ids=np.array([[0, 5]], dtype=np.int32))
        return dict(self._packed.resampler, vision_embeds=self.expected("vpm", precision)["vision_embeds"])

    def expected(self, module: str, precision: str) -> Dict[str, np.ndarray]:
        """ONNX Runtime's outputs of `module`'s graph at `precision` on its feeds."""
        key = (module, precision)
        if key not in self._expected:
            with OnnxRuntimeEngine(self.bundle.graph_path(module, precision)) as reference:
                outputs = reference.infer(self.feeds(module, precision))
            self._expected[key] = {name: host_array(value) for name, value in outputs.items()}
        return self._expected[key]


def check_engine(engine: Engine, feeds: Dict[str, np.ndarray], expected: Dict[str, np.ndarray],
                 precision: str) -> float:
    """Max abs difference of `engine`'s outputs on `feeds` from `expected` (ONNX Runtime's), relative to the output
    scale; raises past the tolerance."""
    got = engine.infer(feeds)
    worst = 0.0
    for name, value in expected.items():
        want = host_array(value, np.float32)
        scale = max(float(np.abs(want).max()), 1e-12)
        worst = max(worst, float(np.abs(host_array(got[name], np.float32) - want).max()) / scale)
    if worst > TOLERANCE[precision]:
        raise RuntimeError("engine differs from ONNX Runtime by %.3g of the output scale (%s tolerance %.3g): "
                           "rebuild it with minicpmv-edge build --force, or file a bug"
                           % (worst, precision, TOLERANCE[precision]))
    return worst


def output_elements(bundle: Bundle, module: str) -> Dict[str, int]:
    """The largest element count of the module's output, from the bundle's shapes."""
    shapes, model = bundle.shapes(module), bundle.model
    if module == "vpm":
        return {"vision_embeds": shapes.batch.max * shapes.patches.max * model.vision_width}
    outputs = shapes.groups.max if module == VIDEO_MODULE and shapes.groups else shapes.batch.max  # one per group
    tokens = model.query_num or shapes.patches.max // 4  # a merger version: a quarter of its input rows
    return {"image_tokens": outputs * tokens * model.embed_dim}


def build_module(bundle: Bundle, module: str, precision: str, trt: Any, memory: Any, settings: BuildSettings,
                 log: Log = print, samples: Optional[CheckSamples] = None) -> Tuple[TensorRTEngine, Dict[str, Any]]:
    """Build (or find in the cache) one module's engine at `precision` for this GPU, open it and check it against
    ONNX Runtime on `samples` (pass one CheckSamples for all of a bundle's modules): the engine and a report. An
    engine that fails the check leaves the cache."""
    found = build_or_load(bundle, module, precision, trt, memory.compute_capability(), settings, log)
    engine = TensorRTEngine(trt, found.engine, memory, output_elements(bundle, module))
    try:
        error = None
        if settings.check:
            samples = samples or CheckSamples(bundle)
            error = check_engine(engine, samples.feeds(module, precision), samples.expected(module, precision),
                                 precision)
    except BaseException:
        engine.close()
        EngineCache(settings.cache_dir).remove(found.fields)
        raise
    log("%s %s engine %s: %s (%.1f s), vs ONNX Runtime %s" % (
        module, precision, "from cache" if found.cached else "built", found.path, found.seconds,
        "unchecked" if error is None else "%.2e of the output scale" % error))
    return engine, {"engine": str(found.path), "cached": found.cached, "seconds": round(found.seconds, 2),
                    "bytes": len(found.engine), "precision": precision, "check_relative_error": error}


def build_bundle(bundle: Bundle, trt: Any, memory: Any, settings: BuildSettings,
                 log: Log = print) -> Dict[str, Dict[str, Any]]:
    """`minicpmv-edge build`: every module's engine at one precision, built or found, checked, then closed (the
    engines stay in the cache); the report per module. A bundle with the grouped (video) Resampler gets its engine
    too, at the nearest precision it has (video_precision)."""
    precision = settings.precision or bundle.target.default_precision
    report, samples = {}, CheckSamples(bundle)
    chosen = {m: precision for m in MODULES}
    if bundle.has_video:
        chosen[VIDEO_MODULE] = video_precision(bundle, precision)
    for module, module_precision in chosen.items():
        engine, report[module] = build_module(bundle, module, module_precision, trt, memory, settings, log, samples)
        engine.close()
    return report
