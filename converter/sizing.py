"""Whole-box memory check: the vision engines, the LLM and the OS share a Jetson's unified memory.

Estimates, not measurements: TensorRT reports the real figures only on the device (engine and context device
memory). The formulas below are meant to be simple, explainable and on the high side; every figure is in bytes
and 1 GiB = 2**30 bytes.

Vision engines (`estimate_vision_bytes`), per module at the bundle's largest shapes (B = max batch, L = max
patches of the optimization profile, `profile_shapes`):

    weights     = parameters x bytes per parameter: fp32 4, fp16 2; int8 1 for the weights of MatMul / Gemm /
                  Conv (the ones that get Q/DQ pairs) and 2 for the rest (biases, LayerNorms, position table,
                  queries), plus the Resampler's float32 sin-cos table [L, D/2] x 4
    activations = a x (the largest live tensors), a = 4 bytes in fp32 engines, 2 in fp16 and int8 ones:
                  VPM: strips [B, 3, 14, 14 L] + residual [B, L, width] + MLP hidden [B, L, mlp]
                  Resampler: input [B, L, width] + kv and keys 2 x [B, L, D] + scores [B, D/128, Q, L]
                       + output [B, Q, D]
    workspace   = max(the profile's workspace_bytes, max(VPM scratch, Resampler scratch) + TACTIC_HEADROOM_BYTES
                  (64 MiB)), with s the float layers' bytes (fp32 4, fp16 2; int8 4 on a strongly typed builder,
                  TensorRT 11+ or a profile without TensorRT, 2 on TensorRT 8.x-10.x):
                  VPM scratch = 2 x [B, heads, L, L] x s (scores and softmax probabilities; 0 for fp16, whose
                       attention is fused) + [B, L, mlp + 2 x width] x s
                  Resampler scratch = 3 x [B, L, D] x s + 2 x [B, D/128, Q, L] x 4 (its softmax runs in fp32)
    total       = sum over modules of (weights + activations) + workspace, counted once (a runner can give both
                  contexts one scratch area, as the engines run one after the other)

The workspace is the WORKSPACE memory-pool limit the device's builder is given (the manifest's
`vision_estimates[<precision>].workspace_bytes`): unfused attention keeps its L x L matrices there, and a builder
held to the profile's figure fails at the largest shapes (`edge.engines.tensorrt.workspace` has the measurements).
The limit rises above the profile's only as far as the vision budget allows: the box check refuses the default
precision's engines beyond it and notes the other precisions beyond it (`size_bundle`).

Parameter counts come from `converter.checkpoint_layout.expected_shapes`, which the checkpoint loader checks tensor by
tensor, so they are exact.

LLM (`llm_bytes_from_gguf`): the GGUF file size (llama.cpp maps the weights whole) plus its KV cache for the
context, at a fixed `KV_BYTES_PER_TOKEN` (fp16 K and V of the largest LLM the MiniCPM-V family pairs with; see
there). A per-token figure rather than a fraction of the file: the KV cache grows with the context, not with the
weights, and the context is what a user sets (`--llm-context`). llama.cpp's compute buffers are not counted
separately; for Qwen2-7B (2.6; 56 KiB a token) the figure is 352 MiB too high at 4096 tokens, which is room for
them. Not measured on a device: `--llm-bytes` takes a measured figure instead.

Box (`check_box`): vision + LLM + the profile's OS reserve against its RAM; also vision against the profile's
vision budget.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from edge.bundle.manifest import MODULES
from edge.device.profiles import PRECISIONS, DeviceProfile
from edge.engines.tensorrt.workspace import VisionDims, strongly_typed_release, workspace_limit_bytes
from edge.errors import InputError
from edge.llm.gguf_file import gguf_file_bytes

from .checkpoint_layout import VisionSpec, expected_shapes

GIB = 1 << 30
# fp16 K and V per token of the largest LLM MiniCPM-V pairs with (Qwen3-8B, 4.5): 2 x 36 layers x 8 KV heads
# x 128 dims x 2 bytes = 144 KiB. Qwen2-7B (2.6) needs 56 KiB, Llama-3-8B (2.5) 128 KiB; an LLM without grouped
# KV heads (e.g. Llama-2-7B, 512 KiB) needs --llm-bytes.
KV_BYTES_PER_TOKEN = 2 * 36 * 8 * 128 * 2
DEFAULT_LLM_CONTEXT = 4096  # tokens: llama.cpp's default n_ctx; a 10-slice image is 640 of them
_WEIGHT_BYTES = {"fp32": 4, "fp16": 2}
_ACTIVATION_BYTES = {"fp32": 4, "fp16": 2, "int8": 2}  # int8 engines keep unquantized layers in fp16
# Weights that get Q/DQ pairs in the int8 graphs (inputs of MatMul, Gemm, Conv); the rest stay 16-bit.
_QUANTIZED_SUFFIXES = ("_proj.weight", "fc1.weight", "fc2.weight", "patch_embedding.weight", "in_proj_weight",
                       "resampler.proj")


@dataclass(frozen=True)
class ModuleEstimate:
    """Device memory of one module's engine: parameters, weight bytes, activation bytes at the max shapes."""

    parameters: int
    weight_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes


