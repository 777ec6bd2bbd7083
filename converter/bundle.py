"""Write a bundle: export every module at every precision into a temporary directory, then rename it in place."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from edge.bundle.manifest import MODULES, write_manifest
from edge.device.profiles import DeviceProfile, onnx_opset_for
from edge.fsutil import atomic_directory, sha256_file
from edge.version import __version__

from .checkpoint import VisionCheckpoint
from .export import PROTOBUF_LIMIT_BYTES, ExportedGraph, build_modules, example_feeds, export_graph, graph_io


def model_facts(ck: VisionCheckpoint) -> Dict[str, Any]:
    """What the device and the LLM side need to know about the model."""
    facts, spec, config = ck.facts, ck.spec, ck.config
    slice_config = config.get("slice_config") or {}
    return {
        "family": "minicpmv",
        "version": ck.version,
        "source": {"checkpoint": str(ck.path.resolve()), "weights_sha256": ck.weights_sha256,
                   "config_sha256": sha256_file(ck.path / "config.json")},
        "query_num": spec.query_num,
        "embed_dim": spec.embed_dim,
        "vision": {"width": spec.width, "layers": spec.layers, "heads": spec.heads, "mlp": spec.mlp,
                   "patch_size": spec.patch_size, "position_grid": spec.position_grid},
        "slice": {"scale_resolution": int(slice_config.get("scale_resolution", 448)),
                  "max_slice_nums": int(slice_config.get("max_slice_nums", 9)),
                  "patch_size": spec.patch_size, "layout": facts.slice_layout},
        "prompt": {"style": facts.prompt_style,
                   "use_image_id": bool(config.get("use_image_id", facts.use_image_id))},
        "llm": {"family": facts.llm_family, "chat_template": facts.chat_template, "hidden_size": spec.embed_dim,
                "scale_emb": config.get("scale_emb")},
    }


def _graph_entry(graph: ExportedGraph, io_dims: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "files": graph.files,
        "opset": graph.opset,
        "bytes": graph.bytes,
        "inputs": [{"name": n, "dtype": graph.io_dtypes[n], "dims": list(d)} for n, d in io_dims["inputs"].items()],
        "outputs": [{"name": n, "dtype": graph.io_dtypes[n], "dims": list(d)} for n, d in io_dims["outputs"].items()],
        "export_seconds": round(graph.export_seconds, 3),
        "export_check": {"reference": "torch module, same precision", "max_abs_error": graph.check_max_abs_error,
                         "output_max_abs": graph.check_output_scale},
    }


def write_bundle(ck: VisionCheckpoint, out: Path, profile: DeviceProfile, precisions: Iterable[str],
                 overwrite: bool = False, check: bool = True,
                 external_threshold_bytes: int = PROTOBUF_LIMIT_BYTES, log=None,
                 memory: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Export VPM and Resampler for each precision into bundle `out`; returns the manifest written.

    `memory`: the target's memory estimate (converter.sizing.size_bundle), recorded as target.memory.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    precisions = list(dict.fromkeys(precisions))
    opset = onnx_opset_for(profile.tensorrt)
    modules = build_modules(ck, profile.max_patches)
    feeds = example_feeds(ck, ck.facts.slice_layout)
    ios = graph_io(ck)
    entries: Dict[str, Dict[str, Any]] = {name: {"graphs": {}} for name in MODULES}
    steps = [(m, p) for p in precisions for m in MODULES]
    with atomic_directory(Path(out), overwrite=overwrite) as tmp:
        for index, (module, precision) in enumerate(steps, 1):
            log("[%d/%d] exporting %s %s (opset %d) ..." % (index, len(steps), module, precision, opset))
            graph = export_graph(modules[module], module, precision, ios[module], feeds[module], tmp, opset,
                                 external_threshold_bytes, check)
            log("[%d/%d] %s %s: %.1f MB in %.1f s, ONNX Runtime vs torch max abs error %.3g (output scale %.3g)"
                % (index, len(steps), module, precision, graph.bytes / 1e6, graph.export_seconds,
                   graph.check_max_abs_error, graph.check_output_scale))
            io_dims = {"inputs": ios[module].inputs, "outputs": ios[module].outputs}
            entries[module]["graphs"][precision] = _graph_entry(graph, io_dims)
        for module in MODULES:
            entries[module]["shapes"] = _profile_shapes(profile, ck.facts.slice_layout)
        manifest = {
            "created_by": "minicpmv-edge %s" % __version__,
            "model": model_facts(ck),
            "target": _target_entry(profile, opset, _default_precision(profile, precisions), memory),
            "modules": entries,
        }
        manifest = write_manifest(tmp, manifest)
    return manifest


def _profile_shapes(profile: DeviceProfile, layout: str) -> Dict[str, Dict[str, int]]:
    """min/opt/max of the dynamic dims (TensorRT optimization profile); opt = one 448x448 slice."""
    max_batch = profile.max_batch
    if layout == "unmasked-1d":
        max_batch = max(max_batch, profile.max_slices + 1)  # 2.5: an image's slices must share one batch
    return {"batch": {"min": 1, "opt": 1, "max": max_batch},
            "patches": {"min": 1, "opt": min(1024, profile.max_patches), "max": profile.max_patches}}


def _default_precision(profile: DeviceProfile, precisions: List[str]) -> str:
    """The profile's default where the bundle has it, else the lowest exported precision (fp16 before fp32)."""
    if profile.default_precision in precisions:
        return profile.default_precision
    return "fp16" if "fp16" in precisions else precisions[0]


def _target_entry(profile: DeviceProfile, opset: int, default_precision: str,
                  memory: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    recorded = {} if memory is None else {"memory": memory}
    return {"profile": profile.name, "jetpack": profile.jetpack, "l4t": profile.l4t, "cuda": profile.cuda,
            "tensorrt": profile.tensorrt, "opset": opset,
            "default_precision": default_precision,
            "max_batch": profile.max_batch, "max_patches": profile.max_patches,
            "max_slices": profile.max_slices, **recorded}
