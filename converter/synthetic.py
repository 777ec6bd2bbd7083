"""Seeded synthetic MiniCPM-V checkpoints in the exact Hugging Face layout (vision tensors only).

Sizes: ``tiny`` (VPM width 64, 2 layers, D 256), ``small`` (real widths: 1152, MLP 4304, 16 heads, the
version's D and Q, 2 layers) and ``full`` (the real 27-layer VPM). As in real SigLIP, a few residual channels
carry activations in the hundreds (outliers that make INT8 calibration honest). LLM weights are omitted.

Random weights alone make a model that barely looks at its input (uniform attention averages the image away,
and the outlier channels dominate every LayerNorm), so tokens of different images would agree to a cosine of
0.99999 and no accuracy figure would mean anything. Three choices make the tokens depend on the image as a
trained model's do: patch embeddings as strong as the position embeddings, LayerNorm gains that undo the
scale-down the outliers cause on the other channels (as trained gains do, leaving the outlier channels
standing out of the matmul inputs), and query/key projections large enough for peaked attention.
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any, Dict

import torch

from edge.fsutil import atomic_directory

from . import family
from .checkpoint_layout import VisionSpec, expected_shapes, vision_spec
from .synthetic_merger import merger_config, merger_tensors

SIZES = ("tiny", "small", "full")
OUTLIER_CHANNELS = (7, 33, 50)  # residual channels given large magnitudes (all < the tiny width 64)
OUTLIER_MAGNITUDE = 200.0  # about the residual magnitude they reach after the last layer
PATCH_EMBEDDING_GAIN = 3.0  # patch embeddings about as strong as the position embeddings (std 0.3)
VPM_QK_GAIN = 3.0  # VPM attention logits of a few units instead of ~0.1
RESAMPLER_QK_GAIN = 8.0  # Resampler queries pick patches instead of averaging all of them
_TINY = {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4, "llm_hidden": family.TINY_LLM_HIDDEN}


def synthetic_config(version: str, size: str) -> Dict[str, Any]:
    """config.json of a synthetic checkpoint: the real fields of `version`, scaled down for tiny/small."""
    if size not in SIZES:
        raise ValueError("size must be one of %s" % ", ".join(SIZES))
    facts = family.facts_for(version)
    if family.is_merger(version):
        return merger_config(version, size, _TINY["llm_hidden"])
    vision = {
        "model_type": "siglip", "hidden_size": family.VISION_WIDTH, "intermediate_size": family.VISION_MLP,
        "num_attention_heads": family.VISION_HEADS, "num_hidden_layers": family.VISION_LAYERS,
        "patch_size": family.PATCH_SIZE, "image_size": family.POSITION_GRID * family.PATCH_SIZE,
        "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh",
    }
    hidden = facts.llm_hidden
    if size != "full":
        vision["num_hidden_layers"] = 2
    if size == "tiny":
        vision.update({k: v for k, v in _TINY.items() if k != "llm_hidden"})
        hidden = _TINY["llm_hidden"]
    config: Dict[str, Any] = {
        "architectures": ["MiniCPMO" if facts.model_type == "minicpmo" else "MiniCPMV"],
        "model_type": facts.model_type,
        "version": 2.6 if version == "o-2.6" else float(version),
        "hidden_size": hidden,
        "query_num": facts.query_num,
        "image_size": 448,
        "patch_size": family.PATCH_SIZE,
        "slice_mode": True,
        "slice_config": {"max_slice_nums": 9, "patch_size": family.PATCH_SIZE, "scale_resolution": 448},
        "drop_vision_last_layer": False,
        "batch_vision_input": True,
        "vision_config": vision,
        "torch_dtype": "bfloat16",
        "_synthetic": {"size": size, "note": "seeded synthetic weights made by minicpmv-convert"},
    }
    if facts.use_image_id:
        config["use_image_id"] = True
    if version == "o-2.6":
        config.update({"init_audio": True, "init_tts": True})
    return config


def _linear_std(shape) -> float:
    return 0.5 / math.sqrt(shape[-1] if len(shape) == 2 else math.prod(shape[1:]))


def synthetic_tensors(spec: VisionSpec, seed: int) -> Dict[str, torch.Tensor]:
    """Seeded float32 vision tensors with the exact names and shapes a checkpoint of `spec` has."""
    if spec.is_merger:
        return merger_tensors(spec, seed, OUTLIER_CHANNELS, OUTLIER_MAGNITUDE, PATCH_EMBEDDING_GAIN, VPM_QK_GAIN)
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    tensors: Dict[str, torch.Tensor] = {}
    for name, shape in expected_shapes(spec).items():
        if name.endswith(("norm1.weight", "norm2.weight", "layernorm.weight")) or name.startswith(
                "resampler.ln_") and name.endswith(".weight"):
            tensors[name] = 1.0 + normal(shape, 0.1)
        elif name.endswith("bias") or name == "resampler.attn.in_proj_bias":
            tensors[name] = normal(shape, 0.02)
        elif name == "vpm.embeddings.position_embedding.weight":
            tensors[name] = normal(shape, 0.3)
        elif name == "resampler.query":
            tensors[name] = normal(shape, 1.0)
        else:
            tensors[name] = normal(shape, _linear_std(shape))
    per_layer = OUTLIER_MAGNITUDE / max(spec.layers, 1)
    channels = [c for c in OUTLIER_CHANNELS if c < spec.width]
    for i in range(spec.layers):
        layer = "vpm.encoder.layers.%d." % i
        for sign, channel in zip((1.0, -1.0, 1.0), channels):
            tensors[layer + "mlp.fc2.bias"][channel] = sign * per_layer
            tensors[layer + "mlp.fc2.weight"][channel] *= 8.0
        for norm in ("layer_norm1", "layer_norm2"):  # both see the outliers of the layers before this one
            _undo_outlier_scale(tensors[layer + norm + ".weight"], channels, i * per_layer, spec.width)
        for projection in ("q_proj", "k_proj"):
            tensors[layer + "self_attn.%s.weight" % projection] *= VPM_QK_GAIN
    _undo_outlier_scale(tensors["vpm.post_layernorm.weight"], channels, spec.layers * per_layer, spec.width)
    tensors["vpm.embeddings.patch_embedding.weight"] *= PATCH_EMBEDDING_GAIN
    embed_dim = tensors["resampler.query"].shape[1]
    tensors["resampler.attn.in_proj_weight"][: 2 * embed_dim] *= RESAMPLER_QK_GAIN
    return tensors


def _undo_outlier_scale(gain: torch.Tensor, channels, outlier: float, width: int) -> None:
    """Scale a LayerNorm's gain on the ordinary channels by the std that `outlier`-sized channels give its input."""
    std = math.sqrt(len(channels) * outlier ** 2 / width + 1.0)
    ordinary = torch.ones_like(gain, dtype=torch.bool)
    ordinary[list(channels)] = False
    gain[ordinary] *= std


