"""A TensorRT engine as an `edge.engine.Engine`: buffers allocated once for the largest profile, one stream.

Per call: copy the inputs into pinned host buffers, then to the device; set the input shapes and tensor addresses;
`execute_async_v3`; copy the outputs back; synchronize. Int32 index inputs stay int32 (8.x has no int64). A
chain of two runners can hand the VPM output to the Resampler on the device (`infer_on_device`): the Resampler's
`vision_embeds` address is the VPM output's device buffer, with no host round trip.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "UINT8": np.uint8}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """numpy dtype of a tensorrt.DataType (by name, so it works on every release)."""
    name = getattr(trt_dtype, "name", None) or repr(trt_dtype).split(".")[-1]
    return np.dtype(_NUMPY[name])


class TensorRTEngine:
    """One deserialized engine with its context and buffers."""

    def __init__(self, trt: Any, engine_bytes: bytes, memory: Any, logger: Any = None) -> None:
        self.trt, self.memory = trt, memory
        runtime = trt.Runtime(logger or trt.Logger(trt.Logger.WARNING))
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
        self.device: Dict[str, int] = {}
        self.host: Dict[str, np.ndarray] = {}
        self.capacity: Dict[str, int] = {}

    def allocate(self, output_elements: Dict[str, int]) -> None:
        """Device and pinned host buffers for the largest profile, once (`output_elements`: max size of each
        output, which the caller knows from the bundle's shapes)."""
        sizes = {n: int(np.prod(s)) for n, s in self.max_shapes.items()}
        sizes.update(output_elements)
        for name, count in sizes.items():
            self.capacity[name] = count
            self.device[name] = self.memory.alloc(count * self.dtypes[name].itemsize)
            self.host[name] = self.memory.pinned((count,), self.dtypes[name])

    def _stage(self, feeds: Dict[str, np.ndarray], skip: Tuple[str, ...] = ()) -> None:
        for name in self.inputs:
            if name in skip:
                continue
            value = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            if value.size > self.capacity[name]:
                raise ValueError("%s of shape %s exceeds the engine's largest profile %s"
                                 % (name, value.shape, self.max_shapes[name]))
            self.host[name][: value.size] = value.ravel()
            self.memory.to_device(self.device[name], self.host[name][: value.size])
        for name in self.inputs:
            shape = feeds[name].shape
            if not self.context.set_input_shape(name, tuple(int(d) for d in shape)):
                raise ValueError("input %s of shape %s is outside the engine's profile" % (name, shape))
        for name in self.inputs + self.outputs:
            self.context.set_tensor_address(name, self.device[name])

    def run(self, feeds: Dict[str, np.ndarray], skip: Tuple[str, ...] = ()) -> None:
        """Enqueue copies and execution on the stream (inputs in `skip` are already on the device)."""
        self._stage(feeds, skip)
        if not self.context.execute_async_v3(self.memory.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def fetch(self, names: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
        """Copy outputs to the host and wait for the stream."""
        names = names or self.outputs
        shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in names}
        views = {n: self.host[n][: int(np.prod(shapes[n]))] for n in names}
        for name in names:
            self.memory.to_host(views[name], self.device[name])
        self.memory.synchronize()
        return {n: views[n].reshape(shapes[n]).copy() for n in names}

    def infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.run(feeds)
        return self.fetch()


def infer_on_device(vpm: TensorRTEngine, resampler: TensorRTEngine, vpm_feeds: Dict[str, np.ndarray],
                    resampler_feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """VPM then Resampler with the VPM output handed over on the device (same stream, no host copy); through the
    host only when the two engines disagree on its dtype (e.g. an fp16 VPM before an fp32 Resampler)."""
    if vpm.dtypes["vision_embeds"] != resampler.dtypes["vision_embeds"]:
        return resampler.infer(dict(resampler_feeds, **vpm.infer(vpm_feeds)))
    vpm.run(vpm_feeds)
    shape = tuple(vpm.context.get_tensor_shape("vision_embeds"))
    resampler.device["vision_embeds"] = vpm.device["vision_embeds"]
    placeholder = np.empty(shape, dtype=resampler.dtypes["vision_embeds"])  # shape only, never copied
    resampler.run(dict(resampler_feeds, vision_embeds=placeholder), skip=("vision_embeds",))
    return resampler.fetch()
