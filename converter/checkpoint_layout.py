"""What a checkpoint directory holds, read without torch: config.json, the version, the vision sizes, which weight
file holds which vision tensor, and (for safetensors, from the file headers) every tensor's name and shape.

Everything here runs before torch is imported, so a missing directory, a bad config.json or a checkpoint of another
version is refused in a fraction of a second. ``converter.checkpoint`` then reads the tensors themselves.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from edge.errors import InputError

from . import family
from .merger_layout import merger_shapes, merger_spec_fields

VISION_PREFIXES = ("vpm.", "resampler.", "model.vision_tower.", "model.merger.")
_SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # a header larger than this is not a safetensors file


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
    # merger versions (4.6, 4.7) only: the window merger's layer, the downsample MLP count, the config's mode
    insert_layer_id: int = -1
    merger_times: int = 0
    downsample_mode: str = ""

    @property
    def is_merger(self) -> bool:
        return self.merger_times > 0

    @property
    def merge_levels(self) -> int:
        """2x2 merges between patches and LLM tokens: merger_times, plus the window merger in "16x" mode."""
        return self.merger_times + (self.downsample_mode == "16x")

    @property
    def resampler_heads(self) -> int:
        return max(1, self.embed_dim // family.RESAMPLER_HEAD_DIM)


@dataclass(frozen=True)
class CheckpointLayout:
    """A checkpoint directory as found: its config, version and vision sizes, and the vision tensors per file."""

    path: Path
    config: Dict[str, Any]
    version: str
    spec: VisionSpec
    files: Dict[Path, List[str]]  # weight file -> the wanted vision tensors it may hold

    @property
    def facts(self) -> family.VersionFacts:
        return family.facts_for(self.version)

    @property
    def bundle_layout(self) -> str:
        """The slice layout a bundle of this checkpoint records (merger versions name their mode)."""
        return family.bundle_layout(self.version, self.spec.downsample_mode)


def with_downsample_mode(layout: CheckpointLayout, mode: Optional[str]) -> CheckpointLayout:
    """`layout` with its spec set to export `mode` (None: the config's); only merger versions have modes."""
    if mode is None:
        return layout
    if not layout.spec.is_merger:
        raise InputError("--downsample-mode applies to MiniCPM-V 4.6/4.7, not %s: leave it out" % layout.version)
    return replace(layout, spec=replace(layout.spec, downsample_mode=mode))


def vision_spec(config: Dict[str, Any], version: str) -> VisionSpec:
    """Vision sizes from config.json (vision_config, query_num, hidden_size), docs/minicpmv.md defaults where absent."""
    facts = family.facts_for(version)
    if family.is_merger(version):
        return VisionSpec(**merger_spec_fields(config, version))
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
    if spec.is_merger:
        return merger_shapes(spec)
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
    """config.json of a checkpoint directory, with one-line errors for a missing directory, a file or bad JSON."""
    if path.is_file():
        holder = path.parent if path.name == "config.json" or (path.parent / "config.json").is_file() else None
        instead = "pass its directory: --checkpoint %s" % holder if holder else \
            "pass --checkpoint with the directory that holds config.json and the weights"
        raise InputError("checkpoint %s is a file, not a checkpoint directory: %s" % (path, instead))
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


def weight_files(path: Path, wanted: Iterable[str]) -> Dict[Path, List[str]]:
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


def unreadable(file: Path, reason: Any) -> InputError:
    """The error for a weight file that cannot be read (truncated, foreign)."""
    return InputError("cannot read weight file %s (%s): re-download or regenerate it" % (file, reason))


def safetensors_shapes(file: Path) -> Dict[str, Tuple[int, ...]]:
    """Name -> shape of every tensor of a safetensors file, from its JSON header alone (no tensor is read)."""
    try:
        with open(file, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise unreadable(file, "shorter than a safetensors header")
            size = struct.unpack("<Q", prefix)[0]
            if size > _SAFETENSORS_HEADER_LIMIT:
                raise unreadable(file, "header of %d bytes: not a safetensors file" % size)
            header = json.loads(handle.read(size).decode("utf-8"))
        return {name: tuple(int(d) for d in entry["shape"]) for name, entry in header.items()
                if name != "__metadata__"}
    except InputError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise unreadable(file, exc) from exc


def check_tensors(found: Mapping[str, Tuple[int, ...]], layout: CheckpointLayout, fix: Optional[str] = None) -> None:
    """Every vision tensor the version needs is in `found` (name -> shape) with its expected shape; `fix` replaces
    the advice that ends the message (the --model-version hint suits the commands that have that flag)."""
    shapes = expected_shapes(layout.spec)
    missing = [name for name in shapes if name not in found]
    if missing:
        more = " (and %d more)" % (len(missing) - 1) if len(missing) > 1 else ""
        raise InputError("checkpoint %s lacks tensor %s%s for MiniCPM-V %s: %s"
                         % (layout.path, missing[0], more, layout.version,
                            fix or "check --model-version or restore the weights"))
    for name, shape in shapes.items():
        if tuple(found[name]) != shape:
            raise InputError("tensor %s has shape %s, expected %s for MiniCPM-V %s: %s"
                             % (name, tuple(found[name]), shape, layout.version,
                                fix or "check --model-version or the checkpoint's config.json"))


def read_layout(path: Path, model_version: Optional[str] = None, fix: Optional[str] = None,
                fallback_version: Optional[str] = None) -> CheckpointLayout:
    """The checkpoint at `path` as far as it can be checked without torch: config.json, version (`model_version`,
    else detected, else `fallback_version`), the weight files and, for safetensors, every vision tensor's name and
    shape. `fix` ends the message of a tensor mismatch."""
    path = Path(path)
    config = read_config(path)
    version = (family.facts_for(model_version).version if model_version
               else family.detect_version(config, fallback_version))
    spec = vision_spec(config, version)
    layout = CheckpointLayout(path, config, version, spec, weight_files(path, expected_shapes(spec)))
    for file in layout.files:
        if not file.is_file():
            raise InputError("weight file %s named by the checkpoint's index is missing: restore it" % file)
    if all(file.suffix == ".safetensors" for file in layout.files):
        found: Dict[str, Tuple[int, ...]] = {}
        for file, names in layout.files.items():
            shapes = safetensors_shapes(file)
            found.update({name: shapes[name] for name in names if name in shapes and name not in found})
        check_tensors(found, layout, fix)
    return layout
