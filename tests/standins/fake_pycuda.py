"""Device memory for the TensorRT stand-in: either a fake (host bytearrays behind int pointers) or real pycuda.

`device_memory()` returns (runner memory, stand-in memory adapter). With MINICPMV_REAL_PYCUDA=1 (the GPU machine)
the runner gets edge.device_memory.PycudaMemory — real pinned buffers, device allocations, async copies and a real
stream — and the stand-in engine reads and writes the device buffers with pycuda's synchronous copies after
synchronizing that stream. Only TensorRT itself is stood in then.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np


class FakeDeviceMemory:
    """The runner's device-memory interface over host memory: pointers are ints, copies happen at once."""

    def __init__(self) -> None:
        self.buffers: Dict[int, bytearray] = {}
        self._next = 0x1000
        self.stream_handle = 7
        self.allocations = 0
        self.frees = 0
        self.to_host_bytes = []  # size of every device -> host copy

    def alloc(self, nbytes: int) -> int:
        pointer = self._next
        self.buffers[pointer] = bytearray(max(int(nbytes), 1))
        self._next += max(int(nbytes), 1) + 256
        self.allocations += 1
        return pointer

    def free(self, pointer: int) -> None:
        del self.buffers[pointer]
        self.frees += 1

    def pinned(self, shape, dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def compute_capability(self) -> str:
        return "8.7"  # an Orin

    def _locate(self, pointer: int) -> Tuple[bytearray, int]:
        for base, buffer in self.buffers.items():
            if base <= pointer < base + len(buffer):
                return buffer, pointer - base
        raise ValueError("pointer %#x is not device memory" % pointer)

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        buffer, offset = self._locate(pointer)
        data = np.ascontiguousarray(host).tobytes()
        buffer[offset:offset + len(data)] = data

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        self.to_host_bytes.append(host.nbytes)
        buffer, offset = self._locate(pointer)
        host.view(np.uint8).reshape(-1)[:] = np.frombuffer(buffer, np.uint8, host.nbytes, offset)

    def synchronize(self) -> None:
        pass

    # the stand-in engine's side
    def read(self, pointer: int, nbytes: int) -> bytes:
        buffer, offset = self._locate(pointer)
        return bytes(buffer[offset:offset + nbytes])

    def write(self, pointer: int, data: bytes) -> None:
        buffer, offset = self._locate(pointer)
        buffer[offset:offset + len(data)] = data

    def sync(self, stream_handle: int) -> None:
        assert stream_handle == self.stream_handle


class PycudaAdapter:
    """The stand-in engine's view of real device memory (synchronous pycuda copies)."""

    def __init__(self, memory: Any) -> None:
        import pycuda.driver as cuda

        self.cuda, self.memory = cuda, memory

    def read(self, pointer: int, nbytes: int) -> bytes:
        host = np.empty(nbytes, np.uint8)
        self.cuda.memcpy_dtoh(host, pointer)
        return host.tobytes()

    def write(self, pointer: int, data: bytes) -> None:
        self.cuda.memcpy_htod(pointer, np.frombuffer(data, np.uint8))

    def sync(self, stream_handle: int) -> None:
        assert stream_handle == self.memory.stream_handle
        self.memory.synchronize()


def real_pycuda() -> bool:
    return os.environ.get("MINICPMV_REAL_PYCUDA") == "1"


def device_memory() -> Tuple[Any, Any]:
    if real_pycuda():
        from edge.engines.tensorrt.device_memory import PycudaMemory

        memory = PycudaMemory()
        return memory, PycudaAdapter(memory)
    memory = FakeDeviceMemory()
    return memory, memory
