"""``minicpmv-edge bench preprocess``: the two resize modes against the official PIL pipeline, in one run.

The baseline is the official processor's own steps (PIL resizes and crops, per-slice float conversion and
normalisation, the patch-strip layout) at the same slice plan; ``exact`` and ``fast`` are this project's
preprocessing up to the VPM's strips. The three take turns within every repeat (baseline, exact, fast, then
again), so that load from other work on the machine falls on all three alike. Reported per input size: times
(min and median of the repeats, and the least CPU time of the process's threads: the work done, which load from
elsewhere changes less than wall time), speed-up ratios over the baseline, pixel distance from the baseline in
0..255 levels, and, given a bundle, the cosine of ``fast`` tokens against ``exact`` ones, next to the cosine
between two different scenes' tokens (the scale that says how much a given cosine means for that model).
Geometry is checked against the worked examples in docs/minicpmv.md.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..cosine import token_cosines
from ..preprocess.graph_inputs import pack_slices
from ..preprocess.preprocessor import Preprocessor
from ..preprocess.scenes import synthetic_scene
from ..preprocess.slicing import DEFAULT, SliceConfig, SlicePlan, plan_slices
from ..preprocess.strips import to_strip

DEFAULT_SIZES = ((640, 480), (1280, 720), (1920, 1080), (4032, 3024))
LEVELS = 127.5  # one 0..255 level in normalised units is 1 / 127.5
# docs/minicpmv.md worked examples: image size -> (grid (cols, rows) or None, overview size, slice size).
SPEC_EXAMPLES = {
    (1344, 1344): ((3, 3), (448, 448), (448, 448)), (1920, 1080): ((4, 2), (602, 336), (420, 476)),
    (800, 600): ((2, 2), (518, 392), (518, 392)), (640, 480): ((2, 1), (518, 392), (364, 546)),
    (448, 448): (None, (448, 448), (448, 448)), (500, 300): (None, (574, 350), (574, 350)),
    (3000, 500): ((7, 1), (1092, 182), (420, 476)),
}


def official_pipeline(rgb: np.ndarray, plan: SlicePlan) -> List[np.ndarray]:
    """The official processor's steps for one image: the strips [3, 14, 14L] of every slice, in model order."""
    from PIL import Image

    image = Image.fromarray(rgb).convert("RGB")
    slices = [image.copy().resize(plan.source_size, Image.BICUBIC)]
    if plan.grid is not None and plan.refine_size is not None and plan.tile_size is not None:
        refined = image.resize(plan.refine_size, Image.BICUBIC)
        width, height = plan.tile_size
        slices += [refined.crop((x, y, x + width, y + height))
                   for y in range(0, plan.refine_size[1], height) for x in range(0, plan.refine_size[0], width)]
    mean = std = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    strips = []
    for piece in slices:
        values = (np.asarray(piece).astype(np.float32) / 255 - mean) / std
        strips.append(to_strip(np.ascontiguousarray(values.transpose(2, 0, 1))))
    return strips


def check_spec_examples(config: SliceConfig = DEFAULT) -> Dict[str, Any]:
    """The slice plan of every worked example in docs/minicpmv.md against the figures given there."""
    wrong = []
    for size, (grid, source, tile) in SPEC_EXAMPLES.items():
        plan = plan_slices(size, config)
        if (plan.grid, plan.source_size, plan.tile_size or plan.source_size) != (grid, source, tile):
            wrong.append("%dx%d" % size)
    return {"checked": len(SPEC_EXAMPLES), "matching": len(SPEC_EXAMPLES) - len(wrong), "wrong": wrong}


def _timed(functions: Dict[str, Callable[[], Any]], repeats: int) -> Dict[str, Tuple[Any, Dict[str, float]]]:
    """Each function's last result, its wall times (min, median) and the least CPU time the process spent on it (all
    its threads), the functions taking turns in every repeat: on a shared machine every one of them then meets the
    same spells of load, and their minimums compare like with like."""
    times: Dict[str, List[float]] = {name: [] for name in functions}
    cpu: Dict[str, List[float]] = {name: [] for name in functions}
    results: Dict[str, Any] = {}
    for _ in range(repeats):
        for name, function in functions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = function()
            times[name].append((time.perf_counter() - start) * 1e3)
            cpu[name].append((time.process_time() - start_cpu) * 1e3)
    return {name: (results[name], {"min_ms": round(min(values), 3), "median_ms": round(float(np.median(values)), 3),
                                   "cpu_min_ms": round(min(cpu[name]), 3)})
            for name, values in times.items()}


def _strips(pixels: np.ndarray, reference: Sequence[np.ndarray]) -> List[np.ndarray]:
    return [pixels[index, :, :, : strip.shape[2]] for index, strip in enumerate(reference)]


