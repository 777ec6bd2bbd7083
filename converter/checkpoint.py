"""Read the vision half (``vpm.*``, ``resampler.*``) of a MiniCPM-V checkpoint from a local Hugging Face directory.

Supports ``model.safetensors``, sharded safetensors with ``model.safetensors.index.json`` and
``pytorch_model*.bin`` (memory-mapped). Only vision tensors are read: LLM weights are never loaded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

from edge.errors import InputError

from . import family

VISION_PREFIXES = ("vpm.", "resampler.")


@dataclass(frozen=True)
class VisionSpec:
    """Sizes of the VPM (NaViT SigLIP) and the Resampler of one checkpoint."""

    width: int
    layers: int
    heads: int
    mlp: int
    patch_size: int
    position_grid: int
    layer_norm_eps: float
    query_num: int
    embed_dim: int

    @property
    def resampler_heads(self) -> int:
        return max(1, self.embed_dim // family.RESAMPLER_HEAD_DIM)


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


def vision_spec(config: Dict[str, Any], version: str) -> VisionSpec:
    """Vision sizes from config.json (vision_config, query_num, hidden_size), docs/minicpmv.md defaults where absent."""
    facts = family.facts_for(version)
    vision = config.get("vision_config") or {}
    layers = int(vision.get("num_hidden_layers", family.VISION_LAYERS))
    if config.get("drop_vision_last_layer"):
        layers -= 1  # the official code deletes the last encoder layer before loading weights
    patch = int(vision.get("patch_size", family.PATCH_SIZE))
    return VisionSpec(
        width=int(vision.get("hidden_size", family.VISION_WIDTH)),
        layers=layers,
        heads=int(vision.get("num_attention_heads", family.VISION_HEADS)),
        mlp=int(vision.get("intermediate_size", family.VISION_MLP)),
        patch_size=patch,
        position_grid=int(vision.get("image_size", family.POSITION_GRID * patch)) // patch,
        layer_norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
        query_num=int(config.get("query_num", facts.query_num)),
        embed_dim=int(config.get("hidden_size", facts.llm_hidden)),
    )


def expected_shapes(spec: VisionSpec) -> Dict[str, Tuple[int, ...]]:
    """Every vision tensor the export needs, with its shape."""
    w, d, p = spec.width, spec.embed_dim, spec.patch_size
    shapes: Dict[str, Tuple[int, ...]] = {
        "vpm.embeddings.patch_embedding.weight": (w, 3, p, p),
        "vpm.embeddings.patch_embedding.bias": (w,),
        "vpm.embeddings.position_embedding.weight": (spec.position_grid ** 2, w),
        "vpm.post_layernorm.weight": (w,),
        "vpm.post_layernorm.bias": (w,),
    }
    for i in range(spec.layers):
        layer = "vpm.encoder.layers.%d." % i
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[layer + "self_attn.%s.weight" % proj] = (w, w)
            shapes[layer + "self_attn.%s.bias" % proj] = (w,)
        for norm in ("layer_norm1", "layer_norm2"):
            shapes[layer + norm + ".weight"] = (w,)
            shapes[layer + norm + ".bias"] = (w,)
        shapes[layer + "mlp.fc1.weight"] = (spec.mlp, w)
        shapes[layer + "mlp.fc1.bias"] = (spec.mlp,)
        shapes[layer + "mlp.fc2.weight"] = (w, spec.mlp)
        shapes[layer + "mlp.fc2.bias"] = (w,)
    shapes.update({
        "resampler.query": (spec.query_num, d),
        "resampler.kv_proj.weight": (d, w),
        "resampler.attn.in_proj_weight": (3 * d, d),
        "resampler.attn.in_proj_bias": (3 * d,),
        "resampler.attn.out_proj.weight": (d, d),
        "resampler.attn.out_proj.bias": (d,),
        "resampler.proj": (d, d),
    })
    for norm in ("ln_q", "ln_kv", "ln_post"):
        shapes["resampler.%s.weight" % norm] = (d,)
        shapes["resampler.%s.bias" % norm] = (d,)
    return shapes


def read_config(path: Path) -> Dict[str, Any]:
    """config.json of a checkpoint directory, with one-line errors for a missing directory or bad JSON."""
    if not path.is_dir():
        raise InputError("checkpoint directory %s does not exist: pass --checkpoint with a local Hugging Face "
                         "MiniCPM-V directory (config.json + weights)" % path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise InputError("%s has no config.json: pass the checkpoint's top directory" % path)
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError("%s is not valid JSON (%s): restore the checkpoint's config.json"
                         % (config_path, exc)) from exc
    if not isinstance(config, dict):
        raise InputError("%s does not hold a JSON object: restore the checkpoint's config.json" % config_path)
    return config


def _weight_files(path: Path, wanted: Iterable[str]) -> Dict[Path, List[str]]:
    """Which weight file holds which wanted tensor (via an index where present)."""
    wanted = list(wanted)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_path = path / index_name
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError("%s is not a valid shard index (%s): restore it from the checkpoint"
                                 % (index_path, exc)) from exc
            files: Dict[Path, List[str]] = {}
            for name in wanted:
                if name in weight_map:
                    files.setdefault(path / weight_map[name], []).append(name)
            return files
    singles = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not singles:
        raise InputError("%s holds no model.safetensors, sharded safetensors or pytorch_model*.bin: "
                         "pass a checkpoint directory with its weights" % path)
    return {file: wanted for file in singles}


def _read_file(file: Path, names: List[str]) -> Dict[str, torch.Tensor]:
    if not file.is_file():
        raise InputError("weight file %s named by the checkpoint's index is missing: restore it" % file)
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
        raise InputError("cannot read weight file %s (%s): re-download or regenerate it" % (file, exc)) from exc
    return found


def _tensors_sha256(tensors: Dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of the vision tensors as stored."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(("%s|%s|%s\n" % (name, tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_vision_checkpoint(path: Path, model_version: Optional[str] = None) -> VisionCheckpoint:
    """Read config.json and the vision tensors of a checkpoint; check every name and shape."""
    path = Path(path)
    config = read_config(path)
    version = family.facts_for(model_version).version if model_version else family.detect_version(config)
    spec = vision_spec(config, version)
    shapes = expected_shapes(spec)
    raw: Dict[str, torch.Tensor] = {}
    for file, names in _weight_files(path, shapes).items():
        raw.update(_read_file(file, [n for n in names if n not in raw]))
    missing = [name for name in shapes if name not in raw]
    if missing:
        more = " (and %d more)" % (len(missing) - 1) if len(missing) > 1 else ""
        raise InputError("checkpoint %s lacks tensor %s%s for MiniCPM-V %s: check --model-version or restore "
                         "the weights" % (path, missing[0], more, version))
    for name, shape in shapes.items():
        if tuple(raw[name].shape) != shape:
            raise InputError("tensor %s has shape %s, expected %s for MiniCPM-V %s: check --model-version or "
                             "the checkpoint's config.json" % (name, tuple(raw[name].shape), shape, version))
    return VisionCheckpoint(
        path=path, version=version, spec=spec, config=config,
        tensors={name: tensor.float() for name, tensor in raw.items()},
        weights_sha256=_tensors_sha256(raw),
    )
