"""INT8 for a bundle: calibrate each module on images through the project's preprocessing, then keep the most
harmful layers float until the tokens meet a target cosine (mixed precision by measurement).

One module at a time, as the source article advises: the VPM is quantized and searched with the float Resampler
behind it, then the Resampler with the chosen int8 VPM in front. Token cosines are per token vector against the
float32 chain on held-out images. Layers kept float run fp16 on TensorRT (FP16 flag); on ONNX Runtime they run
in float32, so the host figure does not include fp16 rounding of those layers (verify measures fp16 separately).
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import onnx

from edge.bundle.facts import TensorSpec
from edge.bundle.manifest import MODULES, Bundle, write_manifest
from edge.cosine import token_cosines
from edge.engines.factory import open_onnx
from edge.engines.onnxrt import OnnxRuntimeEngine
from edge.fsutil import atomic_directory
from edge.preprocess.preprocessor import Preprocessor, slice_config

from .activation_ranges import collect, thresholds, watched_inputs
from .calibration_data import images_sha256, load_images, synthetic_images, vpm_batches
from .calibration_settings import Settings
from .qdq import quantizable_nodes, quantize
from .trt_cache import write_calibration_cache

Batches = List[Dict[str, Dict[str, np.ndarray]]]


@dataclass
class ModuleResult:
    """One module's int8 graph and how it was chosen."""

    model: onnx.ModelProto
    amax: Dict[str, float]
    quantized: List[str]
    kept_float: List[str] = field(default_factory=list)
    sensitivity: Dict[str, float] = field(default_factory=dict)  # node -> 1 - mean token cosine alone


@dataclass
class Calibrated:
    """What calibration added to a bundle: its manifest with the int8 graphs recorded (written by calibrate_bundle;
    converter.convert writes it once at the end), each module's int8 entry, and the search's outcome."""

    manifest: Dict[str, Any]
    int8: Dict[str, Dict[str, Any]]  # module -> its int8 graph entry (files, quantized_layers, kept_float, ...)
    mixed_precision: Dict[str, Any]  # target cosines, the held-out token cosines and whether they were met

    @property
    def met(self) -> bool:
        return bool(self.mixed_precision["met"])


def output(engine: OnnxRuntimeEngine, feeds: Dict[str, np.ndarray]) -> np.ndarray:
    """The (first) output of a module graph: vision_embeds or image_tokens."""
    return engine.infer(feeds)[engine.output_names[0]]


