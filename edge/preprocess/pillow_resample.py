"""Pillow's 8-bit BICUBIC resize as data: per-axis fixed-point coefficients, the pass order, and a numpy reference.

Pillow resizes an RGB uint8 image in up to two separable passes. For each axis and each output pixel it computes,
in double precision, the input span the filter covers (the support, 2 for bicubic, widened by the scale when the
axis shrinks), the a = -0.5 cubic weights over that span, divided by their sum, and then rounds each weight to a
signed fixed-point integer with 22 fractional bits (half away from zero). A pass adds ``2**21`` to the sum of
``pixel * weight`` in integers, shifts right by 22 and clips to 0..255, so the output of each pass is uint8
again. Which passes run and in which order depends only on the sizes (``resample_passes``). Everything here is
integer or IEEE double arithmetic in the order Pillow performs it, so ``resize_reference`` equals
``PIL.Image.resize(size, BICUBIC)`` bit for bit (the tests check this against PIL); the device kernels in
``edge.preprocess.device`` consume the same tables. docs/preprocessing.md describes the algorithm.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

PRECISION_BITS = 22  # 32-bit accumulator: 8 bits of pixel, 2 bits of headroom for negative lobes and overshoot
BICUBIC_SUPPORT = 2.0
TALL_RATIO = 100  # Pillow 12.2-12.3 resize images over 100x taller than wide vertically first
HORIZONTAL, VERTICAL = "horizontal", "vertical"
RULE_SHRINK_HEIGHT, RULE_TALL, RULE_HORIZONTAL = "shrink-height", "tall", "horizontal"
RULES = (RULE_SHRINK_HEIGHT, RULE_TALL, RULE_HORIZONTAL)
Size = Tuple[int, int]


class AxisCoefficients(NamedTuple):
    """One axis of a resize: for output pixel i, ``count[i]`` taps from input pixel ``first[i]`` with the int32
    weights ``weights[i, :count[i]]`` (zero beyond), each in units of 2**-22."""

    in_size: int
    out_size: int
    first: np.ndarray  # int32 [out_size]
    count: np.ndarray  # int32 [out_size]
    weights: np.ndarray  # int32 [out_size, taps]

    @property
    def taps(self) -> int:
        return int(self.weights.shape[1])


def _bicubic(x: np.ndarray) -> np.ndarray:
    """The a = -0.5 cubic convolution kernel, each branch evaluated in Pillow's operation order."""
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((((x - 5.0) * x + 8.0) * x) - 4.0) * -0.5
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=256)
def axis_coefficients(in_size: int, out_size: int) -> AxisCoefficients:
    """Pillow's bounds and fixed-point BICUBIC weights for resizing one axis from `in_size` to `out_size` pixels."""
    if in_size < 1 or out_size < 1:
        raise ValueError("both sizes of an axis must be at least 1, got %d -> %d" % (in_size, out_size))
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filter_scale
    taps = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    last = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64)
    count = last - first
    offsets = np.arange(taps, dtype=np.int64)
    valid = offsets[None, :] < count[:, None]
    position = (first[:, None] + offsets[None, :]).astype(np.float64)
    weights = np.where(valid, _bicubic((position - center[:, None] + 0.5) * (1.0 / filter_scale)), 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for tap in range(taps):  # left to right, as Pillow sums (numpy's own sum pairs terms differently)
        total = total + weights[:, tap]
    weights = np.where(valid & (total != 0.0)[:, None], weights / np.where(total != 0.0, total, 1.0)[:, None],
                       weights)
    scaled = weights * float(1 << PRECISION_BITS)
    fixed = np.trunc(np.where(weights < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)
    tables = AxisCoefficients(in_size, out_size, first.astype(np.int32), count.astype(np.int32), fixed)
    for array in tables[2:]:
        array.setflags(write=False)  # shared through the cache
    return tables


def pillow_pass_rule(version: Optional[str] = None) -> str:
    """Which pass-order rule the installed Pillow (or `version`) follows; without Pillow, the current one."""
    if version is None:
        try:
            import PIL
        except ImportError:
            return RULE_SHRINK_HEIGHT
        version = PIL.__version__
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    if major >= 13:
        return RULE_SHRINK_HEIGHT
    return RULE_TALL if (major, minor) >= (12, 2) else RULE_HORIZONTAL


def resample_passes(in_size: Size, out_size: Size, rule: str = RULE_SHRINK_HEIGHT) -> List[str]:
    """The passes Pillow runs for (width, height) `in_size` -> `out_size`, in order. An axis whose size is
    unchanged is not resampled. Horizontal runs first, except:

    - ``shrink-height`` (Pillow 13): when the height loses more than twice as many pixels as the width
      (``in_h - out_h > 2 * (in_w - out_w)`` and the height shrinks), vertical first;
    - ``tall`` (Pillow 12.2 and 12.3): an image over 100x taller than wide whose height shrinks is resized by
      two calls, vertical only and then horizontal only;
    - ``horizontal`` (older Pillow): always horizontal first.
    """
    if rule not in RULES:
        raise ValueError("unknown pass-order rule %r (expected one of %s)" % (rule, ", ".join(RULES)))
    (in_w, in_h), (out_w, out_h) = in_size, out_size
    passes = [name for name, needed in ((HORIZONTAL, out_w != in_w), (VERTICAL, out_h != in_h)) if needed]
    shrinking = out_h < in_h
    if rule == RULE_SHRINK_HEIGHT:
        vertical_first = shrinking and in_h - out_h > 2 * (in_w - out_w)
    else:
        vertical_first = rule == RULE_TALL and shrinking and in_h > in_w * TALL_RATIO
    return passes[::-1] if vertical_first else passes


class ResamplePass(NamedTuple):
    """One pass over an HxWx3 uint8 image. Horizontal: resample source rows [row_start, row_start + rows) along
    x. Vertical: output row i reads ``coefficients.count[i]`` source rows from ``coefficients.first[i] -
    row_start`` (the source holds input rows from row_start on); `rows` is the output height."""

    axis: str
    coefficients: AxisCoefficients
    row_start: int
    rows: int


def resize_plan(in_size: Size, out_size: Size, rule: str = RULE_SHRINK_HEIGHT) -> List[ResamplePass]:
    """The passes of a (width, height) resize with their coefficients, in Pillow's order. When the horizontal
    pass runs first, Pillow resamples only the rows the vertical pass will read."""
    (in_w, in_h), (out_w, out_h) = in_size, out_size
    columns, rows = axis_coefficients(in_w, out_w), axis_coefficients(in_h, out_h)
    passes = resample_passes(in_size, out_size, rule)
    if passes == [HORIZONTAL, VERTICAL]:
        start, stop = int(rows.first[0]), int(rows.first[-1] + rows.count[-1])
        return [ResamplePass(HORIZONTAL, columns, start, stop - start), ResamplePass(VERTICAL, rows, start, out_h)]
    plan: List[ResamplePass] = []
    for axis in passes:  # one pass, or vertical then horizontal over the whole image
        if axis == VERTICAL:
            plan.append(ResamplePass(VERTICAL, rows, 0, out_h))
        else:
            plan.append(ResamplePass(HORIZONTAL, columns, 0, out_h if plan else in_h))
    return plan


def _accumulate(gather, coefficients: AxisCoefficients, shape: Tuple[int, ...]) -> np.ndarray:
    """sum over taps of gather(input indices of tap t) * weight of tap t, then Pillow's rounding and clip."""
    total = np.full(shape, 1 << (PRECISION_BITS - 1), dtype=np.int32)  # Pillow's accumulator is 32-bit too
    limit = coefficients.in_size - 1
    for tap in range(coefficients.taps):
        weight = coefficients.weights[:, tap]
        if not weight.any():
            continue
        total += gather(np.minimum(coefficients.first + tap, limit), weight)
    return np.clip(total >> PRECISION_BITS, 0, 255).astype(np.uint8)


def resample_horizontal(rgb: np.ndarray, coefficients: AxisCoefficients) -> np.ndarray:
    """One horizontal pass over HxWx3 uint8 rows."""
    shape = (rgb.shape[0], coefficients.out_size, rgb.shape[2])
    return _accumulate(lambda index, weight: rgb[:, index, :].astype(np.int32) * weight[None, :, None],
                       coefficients, shape)


def resample_vertical(rgb: np.ndarray, coefficients: AxisCoefficients, row_offset: int = 0) -> np.ndarray:
    """One vertical pass; `row_offset` is the input row that `rgb`'s first row holds."""
    shape = (coefficients.out_size, rgb.shape[1], rgb.shape[2])
    return _accumulate(lambda index, weight: rgb[index - row_offset].astype(np.int32) * weight[:, None, None],
                       coefficients, shape)


def apply_plan(rgb: np.ndarray, plan: List[ResamplePass]) -> np.ndarray:
    """Run `plan` over an HxWx3 uint8 image in numpy (a new array, also when the plan is empty)."""
    out = rgb
    for step in plan:
        if step.axis == HORIZONTAL:
            out = resample_horizontal(out[step.row_start:step.row_start + step.rows], step.coefficients)
        else:
            out = resample_vertical(out, step.coefficients, step.row_start)
    return np.array(out, copy=True) if out is rgb else out


def resize_reference(rgb: np.ndarray, size: Size, rule: Optional[str] = None) -> np.ndarray:
    """``PIL.Image.fromarray(rgb).resize(size, BICUBIC)`` in numpy: an HxWx3 uint8 array resized to (width,
    height), equal to Pillow's bit for bit; `rule`: the pass order (default: the installed Pillow's)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError("expected an HxWxC uint8 image, got %s %s" % (rgb.dtype, rgb.shape))
    return apply_plan(rgb, resize_plan((rgb.shape[1], rgb.shape[0]), size, rule or pillow_pass_rule()))