@dataclass(frozen=True)
class VisionEstimate:
    """Device memory of the vision engines at one precision and the bundle's max batch and patches."""

    precision: str
    batch: int
    patches: int
    modules: Dict[str, ModuleEstimate]
    workspace_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(m.total_bytes for m in self.modules.values()) + self.workspace_bytes

    def to_dict(self) -> Dict[str, Any]:
        return {"precision": self.precision, "batch": self.batch, "patches": self.patches,
                "modules": {name: asdict(m) for name, m in self.modules.items()},
                "workspace_bytes": self.workspace_bytes, "total_bytes": self.total_bytes}


@dataclass(frozen=True)
class BoxReport:
    """Unified memory of the whole box: what the vision engines, the LLM and the OS take, against RAM."""

    profile: str
    vision_bytes: int
    vision_budget_bytes: int
    llm_bytes: Optional[int]  # None: no LLM given, only the vision share and the OS reserve are counted
    os_reserve_bytes: int
    ram_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.vision_bytes + (self.llm_bytes or 0) + self.os_reserve_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.ram_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.headroom_bytes >= 0 and self.vision_bytes <= self.vision_budget_bytes

    def to_dict(self) -> Dict[str, Any]:
        return {"vision_bytes": self.vision_bytes, "vision_budget_bytes": self.vision_budget_bytes,
                "llm_bytes": self.llm_bytes, "os_reserve_bytes": self.os_reserve_bytes, "ram_bytes": self.ram_bytes,
                "total_bytes": self.total_bytes, "headroom_bytes": self.headroom_bytes, "fits": self.fits}


def gib(n_bytes: float) -> str:
    """Bytes as GiB with one decimal, e.g. "4.0 GiB"."""
    return "%.1f GiB" % (n_bytes / GIB)


def profile_shapes(profile: DeviceProfile, layout: str, module: str = "vpm") -> Dict[str, Dict[str, int]]:
    """min/opt/max of the dynamic dims (TensorRT optimization profile); opt = one 448x448 slice.

    Merger layouts: patches come in whole merge blocks (16 patches for "16x", 4 for "4x"), and the resampler's
    ``patches`` is the vpm's output length (a quarter of the patches after the "16x" window merger)."""
    max_batch = profile.max_batch
    if layout == "unmasked-1d":
        max_batch = max(max_batch, profile.max_slices + 1)  # 2.5: an image's slices must share one batch
    batch = {"min": 1, "opt": 1, "max": max_batch}
    low, opt, high = 1, min(1024, profile.max_patches), profile.max_patches
    if layout.startswith("merger-"):
        block = 16 if layout == "merger-16x" else 4
        low, opt, high = block, opt // block * block, high // block * block
        if module == "resampler" and block == 16:
            low, opt, high = low // 4, opt // 4, high // 4
    return {"batch": batch, "patches": {"min": low, "opt": opt, "max": high}}


def module_of(name: str) -> str:
    """The graph (vpm or resampler) a checkpoint tensor belongs to; a merger version's merger is its resampler."""
    return "resampler" if name.startswith(("resampler.", "model.merger.")) else "vpm"


