"""Every precision of a bundle (fp32, fp16, int8) against the project's torch float32 modules on held-out images.

Held-out images (synthetic scenes with a seed calibration never uses, or a folder / video) go through the project's
preprocessing exactly as ``converter.calibrate`` does; the torch reference (``converter.export.build_modules``, equal
to transformers' Idefics2 and a MultiheadAttention Resampler, see tests/converter/test_parity.py) runs on the same
packed feeds. Per precision:

- vpm: ONNX VPM vs torch VPM, cosine per patch vector over each slice's valid patches;
- resampler: ONNX Resampler fed the *torch* VPM output vs the torch Resampler, cosine per token;
- chain: ONNX VPM -> ONNX Resampler vs the torch chain, cosine per token;

each as mean, min, p1 and relative error (max abs error / max abs reference), overall and per slice. For the chain's
worst slice, the residual stream after every VPM encoder layer (the output of the block's second residual Add) is
exposed as a graph output and compared with the same tensor of the fp32 ONNX graph: fp32 ONNX equals torch within
~1e-6 relative (the fp32 vpm row measures it), so it stands in as the per-layer reference. ONNX Runtime CPU time
per batch is measured on the same feeds after one warm-up run.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.bundle.manifest import Bundle, write_manifest
from edge.cosine import token_cosines
from edge.engines.factory import open_onnx
from edge.engines.onnxrt import OnnxRuntimeEngine
from edge.errors import InputError
from edge.fsutil import atomic_write_text
from edge.preprocess.preprocessor import Preprocessor, slice_config

from .calibrate import summary
from .calibration_data import images_sha256, load_images, vpm_batches
from .checkpoint_layout import read_layout

if TYPE_CHECKING:
    from .checkpoint import VisionCheckpoint

HELD_OUT_SEED = 2  # calibration draws its images with seed 0 and its search's held-out scenes with seed 1
PRECISION_ORDER = ("fp32", "fp16", "int8")
HISTOGRAM_BINS = 40
_RESIDUAL_ADD = re.compile(r"(?:^|/)layers\.(\d+)/Add(?:_\d+)?$")  # a residual Add directly in an encoder block
NOTES = {  # precision the note is about -> note
    "int8": "The int8 graph is TensorRT-style Q/DQ: on ONNX Runtime's CPU provider its DequantizeLinear nodes feed "
            "float MatMuls, so it is not expected to be faster than fp32 there; it is there to measure accuracy "
            "(TensorRT fuses the Q/DQ pairs into int8 kernels on the device). Layers the int8 search kept float run "
            "in float32 here, so the int8 figures do not include fp16 rounding of those layers (TensorRT runs them "
            "in fp16).",
    "fp16": "fp16 graphs are not fast on ONNX Runtime's CPU provider either (no native fp16 kernels on most CPUs); "
            "the CPU times show cost on this host, not on the device.",
}
_NOT_THE_SOURCE = "pass --checkpoint with the checkpoint bundle %s was exported from"
Batches = List[Dict[str, Dict[str, np.ndarray]]]


@dataclass(frozen=True)
class SliceRef:
    """Where a slice sits: its index over all slices, its image, its batch and row in the batch, its patch grid."""

    index: int
    image: int
    batch: int
    row: int
    rows: int
    cols: int
    features: int  # valid rows of its vpm output (a quarter of the patches after a "16x" window merger)
    tokens: int  # valid rows of its tokens (Q, or a merger version's patches / 4^levels)

    @property
    def patches(self) -> int:
        return self.rows * self.cols


@dataclass
class Verification:
    """What verify measured: the summary written to the manifest and the chain cosines per precision (histograms)."""

    summary: Dict[str, Any]
    chain_cosines: Dict[str, np.ndarray]


def _float_outputs(engine: OnnxRuntimeEngine, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Every output of a graph, in its output order, as float32."""
    outputs = engine.infer(feeds)
    return [np.asarray(outputs[name], dtype=np.float32) for name in engine.output_names]


@dataclass
class Exposed:
    """A graph opened with some inner tensors made outputs, the names it lacks, and the temporary directory that
    holds it when it was too large for one protobuf (kept as long as the engine)."""

    engine: OnnxRuntimeEngine
    missing: List[str]
    scratch: Optional[tempfile.TemporaryDirectory] = None


