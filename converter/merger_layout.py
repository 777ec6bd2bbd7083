"""The vision half of a MiniCPM-V 4.6 / 4.7 checkpoint in transformers' layout (``minicpmv4_6``, ``minicpmv4_7``).

Config keys are transformers' (``vision_config``, ``insert_layer_id``, ``downsample_mode``, ``merge_kernel_size``,
``merger_times``, ``text_config.hidden_size``); tensor names are those of
``MiniCPMV4_6ForConditionalGeneration.state_dict()`` (``model.vision_tower.*`` and ``model.merger.*``), which 4.7
shares. Absent vision keys take transformers' defaults, as loading the config there would.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Tuple

from edge.errors import InputError

from . import family

if TYPE_CHECKING:
    from .checkpoint_layout import VisionSpec

VISION_TOWER = "model.vision_tower."
MERGER = "model.merger."
MERGE = 4  # both mergers join 2x2 neighbourhoods: four tokens into one
# transformers' MiniCPMV4_6VisionConfig defaults, used where vision_config lacks a key
VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "image_size": 224, "patch_size": 16, "layer_norm_eps": 1e-6}


def _square_two(config: Dict[str, Any], key: str, where: str) -> None:
    value = list(config.get(key) or (2, 2))
    if value != [2, 2]:
        raise InputError("%s %s is %s; only (2, 2) is supported: check the checkpoint's config.json"
                         % (where, key, value))


def merger_spec_fields(config: Dict[str, Any], version: str) -> Dict[str, Any]:
    """VisionSpec fields of a merger checkpoint from its config.json, checked."""
    vision = dict(VISION_DEFAULTS, **(config.get("vision_config") or {}))
    text = config.get("text_config") or {}
    _square_two(config, "merge_kernel_size", "config.json")
    _square_two(vision, "window_kernel_size", "vision_config")
    layers = int(vision["num_hidden_layers"])
    insert = int(config.get("insert_layer_id", vision.get("insert_layer_id", family.INSERT_LAYER_ID)))
    mode = str(config.get("downsample_mode", "16x"))
    if mode not in family.DOWNSAMPLE_MODES:
        raise InputError("config.json has downsample_mode %r: use one of %s"
                         % (mode, ", ".join(family.DOWNSAMPLE_MODES)))
    if not 0 <= insert < layers:
        raise InputError("config.json has insert_layer_id %d, outside the %d vision layers: check the checkpoint"
                         % (insert, layers))
    times = int(config.get("merger_times", 1))
    if times < 1:
        raise InputError("config.json has merger_times %d: it must be at least 1" % times)
    patch = int(vision["patch_size"])
    return dict(
        width=int(vision["hidden_size"]), layers=layers, heads=int(vision["num_attention_heads"]),
        mlp=int(vision["intermediate_size"]), patch_size=patch, position_grid=int(vision["image_size"]) // patch,
        layer_norm_eps=float(vision["layer_norm_eps"]), query_num=0,
        embed_dim=int(text.get("hidden_size", family.facts_for(version).llm_hidden)),
        insert_layer_id=insert, merger_times=times, downsample_mode=mode)


def _attention(prefix: str, width: int) -> Dict[str, Tuple[int, ...]]:
    shapes: Dict[str, Tuple[int, ...]] = {}
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        shapes[prefix + "self_attn.%s.weight" % proj] = (width, width)
        shapes[prefix + "self_attn.%s.bias" % proj] = (width,)
    return shapes


def _norm(name: str, width: int) -> Dict[str, Tuple[int, ...]]:
    return {name + ".weight": (width,), name + ".bias": (width,)}


def _linear(name: str, out: int, inp: int) -> Dict[str, Tuple[int, ...]]:
    return {name + ".weight": (out, inp), name + ".bias": (out,)}


def merger_shapes(spec: VisionSpec) -> Dict[str, Tuple[int, ...]]:
    """Every vision tensor of a merger checkpoint with its shape (the window merger's weights are present even
    though the "4x" mode skips it)."""
    w, p, t = spec.width, spec.patch_size, VISION_TOWER
    shapes: Dict[str, Tuple[int, ...]] = {
        t + "embeddings.patch_embedding.weight": (w, 3, p, p),
        t + "embeddings.patch_embedding.bias": (w,),
        t + "embeddings.position_embedding.weight": (spec.position_grid ** 2, w),
        **_norm(t + "post_layernorm", w),
    }
    for i in range(spec.layers):
        layer = t + "encoder.layers.%d." % i
        shapes.update(_attention(layer, w))
        shapes.update({**_norm(layer + "layer_norm1", w), **_norm(layer + "layer_norm2", w)})
        shapes.update({**_linear(layer + "mlp.fc1", spec.mlp, w), **_linear(layer + "mlp.fc2", w, spec.mlp)})
    window = t + "vit_merger."
    shapes.update(_attention(window, w))
    shapes.update({**_norm(window + "layer_norm1", w), **_norm(window + "pre_norm", MERGE * w),
                   **_linear(window + "linear_1", MERGE * spec.mlp, MERGE * w),
                   **_linear(window + "linear_2", w, MERGE * spec.mlp)})
    for i in range(spec.merger_times):
        mlp = MERGER + "mlp.%d." % i
        out = spec.embed_dim if i == spec.merger_times - 1 else w
        shapes.update({**_norm(mlp + "pre_norm", MERGE * w), **_linear(mlp + "linear_1", MERGE * w, MERGE * w),
                       **_linear(mlp + "linear_2", out, MERGE * w)})
    return shapes
