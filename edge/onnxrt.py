"""ONNX Runtime sessions for bundle graphs (the portable backend; imported lazily so edge loads without it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence


def open_session(path: Path, providers: Optional[Sequence[str]] = None) -> Any:
    """An InferenceSession on `path` that logs errors only (fp16 graphs make CPU constant-folding notices)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
