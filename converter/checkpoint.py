"""Read the vision half (``vpm.*``, ``resampler.*``) of a MiniCPM-V checkpoint from a local Hugging Face directory.

Supports ``model.safetensors``, sharded safetensors with ``model.safetensors.index.json`` and
``pytorch_model*.bin`` (memory-mapped). Only vision tensors are read: LLM weights are never loaded. What can be
checked without torch (the directory, config.json, the version, names and shapes) is ``converter.checkpoint_layout``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from edge.errors import InputError

from . import family
from .checkpoint_layout import CheckpointLayout, VisionSpec, check_tensors, read_layout, unreadable


@dataclass
class VisionCheckpoint:
    """The vision tensors of a checkpoint (float32) and the facts read from its config.json."""

    path: Path
    version: str
    spec: VisionSpec
    config: Dict[str, Any]
    tensors: Dict[str, torch.Tensor] = field(repr=False)
    weights_sha256: str = ""

    @property
    def facts(self) -> family.VersionFacts:
        return family.facts_for(self.version)


def _read_file(file: Path, names: List[str]) -> Dict[str, torch.Tensor]:
    found: Dict[str, torch.Tensor] = {}
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                present = set(handle.keys())
                for name in names:
                    if name in present:
                        found[name] = handle.get_tensor(name)
        else:
            state = torch.load(str(file), map_location="cpu", mmap=True, weights_only=True)
            found = {name: state[name] for name in names if name in state}
    except InputError:
        raise
    except Exception as exc:  # a truncated or foreign file: name it
        raise unreadable(file, exc) from exc
    return found


def _tensors_sha256(tensors: Dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of the vision tensors as stored."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(("%s|%s|%s\n" % (name, tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_tensors(layout: CheckpointLayout, fix: Optional[str] = None) -> VisionCheckpoint:
    """Read the vision tensors of a checkpoint whose layout was read (and checked) already; check every name and
    shape (for .bin files this is the first check). `fix` as in checkpoint_layout.check_tensors."""
    raw: Dict[str, torch.Tensor] = {}
    for file, names in layout.files.items():
        raw.update(_read_file(file, [n for n in names if n not in raw]))
    check_tensors({name: tuple(tensor.shape) for name, tensor in raw.items()}, layout, fix)
    return VisionCheckpoint(
        path=layout.path, version=layout.version, spec=layout.spec, config=layout.config,
        tensors={name: tensor.float() for name, tensor in raw.items()},
        weights_sha256=_tensors_sha256(raw),
    )


def load_vision_checkpoint(path: Path, model_version: Optional[str] = None) -> VisionCheckpoint:
    """Read config.json and the vision tensors of a checkpoint; check every name and shape."""
    return load_tensors(read_layout(path, model_version))
