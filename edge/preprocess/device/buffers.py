"""Named device buffers that grow on demand, and device copies of small host tables, behind the device-memory
interface of ``edge.engines.tensorrt.device_memory`` (int pointers, one stream)."""
from __future__ import annotations

from typing import Any, Dict, Hashable, Tuple

import numpy as np


class DeviceBuffers:
    """Scratch and output buffers by name, reallocated only when a frame needs more bytes than before; device
    copies of constant tables by key, uploaded once. Everything is freed by `close`."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self._buffers: Dict[str, Tuple[int, int]] = {}  # name -> (pointer, bytes)
        self._tables: Dict[Hashable, Tuple[int, np.ndarray]] = {}  # key -> (pointer, host copy kept alive)
        self._pinned: Dict[str, np.ndarray] = {}

    def get(self, name: str, nbytes: int) -> int:
        """A device buffer of at least `nbytes` (its contents are undefined after a reallocation)."""
        pointer, size = self._buffers.get(name, (0, 0))
        if nbytes > size:
            if size:
                self.memory.synchronize()  # earlier work on the stream may still read the old buffer
                self.memory.free(pointer)
            pointer, size = self.memory.alloc(nbytes), nbytes
            self._buffers[name] = (pointer, size)
        return pointer

    def pinned(self, name: str, nbytes: int) -> np.ndarray:
        """A page-locked uint8 host buffer of at least `nbytes` (for asynchronous uploads)."""
        host = self._pinned.get(name)
        if host is None or host.size < nbytes:
            if host is not None:
                self.memory.synchronize()
            host = self.memory.pinned((nbytes,), np.uint8)
            self._pinned[name] = host
        return host

    def table(self, key: Hashable, host: np.ndarray) -> int:
        """The device copy of a constant host array, uploaded the first time `key` is seen."""
        if key not in self._tables:
            array = np.array(host, order="C", copy=True)  # a writable copy that outlives the async upload
            pointer = self.memory.alloc(array.nbytes)
            self.memory.to_device(pointer, array)
            self._tables[key] = (pointer, array)
        return self._tables[key][0]

    @property
    def device_bytes(self) -> int:
        return sum(size for _, size in self._buffers.values()) + sum(a.nbytes for _, a in self._tables.values())

    def close(self) -> None:
        self.memory.synchronize()
        for pointer, _ in list(self._buffers.values()) + list(self._tables.values()):
            self.memory.free(pointer)
        self._buffers, self._tables, self._pinned = {}, {}, {}
