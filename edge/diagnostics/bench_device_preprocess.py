"""``minicpmv-edge bench device-preprocess``: preprocessing on the CUDA device vs the official PIL pipeline.

One run, one synthetic frame: the official processor's steps (``bench_preprocess.official_pipeline``: PIL
resizes and crops, float normalisation, strips), this project's ``exact`` path (Pillow + pack_slices), and the
device path twice: from the host frame (pinned copy and upload included) and from the frame already on the device.
Times are the minimum of the repeats after a warm-up (kernels compiled and cached, buffers allocated); device
times end with a synchronize of the stream. The device strips are checked against the exact ones bit for bit.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ..preprocess.graph_inputs import pack_slices
from ..preprocess.preprocessor import Preprocessor
from ..preprocess.scenes import synthetic_scene
from ..preprocess.slicing import DEFAULT
from .bench_preprocess import official_pipeline


def _min_ms(function: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return round(min(times), 4)


def run_bench(size: Tuple[int, int] = (1920, 1080), repeats: int = 20, seed: int = 0,
              max_slice_nums: Optional[int] = None, dtype: str = "float32") -> Dict[str, Any]:
    """Times (ms) and ratios for one frame size; raises when pycuda or a CUDA device is missing."""
    from ..engines.tensorrt.device_memory import PycudaMemory
    from ..preprocess.device.kernels import cached_kernel_files, kernel_cache_dir
    from ..preprocess.device.preprocessor import DevicePreprocessor

    config = DEFAULT if max_slice_nums is None else DEFAULT._replace(max_slice_nums=max_slice_nums)
    rgb = synthetic_scene(*size, seed=seed)
    exact = Preprocessor(config, "exact")
    plan = exact.plan(rgb)
    batches = [(0, len(plan.slice_sizes))]
    pixel_dtype = np.dtype(dtype)

    def run_exact() -> np.ndarray:
        return pack_slices(exact.slices(rgb, plan), "masked-2d", pixel_dtype).vpm["pixel_values"]

    memory = PycudaMemory()
    compile_start = time.perf_counter()
    device = DevicePreprocessor(memory, "masked-2d", pixel_dtype)
    compile_s = time.perf_counter() - compile_start
    try:
        def with_upload() -> Any:
            feeds = device(rgb, plan, batches)
            memory.synchronize()
            return feeds

        def without_upload() -> None:
            device.run(plan, batches)
            memory.synchronize()

        got = with_upload()[0].vpm["pixel_values"].to_host()  # warm-up: tables uploaded, buffers allocated
        want = run_exact()
        identical = bool(got.shape == want.shape and np.array_equal(got.view(np.uint8), want.view(np.uint8)))
        official_ms = _min_ms(lambda: official_pipeline(rgb, plan), repeats)
        exact_ms = _min_ms(run_exact, repeats)
        device_ms = _min_ms(with_upload, repeats)
        device_resident_ms = _min_ms(without_upload, repeats)
        device_bytes = device.device_bytes
    finally:
        device.close()
    return {
        "size": "%dx%d" % size, "slices": len(plan.slice_sizes), "dtype": pixel_dtype.name, "repeats": repeats,
        "device": memory._cuda.Context.get_device().name(), "compute_capability": memory.compute_capability(),
        "first_compile_or_cache_load_s": round(compile_s, 3),
        "kernel_cache": {"dir": str(kernel_cache_dir()), "modules": cached_kernel_files()},
        "official_pil_ms": official_ms, "exact_ms": exact_ms,
        "device_with_upload_ms": device_ms, "device_frame_resident_ms": device_resident_ms,
        "speedup_with_upload": round(official_ms / device_ms, 1),
        "speedup_frame_resident": round(official_ms / device_resident_ms, 1),
        "exact_speedup": round(official_ms / exact_ms, 2),
        "device_strips_equal_exact": identical, "device_buffer_bytes": device_bytes,
    }


def format_report(report: Dict[str, Any]) -> str:
    return ("%(size)s (%(slices)d slices, %(dtype)s) on %(device)s: official PIL %(official_pil_ms).2f ms, exact "
            "%(exact_ms).2f ms, device %(device_with_upload_ms).3f ms with the upload (%(speedup_with_upload).1fx), "
            "%(device_frame_resident_ms).3f ms from a frame on the device (%(speedup_frame_resident).1fx); device "
            "strips equal exact: %(device_strips_equal_exact)s" % report)