def residual_outputs(model: Any) -> Dict[int, str]:
    """Encoder layer -> the tensor its block ends with (output of the block's second residual Add), found by node
    names in the exported graph (``/layers.N/Add`` then ``/layers.N/Add_1``)."""
    adds: Dict[int, List[str]] = {}
    for node in model.graph.node:
        match = _RESIDUAL_ADD.search(node.name) if node.op_type == "Add" else None
        if match:
            adds.setdefault(int(match.group(1)), []).append(node.output[0])
    return {layer: outputs[1] for layer, outputs in sorted(adds.items()) if len(outputs) >= 2}


def _exposing(path: Path, names: Sequence[str]) -> Exposed:
    """The graph at `path` opened so that it also outputs those of `names` it holds."""
    import onnx

    from .export import PROTOBUF_LIMIT_BYTES

    model = onnx.load(str(path))
    produced = {o for node in model.graph.node for o in node.output}
    present = [n for n in names if n in produced]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in present)
    missing = [n for n in names if n not in produced]
    if model.ByteSize() < PROTOBUF_LIMIT_BYTES - (1 << 20):
        return Exposed(open_onnx(model.SerializeToString()), missing)
    scratch = tempfile.TemporaryDirectory(prefix="verify-")  # too large for one protobuf: external data
    target = Path(scratch.name) / "graph.onnx"
    onnx.save_model(model, str(target), save_as_external_data=True, location="graph.onnx.data")
    return Exposed(open_onnx(target), missing, scratch)


def _num(value: float) -> float:
    return float("%.9g" % value)


def _compare(got: List[np.ndarray], want: List[np.ndarray], slices: Sequence[SliceRef],
             patch_rows: bool) -> Tuple[Dict[str, Any], np.ndarray]:
    """Cosine per vector and relative error, per slice and overall; `patch_rows`: compare the slice's valid patch
    rows only (VPM outputs), else every row (tokens)."""
    entries, cosines, error, scale = [], [], 0.0, 0.0
    for s in slices:
        g, w = got[s.batch][s.row], want[s.batch][s.row]
        if patch_rows:
            g, w = g[:s.features], w[:s.features]
        else:
            g, w = g[:s.tokens], w[:s.tokens]
        cos = token_cosines(g, w)
        slice_error, slice_scale = float(np.abs(g - w).max()), float(np.abs(w).max())
        entries.append({"slice": s.index, "image": s.image, "rows": s.rows, "cols": s.cols,
                        "mean": _num(cos.mean()), "min": _num(cos.min()),
                        "relative_error": _num(slice_error / max(slice_scale, 1e-30))})
        cosines.append(cos)
        error, scale = max(error, slice_error), max(scale, slice_scale)
    cosines_all = np.concatenate(cosines)
    figures = {k: _num(v) for k, v in summary(cosines_all).items()}
    figures.update(vectors=int(cosines_all.size), relative_error=_num(error / max(scale, 1e-30)), slices=entries)
    return figures, cosines_all


