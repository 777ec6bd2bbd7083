"""Parse and build every graph of a bundle with a real TensorRT builder: the check the operator tables cannot make.

The operator tables (check_ops) say whether a release's parser converts each operator; only a real parser sees a
Reshape to an impossible shape, and only a real builder sees a profile that contradicts a graph or a workspace limit
too small for the largest shapes. Full TensorRT is used where it is importable (a Jetson, a host with TensorRT and a
GPU); TensorRT-RTX otherwise: its builder runs without a GPU and builds ahead of time for a named compute capability.
The engines are thrown away: TensorRT-RTX engines run only on RTX-class GPUs, so this checks graphs, never a device.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

from edge.bundle.manifest import MODULES, VIDEO_MODULE, Bundle
from edge.engines.tensorrt.build import workspace_limit
from edge.engines.tensorrt.builder import BuildFailed, BuildOptions, build_engine, builder_name, is_rtx, profile_shapes
from edge.errors import InputError

# TensorRT-RTX has no Jetson capabilities; Ampere desktop 8.6 is the nearest to Orin's 8.7.
RTX_CAPABILITY = "8.6"
RTX_WHEELS = "tensorrt-rtx-cu13-libs==1.7.1.116 tensorrt-rtx-cu13-bindings==1.7.1.116"
Log = Callable[[str], None]


def import_builder() -> Optional[Any]:
    """Full TensorRT if importable, else TensorRT-RTX, else None."""
    try:
        import tensorrt

        return tensorrt
    except ImportError:
        pass
    try:
        import tensorrt_rtx_bindings

        return tensorrt_rtx_bindings
    except ImportError:
        return None


def require_builder() -> Any:
    """import_builder(), or an InputError saying how to get one."""
    trt = import_builder()
    if trt is None:
        raise InputError("no TensorRT builder is importable: pip install %s (a parser and builder that need no GPU), "
                         "or run on a Jetson with JetPack's TensorRT" % RTX_WHEELS)
    return trt


def build_check_bundle(bundle: Bundle, trt: Any, log: Log = print,
                       modules: Sequence[str] = MODULES + (VIDEO_MODULE,)) -> Dict[str, Any]:
    """Parse and build each graph of `bundle`'s `modules` (by default all, the grouped video Resampler's too where
    it has one) with its optimization profile and workspace limit: a JSON-ready report per graph file (parsed,
    built, seconds, engine bytes, the profile; the parser's problems naming the node, or the builder's errors) and
    `passed`."""
    capability = RTX_CAPABILITY if is_rtx(trt) else None
    graphs: Dict[str, Any] = {}
    for module in modules:
        for precision in bundle.precisions(module):
            graph = bundle.graph(module, precision)
            workspace = workspace_limit(bundle, precision, trt, module)
            shapes = profile_shapes(graph.inputs, bundle.shapes(module))
            options = BuildOptions(precision, shapes, workspace, compute_capability=capability)
            log("building %s with %s (workspace limit %d MiB) ..." % (graph.onnx_file, builder_name(trt),
                                                                      workspace >> 20))
            entry: Dict[str, Any] = {"module": module, "precision": precision, "workspace_bytes": workspace,
                                     "profile": {name: [list(s) for s in shape] for name, shape in shapes.items()}}
            try:
                built = build_engine(trt, bundle.graph_path(module, precision), options, log)
            except BuildFailed as failure:
                entry.update(parsed=failure.stage != "parse", built=False, message=str(failure),
                             problems=[asdict(p) for p in failure.problems], errors=failure.errors)
            else:
                entry.update(parsed=True, built=True, seconds=round(built.seconds, 2), engine_bytes=len(built.engine))
            graphs[graph.onnx_file] = entry
    return {"builder": builder_name(trt), "compute_capability": capability or "this machine's GPU",
            "passed": all(g["built"] for g in graphs.values()), "graphs": graphs}


def format_build_report(report: Dict[str, Any], bundle_name: Union[str, Path]) -> str:
    """One line per graph, the parser's problems under it, and a verdict naming the builder."""
    lines = []
    for file, graph in report["graphs"].items():
        if graph["built"]:
            lines.append("%s: parsed, built in %.1f s, engine %d bytes (workspace limit %d MiB)" % (
                file, graph["seconds"], graph["engine_bytes"], graph["workspace_bytes"] >> 20))
            continue
        lines.append("%s: %s" % (file, "build FAILED" if graph["parsed"] else "parse FAILED"))
        lines += ["  %s (%s): %s" % (p["node"], p["operator"], p["reason"]) for p in graph["problems"]]
        if not graph["problems"]:
            lines.append("  " + graph["message"])
    checked = "%d graphs of %s parsed and built with %s for compute capability %s" % (
        len(report["graphs"]), bundle_name, report["builder"], report["compute_capability"])
    failed = sum(not g["built"] for g in report["graphs"].values())
    verdict = "passed: " + checked if report["passed"] else "FAILED: %d of %s" % (failed, checked)
    return "\n".join(lines + [verdict])
