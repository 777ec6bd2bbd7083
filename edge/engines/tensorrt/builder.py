"""ONNX -> serialized TensorRT engine for one bundle graph, written from the API facts of 8.5 to 11.x and run for
real against TensorRT-RTX.

Version guards (docs/tensorrt.md): EXPLICIT_BATCH only where the enum value exists (gone in 11.0) and the release is
8.x (TensorRT-RTX's own version numbers, 1.x, are not TensorRT's); FP16/INT8 builder
flags only where they exist (8.x/10.x: an int8 Q/DQ graph gets INT8 and FP16, an fp16 graph FP16); 11.x and
TensorRT-RTX networks are strongly typed (the ONNX carries the types, no flags); a progress monitor where
IProgressMonitor exists (10.x+); the builder optimization level where the config has it; an ahead-of-time compute
capability where the module has `ComputeCapability` (TensorRT-RTX); a timing cache except on TensorRT-RTX, where its
operations are no-ops. Never build_engine / max_workspace_size (gone in 10.0).

Failures raise `BuildFailed` with what the builder said: the parser's errors name the ONNX node; a build that runs
out of its workspace limit says so with the limit and the fix.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...bundle.facts import ModuleShapes, TensorSpec
from ...errors import InputError
from .logger import shared_logger

Log = Callable[[str], None]
Shapes = Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]
MIB = 1 << 20


@dataclass
class BuildOptions:
    """trtexec-like knobs; shapes are per input name: (min, opt, max) tuples."""

    precision: str  # fp32 | fp16 | int8: which bundle graph this is
    shapes: Shapes
    workspace_bytes: int
    dla_core: Optional[int] = None
    timing_cache: Optional[Path] = None
    optimization_level: Optional[int] = None
    compute_capability: Optional[str] = None  # "8.6": TensorRT-RTX's ahead-of-time target (ignored elsewhere)


@dataclass(frozen=True)
class ParseProblem:
    """One error of the ONNX parser: the node it names, its operator, and why."""

    node: str
    operator: str
    reason: str


class BuildFailed(RuntimeError):
    """The parser or the builder refused a graph; `problems` are the parser's, `errors` the builder log's."""

    def __init__(self, message: str, stage: str, problems: Sequence[ParseProblem] = (),
                 errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.stage, self.problems, self.errors = stage, list(problems), list(errors)


@dataclass
class BuildResult:
    """A serialized engine, the updated timing cache (None when none was used) and the build time."""

    engine: bytes
    timing_cache: Optional[bytes]
    seconds: float


def builder_name(trt: Any) -> str:
    """"TensorRT 10.3.0.30" or "TensorRT-RTX 1.7.1.116"."""
    return "%s %s" % ("TensorRT-RTX" if is_rtx(trt) else "TensorRT", trt.__version__)


def is_rtx(trt: Any) -> bool:
    """TensorRT-RTX: the builder that targets a named compute capability ahead of time."""
    return hasattr(trt, "ComputeCapability")


def is_strongly_typed(trt: Any) -> bool:
    """True where the builder takes its types from the ONNX (no FP16 flag: TensorRT 11, TensorRT-RTX)."""
    return _flag(trt, "BuilderFlag", "FP16") is None


def rtx_capability(trt: Any, capability: str) -> Any:
    """TensorRT-RTX's ComputeCapability member for "8.6"; an InputError naming the ones it builds for."""
    member = getattr(trt.ComputeCapability, "SM" + capability.replace(".", ""), None)
    if member is None:
        known = sorted((int(n[2:-1]), int(n[-1])) for n in trt.ComputeCapability.__members__ if n.startswith("SM"))
        raise InputError("%s cannot build for compute capability %s: it builds for %s"
                         % (builder_name(trt), capability, ", ".join("%d.%d" % k for k in known)))
    return member


def profile_shapes(graph_inputs: Sequence[TensorSpec], shapes: ModuleShapes) -> Shapes:
    """(min, opt, max) per input from the manifest: dims named batch / patches / strip_width take the bundle's
    batch and patch ranges (strip width = 14 x patches), groups / frames the grouped Resampler's; numbers are
    fixed."""
    def dim_at(dim: Any, level: str) -> int:
        if dim == "strip_width":
            return 14 * shapes.patches.at(level)
        if dim in ("batch", "patches", "groups", "frames"):
            named = getattr(shapes, dim)
            if named is None:
                raise InputError("the manifest names a %r dimension but gives no %s range: re-export the bundle"
                                 % (dim, dim))
            return named.at(level)
        return int(dim)

    return {spec.name: tuple(tuple(dim_at(d, level) for d in spec.dims) for level in ("min", "opt", "max"))
            for spec in graph_inputs}


def _flag(trt: Any, enum: str, name: str) -> Optional[Any]:
    """An enum value if this TensorRT has it (getattr guard), else None."""
    return getattr(getattr(trt, enum, None), name, None)


