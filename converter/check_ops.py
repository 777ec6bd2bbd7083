"""Does a graph parse on a TensorRT release? Operators, opset, graph I/O types and Q/DQ legality, per node.

The checks are the ones a Jetson build would otherwise fail on, hours later and on the device:
- every operator is one the release's ONNX parser converts (configs/tensorrt tables), in the default domain;
- the model opset is within the parser's ceiling;
- no int64 graph input or output on 8.x (TensorRT 8 has no INT64 tensors);
- QuantizeLinear / DequantizeLinear as TensorRT takes them: an int8 zero point that is present and all zero (no
  zero point means uint8 in ONNX), positive finite scales, a per-channel axis inside the tensor's rank with one
  scale per channel, and on 8.x no int8 initializer feeding DequantizeLinear (keep weights float with a Q->DQ pair).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np
import onnx
from onnx import numpy_helper

from edge.bundle.manifest import MODULES, VIDEO_MODULE, Bundle

from .trt_ops import OperatorTable, release_of

QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Problem:
    """One reason a graph would not build: where (node name, operator) and why."""

    node: str
    op_type: str
    reason: str


class _Constants:
    """Values of initializers and Constant nodes, and ranks that follow through Q/DQ."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.values: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.initializers = set(self.values)
        for node in graph.node:
            if node.op_type == "Constant":
                for attribute in node.attribute:
                    if attribute.name == "value":
                        self.values[node.output[0]] = numpy_helper.to_array(attribute.t)
        self._source = {n.output[0]: n.input[0] for n in graph.node if n.op_type in QDQ and n.output}

    def rank(self, name: str) -> Optional[int]:
        """Rank of a constant, or of what a chain of Q/DQ nodes carries from one; None when unknown."""
        while name not in self.values and name in self._source:
            name = self._source[name]
        return self.values[name].ndim if name in self.values else None

    def shape(self, name: str) -> Optional[tuple]:
        while name not in self.values and name in self._source:
            name = self._source[name]
        return self.values[name].shape if name in self.values else None


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, subgraphs (If, Loop, Scan bodies) included."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else []):
                yield from _nodes(sub)


def _qdq_problems(node: onnx.NodeProto, constants: _Constants, table: OperatorTable) -> List[str]:
    reasons = []
    if len(node.input) < 3 or not node.input[2]:
        reasons.append("no zero point: ONNX then quantizes to uint8; TensorRT needs an int8 zero point of 0")
    else:
        zero = constants.values.get(node.input[2])
        if zero is None:
            reasons.append("zero point %r is not a constant" % node.input[2])
        elif zero.dtype != np.int8:
            reasons.append("zero point is %s: TensorRT takes symmetric int8 only" % zero.dtype)
        elif np.any(zero != 0):
            reasons.append("zero point is not all zero: TensorRT takes symmetric quantization only")
    scale = constants.values.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        reasons.append("scale is not a constant")
    else:
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            reasons.append("scale has values that are not positive and finite")
        if scale.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            rank, shape = constants.rank(node.input[0]), constants.shape(node.input[0])
            if rank is not None and not -rank <= axis < rank:
                reasons.append("per-channel axis %d outside the rank-%d input" % (axis, rank))
            elif shape is not None and shape[axis] != scale.size:
                reasons.append("%d per-channel scales for axis %d of size %d" % (scale.size, axis, shape[axis]))
    if node.op_type == "DequantizeLinear" and table.major < 10 and node.input[0] in constants.initializers \
            and constants.values[node.input[0]].dtype == np.int8:
        reasons.append("int8 initializer feeds DequantizeLinear, which TensorRT 8 rejects: keep the weight "
                       "float with a QuantizeLinear -> DequantizeLinear pair")
    return reasons


def check_model(model: onnx.ModelProto, table: OperatorTable) -> List[Problem]:
    """Every problem TensorRT `table.release` would have with `model` (empty when it would parse)."""
    problems: List[Problem] = []
    release = "TensorRT %s" % table.release
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > table.opset_ceiling:
        problems.append(Problem("(model)", "opset", "opset %s is above %s's ceiling of %d: export at opset <= %d"
                                % (opset, release, table.opset_ceiling, table.opset_ceiling)))
    if not table.int64_graph_io:
        for value in list(model.graph.input) + list(model.graph.output):
            if value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
                problems.append(Problem(value.name, "graph I/O", "int64 graph %s: %s has no INT64 tensors, use "
                                        "int32" % ("input" if value in model.graph.input else "output", release)))
    constants = _Constants(model.graph)
    for node in _nodes(model.graph):
        where = node.name or (node.output[0] if node.output else "?")
        if node.domain not in ("", "ai.onnx"):
            problems.append(Problem(where, node.op_type, "custom-domain operator %s.%s: %s's parser has no "
                                    "plugin for it" % (node.domain, node.op_type, release)))
        elif node.op_type not in table.converted:
            known = "does not convert" if node.op_type in table.not_converted else "does not know"
            problems.append(Problem(where, node.op_type, "%s's ONNX parser %s %s" % (release, known, node.op_type)))
        elif node.op_type in QDQ:
            problems += [Problem(where, node.op_type, reason) for reason in _qdq_problems(node, constants, table)]
    return problems


def check_bundle(bundle: Bundle, tensorrt: str) -> Dict[str, Any]:
    """check_model for every graph file of the bundle (the grouped video Resampler's too, where it has one): a
    JSON-ready report with `passed`."""
    table = OperatorTable.for_release(tensorrt)
    graphs: Dict[str, Any] = {}
    for module in MODULES + (VIDEO_MODULE,):
        for precision in bundle.precisions(module):
            graph = bundle.graph(module, precision)
            model = onnx.load(str(bundle.path / graph.onnx_file))
            problems = check_model(model, table)
            graphs[graph.onnx_file] = {"module": module, "precision": precision, "nodes": len(model.graph.node),
                                         "operators": sorted({n.op_type for n in _nodes(model.graph)}),
                                         "problems": [asdict(p) for p in problems]}
    return {"tensorrt": tensorrt, "table": table.release, "stand_in": table.release != release_of(tensorrt),
            "passed": not any(g["problems"] for g in graphs.values()), "graphs": graphs}


def format_report(report: Dict[str, Any], bundle_name: Union[str, Path]) -> str:
    """Offending nodes, one line each, and a verdict naming the bundle and the table used."""
    lines = []
    for file, graph in report["graphs"].items():
        for problem in graph["problems"]:
            lines.append("%s: %s (%s): %s" % (file, problem["node"], problem["op_type"], problem["reason"]))
    table = "table %s" % report["table"]
    if report["stand_in"]:
        table += ", standing in for %s, which has no table of its own" % release_of(report["tensorrt"])
    checked = "%d graphs of %s against TensorRT %s (%s)" % (len(report["graphs"]), bundle_name, report["tensorrt"],
                                                             table)
    verdict = "passed: " + checked if report["passed"] else "FAILED: %d problems in %s" % (len(lines), checked)
    return "\n".join(lines + [verdict])
