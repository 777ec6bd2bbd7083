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
from ..engines.factory import open_engines
from ..engines.tensorrt.cache import DEFAULT_CACHE_DIR
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


def bench_precision(bundle: Bundle, backend: str, precision: str, size: Sequence[int], repeats: int,
                    cache_dir: Path) -> Dict[str, Any]:
    start = time.perf_counter()
    with open_engines(bundle, backend, precision, cache_dir) as engines:
        ready_s = time.perf_counter() - start
        encoder = VisionEncoder(bundle, engines)
        image = synthetic_scene(size[0], size[1], seed=21)
        encoder.encode(image)  # warm-up
        timings = [encoder.encode(image).timings for _ in range(repeats)]
        memory = dict(process_memory(), **engines.device_memory())
        build = {m: {"seconds": r["seconds"], "cached": r["cached"], "bytes": r["bytes"]}
                 for m, r in engines.build_report.items()}
    stages = {stage: {"min_ms": round(min(t[stage] for t in timings), 3),
                      "median_ms": round(float(np.median([t[stage] for t in timings])), 3)}
              for stage in ("preprocess", "vpm", "resampler", "total")}
    result: Dict[str, Any] = {"precision": precision, "ready_s": round(ready_s, 2), "stages": stages,
                              "memory": memory}
    if build:
        result["build"] = build
    return result


def run_bench(bundle_path: Path, backend: str = "onnxruntime", precisions: Optional[Sequence[str]] = None,
              size: Sequence[int] = (1920, 1080), repeats: int = 5,
              cache_dir: Path = DEFAULT_CACHE_DIR) -> Dict[str, Any]:
    bundle = Bundle.load(bundle_path)
    chosen = list(precisions or bundle.precisions("vpm"))
    return {"benchmark": "engines", "bundle": str(bundle_path), "backend": backend,
            "model_version": bundle.model.version, "target": bundle.target.profile,
            "frame": "%dx%d" % tuple(size), "repeats": repeats,
            "machine": {"platform": platform.platform(), "processor": platform.machine()},
            "precisions": [bench_precision(bundle, backend, p, size, repeats, cache_dir) for p in chosen]}