def write_checkpoint(out: Path, version: str, size: str, seed: int = 0, shards: int = 1,
                     weight_format: str = "safetensors", dtype: torch.dtype = torch.bfloat16,
                     overwrite: bool = False) -> Path:
    """Write config.json and the vision weights (one file, `shards` safetensors + index, or a .bin)."""
    config = synthetic_config(version, size)
    version_seed = seed * 100003 + zlib.crc32(version.encode())  # each version gets its own weights
    tensors = {k: v.to(dtype).contiguous() for k, v in
               synthetic_tensors(vision_spec(config, version), version_seed).items()}
    with atomic_directory(Path(out), overwrite=overwrite) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if weight_format == "bin":
            torch.save(tensors, str(tmp / "pytorch_model.bin"))
        elif shards <= 1:
            _save_safetensors(tensors, tmp / "model.safetensors")
        else:
            _save_shards(tensors, tmp, shards)
    return Path(out)


def _save_safetensors(tensors: Dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})


def _save_shards(tensors: Dict[str, torch.Tensor], directory: Path, shards: int) -> None:
    names = sorted(tensors)
    per_shard = -(-len(names) // shards)
    weight_map = {}
    total = 0
    for index in range(shards):
        file_name = "model-%05d-of-%05d.safetensors" % (index + 1, shards)
        part = {n: tensors[n] for n in names[index * per_shard:(index + 1) * per_shard]}
        _save_safetensors(part, directory / file_name)
        weight_map.update({n: file_name for n in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2) + "\n")
