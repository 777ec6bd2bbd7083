"""``minicpmv-convert bench``: the torch reference's time per slice (the baseline users run today) and, for a
bundle, ONNX Runtime's time and its error against the torch float32 reference on the same slices."""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from functools import partial
from typing import Any, Callable, Dict

import numpy as np
import torch

from edge.bundle.manifest import Bundle
from edge.engines.onnxrt import open_session
from edge.errors import InputError
from edge.preprocess.graph_inputs import pack_slices

from .checkpoint import load_vision_checkpoint
from .export import build_modules
from .modeling.layers import to_fp16


def _parse_slice(text: str):
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        message = "--slice %r is not ROWSxCOLS in patches: write e.g. 32x32 for a 448x448 slice" % text
        raise InputError(message) from None
    return rows, cols


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


def run_bench(args: argparse.Namespace) -> Dict[str, Any]:
    """Time the reference and the bundle on `args.batch` random slices of `args.slice` patches."""
    rows, cols = _parse_slice(args.slice)
    ck = load_vision_checkpoint(args.checkpoint, args.model_version)
    layout = ck.facts.slice_layout
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
    tgt = torch.from_numpy(packed.resampler["tgt_sizes"]).to(device)

    def run_torch(dtype: str):
        vpm, resampler = ((to_fp16(copy.deepcopy(m)) if dtype == "fp16" else m).to(device)
                          for m in modules.values())
        inputs = [f.half() if f.is_floating_point() and dtype == "fp16" else f for f in feeds]
        with torch.no_grad():
            features = vpm(*inputs)
            vpm_ms = _median_ms(lambda: vpm(*inputs), args.repeats, sync)
            res_ms = _median_ms(lambda: resampler(features, tgt), args.repeats, sync)
            tokens = resampler(features, tgt)
        return features.float().cpu().numpy(), tokens.float().cpu().numpy(), vpm_ms, res_ms

    result: Dict[str, Any] = {"checkpoint": str(ck.path), "version": ck.version, "slice_patches": [rows, cols],
                              "batch": args.batch, "repeats": args.repeats,
                              "device_name": torch.cuda.get_device_name(device) if cuda else "cpu"}
    reference = run_torch("fp32")
    ref_features, ref_tokens = reference[:2]
    vpm_ms, res_ms = (reference if args.dtype == "fp32" else run_torch(args.dtype))[2:]
    result["torch"] = {"device": str(device), "dtype": args.dtype, "torch_version": torch.__version__,
                       "vpm_ms_per_slice": vpm_ms / args.batch, "resampler_ms_per_slice": res_ms / args.batch}
    if args.bundle:
        result["onnxruntime"] = _bench_bundle(Bundle.load(args.bundle), packed, ref_features, ref_tokens,
                                              args.repeats, args.batch, vpm_ms + res_ms)
    return result


def _bench_bundle(bundle: Bundle, packed, ref_features: np.ndarray, ref_tokens: np.ndarray, repeats: int,
                  batch: int, torch_ms: float) -> Dict[str, Any]:
    import onnxruntime as ort

    figures: Dict[str, Any] = {"onnxruntime_version": ort.__version__, "provider": "CPUExecutionProvider"}
    for precision in bundle.precisions("vpm"):
        vpm, resampler = (open_session(bundle.graph_path(m, precision)) for m in ("vpm", "resampler"))
        dtype = np.float16 if precision == "fp16" else np.float32
        vpm_feeds = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in packed.vpm.items()}
        features = vpm.run(None, vpm_feeds)[0]
        res_feeds = {"vision_embeds": features, **packed.resampler}
        tokens = resampler.run(None, res_feeds)[0]
        vpm_ms = _median_ms(partial(vpm.run, None, vpm_feeds), repeats, lambda: None)
        res_ms = _median_ms(partial(resampler.run, None, res_feeds), repeats, lambda: None)
        figures[precision] = {
            "vpm_ms_per_slice": vpm_ms / batch, "resampler_ms_per_slice": res_ms / batch,
            "vpm_max_abs_error": float(np.abs(features.astype(np.float32) - ref_features).max()),
            "vpm_output_max_abs": float(np.abs(ref_features).max()),
            "tokens_max_abs_error": float(np.abs(tokens.astype(np.float32) - ref_tokens).max()),
            "tokens_max_abs": float(np.abs(ref_tokens).max()),
            "time_ratio_vs_torch_reference": (vpm_ms + res_ms) / torch_ms,
        }
    return figures
