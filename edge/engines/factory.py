"""The one place engines are opened: a bundle's VPM and Resampler, each on ONNX Runtime or TensorRT at its own
precision (convert and check one module at a time), its grouped (video) Resampler when it has one, or a single ONNX
graph for the converter's measurements.

TensorRT engines come from the engine cache (built and checked against ONNX Runtime when missing). An `EngineSet`
owns what it opened: `close()` (or leaving a `with` block) frees device buffers, contexts and streams, so engines
can be swapped at run time on a device whose memory the LLM shares.
"""
from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Union

from ..bundle.manifest import MODULES, VIDEO_MODULE, Bundle
from ..bundle.video import video_precision
from ..errors import InputError
from .base import Engine, check_backend
from .onnxrt import OnnxRuntimeEngine
from .tensorrt import build as tensorrt_build
from .tensorrt.cache import DEFAULT_CACHE_DIR

PerModule = Union[None, str, Mapping[str, Optional[str]]]


def per_module(value: PerModule, what: str) -> Dict[str, Optional[str]]:
    """One value for both modules, or a mapping with a value per module (missing: None)."""
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in MODULES)
        if unknown:
            raise InputError("%s names unknown module %s: use %s" % (what, unknown[0], " and ".join(MODULES)))
        return {m: value.get(m) for m in MODULES}
    return {m: value for m in MODULES}


class EngineSet(MappingABC):
    """A bundle's engines by module (`engines["vpm"]`), what each runs on and at which precision, the TensorRT
    build report, and `close()`."""

    def __init__(self, engines: Dict[str, Engine], backends: Dict[str, str], precisions: Dict[str, str],
                 build_report: Optional[Dict[str, Dict[str, Any]]] = None, memory: Any = None,
                 tensorrt: Any = None) -> None:
        self.engines, self.backends, self.precisions = engines, backends, precisions
        self.build_report = build_report or {}
        self.memory = memory  # the TensorRT device-memory layer, None on ONNX Runtime alone
        self.tensorrt = tensorrt  # the tensorrt module the engines run on, None on ONNX Runtime alone

    @property
    def runtime(self) -> Optional[Tuple[Any, Any]]:
        """(tensorrt module, device-memory layer) where TensorRT runs, for more engines on the same device memory."""
        return None if self.tensorrt is None else (self.tensorrt, self.memory)

    def __getitem__(self, module: str) -> Engine:
        return self.engines[module]

    def __iter__(self) -> Iterator[str]:
        return iter(self.engines)

    def __len__(self) -> int:
        return len(self.engines)

    def device_memory(self) -> Dict[str, int]:
        """Free and total device memory in bytes where TensorRT runs (unified memory on a Jetson), else {}."""
        reader = getattr(self.memory, "device_memory", None)  # pycuda's; another memory layer may have none
        return reader() if reader is not None else {}

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    def __enter__(self) -> EngineSet:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def open_engines(bundle: Bundle, backend: PerModule = "onnxruntime", precision: PerModule = None,
                 cache_dir: Path = DEFAULT_CACHE_DIR, settings: Optional[tensorrt_build.BuildSettings] = None,
                 log: Callable[[str], None] = lambda message: None,
                 runtime: Optional[Tuple[Any, Any]] = None) -> EngineSet:
    """Engines for both modules; `backend` and `precision` are one value or one per module (precision None: the
    target's default). TensorRT builds use `settings` (trtexec-like flags) with `cache_dir`; `runtime` is the
    (tensorrt module, device-memory layer) pair to use, by default JetPack's tensorrt and pycuda."""
    backends = {m: b or "onnxruntime" for m, b in per_module(backend, "backend").items()}
    for name in backends.values():
        check_backend(name)
    precisions = {m: bundle.precision_for(m, p) for m, p in per_module(precision, "precision").items()}
    trt = memory = None
    if "tensorrt" in backends.values():
        trt, memory = runtime or tensorrt_build.import_tensorrt()
    engines: Dict[str, Engine] = {}
    report: Dict[str, Dict[str, Any]] = {}
    samples = tensorrt_build.CheckSamples(bundle)  # made on first use, shared by the modules' checks
    try:
        for module in MODULES:
            if backends[module] == "tensorrt":
                chosen = replace(settings or tensorrt_build.BuildSettings(), precision=precisions[module],
                                 cache_dir=cache_dir)
                engines[module], report[module] = tensorrt_build.build_module(
                    bundle, module, precisions[module], trt, memory, chosen, log, samples)
            else:
                engines[module] = OnnxRuntimeEngine(bundle.graph_path(module, precisions[module]))
    except BaseException:
        for engine in engines.values():
            engine.close()
        raise
    return EngineSet(engines, backends, precisions, report, memory, trt)


def open_video_engine(bundle: Bundle, backend: Optional[str] = "onnxruntime", precision: Optional[str] = None,
                      cache_dir: Path = DEFAULT_CACHE_DIR, settings: Optional[tensorrt_build.BuildSettings] = None,
                      log: Callable[[str], None] = lambda message: None,
                      runtime: Optional[Tuple[Any, Any]] = None) -> Engine:
    """The bundle's grouped (video) Resampler on `backend`, at the grouped graph's precision nearest `precision`
    (video_precision; an InputError naming the fix when the bundle has none). On TensorRT: its own engine, with the
    grouped graph's profile (groups x frames x patches from the manifest), from the engine cache like the others
    (built and checked against ONNX Runtime when missing); `runtime` as for open_engines (an EngineSet's, to share
    its device memory)."""
    backend = backend or "onnxruntime"
    check_backend(backend)
    chosen = video_precision(bundle, precision)
    if backend != "tensorrt":
        return OnnxRuntimeEngine(bundle.graph_path(VIDEO_MODULE, chosen))
    trt, memory = runtime or tensorrt_build.import_tensorrt()
    options = replace(settings or tensorrt_build.BuildSettings(), precision=chosen, cache_dir=cache_dir)
    engine, _ = tensorrt_build.build_module(bundle, VIDEO_MODULE, chosen, trt, memory, options, log)
    return engine


def open_onnx(source: Union[Path, bytes]) -> OnnxRuntimeEngine:
    """One ONNX graph (a file or serialized bytes) on ONNX Runtime's CPU provider: for measuring graphs that are
    not (yet) a bundle's, such as the converter's calibration candidates."""
    return OnnxRuntimeEngine(source)
