"""``minicpmv-convert bench``: the torch reference's time per slice (the baseline users run today) and, for a
bundle, ONNX Runtime's time and its error against the torch float32 reference on the same slices."""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from edge.bundle.manifest import Bundle
from edge.engines.factory import open_onnx
from edge.preprocess.graph_inputs import pack_slices

from . import family
from .checkpoint import load_tensors
from .checkpoint_layout import CheckpointLayout
from .export import build_modules
from .modeling.layers import to_fp16


def _median_ms(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run_bench(args: argparse.Namespace, layout: CheckpointLayout, bundle: Optional[Bundle],
              slice_patches: Tuple[int, int]) -> Dict[str, Any]:
    """Time the reference (the checkpoint at `layout`) and `bundle` on `args.batch` random slices of
    `slice_patches` (rows, cols) patches."""
    rows, cols = slice_patches
    ck = load_tensors(layout)
    if ck.spec.is_merger and bundle is not None:  # time the mode the bundle's graphs run
        ck.spec = replace(ck.spec, downsample_mode=bundle.model.merger["downsample_mode"])
    layout = family.bundle_layout(ck.version, ck.spec.downsample_mode)
    rng = np.random.default_rng(0)
    slices = [rng.uniform(-1, 1, (3, 14 * rows, 14 * cols)).astype(np.float32) for _ in range(args.batch)]
    packed = pack_slices(slices, layout)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # the float32 reference must be float32
        torch.backends.cudnn.allow_tf32 = False
    modules = build_modules(ck, max(1024, rows * cols, rows, cols))
    feeds = [torch.from_numpy(v).to(device) for v in packed.vpm.values()]
    tgt = [torch.from_numpy(v).to(device) for v in packed.resampler.values()]  # tgt_sizes; none for a merger

    def run_torch(dtype: str):
        vpm, resampler = ((to_fp16(copy.deepcopy(m)) if dtype == "fp16" else m).to(device)
                          for m in modules.values())
        inputs = [f.half() if f.is_floating_point() and dtype == "fp16" else f for f in feeds]
        with torch.no_grad():
            features = vpm(*inputs)
            vpm_ms = _median_ms(lambda: vpm(*inputs), args.repeats, sync)
            res_ms = _median_ms(lambda: resampler(features, *tgt), args.repeats, sync)
            tokens = resampler(features, *tgt)
        return features.float().cpu().numpy(), tokens.float().cpu().numpy(), vpm_ms, res_ms

    result: Dict[str, Any] = {"checkpoint": str(ck.path), "version": ck.version, "slice_patches": [rows, cols],
                              "batch": args.batch, "repeats": args.repeats,
                              "device_name": torch.cuda.get_device_name(device) if cuda else "cpu"}
    reference = run_torch("fp32")
    ref_features, ref_tokens = reference[:2]
    vpm_ms, res_ms = (reference if args.dtype == "fp32" else run_torch(args.dtype))[2:]
    result["torch"] = {"device": str(device), "dtype": args.dtype, "torch_version": torch.__version__,
                       "vpm_ms_per_slice": vpm_ms / args.batch, "resampler_ms_per_slice": res_ms / args.batch}
    if bundle is not None:
        result["onnxruntime"] = _bench_bundle(bundle, packed, ref_features, ref_tokens, args.repeats, args.batch,
                                              vpm_ms + res_ms)
    return result


def _bench_bundle(bundle: Bundle, packed, ref_features: np.ndarray, ref_tokens: np.ndarray, repeats: int,
                  batch: int, torch_ms: float) -> Dict[str, Any]:
    import onnxruntime as ort

    figures: Dict[str, Any] = {"onnxruntime_version": ort.__version__, "provider": "CPUExecutionProvider"}
    for precision in bundle.precisions("vpm"):
        dtype = np.float16 if precision == "fp16" else np.float32
        vpm_feeds = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in packed.vpm.items()}
        with open_onnx(bundle.graph_path("vpm", precision)) as vpm, \
                open_onnx(bundle.graph_path("resampler", precision)) as resampler:
            features = vpm.infer(vpm_feeds)["vision_embeds"]
            res_feeds = {"vision_embeds": features, **packed.resampler}
            tokens = resampler.infer(res_feeds)["image_tokens"]
            vpm_ms = _median_ms(partial(vpm.infer, vpm_feeds), repeats, lambda: None)
            res_ms = _median_ms(partial(resampler.infer, res_feeds), repeats, lambda: None)
        figures[precision] = {
            "vpm_ms_per_slice": vpm_ms / batch, "resampler_ms_per_slice": res_ms / batch,
            "vpm_max_abs_error": float(np.abs(features.astype(np.float32) - ref_features).max()),
            "vpm_output_max_abs": float(np.abs(ref_features).max()),
            "tokens_max_abs_error": float(np.abs(tokens.astype(np.float32) - ref_tokens).max()),
            "tokens_max_abs": float(np.abs(ref_tokens).max()),
            "time_ratio_vs_torch_reference": (vpm_ms + res_ms) / torch_ms,
        }
    return figures