def _progress_monitor(trt: Any, log: Log) -> Optional[Any]:
    """Top-level build phases with their step counts and times (nested phases stay quiet)."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.started: Dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            if parent_phase is None:
                self.started[phase_name] = time.perf_counter()
                log("  %s (%d steps) ..." % (phase_name, num_steps))

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # keep building

        def phase_finish(self, phase_name: str) -> None:
            if phase_name in self.started:
                log("  %s done in %.1f s" % (phase_name, time.perf_counter() - self.started.pop(phase_name)))

    return Progress()


def _parse_problems(parser: Any) -> List[ParseProblem]:
    """The parser's errors; node names and operators where the release reports them (10.x+), else the index.
    TensorRT-RTX without a GPU adds a CUDA-driver line to some descriptions; it is dropped."""
    problems = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        name = error.node_name() if hasattr(error, "node_name") else ""
        operator = error.node_operator() if hasattr(error, "node_operator") else ""
        node = name or ("node %d" % error.node() if error.node() >= 0 else "(model)")
        reason = " | ".join(line.strip() for line in str(error.desc()).splitlines()
                            if line.strip() and "catchCudaError" not in line)
        problems.append(ParseProblem(node, operator or "?", reason))
    return problems


def _network_flags(trt: Any) -> int:
    explicit_batch = _flag(trt, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    strongly_typed = _flag(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED")
    flags = 0
    if explicit_batch is not None and not is_rtx(trt) and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(explicit_batch)
    if is_strongly_typed(trt) and strongly_typed is not None:
        flags |= 1 << int(strongly_typed)  # 11.x, TensorRT-RTX: types come from the ONNX
    return flags


def _configure(trt: Any, builder: Any, options: BuildOptions, log: Log) -> Tuple[Any, Optional[Any]]:
    """The builder config of `options` and the timing cache it uses (None without one)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_bytes))
    fp16, int8 = _flag(trt, "BuilderFlag", "FP16"), _flag(trt, "BuilderFlag", "INT8")
    if options.precision in ("fp16", "int8") and fp16 is not None:
        config.set_flag(fp16)
    if options.precision == "int8" and int8 is not None:
        config.set_flag(int8)  # Q/DQ graph: explicit quantization, non-quantized layers in fp16
    if options.dla_core is not None:
        if options.dla_core >= builder.num_DLA_cores:
            raise InputError("DLA core %d asked for, but %s here has %d DLA cores (TensorRT-RTX and Orin Nano have "
                             "none): drop --useDLACore" % (options.dla_core, builder_name(trt), builder.num_DLA_cores))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if options.compute_capability is not None and is_rtx(trt):
        config.num_compute_capabilities = 1
        config.set_compute_capability(rtx_capability(trt, options.compute_capability), 0)
    if options.optimization_level is not None and _has_attribute(config, "builder_optimization_level"):
        config.builder_optimization_level = int(options.optimization_level)
    monitor = _progress_monitor(trt, log)
    if monitor is not None:
        config.progress_monitor = monitor
    cache = None
    if options.timing_cache is not None and is_rtx(trt):
        log("  timing cache not used: TensorRT-RTX makes timing-cache operations no-ops (deprecated since 1.2)")
    elif options.timing_cache is not None:
        previous = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        cache = config.create_timing_cache(previous)
        config.set_timing_cache(cache, False)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in options.shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    return config, cache


def _build_failure(trt: Any, onnx_path: Path, options: BuildOptions, errors: List[str]) -> BuildFailed:
    """BuildFailed saying why; running out of the workspace limit gets the limit, the largest shapes and the fix."""
    if any("OutOfMemory" in e for e in errors):
        largest = ", ".join("%s %s" % (name, "x".join(map(str, shape[2]))) for name, shape in options.shapes.items())
        message = ("%s could not build %s within its %d MiB workspace limit at the largest shapes (%s): give it more "
                   "(minicpmv-edge build --memPoolSize workspace:N), or convert for a profile with a smaller "
                   "max_batch or max_patches" % (builder_name(trt), onnx_path, options.workspace_bytes // MIB,
                                                 largest))
    else:
        message = "%s failed to build %s: %s" % (builder_name(trt), onnx_path, "; ".join(errors) or "no error logged")
    return BuildFailed(message, "build", errors=errors)


def build_engine(trt: Any, onnx_path: Path, options: BuildOptions, log: Log = print) -> BuildResult:
    """Parse `onnx_path` and build it with `options`; BuildFailed when the parser or the builder refuses."""
    start = time.perf_counter()
    logger = shared_logger(trt)
    logger.start(log)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems = _parse_problems(parser)
        raise BuildFailed("%s cannot parse %s: %s" % (builder_name(trt), onnx_path, "; ".join(
            "%s (%s): %s" % (p.node, p.operator, p.reason) for p in problems)), "parse", problems, logger.errors)
    config, cache = _configure(trt, builder, options, log)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise _build_failure(trt, onnx_path, options, logger.errors)
    seconds = time.perf_counter() - start
    log("built %s in %.1f s" % (onnx_path.name, seconds))
    timing = bytes(config.get_timing_cache().serialize()) if cache is not None else None
    return BuildResult(bytes(serialized), timing, seconds)


def _has_attribute(obj: Any, name: str) -> bool:
    try:
        getattr(obj, name)
    except AttributeError:
        return False
    return True
