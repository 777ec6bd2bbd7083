"""TensorRT-RTX for tests: the real parser and builder (no GPU needed), or a loud skip where it is not installed."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from edge.bundle.manifest import MANIFEST, write_manifest

SKIP_REASON = ("TensorRT-RTX MISSING: the real TensorRT parser and builder did not run; `make test` installs "
               "tensorrt-rtx-cu13-libs==1.7.1.116 and tensorrt-rtx-cu13-bindings==1.7.1.116")


def import_rtx() -> Any:
    """The tensorrt_rtx_bindings module, or a skip whose reason the session summary repeats in capitals."""
    try:
        import tensorrt_rtx_bindings
    except ImportError:
        pytest.skip(SKIP_REASON)
    return tensorrt_rtx_bindings


def break_first_reshape(source: Path, target: Path) -> str:
    """Copy `source` with its first constant-shaped Reshape set to [1, 64, 3, 7]: a shape no input of that graph
    can take, which every operator table passes (Reshape is supported everywhere). The node's name."""
    model = onnx.load(str(source))
    constants = {node.output[0]: node for node in model.graph.node if node.op_type == "Constant"}
    node = next(n for n in model.graph.node if n.op_type == "Reshape" and n.input[1] in constants)
    constants[node.input[1]].attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([1, 64, 3, 7], np.int64)))
    onnx.save(model, str(target))
    return node.name


def broken_bundle(bundle: Path, out: Path, graph: str = "fp16/resampler.onnx") -> str:
    """A copy of `bundle` whose `graph` has its first Reshape broken, with the manifest's sha256 rewritten (a
    consistent bundle, as a converter bug would write it). The broken node's name."""
    shutil.copytree(bundle, out)
    name = break_first_reshape(bundle / graph, out / graph)
    write_manifest(out, yaml.safe_load((out / MANIFEST).read_text()))
    return name