class Verifier:
    """The held-out feeds, the torch reference on them, and the measurement of each precision."""

    def __init__(self, bundle: Bundle, modules: Dict[str, Any], images: Sequence[np.ndarray],
                 log: Callable[[str], None]) -> None:
        import torch

        self.bundle, self.log = bundle, log
        preprocessor, layout = Preprocessor(slice_config(bundle), "exact"), bundle.model.slice.layout
        max_batch = bundle.shapes("vpm").batch.max
        self.batches: Batches = []
        self.slices: List[SliceRef] = []
        for image_index, image in enumerate(images):  # per image, so each slice knows its image
            for batch in vpm_batches([image], preprocessor, layout, max_batch, bundle.model.query_num):
                for row, ((rows, cols), tokens) in enumerate(zip(batch["sizes"], batch["tokens"])):
                    features = rows * cols // (4 if layout == "merger-16x" else 1)
                    self.slices.append(SliceRef(len(self.slices), image_index, len(self.batches), row, rows, cols,
                                                features, tokens))
                self.batches.append(batch)
        log("torch float32 reference on %d slices (%d batches) ..." % (len(self.slices), len(self.batches)))
        self.features, self.tokens = [], []
        with torch.no_grad():
            for batch in self.batches:
                vpm = {k: torch.from_numpy(v) for k, v in batch["vpm"].items()}
                features = modules["vpm"](vpm["pixel_values"], vpm["position_ids"], vpm["patch_counts"])
                tokens = modules["resampler"](features, *(torch.from_numpy(v) for v in batch["resampler"].values()))
                self.features.append(features.float().numpy())
                self.tokens.append(tokens.float().numpy())
        import onnx

        fp32_vpm = onnx.load(str(bundle.graph_path("vpm", "fp32")), load_external_data=False)
        self.layer_names = residual_outputs(fp32_vpm)
        self._fp32_layers: Dict[int, Dict[str, np.ndarray]] = {}  # batch -> tensor name -> fp32 ONNX value
        self._fp32_exposed: Optional[Exposed] = None

    def measure(self, precision: str) -> Tuple[Dict[str, Any], np.ndarray]:
        """The figures of one precision (vpm, resampler, chain, worst slice per layer, timing)."""
        log = self.log
        with open_onnx(self.bundle.graph_path("vpm", precision)) as vpm, \
                open_onnx(self.bundle.graph_path("resampler", precision)) as resampler:
            first = self.batches[0]
            warm_up = _float_outputs(vpm, first["vpm"])[0]
            _float_outputs(resampler, dict(first["resampler"], vision_embeds=warm_up))
            log("%s: chain (ONNX VPM -> ONNX Resampler), timed ..." % precision)
            features, tokens, vpm_ms, resampler_ms = [], [], [], []
            for batch in self.batches:
                features.append(_float_outputs(vpm, batch["vpm"])[0])
                vpm_ms.append(vpm.last_infer_ms)
                tokens.append(_float_outputs(resampler, dict(batch["resampler"], vision_embeds=features[-1]))[0])
                resampler_ms.append(resampler.last_infer_ms)
            log("%s: resampler alone on the torch VPM output ..." % precision)
            alone = [_float_outputs(resampler, dict(b["resampler"], vision_embeds=f))[0]
                     for b, f in zip(self.batches, self.features)]
        entry: Dict[str, Any] = {}
        entry["vpm"], _ = _compare(features, self.features, self.slices, patch_rows=True)
        entry["resampler"], _ = _compare(alone, self.tokens, self.slices, patch_rows=False)
        entry["chain"], chain_cosines = _compare(tokens, self.tokens, self.slices, patch_rows=False)
        worst = min(entry["chain"]["slices"], key=lambda s: (s["min"], s["mean"]))
        log("%s: per-layer errors on the worst slice %d ..." % (precision, worst["slice"]))
        entry["worst_slice"] = dict(worst, **self._layers(precision, self.slices[worst["slice"]]))
        vpm_mean, resampler_mean = float(np.mean(vpm_ms)), float(np.mean(resampler_ms))
        entry["timing"] = {"vpm_ms_per_batch": _num(vpm_mean), "resampler_ms_per_batch": _num(resampler_mean),
                           "chain_ms_per_batch": _num(vpm_mean + resampler_mean), "batches": len(self.batches),
                           "provider": "CPUExecutionProvider", "host_cpus": os.cpu_count()}
        chain = entry["chain"]
        log("%s: chain token cosine mean %.6f min %.6f, relative error %.3g; %.1f ms per batch"
            % (precision, chain["mean"], chain["min"], chain["relative_error"], entry["timing"]["chain_ms_per_batch"]))
        return entry, chain_cosines

    def _fp32_values(self, batch: int) -> Dict[str, np.ndarray]:
        if batch not in self._fp32_layers:
            if self._fp32_exposed is None:
                self._fp32_exposed = _exposing(self.bundle.graph_path("vpm", "fp32"), list(self.layer_names.values()))
            engine = self._fp32_exposed.engine
            self._fp32_layers[batch] = dict(zip(engine.output_names,
                                                _float_outputs(engine, self.batches[batch]["vpm"])))
        return self._fp32_layers[batch]

    def _layers(self, precision: str, where: SliceRef) -> Dict[str, Any]:
        """Relative error (and mean cosine) of each encoder layer's output on one slice vs the fp32 ONNX graph."""
        notes: List[str] = []
        if not self.layer_names:
            return {"layers": [], "notes": ["no /layers.N/Add_1 tensors found in the fp32 VPM graph"]}
        reference = self._fp32_values(where.batch)
        exposed = _exposing(self.bundle.graph_path("vpm", precision), list(self.layer_names.values()))
        with exposed.engine as engine:
            values = dict(zip(engine.output_names, _float_outputs(engine, self.batches[where.batch]["vpm"])))
        layers = []
        for layer, name in self.layer_names.items():
            if name in exposed.missing:
                notes.append("layer %d skipped: tensor %s is not in the %s VPM graph" % (layer, name, precision))
                layers.append({"layer": layer, "tensor": name, "relative_error": None, "cosine_mean": None})
                continue
            got, want = values[name][where.row, :where.patches], reference[name][where.row, :where.patches]
            error = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-30)
            layers.append({"layer": layer, "tensor": name, "relative_error": _num(error),
                           "cosine_mean": _num(token_cosines(got, want).mean())})
        return {"reference": "fp32 ONNX VPM graph", "layers": layers, "notes": notes}