def graph_tensors(spec: VisionSpec) -> Dict[str, Tuple[int, ...]]:
    """The checkpoint tensors the graphs hold: a "4x" merger graph leaves out the window merger it skips."""
    shapes = expected_shapes(spec)
    if spec.is_merger and spec.downsample_mode == "4x":
        shapes = {name: shape for name, shape in shapes.items() if ".vit_merger." not in name}
    return shapes


def vision_parameters(spec: VisionSpec) -> Dict[str, int]:
    """Parameter count per module (vpm, resampler) from the checkpoint's expected tensor shapes."""
    counts = {module: 0 for module in MODULES}
    for name, shape in graph_tensors(spec).items():
        counts[module_of(name)] += math.prod(shape)
    return counts


def _strongly_typed(profile: DeviceProfile) -> bool:
    """Whether the profile's TensorRT builder is strongly typed; a profile without TensorRT counts as one (the
    larger int8 workspace)."""
    return profile.tensorrt is None or strongly_typed_release(profile.tensorrt)


def _weight_bytes(spec: VisionSpec, module: str, precision: str) -> int:
    total = 0
    for name, shape in graph_tensors(spec).items():
        if module_of(name) != module:
            continue
        if precision == "int8":
            per_parameter = 1 if name.endswith(_QUANTIZED_SUFFIXES) else 2
        else:
            per_parameter = _WEIGHT_BYTES[precision]
        total += math.prod(shape) * per_parameter
    return total


