"""ONNX Runtime sessions for bundle graphs (the portable backend; imported lazily so edge loads without it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np


def open_session(path: Union[Path, bytes], providers: Optional[Sequence[str]] = None) -> Any:
    """An InferenceSession on a graph file (or serialized bytes) that logs errors only (fp16 graphs make CPU
    constant-folding notices)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, options, providers=list(providers or ["CPUExecutionProvider"]))


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}


class OnnxRuntimeEngine:
    """A bundle graph on ONNX Runtime (CPU unless providers say otherwise): the portable backend."""

    def __init__(self, path: Path, providers: Optional[Sequence[str]] = None) -> None:
        self.path = Path(path)
        self.session = open_session(self.path, providers)
        self.input_dtypes: Dict[str, np.dtype] = {
            i.name: np.dtype(_ORT_TYPES[i.type]) for i in self.session.get_inputs()}
        self.output_names: List[str] = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the graph; feeds are cast to the graph's input dtypes."""
        typed = {name: np.asarray(feeds[name], dtype=dtype) for name, dtype in self.input_dtypes.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, typed)))