def notes(measured: Dict[str, Dict[str, Any]]) -> List[str]:
    """What the reader needs to read the figures right: why fp32 ONNX can be the per-layer reference (with the
    figure that shows it), and how the other precisions run on this host."""
    fp32_vpm = measured["fp32"]["vpm"]
    reference = ("fp32 ONNX equals the torch float32 modules: its VPM output has a relative error of %.3g and a "
                 "cosine min of %.7f (the fp32 vpm row of the table of cosines and relative errors), so the fp32 "
                 "ONNX graph stands in as the reference of the per-layer errors, and has no per-layer chart of its "
                 "own." % (fp32_vpm["relative_error"], fp32_vpm["min"]))
    return [reference] + [note for about, note in NOTES.items() if about in measured]


def _precisions(bundle: Bundle) -> List[str]:
    both = [p for p in bundle.precisions("vpm") if p in bundle.precisions("resampler")]
    if "fp32" not in both:
        raise InputError("bundle %s has no fp32 graphs for both modules (it has vpm: %s, resampler: %s): verify "
                         "needs them; re-export it with minicpmv-convert export --precision fp32"
                         % (bundle.path, ", ".join(bundle.precisions("vpm")),
                            ", ".join(bundle.precisions("resampler"))))
    return sorted(both, key=lambda p: (PRECISION_ORDER.index(p) if p in PRECISION_ORDER else len(PRECISION_ORDER), p))


def check_source(bundle: Bundle, weights_sha256: str, checkpoint: Path) -> None:
    """The checkpoint must be the one the bundle was exported from (model.source.weights_sha256)."""
    recorded = bundle.model.weights_sha256
    if not recorded:
        raise InputError("bundle %s records no source weights sha256 (model.source.weights_sha256): re-export it "
                         "with this version of minicpmv-convert" % bundle.path)
    if recorded != weights_sha256:
        raise InputError("checkpoint %s (vision weights sha256 %s) is not the one bundle %s was exported from "
                         "(sha256 %s): pass --checkpoint with the bundle's source checkpoint"
                         % (checkpoint, weights_sha256, bundle.path, recorded))


