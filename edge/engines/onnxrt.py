"""ONNX Runtime engines for bundle graphs: the portable backend (CI, host verification, fallback on the device).

onnxruntime is imported when an engine is opened, so `edge` loads without it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .base import Feed, host_array

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}


def open_session(source: Union[Path, bytes], providers: Optional[Sequence[str]] = None) -> Any:
    """An InferenceSession on a graph file (or serialized bytes) that logs errors only (fp16 graphs make CPU
    constant-folding notices)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    graph = source if isinstance(source, bytes) else str(source)
    return ort.InferenceSession(graph, options, providers=list(providers or ["CPUExecutionProvider"]))


class OnnxRuntimeEngine:
    """One graph (a file or serialized bytes) on ONNX Runtime, CPU unless `providers` say otherwise."""

    def __init__(self, source: Union[Path, bytes], providers: Optional[Sequence[str]] = None) -> None:
        self.source = source if isinstance(source, bytes) else Path(source)
        self.session: Any = open_session(self.source, providers)
        self.input_dtypes: Dict[str, np.dtype] = {
            i.name: np.dtype(_ORT_TYPES.get(i.type, np.float32)) for i in self.session.get_inputs()}
        self.output_names: List[str] = [o.name for o in self.session.get_outputs()]
        self.last_infer_ms = float("nan")

    def infer(self, feeds: Mapping[str, Feed], device_outputs: Sequence[str] = ()) -> Dict[str, Feed]:
        """Run the graph; feeds are cast to the graph's input dtypes; outputs are host arrays (ONNX Runtime on
        the CPU has no device to keep them on, so `device_outputs` changes nothing)."""
        if self.session is None:
            raise RuntimeError("this ONNX Runtime engine was closed")
        typed = {name: host_array(feeds[name], dtype) for name, dtype in self.input_dtypes.items()}
        start = time.perf_counter()
        outputs = self.session.run(self.output_names, typed)
        self.last_infer_ms = (time.perf_counter() - start) * 1e3
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None

    def __enter__(self) -> OnnxRuntimeEngine:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