def _distance(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> Dict[str, float]:
    """Pixel distance in 0..255 levels over every slice."""
    diff = np.concatenate([np.abs(g - w).ravel() for g, w in zip(got, want)]) * LEVELS
    return {"mean_levels": round(float(diff.mean()), 4), "p99_levels": round(float(np.percentile(diff, 99)), 3),
            "max_levels": round(float(diff.max()), 3), "identical": bool(diff.max() < 0.5)}


def _cosines(got: np.ndarray, want: np.ndarray) -> Dict[str, float]:
    """Cosine per token vector (min, mean) and of the whole token tensor."""
    rows = token_cosines(got, want)
    whole = float(token_cosines(got.ravel(), want.ravel())[0])
    return {"min": round(float(rows.min()), 6), "mean": round(float(rows.mean()), 6), "all": round(whole, 6)}


def bench_size(size: Tuple[int, int], config: SliceConfig, layout: str, repeats: int, seed: int,
               encoders: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Every figure of one input size."""
    rgb = synthetic_scene(size[0], size[1], seed)
    plan = plan_slices(size, config)
    modes = {mode: Preprocessor(config, mode) for mode in ("exact", "fast")}
    functions: Dict[str, Callable[[], Any]] = {"reference": lambda: official_pipeline(rgb, plan)}
    functions.update({mode: (lambda p=p: pack_slices(p(rgb).slices, layout)) for mode, p in modes.items()})
    timed = _timed(functions, repeats)
    reference, reference_time = timed["reference"]
    row: Dict[str, Any] = {
        "size": "%dx%d" % size, "grid": plan.grid, "slices": len(plan.slice_sizes),
        "overview": "%dx%d" % plan.source_size, "tile": "%dx%d" % plan.tile_size if plan.tile_size else None,
        "reference_pil": reference_time}
    for mode in modes:
        packed, timing = timed[mode]
        timing["speedup_vs_reference"] = round(reference_time["min_ms"] / timing["min_ms"], 2)
        timing["cpu_ratio_vs_reference"] = round(reference_time["cpu_min_ms"] / max(timing["cpu_min_ms"], 1e-3), 2)
        row[mode] = dict(timing, pixels_vs_reference=_distance(_strips(packed.vpm["pixel_values"], reference),
                                                               reference))
    if encoders:
        exact, fast = encoders["exact"].encode(rgb), encoders["fast"].encode(rgb)
        row["token_cosine_fast_vs_exact"] = _cosines(fast.tokens, exact.tokens)
        other = encoders["exact"].encode(synthetic_scene(size[0], size[1], seed + 1))
        row["token_cosine_between_scenes"] = _cosines(other.tokens, exact.tokens)  # the scale: another image
        row["encode_ms"] = {"exact": {k: round(v, 2) for k, v in exact.timings.items()},
                            "fast": {k: round(v, 2) for k, v in fast.timings.items()}}
    return row


def run_bench(sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES, repeats: int = 5, seed: int = 0,
              bundle: Optional[Path] = None, max_slice_nums: Optional[int] = None) -> Dict[str, Any]:
    """The whole report (JSON-ready)."""
    import cv2
    import PIL

    config, layout, encoders, model, engines = DEFAULT, "masked-2d", None, None, None
    if bundle is not None:
        from ..bundle.manifest import Bundle
        from ..encoder.vision_encoder import VisionEncoder
        from ..engines.factory import open_engines

        loaded = Bundle.load(bundle)
        engines = open_engines(loaded)  # one set of engines behind both resize modes
        encoders = {mode: VisionEncoder(loaded, engines, resize=mode) for mode in ("exact", "fast")}
        config, layout, model = encoders["exact"].preprocessor.config, encoders["exact"].layout, loaded.model.version
    if max_slice_nums is not None:
        config = config._replace(max_slice_nums=max_slice_nums)
        for encoder in (encoders or {}).values():
            encoder.max_slice_nums = max_slice_nums
    try:
        rows = [bench_size(size, config, layout, repeats, seed, encoders) for size in sizes]
    finally:
        if engines is not None:
            engines.close()
    return {
        "benchmark": "preprocess", "repeats": repeats, "seed": seed, "max_slice_nums": config.max_slice_nums,
        "bundle": str(bundle) if bundle else None, "model_version": model, "layout": layout,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__,
                    "opencv": cv2.__version__},
        "spec_examples": check_spec_examples(config._replace(max_slice_nums=9)),
        "sizes": rows,
    }


def format_report(report: Dict[str, Any]) -> str:
    """A table for people."""
    lines = ["preprocess benchmark (%d repeats, max_slice_nums %d); docs/minicpmv.md worked examples %d/%d"
             % (report["repeats"], report["max_slice_nums"], report["spec_examples"]["matching"],
                report["spec_examples"]["checked"]),
             "%-10s %-7s %10s %10s %8s %10s %8s %8s %10s %s" % (
                 "size", "slices", "PIL ms", "exact ms", "x", "fast ms", "x", "cpu x", "fast lvl",
                 "token cosine fast/exact (another scene)")]
    for row in report["sizes"]:
        cos, other = row.get("token_cosine_fast_vs_exact"), row.get("token_cosine_between_scenes")
        lines.append("%-10s %-7d %10.1f %10.1f %8.2f %10.1f %8.2f %8.2f %10.2f %s" % (
            row["size"], row["slices"], row["reference_pil"]["min_ms"], row["exact"]["min_ms"],
            row["exact"]["speedup_vs_reference"], row["fast"]["min_ms"], row["fast"]["speedup_vs_reference"],
            row["fast"]["cpu_ratio_vs_reference"], row["fast"]["pixels_vs_reference"]["mean_levels"],
            "min %.5f mean %.5f (mean %.3f)" % (cos["min"], cos["mean"], other["mean"]) if cos else "-"))
    return "\n".join(lines)
