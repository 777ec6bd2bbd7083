"""Export the VPM and the Resampler to ONNX at the opset the target's TensorRT parses, and check what was written."""
from __future__ import annotations

import copy
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import onnx
import torch
from torch import nn

from edge.engines.factory import open_onnx
from edge.preprocess.graph_inputs import pack_slices

from .checkpoint import VisionCheckpoint
from .modeling import MergerHead, MergerVisionTower, NavitSiglipEncoder, Resampler
from .modeling.layers import to_fp16

PRECISIONS = ("fp32", "fp16")
PROTOBUF_LIMIT_BYTES = 2 * 1024 ** 3  # larger graphs keep their weights in external data
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
                onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool"}


@dataclass(frozen=True)
class GraphIO:
    """Names and symbolic dims of a module graph's inputs and outputs."""

    inputs: Dict[str, Tuple]
    outputs: Dict[str, Tuple]


def graph_io(ck: VisionCheckpoint) -> Dict[str, GraphIO]:
    """The graph contract of each module (dims: batch, patches, strip_width = 14 * patches). Merger versions
    (converter.modeling.merger): the resampler's ``patches`` is the vpm's output length, its tokens a quarter."""
    spec = ck.spec
    if spec.is_merger:
        pixels = ("batch", 3, spec.patch_size, "strip_width")
        return {
            "vpm": GraphIO(inputs={"pixel_values": pixels, "position_ids": ("batch", "patches"),
                                   "patch_counts": ("batch",)},
                           outputs={"vision_embeds": ("batch", "merged", spec.width)}),
            "resampler": GraphIO(inputs={"vision_embeds": ("batch", "patches", spec.width)},
                                 outputs={"image_tokens": ("batch", "tokens", spec.embed_dim)}),
        }
    return {
        "vpm": GraphIO(
            inputs={"pixel_values": ("batch", 3, spec.patch_size, "strip_width"),
                    "position_ids": ("batch", "patches"), "patch_counts": ("batch",)},
            outputs={"vision_embeds": ("batch", "patches", spec.width)}),
        "resampler": GraphIO(
            inputs={"vision_embeds": ("batch", "patches", spec.width), "tgt_sizes": ("batch", 2)},
            outputs={"image_tokens": ("batch", spec.query_num, spec.embed_dim)}),
    }


@dataclass
class ExportedGraph:
    """One written graph: its files (relative to the bundle), opset, I/O dtypes and how it was checked."""

    module: str
    precision: str
    files: List[str]
    opset: int
    io_dtypes: Dict[str, str]
    bytes: int
    export_seconds: float
    check_max_abs_error: float = float("nan")
    check_output_scale: float = float("nan")
    op_types: List[str] = field(default_factory=list)


def build_modules(ck: VisionCheckpoint, max_patches: int) -> Dict[str, nn.Module]:
    """The project's torch modules (float32) for a checkpoint; `max_patches` bounds a slice side. A merger
    version's vpm is built for the spec's downsample_mode."""
    if ck.spec.is_merger:
        return {"vpm": MergerVisionTower.from_tensors(ck.spec, ck.tensors, ck.spec.downsample_mode),
                "resampler": MergerHead.from_tensors(ck.spec, ck.tensors)}
    return {"vpm": NavitSiglipEncoder.from_tensors(ck.spec, ck.tensors),
            "resampler": Resampler.from_tensors(ck.spec, ck.tensors, max_side=max_patches)}


def example_feeds(ck: VisionCheckpoint, layout: str, seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
    """Small feeds (two slices of different sizes) used to trace and to check each exported graph."""
    rng = np.random.default_rng(seed)
    block = 2 ** ck.spec.merge_levels if ck.spec.is_merger else 1
    sizes = [(rows * block, cols * block) for rows, cols in ((3, 5), (4, 2))]
    slices = [rng.uniform(-1, 1, (3, 14 * rows, 14 * cols)).astype(np.float32) for rows, cols in sizes]
    packed = pack_slices(slices, layout)
    length = packed.vpm["position_ids"].shape[1]
    if ck.spec.is_merger and ck.spec.downsample_mode == "16x":
        length //= 4  # the resampler's input is the vpm's output, after the window merger
    embeds = rng.standard_normal((2, length, ck.spec.width)).astype(np.float32)
    return {"vpm": packed.vpm, "resampler": {"vision_embeds": embeds, **packed.resampler}}


def _float_dtype(precision: str) -> np.dtype:
    return np.dtype(np.float16 if precision == "fp16" else np.float32)


def _cast_feeds(feeds: Dict[str, np.ndarray], precision: str) -> Dict[str, np.ndarray]:
    return {k: v.astype(_float_dtype(precision)) if v.dtype.kind == "f" else v for k, v in feeds.items()}


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize * int(
        np.prod(t.dims)) for t in model.graph.initializer)


