"""The one interface both backends implement: named numpy feeds in, named numpy outputs out."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Protocol

import numpy as np

from .errors import InputError

BACKENDS = ("onnxruntime",)


class Engine(Protocol):
    """A runnable graph: its input dtypes, and `infer` from feeds to outputs."""

    input_dtypes: Dict[str, np.dtype]

    def infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        ...


def open_engine(path: Path, backend: str) -> Engine:
    """An engine for the graph at `path` on `backend`."""
    if backend not in BACKENDS:
        raise InputError("unknown backend %r: this version runs %s" % (backend, ", ".join(BACKENDS)))
    from .onnxrt import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path)