def verify(bundle: Bundle, ck: VisionCheckpoint, modules: Dict[str, Any], count: int = 4,
           source: Optional[Path] = None, report: Optional[Path] = None,
           log: Optional[Callable[[str], None]] = None) -> Verification:
    """Measure every precision of `bundle` against `modules` (export.build_modules of `ck`, the bundle's source
    checkpoint) and write the HTML report (default <bundle>/report.html); the summary is for the manifest's
    ``verification`` (verify_bundle writes it, converter.convert at its end)."""
    from .report_html import verification_page

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    start = time.perf_counter()
    precisions = _precisions(bundle)
    check_source(bundle, ck.weights_sha256, ck.path)
    report = Path(report) if report is not None else bundle.path / "report.html"
    images = load_images(source, count, HELD_OUT_SEED)
    verifier = Verifier(bundle, modules, images, log)
    measured, cosines = {}, {}
    for precision in precisions:
        measured[precision], cosines[precision] = verifier.measure(precision)
    import onnxruntime

    inside = report.resolve().parent == bundle.path.resolve()
    result = {
        "model_version": bundle.model.version, "target": bundle.target.profile,
        "reference": "torch float32 modules (converter.export.build_modules)",
        "checkpoint": str(ck.path.resolve()), "weights_sha256": ck.weights_sha256,
        "images": {"count": len(images), "source": str(source) if source else "synthetic scenes",
                   "seed": None if source else HELD_OUT_SEED, "data_sha256": images_sha256(images),
                   "slices": len(verifier.slices), "batches": len(verifier.batches)},
        "onnxruntime": onnxruntime.__version__,
        "precisions": measured,
        "notes": notes(measured) + [note for p in precisions for note in measured[p]["worst_slice"]["notes"]],
        "report": report.name if inside else str(report.resolve()),
        "seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_text(report, verification_page(result, cosines, HISTOGRAM_BINS))
    return Verification(result, cosines)


def verify_bundle(bundle_path: Path, checkpoint: Path, count: int = 4, source: Optional[Path] = None,
                  report: Optional[Path] = None, log: Optional[Callable[[str], None]] = None) -> Verification:
    """`verify` the bundle at `bundle_path` against the checkpoint at `checkpoint` and record the summary in the
    bundle's manifest under ``verification``."""
    from .checkpoint import load_tensors
    from .export import build_modules

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    bundle = Bundle.load(bundle_path)
    _precisions(bundle)  # refused before the checkpoint is read
    layout = read_layout(Path(checkpoint), fix=_NOT_THE_SOURCE % bundle.path, fallback_version=bundle.model.version)
    ck = load_tensors(layout, fix=_NOT_THE_SOURCE % bundle.path)
    verification = verify(bundle, ck, build_modules(ck, bundle.target.max_patches), count, source, report, log)
    write_manifest(bundle.path, dict(bundle.manifest, verification=verification.summary))
    log("verified %s in %.1f s; report %s" % (bundle.path, verification.summary["seconds"],
                                               bundle.path / verification.summary["report"]))
    return verification


def format_table(result: Dict[str, Any]) -> str:
    """One screen: figures per precision and module, time per batch, worst-slice layer errors, notes."""
    images = result["images"]
    lines = ["MiniCPM-V %s bundle for %s vs %s: %d held-out images (%s), %d slices in %d batches"
             % (result["model_version"], result["target"], result["reference"], images["count"], images["source"],
                images["slices"], images["batches"]),
             "%-9s %-10s %10s %10s %10s %10s %9s" % ("precision", "module", "cos mean", "cos min", "cos p1",
                                                      "rel err", "ms/batch")]
    for precision, entry in result["precisions"].items():
        for module in ("vpm", "resampler", "chain"):
            f = entry[module]
            lines.append("%-9s %-10s %10.7f %10.7f %10.7f %10.3g %9.1f"
                         % (precision, module, f["mean"], f["min"], f["p1"], f["relative_error"],
                            entry["timing"]["%s_ms_per_batch" % module]))
    lines.append("per-layer relative error vs fp32 ONNX on each precision's worst chain slice:")
    for precision, entry in result["precisions"].items():
        worst = entry["worst_slice"]
        known = [layer for layer in worst["layers"] if layer["relative_error"] is not None]
        errors = "no layer outputs found" if not known else "max %.3g at layer %d, last layer %.3g" % (
            max(layer["relative_error"] for layer in known),
            max(known, key=lambda layer: layer["relative_error"])["layer"], known[-1]["relative_error"])
        lines.append("  %-5s slice %d (image %d, %dx%d): %s" % (precision, worst["slice"], worst["image"],
                                                               worst["rows"], worst["cols"], errors))
    lines += ["note: " + note for note in result["notes"]]
    lines.append("report: %s" % result["report"])
    return "\n".join(lines)