def _check_written(model: onnx.ModelProto, opset: int, name: str) -> None:
    """The exporter may change the opset or keep ops the target cannot parse: check what was written."""
    written = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if written.get("ai.onnx") != opset:
        raise RuntimeError("%s was written at opset %s, not the requested %d" % (name, written.get("ai.onnx"), opset))
    ops = {node.op_type for node in model.graph.node}
    if opset < 17 and "LayerNormalization" in ops:
        raise RuntimeError("%s holds LayerNormalization at opset %d (TensorRT 8.5 cannot parse it)" % (name, opset))
    for value in list(model.graph.input) + list(model.graph.output):
        if value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            raise RuntimeError("%s has an int64 graph input/output %s (TensorRT 8.x has no int64)" % (name, value.name))


def export_graph(module: nn.Module, name: str, precision: str, io: GraphIO, feeds: Dict[str, np.ndarray],
                 bundle_dir: Path, opset: int, external_threshold_bytes: int = PROTOBUF_LIMIT_BYTES,
                 check: bool = True) -> ExportedGraph:
    """Export one module at one precision to ``<precision>/<name>.onnx`` inside `bundle_dir`, then check it."""
    start = time.perf_counter()
    graph_module = to_fp16(copy.deepcopy(module)) if precision == "fp16" else module
    cast = _cast_feeds(feeds, precision)
    args = tuple(torch.from_numpy(cast[k]) for k in io.inputs)
    dynamic_axes = {n: {i: d for i, d in enumerate(dims) if isinstance(d, str)}
                    for n, dims in {**io.inputs, **io.outputs}.items()}
    relative = Path(precision) / ("%s.onnx" % name)
    target = bundle_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw_path = Path(scratch) / "graph.onnx"
        torch.onnx.export(graph_module, args, str(raw_path), opset_version=opset, dynamo=False,
                          input_names=list(io.inputs), output_names=list(io.outputs),
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
        model = onnx.load(str(raw_path))
    _check_written(model, opset, str(relative))
    files = [str(relative)]
    if _initializer_bytes(model) > external_threshold_bytes:
        data_name = target.name + ".data"
        onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        files.append(str(relative.parent / data_name))
    else:
        onnx.save_model(model, str(target))
    onnx.checker.check_model(str(target))
    io_dtypes = {v.name: _ONNX_DTYPES[v.type.tensor_type.elem_type]
                 for v in list(model.graph.input) + list(model.graph.output)}
    exported = ExportedGraph(
        module=name, precision=precision, files=files, opset=opset, io_dtypes=io_dtypes,
        bytes=sum((bundle_dir / f).stat().st_size for f in files),
        export_seconds=time.perf_counter() - start, op_types=sorted({n.op_type for n in model.graph.node}))
    del model
    if check:
        exported.check_max_abs_error, exported.check_output_scale = _compare_with_torch(
            graph_module, target, cast, args)
    return exported


def _compare_with_torch(module: nn.Module, path: Path, feeds: Dict[str, np.ndarray],
                        args: Sequence[torch.Tensor]) -> Tuple[float, float]:
    """Max abs difference between ONNX Runtime and the torch module on the trace feeds, and the output scale."""
    with open_onnx(path) as engine:
        got = engine.infer(feeds)[engine.output_names[0]].astype(np.float32)
    with torch.no_grad():
        want = module(*args).float().numpy()
    return float(np.abs(got - want).max()), float(np.abs(want).max())
