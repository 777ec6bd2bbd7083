"""The one interface both backends implement: named feeds in, named outputs out, and a lifecycle.

A feed is a numpy array or a `DeviceTensor`, a tensor that already lies in device memory (the VPM's output handed
to the Resampler without a round trip through the host). An engine asked for `device_outputs` may return them as
DeviceTensors (TensorRT does; ONNX Runtime returns numpy arrays); an engine fed a DeviceTensor it cannot bind
copies it to the host. A DeviceTensor is valid until its engine runs again or closes.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError

BACKENDS = ("onnxruntime", "tensorrt")


class DeviceTensor(NamedTuple):
    """A tensor in device memory: pointer (int), shape, dtype, and the memory layer that can copy it out."""

    pointer: int
    shape: Tuple[int, ...]
    dtype: np.dtype
    memory: Any

    def to_host(self) -> np.ndarray:
        """A host copy (waits for the memory layer's stream)."""
        host = np.empty(self.shape, dtype=self.dtype)
        self.memory.to_host(host.reshape(-1), self.pointer)
        self.memory.synchronize()
        return host


Feed = Union[np.ndarray, DeviceTensor]


def host_array(value: Feed, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """`value` as a host numpy array (of `dtype` when given)."""
    array = value.to_host() if isinstance(value, DeviceTensor) else value
    return np.asarray(array, dtype=dtype)


class Engine(Protocol):
    """A runnable graph: input dtypes, `infer`, the time of the last inference, and `close` (also on `with`)."""

    input_dtypes: Dict[str, np.dtype]
    last_infer_ms: float

    def infer(self, feeds: Mapping[str, Feed], device_outputs: Sequence[str] = ()) -> Dict[str, Feed]:
        ...

    def close(self) -> None:
        ...


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise InputError("unknown backend %r: use one of %s" % (backend, ", ".join(BACKENDS)))
