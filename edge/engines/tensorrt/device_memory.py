"""Device memory for the TensorRT runner, behind a small interface: pointers and stream handles are plain ints.

TensorRT needs only integer device pointers and a raw stream handle, so pycuda (here) or cuda-python can serve.
Pinned host buffers make the copies asynchronous on the runner's one stream.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np


class PycudaMemory:
    """pycuda: one stream, device allocations kept alive by this object, pinned host arrays."""

    def __init__(self) -> None:
        import pycuda.autoprimaryctx  # noqa: F401 - makes the device's primary context current
        import pycuda.driver as cuda

        self._cuda = cuda
        self._allocations: Dict[int, Any] = {}
        self.stream = cuda.Stream()

    def compute_capability(self) -> str:
        major, minor = self._cuda.Context.get_device().compute_capability()
        return "%d.%d" % (major, minor)

    def device_memory(self) -> dict:
        """Free and total device memory (unified memory on a Jetson) in bytes."""
        free, total = self._cuda.mem_get_info()
        return {"device_free_bytes": int(free), "device_total_bytes": int(total)}

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def alloc(self, nbytes: int) -> int:
        """A device buffer of `nbytes` (at least 1), as an int pointer."""
        allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        """Give a buffer from `alloc` back to the device (unknown pointers are ignored)."""
        allocation = self._allocations.pop(int(pointer), None)
        if allocation is not None:
            allocation.free()

    def pinned(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        return self._cuda.pagelocked_empty(shape, dtype)

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(pointer, host, self.stream)

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        self._cuda.memcpy_dtoh_async(host, pointer, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()
