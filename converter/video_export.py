"""``minicpmv-convert export-video``: add MiniCPM-V 4.5's grouped (video) Resampler graph to a 4.5 bundle.

The graph (converter.modeling.group_resampler) shares the still-image Resampler's weights, so it is exported from the
checkpoint the bundle came from (checked by its weights' sha256) into ``<precision>/resampler_group.onnx``, checked
against the bundle target's TensorRT operator table, and listed in the manifest under ``video`` (its files hashed
like every other) with its TensorRT profile ranges (`video_shapes`). A bundle without that entry is a still-image
bundle, unchanged: the grouped graph is opt-in.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import onnx

from edge.bundle.manifest import VIDEO_MODULE, Bundle, write_manifest
from edge.errors import InputError

from .check_ops import check_model
from .checkpoint import VisionCheckpoint
from .export import GraphIO, export_graph
from .modeling import Resampler
from .modeling.group_resampler import MAX_GROUP_FRAMES, GroupResampler
from .trt_ops import OperatorTable

VIDEO_VERSIONS = ("4.5",)  # the versions whose Resampler has the temporal path
MODULE = VIDEO_MODULE
# Most groups (slice positions of a frame) in one call of the TensorRT profile: one. A frame with S slice positions
# goes through in S calls (groups do not attend to each other: the tokens are the same), and the official video
# recipe has one position anyway (max_slice_nums=1). Measured with TensorRT-RTX on the `small` 4.5 graph at 2048
# patches (docs/benchmarks.md): 1 group x 6 frames builds at fp32 and fp16; 3 groups x 6 frames failed to build at
# fp32 and fp16; 10 groups asked for 8.8 GB at fp16 and 1024 patches.
PROFILE_MAX_GROUPS = 1


def group_graph_io(ck: VisionCheckpoint) -> GraphIO:
    """The grouped graph's contract: frames group-major in the batch, ids [groups, frames]."""
    spec = ck.spec
    return GraphIO(
        inputs={"vision_embeds": ("batch", "patches", spec.width), "tgt_sizes": ("batch", 2),
                "temporal_ids": ("groups", "frames")},
        outputs={"image_tokens": ("groups", spec.query_num, spec.embed_dim)})


def group_feeds(ck: VisionCheckpoint, seed: int = 0) -> Dict[str, np.ndarray]:
    """Trace feeds: two groups of three frames, of different slice sizes (so the padding mask is traced)."""
    rng = np.random.default_rng(seed)
    sizes = [(3, 5)] * 3 + [(4, 2)] * 3
    length = max(r * c for r, c in sizes)
    return {"vision_embeds": rng.standard_normal((len(sizes), length, ck.spec.width)).astype(np.float32),
            "tgt_sizes": np.array(sizes, dtype=np.int32),
            "temporal_ids": np.array([[0, 3, 7], [10, 13, 17]], dtype=np.int32)}


def video_shapes(bundle: Bundle) -> Dict[str, Dict[str, int]]:
    """The grouped graph's profile ranges for the bundle's target: frames 1..6 per group (opt 6), groups 1..the
    frame's slice positions capped at PROFILE_MAX_GROUPS (opt 1), patches as the still Resampler's (the target's),
    batch (groups x frames) between."""
    patches = bundle.shapes("resampler").patches
    groups = max(1, min(PROFILE_MAX_GROUPS, bundle.target.max_slices + 1))
    frames = MAX_GROUP_FRAMES
    return {"batch": {"min": 1, "opt": frames, "max": groups * frames},
            "patches": {"min": patches.min, "opt": patches.opt, "max": patches.max},
            "groups": {"min": 1, "opt": 1, "max": groups},
            "frames": {"min": 1, "opt": frames, "max": frames}}


def build_group_module(ck: VisionCheckpoint, max_patches: int) -> GroupResampler:
    """The grouped Resampler (float32) on the checkpoint's Resampler tensors."""
    return GroupResampler(Resampler.from_tensors(ck.spec, ck.tensors, max_side=max_patches)).eval()


def _check_bundle(bundle: Bundle, ck: VisionCheckpoint) -> None:
    if bundle.model.version not in VIDEO_VERSIONS:
        raise InputError("bundle %s is MiniCPM-V %s: only %s has the grouped video Resampler; export a 4.5 "
                         "checkpoint" % (bundle.path, bundle.model.version, ", ".join(VIDEO_VERSIONS)))
    recorded = bundle.manifest.get("model", {}).get("source", {}).get("weights_sha256")
    if recorded and ck.weights_sha256 and recorded != ck.weights_sha256:
        raise InputError("checkpoint %s is not the one bundle %s was exported from (weights sha256 %s..., the bundle "
                         "records %s...): pass that checkpoint" % (ck.path, bundle.path, ck.weights_sha256[:12],
                                                                  recorded[:12]))


def operator_problems(path: Path, tensorrt: Optional[str]) -> List[str]:
    """What the target's TensorRT parser would refuse in the graph at `path` (empty: none, or no TensorRT)."""
    if tensorrt is None:
        return []
    table = OperatorTable.for_release(tensorrt)
    return ["%s %s: %s" % (p.node, p.op_type, p.reason) for p in check_model(onnx.load(str(path)), table)]


def add_video_graphs(bundle_path: Path, ck: VisionCheckpoint, precisions: List[str],
                     log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Export the grouped Resampler at each precision into the bundle and list it in its manifest; the manifest
    written. Nothing in the bundle changes unless every graph exported and passed its checks."""
    bundle = Bundle.load(bundle_path)
    _check_bundle(bundle, ck)
    module = build_group_module(ck, bundle.target.max_patches)
    io, feeds = group_graph_io(ck), group_feeds(ck)
    entries: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=str(bundle.path.parent)) as scratch:
        for precision in precisions:
            graph = export_graph(module, MODULE, precision, io, feeds, Path(scratch), bundle.target.opset)
            problems = operator_problems(Path(scratch) / graph.files[0], bundle.target.tensorrt)
            if problems:
                raise RuntimeError("%s %s: TensorRT %s would refuse: %s" % (MODULE, precision,
                                                                           bundle.target.tensorrt,
                                                                           "; ".join(problems)))
            log("%s %s: %.1f MB, ONNX Runtime vs torch max abs error %.3g (output scale %.3g)%s"
                % (MODULE, precision, graph.bytes / 1e6, graph.check_max_abs_error, graph.check_output_scale,
                   "" if bundle.target.tensorrt is None else ", check-ops TensorRT %s passed"
                   % bundle.target.tensorrt))
            entries[precision] = {
                "files": graph.files, "opset": graph.opset, "bytes": graph.bytes,
                "inputs": [{"name": n, "dtype": graph.io_dtypes[n], "dims": list(d)} for n, d in io.inputs.items()],
                "outputs": [{"name": n, "dtype": graph.io_dtypes[n], "dims": list(d)}
                            for n, d in io.outputs.items()],
                "export_check": {"reference": "torch module, same precision",
                                 "max_abs_error": graph.check_max_abs_error,
                                 "output_max_abs": graph.check_output_scale}}
        for entry in entries.values():
            for relative in entry["files"]:
                (bundle.path / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(Path(scratch) / relative), str(bundle.path / relative))
    manifest = dict(bundle.manifest, video={"max_group_frames": MAX_GROUP_FRAMES, "shapes": video_shapes(bundle),
                                            "graphs": entries})
    return write_manifest(bundle.path, manifest)
