"""Typed views of a bundle manifest: what the model, the target and each graph are, read and checked once at load.

Every reader names the manifest key that is missing or mis-typed, so a hand-edited or truncated manifest is one line
(an InputError) rather than a KeyError deep in a build. Writers (the converter) still write the plain mapping.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ..errors import InputError

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping",
               list: "a list"}


class Reader:
    """Reads dotted keys of one manifest, refusing what is missing or of the wrong type with the fix."""

    def __init__(self, manifest: Mapping[str, Any], where: str) -> None:
        self.manifest, self.where = manifest, where

    def get(self, dotted: str, kind: Union[type, Tuple[type, ...]], optional: bool = False) -> Any:
        value: Any = self.manifest
        for key in dotted.split("."):
            if not isinstance(value, Mapping) or key not in value:
                if optional:
                    return None
                raise InputError("%s lacks %s: re-export the bundle with this version of minicpmv-convert"
                                 % (self.where, dotted))
            value = value[key]
        if value is None and optional:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise InputError("%s: %s must be %s, got %r: re-export the bundle with this version of minicpmv-convert"
                             % (self.where, dotted, " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds),
                                value))
        return value


@dataclass(frozen=True)
class SliceFacts:
    """The official slicing settings and the graph layout of the slices (masked-2d, or 2.5's unmasked-1d)."""

    scale_resolution: int
    max_slice_nums: int
    patch_size: int
    layout: str


@dataclass(frozen=True)
class ModelFacts:
    """What the device and the LLM side need to know about the model (manifest `model:`)."""

    version: str
    query_num: int  # Q: tokens per slice
    embed_dim: int  # D: token width, the LLM's hidden size
    vision_width: int  # the VPM's hidden size (its output width)
    vision_heads: int  # the VPM's attention heads (its [batch, heads, L, L] scores size the builder workspace)
    vision_mlp: int  # the VPM's MLP width (its hidden activation counts in the builder workspace too)
    slice: SliceFacts
    prompt_style: str
    use_image_id: bool
    weights_sha256: Optional[str]  # of the source vision tensors
    llm: Dict[str, Any]  # family, chat_template, hidden_size, scale_emb
    # merger versions (4.6, 4.7): downsample_mode, modes, insert_layer_id, merger_times, patches_per_token; {} else
    merger: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, reader: Reader) -> ModelFacts:
        return cls(
            version=str(reader.get("model.version", (str, int, float))),
            query_num=reader.get("model.query_num", int),
            embed_dim=reader.get("model.embed_dim", int),
            vision_width=reader.get("model.vision.width", int),
            vision_heads=reader.get("model.vision.heads", int),
            vision_mlp=reader.get("model.vision.mlp", int),
            slice=SliceFacts(reader.get("model.slice.scale_resolution", int),
                             reader.get("model.slice.max_slice_nums", int),
                             reader.get("model.slice.patch_size", int), reader.get("model.slice.layout", str)),
            prompt_style=reader.get("model.prompt.style", str),
            use_image_id=reader.get("model.prompt.use_image_id", bool),
            weights_sha256=reader.get("model.source.weights_sha256", str, optional=True),
            llm=dict(reader.get("model.llm", dict, optional=True) or {}),
            merger=dict(reader.get("model.merger", dict, optional=True) or {}),
        )


@dataclass(frozen=True)
class TargetFacts:
    """The device the bundle was sized for (manifest `target:`); TensorRT None = ONNX Runtime only."""

    profile: str
    tensorrt: Optional[str]
    opset: int
    default_precision: str
    max_batch: int
    max_patches: int
    max_slices: int
    memory: Dict[str, Any]  # the converter's memory estimate, {} when none was made
    # The profile's own default (int8 on Jetson targets), which becomes the bundle's once it holds that precision;
    # None in bundles written before it was recorded.
    profile_default_precision: Optional[str] = None
    l4t: Optional[str] = None  # the profile's L4T release ("36.4"); None for a host target

    @classmethod
    def read(cls, reader: Reader) -> TargetFacts:
        tensorrt = reader.get("target.tensorrt", (str, int, float), optional=True)
        return cls(
            profile=reader.get("target.profile", str),
            tensorrt=None if tensorrt is None else str(tensorrt),
            opset=reader.get("target.opset", int),
            default_precision=reader.get("target.default_precision", str),
            max_batch=reader.get("target.max_batch", int),
            max_patches=reader.get("target.max_patches", int),
            max_slices=reader.get("target.max_slices", int),
            memory=dict(reader.get("target.memory", dict, optional=True) or {}),
            profile_default_precision=reader.get("target.profile_default_precision", str, optional=True),
            l4t=reader.get("target.l4t", str, optional=True),
        )

    def workspace_bytes(self, precision: str) -> Optional[int]:
        """The TensorRT workspace limit the memory estimate counted for `precision`, if one was made."""
        estimate = self.memory.get("vision_estimates", {}).get(precision) or {}
        return estimate.get("workspace_bytes")


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max of one dynamic dimension (a TensorRT optimization profile's three points)."""

    min: int
    opt: int
    max: int

    def at(self, level: str) -> int:
        return getattr(self, level)


@dataclass(frozen=True)
class ModuleShapes:
    """The dynamic dimensions of a module's graphs: slices per batch and patches per slice."""

    batch: ShapeRange
    patches: ShapeRange

    @classmethod
    def read(cls, reader: Reader, module: str) -> ModuleShapes:
        ranges = [ShapeRange(*(reader.get("modules.%s.shapes.%s.%s" % (module, dim, level), int)
                               for level in ("min", "opt", "max"))) for dim in ("batch", "patches")]
        return cls(*ranges)


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: its name, dtype and dims (numbers, or batch / patches / strip_width)."""

    name: str
    dtype: str
    dims: Tuple[Any, ...]


@dataclass(frozen=True)
class GraphEntry:
    """One graph of one module at one precision: its files (the ONNX first), opset, size and I/O."""

    module: str
    precision: str
    files: Tuple[str, ...]
    opset: int
    bytes: int
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]
    raw: Mapping[str, Any]  # the whole manifest entry (calibration, search, export check ...)

    @classmethod
    def read(cls, reader: Reader, module: str, precision: str) -> GraphEntry:
        key = "modules.%s.graphs.%s" % (module, precision)
        files = reader.get(key + ".files", list)
        if not files or not all(isinstance(f, str) for f in files):
            raise InputError("%s: %s.files must list the graph's files: re-export the bundle" % (reader.where, key))

        def tensors(kind: str) -> Tuple[TensorSpec, ...]:
            specs = reader.get("%s.%s" % (key, kind), list)
            try:
                return tuple(TensorSpec(str(s["name"]), str(s["dtype"]), tuple(s["dims"])) for s in specs)
            except (TypeError, KeyError) as exc:
                raise InputError("%s: %s.%s must list name, dtype and dims: re-export the bundle"
                                 % (reader.where, key, kind)) from exc

        return cls(module, precision, tuple(files), reader.get(key + ".opset", int), reader.get(key + ".bytes", int),
                   tensors("inputs"), tensors("outputs"), reader.get(key, dict))

    @property
    def onnx_file(self) -> str:
        return self.files[0]
