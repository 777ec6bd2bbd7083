"""Write a bundle: export every module at every precision into a temporary directory, then rename it in place."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional

from torch import nn

from edge.bundle.manifest import MODULES, write_manifest
from edge.device.profiles import DeviceProfile, onnx_opset_for
from edge.fsutil import atomic_directory, sha256_file
from edge.version import __version__

from . import family
from .checkpoint import VisionCheckpoint
from .checkpoint_layout import VisionSpec
from .export import PROTOBUF_LIMIT_BYTES, ExportedGraph, build_modules, example_feeds, export_graph, graph_io
from .sizing import profile_shapes
from .targets import default_precision


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
                  "patch_size": spec.patch_size, "layout": family.bundle_layout(ck.version, spec.downsample_mode)},
        "prompt": {"style": facts.prompt_style,
                   "use_image_id": bool(config.get("use_image_id", facts.use_image_id))},
        "llm": {"family": facts.llm_family, "chat_template": facts.chat_template, "hidden_size": spec.embed_dim,
                "scale_emb": config.get("scale_emb")},
        **({"merger": merger_facts(spec)} if spec.is_merger else {}),
    }


def merger_facts(spec: VisionSpec) -> Dict[str, Any]:
    """A merger version's mode and merges: the bundle's graphs run this downsample_mode only."""
    return {"downsample_mode": spec.downsample_mode, "modes": [spec.downsample_mode],
            "insert_layer_id": spec.insert_layer_id, "merger_times": spec.merger_times,
            "patches_per_token": 4 ** spec.merge_levels}


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


def export_graphs(ck: VisionCheckpoint, modules: Dict[str, nn.Module], directory: Path, profile: DeviceProfile,
                  precisions: Iterable[str], check: bool = True,
                  external_threshold_bytes: int = PROTOBUF_LIMIT_BYTES, log: Optional[Callable[[str], None]] = None,
                  memory: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Export VPM and Resampler (`modules`, from export.build_modules) for each precision into `directory`;
    returns the bundle's manifest, not yet written (converter.convert adds to it; write_manifest writes it).

    `memory`: the target's memory estimate (converter.sizing.size_bundle), recorded as target.memory.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    precisions = list(dict.fromkeys(precisions))
    opset = onnx_opset_for(profile.tensorrt)
    layout = family.bundle_layout(ck.version, ck.spec.downsample_mode)
    feeds = example_feeds(ck, layout)
    ios = graph_io(ck)
    entries: Dict[str, Dict[str, Any]] = {name: {"graphs": {}} for name in MODULES}
    steps = [(m, p) for p in precisions for m in MODULES]
    for index, (module, precision) in enumerate(steps, 1):
        log("[%d/%d] exporting %s %s (opset %d) ..." % (index, len(steps), module, precision, opset))
        graph = export_graph(modules[module], module, precision, ios[module], feeds[module], directory, opset,
                             external_threshold_bytes, check)
        log("[%d/%d] %s %s: %.1f MB in %.1f s, ONNX Runtime vs torch max abs error %.3g (output scale %.3g)"
            % (index, len(steps), module, precision, graph.bytes / 1e6, graph.export_seconds,
               graph.check_max_abs_error, graph.check_output_scale))
        io_dims = {"inputs": ios[module].inputs, "outputs": ios[module].outputs}
        entries[module]["graphs"][precision] = _graph_entry(graph, io_dims)
    for module in MODULES:
        entries[module]["shapes"] = profile_shapes(profile, layout, module)
    return {
        "created_by": "minicpmv-edge %s" % __version__,
        "model": model_facts(ck),
        "target": _target_entry(profile, opset, default_precision(profile, precisions), memory),
        "modules": entries,
    }


def write_bundle(ck: VisionCheckpoint, out: Path, profile: DeviceProfile, precisions: Iterable[str],
                 overwrite: bool = False, check: bool = True,
                 external_threshold_bytes: int = PROTOBUF_LIMIT_BYTES, log: Optional[Callable[[str], None]] = None,
                 memory: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Export VPM and Resampler for each precision into bundle `out` (a staging directory renamed in place);
    returns the manifest written."""
    modules = build_modules(ck, profile.max_patches)
    with atomic_directory(Path(out), overwrite=overwrite) as staging:
        manifest = export_graphs(ck, modules, staging, profile, precisions, check, external_threshold_bytes, log,
                                 memory)
        manifest = write_manifest(staging, manifest)
    return manifest


def _target_entry(profile: DeviceProfile, opset: int, default_precision: str,
                  memory: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The manifest's `target`: the profile's facts the device needs. `profile_default_precision` is the profile's
    own default (int8 on Jetson targets), which calibrate makes the bundle's default once it holds int8."""
    recorded = {} if memory is None else {"memory": memory}
    return {"profile": profile.name, "jetpack": profile.jetpack, "l4t": profile.l4t, "cuda": profile.cuda,
            "tensorrt": profile.tensorrt, "opset": opset,
            "default_precision": default_precision, "profile_default_precision": profile.default_precision,
            "max_batch": profile.max_batch, "max_patches": profile.max_patches,
            "max_slices": profile.max_slices, **recorded}
