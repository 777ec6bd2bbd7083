"""Compile the preprocessing kernels once per process through pycuda, with pycuda's on-disk cache of the cubin.

The cache directory is ``$MINICPMV_EDGE_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/minicpmv-edge/cuda-kernels``
(``~/.cache/...``); pycuda keys each entry by the source, the options, the nvcc version and the GPU architecture,
so a second process (or a reboot) loads the cubin without running nvcc. nvcc is found on PATH, under
``$CUDA_ROOT``/``$CUDA_HOME``, or in /usr/local/cuda (JetPack's place, often not on PATH).
"""
from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional

from .cuda_source import FUNCTIONS, SOURCE

CACHE_ENV = "MINICPMV_EDGE_KERNEL_CACHE"


def kernel_cache_dir() -> Path:
    """Where compiled kernels are kept (see the module docstring)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "minicpmv-edge" / "cuda-kernels"


def find_nvcc() -> Optional[str]:
    """Path of nvcc, or None."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_ROOT"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    return None


def cached_kernel_files(cache_dir: Optional[Path] = None) -> int:
    """How many compiled modules the cache directory holds (0 when it does not exist)."""
    directory = cache_dir or kernel_cache_dir()
    return sum(1 for _ in directory.glob("*.cubin")) if directory.is_dir() else 0


@lru_cache(maxsize=4)
def compile_kernels(cache_dir: Optional[Path] = None) -> Dict[str, Any]:
    """name -> prepared pycuda function, for the current context's device. Needs a current CUDA context (the
    device memory layer makes the primary one current) and, on a cold cache, nvcc."""
    from pycuda.compiler import SourceModule

    nvcc = find_nvcc()
    if nvcc is None:
        raise RuntimeError("device preprocessing needs nvcc to compile its kernels: install the CUDA toolkit "
                           "(JetPack has it in /usr/local/cuda/bin) or set CUDA_ROOT")
    directory = cache_dir or kernel_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    module = SourceModule(SOURCE, nvcc=nvcc, no_extern_c=True, cache_dir=str(directory))
    functions = {}
    for name, signature in FUNCTIONS.items():
        function = module.get_function(name)
        function.prepare(signature)
        functions[name] = function
    functions["module"] = module  # keeps the module loaded as long as its functions are used
    return functions
