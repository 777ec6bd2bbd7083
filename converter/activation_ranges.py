"""Activation ranges for INT8: one pass over calibration feeds, then minmax, percentile or entropy thresholds.

Each watched tensor keeps its max |x| and a histogram of |x| whose range doubles (merging bin pairs) whenever a
batch exceeds it, so one pass suffices and batches may differ in shape (slices differ in patch count).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Sequence

import numpy as np
import onnx

from edge.engines.factory import open_onnx

BINS = 2048
QUANT_LEVELS = 128  # |x| maps onto 0..127 in symmetric int8
METHODS = ("entropy", "percentile", "minmax")


class Histogram:
    """|x| histogram over [0, edge) with BINS bins; the edge doubles as needed."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.edge = 0.0
        self.absmax = 0.0

    def add(self, values: np.ndarray) -> None:
        magnitudes = np.abs(values.astype(np.float32, copy=False)).ravel()
        top = float(magnitudes.max()) if magnitudes.size else 0.0
        self.absmax = max(self.absmax, top)
        if self.edge == 0.0:
            self.edge = top * 1.0001 if top > 0 else 1e-8
        while top >= self.edge:
            self.counts = self.counts.reshape(BINS // 2, 2).sum(axis=1)
            self.counts = np.concatenate([self.counts, np.zeros(BINS // 2, dtype=np.int64)])
            self.edge *= 2
        self.counts += np.histogram(magnitudes, bins=BINS, range=(0.0, self.edge))[0]

    @property
    def bin_width(self) -> float:
        return self.edge / BINS


def amax_minmax(hist: Histogram) -> float:
    return hist.absmax


def amax_percentile(hist: Histogram, percentile: float = 99.99) -> float:
    """The |x| below which `percentile` % of the values lie."""
    cumulative = np.cumsum(hist.counts)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return min((index + 1) * hist.bin_width, hist.absmax)


def _groups(end: int) -> np.ndarray:
    """The quantization level (0..127) of each of the first `end` bins: 128 runs as even as np.array_split makes
    them (the first end % 128 one bin longer)."""
    size, longer = divmod(end, QUANT_LEVELS)
    bins = np.arange(end)
    split = longer * (size + 1)
    return np.where(bins < split, bins // (size + 1), longer + (bins - split) // max(size, 1))


def amax_entropy(hist: Histogram, stride: int = 8) -> float:
    """The clipping threshold whose 128-level quantization keeps the |x| distribution closest in KL divergence
    (TensorRT's entropy calibration): candidates every `stride` bins from 128 bins to the last used one. Each
    level spreads its count evenly over its bins that hold values; values above the threshold clip into the last
    bin."""
    counts = hist.counts.astype(np.float64)
    last = int(np.nonzero(counts)[0][-1]) + 1 if counts.any() else QUANT_LEVELS
    best, best_kl = last, np.inf
    for end in range(QUANT_LEVELS, max(last, QUANT_LEVELS) + 1, stride):
        reference = counts[:end].copy()
        reference[-1] += counts[end:].sum()  # clipped values land in the last bin
        groups, used = _groups(end), counts[:end] > 0
        level_sums = np.bincount(groups, weights=counts[:end], minlength=QUANT_LEVELS)
        level_used = np.bincount(groups, weights=used, minlength=QUANT_LEVELS)
        expanded = np.where(used, level_sums[groups] / np.maximum(level_used[groups], 1), 0.0)
        kl = _kl(reference, expanded)
        if kl < best_kl:
            best, best_kl = end, kl
    return min(best * hist.bin_width, hist.absmax)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / max(q.sum(), 1e-30)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


AMAX: Dict[str, Callable[..., float]] = {"entropy": amax_entropy, "percentile": amax_percentile,
                                         "minmax": amax_minmax}


def collect(model: onnx.ModelProto, tensors: Sequence[str], feeds: Iterable[Dict[str, np.ndarray]],
            progress: Callable[[Iterable], Iterable] = lambda it: it) -> Dict[str, Histogram]:
    """Histograms of `tensors` over every feed (the model is run with them made graph outputs)."""
    watched = onnx.ModelProto()
    watched.CopyFrom(model)
    existing = {o.name for o in watched.graph.output}
    watched.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in existing)
    engine = open_onnx(watched.SerializeToString())
    histograms = {t: Histogram() for t in tensors}
    for feed in progress(feeds):
        outputs = engine.infer(feed)
        for name in tensors:
            histograms[name].add(outputs[name])
    return histograms


def thresholds(histograms: Dict[str, Histogram], method: str, percentile: float = 99.99) -> Dict[str, float]:
    """amax per tensor for `method`."""
    if method not in METHODS:
        raise ValueError("method must be one of %s" % ", ".join(METHODS))
    if method == "percentile":
        return {name: amax_percentile(h, percentile) for name, h in histograms.items()}
    return {name: AMAX[method](h) for name, h in histograms.items()}


def watched_inputs(model: onnx.ModelProto, nodes: List[onnx.NodeProto]) -> List[str]:
    """The activation (non-constant) inputs of `nodes`, each once."""
    constants = {t.name for t in model.graph.initializer}
    names: List[str] = []
    for node in nodes:
        for name in node.input[:2]:
            if name and name not in constants and name not in names:
                names.append(name)
    return names
