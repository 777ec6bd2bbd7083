"""``minicpmv-edge bench engines``: what a user runs on a Jetson to get real figures for a bundle.

Per precision: engine build time (TensorRT; 0 and "cached" when the cache had it), per-stage latency of whole
frames (preprocess, VPM, Resampler: min and median over the repeats, after one warm-up frame), and memory (this
process's resident and peak resident set; free and total device memory where pycuda is in use).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..bundle.manifest import Bundle
from ..encoder.vision_encoder import VisionEncoder
from ..preprocess.scenes import synthetic_scene


def process_memory() -> Dict[str, Optional[int]]:
    """VmRSS and VmHWM of this process in bytes (Linux), None elsewhere."""
    values: Dict[str, Optional[int]] = {"rss_bytes": None, "peak_rss_bytes": None}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values["rss_bytes" if key == "VmRSS" else "peak_rss_bytes"] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def _encoder(bundle_path: Path, backend: str, precision: str, cache_dir: Path) -> Any:
    if backend == "onnxruntime":
        return VisionEncoder.from_bundle(bundle_path, precision=precision), None, None
    from ..engines.tensorrt.build import BuildSettings, build_bundle, import_tensorrt

    bundle = Bundle.load(bundle_path)
    trt, memory = import_tensorrt()
    report, engines = build_bundle(bundle, trt, memory, BuildSettings(precision, cache_dir), log=lambda m: None)
    return VisionEncoder(bundle, engines), report, memory


def bench_precision(bundle_path: Path, backend: str, precision: str, size: Sequence[int], repeats: int,
                    cache_dir: Path) -> Dict[str, Any]:
    start = time.perf_counter()
    encoder, build, memory = _encoder(bundle_path, backend, precision, cache_dir)
    ready_s = time.perf_counter() - start
    image = synthetic_scene(size[0], size[1], seed=21)
    encoder.encode(image)  # warm-up
    timings = [encoder.encode(image).timings for _ in range(repeats)]
    stages = {stage: {"min_ms": round(min(t[stage] for t in timings), 3),
                      "median_ms": round(float(np.median([t[stage] for t in timings])), 3)}
              for stage in ("preprocess", "vpm", "resampler", "total")}
    result: Dict[str, Any] = {"precision": precision, "ready_s": round(ready_s, 2), "stages": stages,
                              "memory": process_memory()}
    if build is not None:
        result["build"] = {m: {"seconds": r["seconds"], "cached": r["cached"], "bytes": r["bytes"]}
                           for m, r in build.items()}
    if memory is not None and hasattr(memory, "device_memory"):
        result["memory"].update(memory.device_memory())
    return result


def run_bench(bundle_path: Path, backend: str = "onnxruntime", precisions: Optional[Sequence[str]] = None,
              size: Sequence[int] = (1920, 1080), repeats: int = 5,
              cache_dir: Path = Path("/var/cache/minicpmv-edge/engines")) -> Dict[str, Any]:
    bundle = Bundle.load(bundle_path)
    chosen = list(precisions or bundle.precisions("vpm"))
    return {"benchmark": "engines", "bundle": str(bundle_path), "backend": backend,
            "model_version": bundle.model["version"], "target": bundle.manifest["target"]["profile"],
            "frame": "%dx%d" % tuple(size), "repeats": repeats,
            "machine": {"platform": platform.platform(), "processor": platform.machine()},
            "precisions": [bench_precision(bundle_path, backend, p, size, repeats, cache_dir) for p in chosen]}
