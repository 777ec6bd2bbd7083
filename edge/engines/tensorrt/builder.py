"""ONNX -> serialized TensorRT engine for one bundle graph, written from the API facts of 8.5 to 11.x.

Version guards (docs/tensorrt.md): EXPLICIT_BATCH only where the enum value exists (gone in 11.0); FP16/INT8 builder
flags only where they exist (8.x/10.x: an int8 Q/DQ graph gets INT8 and FP16, an fp16 graph FP16); 11.x networks
are strongly typed (the ONNX carries the types, no flags); a progress monitor where IProgressMonitor exists (10.x+);
the builder optimization level where the config has it. Never build_engine / max_workspace_size (gone in 10.0).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...errors import InputError


@dataclass
class BuildOptions:
    """trtexec-like knobs; shapes are per input name: (min, opt, max) tuples."""

    precision: str  # fp32 | fp16 | int8: which bundle graph this is
    shapes: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]
    workspace_bytes: int
    dla_core: Optional[int] = None
    timing_cache: Optional[Path] = None
    optimization_level: Optional[int] = None


def profile_shapes(graph_inputs: List[Dict[str, Any]], shapes: Dict[str, Dict[str, int]]
                   ) -> Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]:
    """(min, opt, max) per input from the manifest: dims named batch / patches / strip_width take the bundle's
    batch and patch ranges (strip width = 14 x patches); numbers are fixed."""
    result = {}
    for graph_input in graph_inputs:
        per_level = []
        for level in ("min", "opt", "max"):
            dims = []
            for dim in graph_input["dims"]:
                if dim == "batch":
                    dims.append(shapes["batch"][level])
                elif dim == "patches":
                    dims.append(shapes["patches"][level])
                elif dim == "strip_width":
                    dims.append(14 * shapes["patches"][level])
                else:
                    dims.append(int(dim))
            per_level.append(tuple(dims))
        result[graph_input["name"]] = tuple(per_level)
    return result


def _flag(trt: Any, enum: str, name: str) -> Optional[Any]:
    """An enum value if this TensorRT has it (getattr guard), else None."""
    return getattr(getattr(trt, enum, None), name, None)


def _progress_monitor(trt: Any, log: Callable[[str], None]) -> Optional[Any]:
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            log("  %s (%d steps)" % (phase_name, num_steps))

        def step_complete(self, phase_name, step):
            return True  # keep building

        def phase_finish(self, phase_name):
            log("  %s done" % phase_name)

    return Progress()


def build_engine(trt: Any, onnx_path: Path, options: BuildOptions,
                 log: Callable[[str], None] = print) -> Tuple[bytes, Optional[bytes]]:
    """Serialized engine bytes and the updated timing cache bytes (None when no cache was used)."""
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit_batch = _flag(trt, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    strongly_typed = _flag(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED")
    fp16, int8 = _flag(trt, "BuilderFlag", "FP16"), _flag(trt, "BuilderFlag", "INT8")
    flags = 0
    if explicit_batch is not None and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(explicit_batch)
    if fp16 is None and strongly_typed is not None:
        flags |= 1 << int(strongly_typed)  # 11.x: types come from the ONNX
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError("TensorRT %s cannot parse %s (%s): run minicpmv-convert check-ops on the bundle"
                         % (trt.__version__, onnx_path, errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_bytes))
    if options.precision in ("fp16", "int8") and fp16 is not None:
        config.set_flag(fp16)
    if options.precision == "int8" and int8 is not None:
        config.set_flag(int8)  # Q/DQ graph: explicit quantization, non-quantized layers in fp16
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if options.optimization_level is not None and _has_attribute(config, "builder_optimization_level"):
        config.builder_optimization_level = int(options.optimization_level)
    monitor = _progress_monitor(trt, log)
    if monitor is not None:
        config.progress_monitor = monitor
    cache = None
    if options.timing_cache is not None:
        previous = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        cache = config.create_timing_cache(previous)
        config.set_timing_cache(cache, False)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in options.shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT %s failed to build %s (see its log above)" % (trt.__version__, onnx_path))
    log("built %s in %.1f s" % (onnx_path.name, time.perf_counter() - start))
    timing = bytes(config.get_timing_cache().serialize()) if cache is not None else None
    return bytes(serialized), timing


def _has_attribute(obj: Any, name: str) -> bool:
    try:
        getattr(obj, name)
    except AttributeError:
        return False
    return True