def estimate_vision_bytes(spec: VisionSpec, profile: DeviceProfile, precisions: Iterable[str],
                          layout: str = "masked-2d") -> Dict[str, VisionEstimate]:
    """Device memory of the vision engines per precision, at the bundle's max shapes (see the module docstring)."""
    shapes = profile_shapes(profile, layout)
    b, n = shapes["batch"]["max"], shapes["patches"]["max"]
    w, d, q = spec.width, spec.embed_dim, spec.query_num
    strongly_typed = _strongly_typed(profile)
    estimates = {}
    for precision in dict.fromkeys(precisions):
        if precision not in PRECISIONS:
            raise InputError("unknown precision %r: choose one of %s" % (precision, ", ".join(PRECISIONS)))
        a = _ACTIVATION_BYTES[precision]
        strips = b * 3 * spec.patch_size * spec.patch_size * n
        vpm_live = strips + b * n * (w + spec.mlp)  # attention scores live in the workspace
        if spec.is_merger:  # the downsample MLP over the vpm's output (a quarter as long after the window merger)
            m = profile_shapes(profile, layout, "resampler")["patches"]["max"]
            resampler_live = b * m * w + 2 * b * m * w + b * (m // 4) * d
            sincos_table_bytes = 0
        else:
            resampler_live = b * n * w + 2 * b * n * d + b * spec.resampler_heads * q * n + b * q * d
            sincos_table_bytes = 4 * n * (d // 2)
        modules = {
            "vpm": ModuleEstimate(vision_parameters(spec)["vpm"], _weight_bytes(spec, "vpm", precision),
                                  a * vpm_live),
            "resampler": ModuleEstimate(vision_parameters(spec)["resampler"],
                                        _weight_bytes(spec, "resampler", precision) + sincos_table_bytes,
                                        a * resampler_live),
        }
        dims = VisionDims(spec.heads, w, spec.mlp, d, q)
        workspace = workspace_limit_bytes(profile.workspace_bytes, dims, b, n, precision, strongly_typed)
        estimates[precision] = VisionEstimate(precision, b, n, modules, workspace)
    return estimates


def llm_bytes_from_gguf(path: Path, context_tokens: int = DEFAULT_LLM_CONTEXT) -> int:
    """Memory of a llama.cpp LLM: the GGUF file's size plus `context_tokens` x KV_BYTES_PER_TOKEN."""
    path = Path(path)
    if context_tokens < 0:
        raise InputError("--llm-context must be 0 or more tokens, got %d" % context_tokens)
    size = gguf_file_bytes(path, "--llm-gguf", ", or its memory in bytes with --llm-bytes")
    return size + context_tokens * KV_BYTES_PER_TOKEN


def check_box(profile: DeviceProfile, vision_bytes: int, llm_bytes: Optional[int] = None,
              precision: Optional[str] = None) -> BoxReport:
    """The box's memory report; InputError with the sums when the vision engines or the whole box do not fit.

    `precision` only names the engines in the message.
    """
    report = BoxReport(profile.name, int(vision_bytes), profile.vision_memory_budget_bytes,
                       None if llm_bytes is None else int(llm_bytes), profile.os_reserve_bytes, profile.ram_bytes)
    engines = "vision engines" + (" (%s)" % precision if precision else "")
    if report.vision_bytes > report.vision_budget_bytes:
        raise InputError("%s do not fit %s: estimated %s > its vision budget %s: use a copy of the profile with a "
                         "smaller max_batch or max_patches, or a larger module"
                         % (engines, profile.name, gib(report.vision_bytes), gib(report.vision_budget_bytes)))
    if report.headroom_bytes < 0:
        raise InputError("does not fit %s: %s %s + LLM %s + OS reserve %s = %s > %s RAM: pick a smaller LLM (e.g. a "
                         "1-3B Q4 GGUF), a shorter --llm-context, or a larger module"
                         % (profile.name, engines, gib(report.vision_bytes), gib(report.llm_bytes or 0),
                            gib(report.os_reserve_bytes), gib(report.total_bytes), gib(report.ram_bytes)))
    return report


def llm_bytes_from_args(gguf: Optional[Path], llm_bytes: Optional[int],
                        context_tokens: Optional[int]) -> Optional[int]:
    """The LLM's memory from --llm-gguf [--llm-context] or --llm-bytes (a total, used as given); None for neither."""
    if gguf is not None and llm_bytes is not None:
        raise InputError("pass either --llm-gguf or --llm-bytes, not both")
    if context_tokens is not None and gguf is None:
        raise InputError("--llm-context applies to --llm-gguf: with --llm-bytes give the total, KV cache included")
    if gguf is not None:
        return llm_bytes_from_gguf(gguf, DEFAULT_LLM_CONTEXT if context_tokens is None else context_tokens)
    if llm_bytes is not None and llm_bytes <= 0:
        raise InputError("--llm-bytes must be a positive number of bytes, got %d" % llm_bytes)
    return llm_bytes


def size_bundle(spec: VisionSpec, profile: DeviceProfile, precisions: Iterable[str], layout: str,
                llm_bytes: Optional[int] = None, log=None) -> Dict[str, Any]:
    """The manifest's `target.memory` entry; InputError when a Jetson target cannot hold the engines (and LLM).

    The box is checked at the profile's default precision (int8 on Jetson targets): the engines the device builds
    once the bundle carries that precision. The bundle's other precisions are estimated too, and `log` notes those
    over the vision budget. Targets without a JetPack (a development host) are estimated, not checked.
    """
    precision = profile.default_precision
    estimates = estimate_vision_bytes(spec, profile, [precision, *precisions], layout)
    vision_bytes = estimates[precision].total_bytes
    if profile.is_jetson:
        report = check_box(profile, vision_bytes, llm_bytes, precision)
        for other, estimate in estimates.items():
            if log is not None and estimate.total_bytes > profile.vision_memory_budget_bytes:
                log("note: %s vision engines (estimated %s) exceed %s's vision budget %s: run %s on the device"
                    % (other, gib(estimate.total_bytes), profile.name, gib(profile.vision_memory_budget_bytes),
                       precision))
    else:
        report = BoxReport(profile.name, vision_bytes, profile.vision_memory_budget_bytes, llm_bytes,
                           profile.os_reserve_bytes, profile.ram_bytes)
    return {"checked": profile.is_jetson, "precision": precision, **report.to_dict(),
            "vision_estimates": {p: e.to_dict() for p, e in estimates.items()}}


def describe(memory: Dict[str, Any], profile: DeviceProfile) -> str:
    """One line for the user from a `size_bundle` entry."""
    llm = "" if memory["llm_bytes"] is None else " + LLM %s" % gib(memory["llm_bytes"])
    line = ("memory on %s: vision engines (%s) %s%s + OS reserve %s = %s of %s RAM, headroom %s"
            % (profile.name, memory["precision"], gib(memory["vision_bytes"]), llm, gib(memory["os_reserve_bytes"]),
               gib(memory["total_bytes"]), gib(memory["ram_bytes"]), gib(memory["headroom_bytes"])))
    return line if memory["checked"] else line + " (estimated, not checked: not a Jetson target)"
