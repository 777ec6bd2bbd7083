"""The one interface both backends implement: named numpy feeds in, named numpy outputs out."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Protocol

import numpy as np

from ..errors import InputError

BACKENDS = ("onnxruntime", "tensorrt")


class Engine(Protocol):
    """A runnable graph: its input dtypes, and `infer` from feeds to outputs."""

    input_dtypes: Dict[str, np.dtype]

    def infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        ...


def open_engine(path: Path) -> Engine:
    """An ONNX Runtime engine for one graph (TensorRT engines come from edge.build, which builds, caches and
    checks them for a whole bundle)."""
    from .onnxrt import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise InputError("unknown backend %r: use one of %s" % (backend, ", ".join(BACKENDS)))