def valid_tokens(tokens: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """[B, T, D] -> [sum(counts), D]: the tokens each slice yields (merger layouts pad the shorter slices)."""
    return np.concatenate([tokens[row, :count] for row, count in enumerate(counts)])


def summary(cosines: np.ndarray) -> Dict[str, float]:
    return {"mean": float(cosines.mean()), "min": float(cosines.min()), "p1": float(np.percentile(cosines, 1))}


class Chain:
    """VPM -> Resampler over packed batches, with any pair of graphs."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches

    def first(self, count: int) -> Chain:
        return Chain(self.batches[:count])

    def vpm_outputs(self, vpm: OnnxRuntimeEngine) -> List[np.ndarray]:
        return [output(vpm, b["vpm"]) for b in self.batches]

    def tokens(self, vpm: Optional[OnnxRuntimeEngine], resampler: OnnxRuntimeEngine,
               vpm_outputs: Optional[List[np.ndarray]] = None) -> np.ndarray:
        features = vpm_outputs if vpm_outputs is not None else self.vpm_outputs(vpm)
        return np.concatenate([valid_tokens(output(resampler, dict(b["resampler"], vision_embeds=f)), b["tokens"])
                               for b, f in zip(self.batches, features)])


def _engine(model: onnx.ModelProto) -> OnnxRuntimeEngine:
    return open_onnx(model.SerializeToString())


def _search(model: onnx.ModelProto, amax: Dict[str, float], nodes: List[str],
            score: Callable[[onnx.ModelProto, bool], np.ndarray], settings: Settings,
            log: Callable[[str], None], name: str) -> ModuleResult:
    """All nodes quantized, then the most sensitive kept float one by one until the cosines meet the targets.

    Sensitivity (1 - mean token cosine with only that layer int8) is measured on the first held-out image
    (`score(model, True)`); acceptance on all of them."""
    result = ModuleResult(quantize(model, amax, nodes), amax, list(nodes))
    if not settings.search:
        return result
    for index, node in enumerate(nodes, 1):
        result.sensitivity[node] = 1.0 - float(score(quantize(model, amax, [node]), True).mean())
        log("  %s sensitivity %d/%d: %s %.2e" % (name, index, len(nodes), node, result.sensitivity[node]))
    order = sorted(nodes, key=lambda n: -result.sensitivity[n])
    while True:
        cosines = score(result.model, False)
        log("  %s: %d of %d layers int8, token cosine mean %.5f min %.5f"
            % (name, len(result.quantized), len(nodes), cosines.mean(), cosines.min()))
        if (cosines.mean() >= settings.target_cosine and cosines.min() >= settings.min_cosine) or not order:
            return result
        worst = order.pop(0)
        result.kept_float.append(worst)
        result.quantized.remove(worst)
        result.model = quantize(model, amax, result.quantized)


def calibrate_bundle(path: Path, settings: Settings, log: Optional[Callable[[str], None]] = None) -> Calibrated:
    """`calibrate` the bundle at `path` and write its manifest."""
    calibrated = calibrate(Bundle.load(path), settings, log)
    calibrated.manifest = write_manifest(Path(path), calibrated.manifest)
    return calibrated


def calibrate(bundle: Bundle, settings: Settings, log: Optional[Callable[[str], None]] = None) -> Calibrated:
    """Write int8/vpm.onnx and int8/resampler.onnx (+ TensorRT calibration caches) into the bundle's directory;
    returns what calibration added, with a copy of the manifest that records it (not written)."""
    from tqdm import tqdm

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    start = time.perf_counter()
    max_batch = bundle.shapes("vpm").batch.max
    preprocessor, layout = Preprocessor(slice_config(bundle), "exact"), bundle.model.slice.layout
    models = {m: onnx.load(str(bundle.graph_path(m, "fp32"))) for m in ("vpm", "resampler")}
    images = load_images(settings.source, settings.count, settings.seed)
    calibration = vpm_batches(images, preprocessor, layout, max_batch, bundle.model.query_num)
    per_image = [vpm_batches([image], preprocessor, layout, max_batch, bundle.model.query_num)
                 for image in synthetic_images(settings.eval_count, seed=settings.seed + 1)]
    held_out = Chain([batch for batches in per_image for batch in batches])
    first = held_out.first(len(per_image[0]))
    first_tokens = sum(sum(b["tokens"]) for b in first.batches)  # token rows of the first image
    float_vpm, float_resampler = _engine(models["vpm"]), _engine(models["resampler"])
    reference_features = held_out.vpm_outputs(float_vpm)
    reference = held_out.tokens(float_vpm, float_resampler, reference_features)

    def progress(name):
        return lambda items: tqdm(items, desc="calibrating " + name, unit="batch", file=sys.stderr)

    log("calibrating on %d images (%d batches), method %s" % (len(images), len(calibration), settings.method))
    vpm_nodes = quantizable_nodes(models["vpm"], settings.attention)
    vpm_hist = collect(models["vpm"], watched_inputs(models["vpm"], vpm_nodes), [b["vpm"] for b in calibration],
                       progress("vpm"))
    resampler_feeds = [dict(b["resampler"], vision_embeds=output(float_vpm, b["vpm"])) for b in calibration]
    resampler_nodes = quantizable_nodes(models["resampler"], settings.attention)
    resampler_hist = collect(models["resampler"], watched_inputs(models["resampler"], resampler_nodes),
                             resampler_feeds, progress("resampler"))

    def scorer(tokens_of: Callable[[onnx.ModelProto, Chain], np.ndarray]):
        """Token cosines of a candidate graph: on the first held-out image when `quick`, else on all of them."""
        def score(model: onnx.ModelProto, quick: bool) -> np.ndarray:
            chain = first if quick else held_out
            return token_cosines(tokens_of(model, chain), reference[:first_tokens] if quick else reference)
        return score

    vpm = _search(models["vpm"], thresholds(vpm_hist, settings.method, settings.percentile),
                  [n.name for n in vpm_nodes], scorer(lambda m, chain: chain.tokens(_engine(m), float_resampler)),
                  settings, log, "vpm")
    int8_features = held_out.vpm_outputs(_engine(vpm.model))
    resampler = _search(models["resampler"], thresholds(resampler_hist, settings.method, settings.percentile),
                        [n.name for n in resampler_nodes],
                        scorer(lambda m, chain: chain.tokens(None, _engine(m), int8_features[:len(chain.batches)])),
                        settings, log, "resampler")
    final = summary(token_cosines(held_out.tokens(None, _engine(resampler.model), int8_features), reference))
    log("int8 chain on %d held-out images: token cosine mean %.5f min %.5f"
        % (settings.eval_count, final["mean"], final["min"]))
    results = {"vpm": vpm, "resampler": resampler}
    calibrated = _record(bundle, results, settings, images, len(calibration), final)
    log("calibrated in %.1f s" % (time.perf_counter() - start))
    return calibrated


def _specs(tensors: Sequence[TensorSpec]) -> List[Dict[str, Any]]:
    return [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in tensors]


def _record(bundle: Bundle, results: Dict[str, ModuleResult], settings: Settings, images: Sequence[np.ndarray],
            batches: int, final: Dict[str, float]) -> Calibrated:
    """int8/ graphs and caches (atomically replaced), and a copy of the manifest that records them."""
    manifest = copy.deepcopy(bundle.manifest)
    tensorrt = bundle.target.tensorrt
    with atomic_directory(bundle.path / "int8", overwrite=True) as tmp:
        for module, result in results.items():
            onnx.save(result.model, str(tmp / (module + ".onnx")))
            if tensorrt is not None and not tensorrt.startswith("11."):
                write_calibration_cache(tmp / ("%s.calibration-%s.cache" % (module, tensorrt)), result.amax,
                                        tensorrt)
    calibration = {"method": settings.method, "percentile": settings.percentile if settings.method ==
                   "percentile" else None, "source": str(settings.source) if settings.source else "synthetic scenes",
                   "images": len(images), "batches": batches, "data_sha256": images_sha256(images)}
    int8: Dict[str, Dict[str, Any]] = {}
    for module in MODULES:
        result, fp32 = results[module], bundle.graph(module, "fp32")
        files = ["int8/%s.onnx" % module]
        cache = "int8/%s.calibration-%s.cache" % (module, tensorrt)
        if (bundle.path / cache).is_file():
            files.append(cache)
        int8[module] = {
            "files": files, "opset": fp32.opset, "bytes": (bundle.path / files[0]).stat().st_size,
            "inputs": _specs(fp32.inputs), "outputs": _specs(fp32.outputs), "calibration": calibration,
            "quantized_layers": len(result.quantized), "kept_float": result.kept_float,
            "attention_quantized": settings.attention,
            "sensitivity": {k: round(v, 8) for k, v in sorted(result.sensitivity.items(), key=lambda kv: -kv[1])}}
        manifest["modules"][module]["graphs"]["int8"] = int8[module]
    if bundle.target.profile_default_precision == "int8":
        manifest["target"]["default_precision"] = "int8"  # the target's own default, now that the bundle has it
    mixed_precision = {"target_cosine": settings.target_cosine, "min_cosine": settings.min_cosine,
                       "held_out_images": settings.eval_count, "token_cosine": final,
                       "met": final["mean"] >= settings.target_cosine and final["min"] >= settings.min_cosine}
    manifest["mixed_precision"] = mixed_precision
    return Calibrated(manifest, int8, mixed_precision)
