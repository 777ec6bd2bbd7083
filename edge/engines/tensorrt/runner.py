"""A TensorRT engine as an `edge.engines.base.Engine`: buffers allocated once for the largest profile, one stream.

Per call: copy the host inputs into pinned host buffers, then to the device (a `DeviceTensor` input of the right
dtype is bound as it is: no copy); set the input shapes and tensor addresses; `execute_async_v3`; copy the outputs
back, or leave those named in `device_outputs` on the device as DeviceTensors; synchronize. Int32 index inputs stay
int32 (8.x has no int64). `close()` frees the device buffers, the context and the engine: the governor swaps
engines at run time, and a Jetson shares its memory with the LLM.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from ..base import DeviceTensor, Feed, host_array
from .logger import shared_logger

_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "UINT8": np.uint8}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """numpy dtype of a tensorrt.DataType (by name, so it works on every release)."""
    name = getattr(trt_dtype, "name", None) or repr(trt_dtype).split(".")[-1]
    return np.dtype(_NUMPY[name])


class TensorRTEngine:
    """One deserialized engine with its context and its buffers (allocated here, freed by `close`).

    `output_elements`: the largest element count of each output, which the caller knows from the bundle's shapes
    (an output's profile shape is not queryable before a run)."""

    def __init__(self, trt: Any, engine_bytes: bytes, memory: Any, output_elements: Mapping[str, int]) -> None:
        self.trt, self.memory = trt, memory
        runtime = trt.Runtime(shared_logger(trt))  # TensorRT keeps a process's first logger: share the builder's
        self.engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (built by another TensorRT or GPU?): "
                               "rebuild it with minicpmv-edge build --force")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs: List[str] = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs: List[str] = [n for n in names if n not in self.inputs]
        self.dtypes: Dict[str, np.dtype] = {n: numpy_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self.input_dtypes = {n: self.dtypes[n] for n in self.inputs}
        self.max_shapes = {n: tuple(self.engine.get_tensor_profile_shape(n, 0)[2]) for n in self.inputs}
        self.last_infer_ms = float("nan")
        sizes = {n: int(np.prod(s)) for n, s in self.max_shapes.items()}
        sizes.update(output_elements)
        self.capacity: Dict[str, int] = dict(sizes)
        self.device: Dict[str, int] = {n: memory.alloc(c * self.dtypes[n].itemsize) for n, c in sizes.items()}
        self.host: Dict[str, np.ndarray] = {n: memory.pinned((c,), self.dtypes[n]) for n, c in sizes.items()}

    def _bind(self, feeds: Mapping[str, Feed]) -> None:
        """Stage host inputs, bind device ones, set shapes and addresses."""
        for name in self.inputs:
            value = feeds[name]
            if isinstance(value, DeviceTensor) and value.dtype == self.dtypes[name]:
                if int(np.prod(value.shape)) > self.capacity[name]:
                    raise ValueError("%s of shape %s exceeds the engine's largest profile %s"
                                     % (name, value.shape, self.max_shapes[name]))
                self.context.set_tensor_address(name, value.pointer)
            else:
                array = np.ascontiguousarray(host_array(value), dtype=self.dtypes[name])
                if array.size > self.capacity[name]:
                    raise ValueError("%s of shape %s exceeds the engine's largest profile %s"
                                     % (name, array.shape, self.max_shapes[name]))
                self.host[name][: array.size] = array.ravel()
                self.memory.to_device(self.device[name], self.host[name][: array.size])
                self.context.set_tensor_address(name, self.device[name])
            if not self.context.set_input_shape(name, tuple(int(d) for d in value.shape)):
                raise ValueError("input %s of shape %s is outside the engine's profile" % (name, value.shape))
        for name in self.outputs:
            self.context.set_tensor_address(name, self.device[name])

    def infer(self, feeds: Mapping[str, Feed], device_outputs: Sequence[str] = ()) -> Dict[str, Feed]:
        """Run once; outputs named in `device_outputs` stay on the device (valid until the next call)."""
        if self.context is None:
            raise RuntimeError("this TensorRT engine was closed")
        start = time.perf_counter()
        self._bind(feeds)
        if not self.context.execute_async_v3(self.memory.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        shapes = {n: tuple(int(d) for d in self.context.get_tensor_shape(n)) for n in self.outputs}
        results: Dict[str, Feed] = {}
        for name in self.outputs:
            if name in device_outputs:
                results[name] = DeviceTensor(self.device[name], shapes[name], self.dtypes[name], self.memory)
            else:
                view = self.host[name][: int(np.prod(shapes[name]))]
                self.memory.to_host(view, self.device[name])
                results[name] = view
        self.memory.synchronize()
        self.last_infer_ms = (time.perf_counter() - start) * 1e3
        return {n: v if isinstance(v, DeviceTensor) else v.reshape(shapes[n]).copy() for n, v in results.items()}

    def close(self) -> None:
        """Free the device buffers, then the context and the engine (safe to call twice)."""
        for pointer in self.device.values():
            self.memory.free(pointer)
        self.device, self.host = {}, {}
        self.context = None
        self.engine = None

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
