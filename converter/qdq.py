"""Explicit INT8 as TensorRT takes it: Q/DQ pairs on the inputs of MatMul, Gemm and Conv (docs/tensorrt.md).

- activations: one shared QuantizeLinear -> DequantizeLinear pair per tensor, per-tensor scale amax / 127;
- weights: kept float with a Q -> DQ pair, per-channel scales along the output channel (symmetric);
- zero points int8 and zero; biases, Softmax, GELU, LayerNorm and everything else stay float;
- attention matmuls (both inputs activations) only when asked: on 1024-token slices they usually stay fp16.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set

import numpy as np
import onnx
from onnx import helper, numpy_helper

QUANTIZABLE = ("MatMul", "Gemm", "Conv")
MIN_SCALE = 1e-12  # a channel of zeros still gets a positive scale


def quantizable_nodes(model: onnx.ModelProto, attention: bool = False) -> List[onnx.NodeProto]:
    """MatMul/Gemm/Conv nodes; MatMuls of two activations (attention) only with `attention`."""
    constants = {t.name for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZABLE:
            continue
        if node.op_type == "MatMul" and not any(i in constants for i in node.input) and not attention:
            continue
        nodes.append(node)
    return nodes


def _weight_axis(node: onnx.NodeProto, rank: int) -> int:
    """Output-channel axis of a weight: Conv [O, I, kh, kw] -> 0; MatMul [K, N] -> last; Gemm B by transB."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    return rank - 1


def quantize(model: onnx.ModelProto, amax: Dict[str, float], node_names: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` with Q/DQ on the inputs of the named nodes (activation amax per tensor name)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    weights = {t.name: t for t in graph.initializer}
    targets: Set[str] = set(node_names)
    inserted: Dict[str, str] = {}  # tensor -> its dequantized name
    new_nodes: List[onnx.NodeProto] = []
    new_inits: List[onnx.TensorProto] = []
    for node in graph.node:
        if node.name in targets:
            for index in (0, 1):
                name = node.input[index] if index < len(node.input) else ""
                if not name:
                    continue
                if name not in inserted:
                    made = _qdq_for(name, node, weights.get(name), amax.get(name))
                    if made is None:
                        continue
                    nodes, inits, inserted[name] = made
                    new_nodes += nodes
                    new_inits += inits
                node.input[index] = inserted[name]
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    return out


def _qdq_for(name: str, node: onnx.NodeProto, weight: Optional[onnx.TensorProto], amax: Optional[float]):
    """(nodes, initializers, dequantized name) of one Q -> DQ pair, or None when there is no range."""
    if weight is not None:
        values = numpy_helper.to_array(weight).astype(np.float32)
        axis = _weight_axis(node, values.ndim)
        reduce = tuple(i for i in range(values.ndim) if i != axis)
        scale = np.maximum(np.abs(values).max(axis=reduce) / 127.0, MIN_SCALE).astype(np.float32)
        zero = np.zeros(scale.shape, dtype=np.int8)
    elif amax is not None:
        axis = None
        scale = np.float32(max(amax / 127.0, MIN_SCALE))
        zero = np.int8(0)
    else:
        return None
    prefix = name.replace("/", "_").strip("_")
    scale_name, zero_name = prefix + "_qscale", prefix + "_qzero"
    quantized, dequantized = prefix + "_quantized", prefix + "_dequantized"
    extra = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", [name, scale_name, zero_name], [quantized],
                              name=prefix + "_QuantizeLinear", **extra),
             helper.make_node("DequantizeLinear", [quantized, scale_name, zero_name], [dequantized],
                              name=prefix + "_DequantizeLinear", **extra)]
    inits = [numpy_helper.from_array(np.asarray(scale, dtype=np.float32), scale_name),
             numpy_helper.from_array(np.asarray(zero, dtype=np.int8), zero_name)]
    return nodes, inits, dequantized
