"""Which preprocessing path runs: the `resize` setting (a CPU mode, device or auto) against what this box has.

``device`` needs pycuda, a CUDA device and nvcc (pycuda runs it, or asks it its version to find a cached cubin);
asked for and unavailable, it is a clear error. ``auto`` takes the device when it can and otherwise ``exact``, which
gives the same pixels on the CPU. The CPU modes (``exact``, ``fast``, ``torchvision``) are those of
``edge.preprocess.resize``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

from ...errors import InputError
from ..resize import MODES as CPU_MODES
from .kernels import cached_kernel_files, find_nvcc, kernel_cache_dir

DEVICE_MODES = ("device", "auto")
MODES = CPU_MODES + DEVICE_MODES
PYCUDA_FIX = "pip install pycuda (built against the CUDA toolkit; JetPack has one in /usr/local/cuda)"


class DeviceSupport(NamedTuple):
    """Whether device preprocessing can run here, what was found, and what to do when it cannot."""

    ready: bool
    found: str
    fix: str = ""


def device_support() -> DeviceSupport:
    """Probe pycuda, the CUDA driver and devices, nvcc and the kernel cache (creates no context)."""
    try:
        import pycuda
        import pycuda.driver as cuda
    except ImportError:
        return DeviceSupport(False, "no pycuda", PYCUDA_FIX)
    version = getattr(pycuda, "VERSION_TEXT", "present")
    try:
        cuda.init()
        devices = [cuda.Device(index).name() for index in range(cuda.Device.count())]
    except Exception as exc:  # noqa: BLE001 - any driver failure means "no device"
        return DeviceSupport(False, "pycuda %s, no CUDA driver (%s)" % (version, exc),
                             "install the NVIDIA driver (JetPack on a Jetson)")
    if not devices:
        return DeviceSupport(False, "pycuda %s, no CUDA device" % version, "run on a machine with a CUDA GPU")
    nvcc = find_nvcc()
    if nvcc is None:
        return DeviceSupport(False, "pycuda %s, %s, no nvcc" % (version, devices[0]),
                             "install the CUDA toolkit or set CUDA_ROOT (nvcc compiles the kernels once)")
    cache = kernel_cache_dir()
    return DeviceSupport(True, "pycuda %s, %s, nvcc %s, %d compiled kernel module(s) cached in %s"
                         % (version, devices[0], nvcc, cached_kernel_files(cache), cache))


def choose_path(mode: str, support: Optional[DeviceSupport] = None) -> Tuple[str, str]:
    """(path, why) for a `resize` setting; InputError when `device` is asked for and cannot run."""
    if mode not in MODES:
        raise ValueError("resize must be one of %s, got %r" % (", ".join(MODES), mode))
    if mode not in DEVICE_MODES:
        return mode, "resize: %s" % mode
    support = support or device_support()
    if support.ready:
        return "device", support.found
    if mode == "device":
        raise InputError("resize: device cannot run here (%s): %s, or use resize: auto (falls back to exact, the "
                         "same pixels on the CPU)" % (support.found, support.fix))
    return "exact", "device preprocessing unavailable (%s); exact gives the same pixels on the CPU" % support.found


def open_device_preprocessor(vpm: Any, layout: str) -> Any:
    """A DevicePreprocessor writing strips of the VPM engine's pixel dtype on the engine's own device memory and
    stream (a TensorRT engine's), or on a memory of its own for an engine that copies device inputs to the host."""
    from .preprocessor import DevicePreprocessor

    memory = getattr(vpm, "memory", None)
    if memory is None:
        from ...engines.tensorrt.device_memory import PycudaMemory

        memory = PycudaMemory()
    return DevicePreprocessor(memory, layout, vpm.input_dtypes["pixel_values"])
