"""TensorRT's WORKSPACE limit for the vision engines: each module's scratch per precision and builder typing, the
headroom on top, and the TensorRT-RTX measurements it must cover (the real-builder test is test_tensorrt_rtx)."""
from __future__ import annotations

import pytest

from edge.engines.tensorrt.workspace import (
    TACTIC_HEADROOM_BYTES,
    VisionDims,
    attention_scratch_bytes,
    resampler_scratch_bytes,
    strongly_typed_release,
    vpm_scratch_bytes,
    workspace_limit_bytes,
)
from edge.errors import InputError

MIB, GIB = 1 << 20, 1 << 30
TINY = VisionDims(heads=4, width=64, mlp=256, embed_dim=256, query_num=64)
SMALL_26 = VisionDims(heads=16, width=1152, mlp=4304, embed_dim=3584, query_num=64)
SMALL_25 = VisionDims(heads=16, width=1152, mlp=4304, embed_dim=4096, query_num=96)
# Smallest WORKSPACE limit at which a graph built, TensorRT-RTX 1.7.1.116 (strongly typed), binary search to
# 1-8 MiB: (dims, module, precision, B, L) -> bytes. The tiny int8 VPM needed what fp32 did at every shape.
MEASURED = {
    (TINY, "vpm", "fp32", 1, 1024): 33550464, (TINY, "vpm", "fp32", 1, 2048): 135249920,
    (TINY, "vpm", "fp32", 2, 2048): 273645056, (TINY, "vpm", "fp32", 4, 2048): 548338432,
    (TINY, "vpm", "fp32", 4, 1024): 137346816, (TINY, "vpm", "fp32", 3, 1500): 219125760,
    (TINY, "vpm", "int8", 4, 2048): 548338432,
    (TINY, "vpm", "fp16", 1, 1024): 9436160, (TINY, "vpm", "fp16", 4, 2048): 24114432,
    (TINY, "vpm", "fp16", 3, 1500): 16775296,
    (SMALL_26, "vpm", "fp32", 1, 2048): 466587904, (SMALL_26, "vpm", "fp32", 2, 2048): 1070530816,
    (SMALL_26, "vpm", "fp32", 4, 2048): 2274222592, (SMALL_26, "vpm", "fp32", 4, 1024): 533692672,
    (SMALL_25, "vpm", "fp32", 4, 2048): 2278462976, (SMALL_25, "vpm", "fp32", 10, 2048): 5895902976,
    (SMALL_25, "resampler", "fp32", 4, 2048): 372229376, (SMALL_25, "resampler", "fp32", 10, 2048): 1485771776,
    (SMALL_25, "resampler", "fp16", 4, 2048): 152037376, (SMALL_25, "resampler", "fp16", 10, 2048): 655333376,
}


def test_headroom_is_64_mib() -> None:
    assert TACTIC_HEADROOM_BYTES == 64 * MIB


def test_real_size_siglip_attention_scratch() -> None:
    """SigLIP-400M (16 heads) at B 4, L 2048: scores and probabilities are 2 x 256 Mi elements."""
    assert attention_scratch_bytes(4, 16, 2048, "fp32", strongly_typed=False) == 2 * GIB
    assert attention_scratch_bytes(4, 16, 2048, "int8", strongly_typed=True) == 2 * GIB
    assert attention_scratch_bytes(4, 16, 2048, "int8", strongly_typed=False) == GIB
    assert attention_scratch_bytes(4, 16, 2048, "fp16", strongly_typed=True) == 0


def test_module_scratch_formulas() -> None:
    hidden = 4 * 2048 * (4304 + 2 * 1152)
    assert vpm_scratch_bytes(SMALL_26, 4, 2048, "fp32", False) == 2 * GIB + hidden * 4
    assert vpm_scratch_bytes(SMALL_26, 4, 2048, "int8", False) == GIB + hidden * 2
    assert vpm_scratch_bytes(SMALL_26, 4, 2048, "fp16", True) == hidden * 2
    scores = 2 * 4 * (3584 // 128) * 64 * 2048 * 4
    assert resampler_scratch_bytes(SMALL_26, 4, 2048, "fp16", False) == 3 * 4 * 2048 * 3584 * 2 + scores
    assert resampler_scratch_bytes(SMALL_26, 4, 2048, "int8", True) == 3 * 4 * 2048 * 3584 * 4 + scores


def test_limit_is_the_profile_workspace_or_the_larger_scratch_plus_headroom() -> None:
    vpm = vpm_scratch_bytes(SMALL_26, 4, 2048, "fp32", True)
    assert workspace_limit_bytes(512 * MIB, SMALL_26, 4, 2048, "fp32", True) == vpm + 64 * MIB
    assert workspace_limit_bytes(512 * MIB, SMALL_26, 4, 2048, "fp16", True) == 512 * MIB
    assert workspace_limit_bytes(8 * GIB, SMALL_26, 4, 2048, "fp32", True) == 8 * GIB  # the profile's is larger
    resampler = resampler_scratch_bytes(TINY, 4, 2048, "fp16", True)
    assert resampler > vpm_scratch_bytes(TINY, 4, 2048, "fp16", True)
    assert workspace_limit_bytes(MIB, TINY, 4, 2048, "fp16", True) == resampler + 64 * MIB


@pytest.mark.parametrize("case", sorted(MEASURED, key=repr), ids=lambda c: "%s-%s-%s-%dx%d" % (
    "tiny" if c[0] == TINY else "small%d" % c[0].query_num, *c[1:]))
def test_scratch_covers_what_the_real_builder_needed(case) -> None:
    """Each module's scratch plus the headroom (no profile figure) covers the measurement; so does the limit."""
    dims, module, precision, batch, patches = case
    scratch = (vpm_scratch_bytes if module == "vpm" else resampler_scratch_bytes)(dims, batch, patches, precision,
                                                                                   strongly_typed=True)
    limit = workspace_limit_bytes(MIB, dims, batch, patches, precision, strongly_typed=True)
    assert MEASURED[case] <= scratch + TACTIC_HEADROOM_BYTES <= limit


@pytest.mark.parametrize("version, strong", [
    ("8.5", False), ("8.6", False), ("10.3", False), ("10.13", False), ("11.0", True), ("11.1.0.9", True),
    ("12.0", True),
])
def test_strongly_typed_release(version: str, strong: bool) -> None:
    assert strongly_typed_release(version) is strong


@pytest.mark.parametrize("call", [
    lambda: strongly_typed_release("ten"),
    lambda: attention_scratch_bytes(1, 4, 1024, "int4", False),
])
def test_bad_input_refused(call) -> None:
    with pytest.raises(InputError):
        call()
