"""Parity figures per version: exported fp32 graphs (ONNX Runtime) vs the independent references.

    python -m benchmarks.parity --json

Synthetic tiny checkpoints per version, exported through the CLI; for each case the max abs error of the VPM
(vs transformers' Idefics2VisionTransformer with the official ids) and of the tokens (vs a Resampler on
torch.nn.MultiheadAttention), each as a fraction of the reference's max |value|. The ``images`` cases run
whole images through ``edge.VisionEncoder`` (resize="exact") against the official chain on PIL slicing.

4.6 and 4.7 (no Resampler) are run per downsample mode ("4.6 16x", "4.6 4x", ...): tokens of the two fp32
graphs vs transformers' own ``MiniCPMV4_6VisionModel`` + ``MiniCPMV4_6Merger`` (4.7: its classes) given the same
weights, on odd block counts, extreme aspect ratios and a padded batch of three different slices.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from converter.bundle import write_bundle
from converter.checkpoint import load_vision_checkpoint
from converter.synthetic import write_checkpoint
from edge.bundle.manifest import Bundle
from edge.device.profiles import load_profile
from edge.encoder.vision_encoder import VisionEncoder
from edge.engines.factory import open_onnx
from edge.preprocess.graph_inputs import pack_slices, slice_token_counts
from edge.preprocess.scenes import synthetic_scene
from references.models import ReferenceChain
from references.slicing import official_pixel_values

IMAGES = [(1344, 1344), (1920, 1080), (500, 300), (3000, 500), (812, 247), (4000, 50)]
SINGLE = {"25x41": [(25, 41)], "49x21": [(49, 21)], "58x18": [(58, 18)], "12x78": [(12, 78)], "4x286": [(4, 286)]}
CASES = {
    "masked-2d": {**SINGLE, "padded batch 10x20+25x41+7x9+49x21": [(10, 20), (25, 41), (7, 9), (49, 21)]},
    "unmasked-1d": {**SINGLE, "image 24x43+34x30+34x30": [(24, 43), (34, 30), (34, 30)]},
}


MERGER_CASES = {
    "16x": {"12x20": [(12, 20)], "28x36": [(28, 36)], "4x68": [(4, 68)], "68x4": [(68, 4)],
            "padded batch 12x20+4x68+36x12": [(12, 20), (4, 68), (36, 12)]},
    "4x": {"6x10": [(6, 10)], "14x18": [(14, 18)], "2x74": [(2, 74)], "74x2": [(74, 2)],
           "padded batch 6x10+2x74+18x14": [(6, 10), (2, 74), (18, 14)]},
}


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _fp32_graphs(ck: Any, out: Path) -> Tuple[str, Any, Any]:
    """Export `ck` as an fp32 host-x86 bundle in `out`: its slice layout and its two graphs, opened."""
    write_bundle(ck, out, load_profile("host-x86"), ["fp32"], log=lambda message: None)
    bundle = Bundle.load(out)
    vpm, resampler = (open_onnx(bundle.graph_path(m, "fp32")) for m in ("vpm", "resampler"))
    return bundle.model.slice.layout, vpm, resampler


def _random_slices(sizes: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """Seeded normalised float32 [3, 14*rows, 14*cols] slices, one per (rows, cols)."""
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, (3, 14 * r, 14 * c)).astype(np.float32) for r, c in sizes]


def version_figures(version: str, workdir: Path) -> Dict[str, Any]:
    checkpoint = write_checkpoint(workdir / ("ckpt-" + version), version, "tiny")
    out = workdir / ("bundle-" + version)
    ck = load_vision_checkpoint(checkpoint)
    layout, vpm, resampler = _fp32_graphs(ck, out)
    references = ReferenceChain(ck.tensors, ck.spec)
    figures: Dict[str, Any] = {}
    for name, sizes in CASES[layout].items():
        slices = _random_slices(sizes)
        packed = pack_slices(slices, layout)
        features = vpm.infer(packed.vpm)["vision_embeds"]
        tokens = resampler.infer({"vision_embeds": features, **packed.resampler})["image_tokens"]
        vpm_rows, want_tokens = references.expected(slices, layout, features, packed.sizes)
        valid = [features[i, : r * c] for i, (r, c) in enumerate(packed.sizes)]
        figures[name] = {
            "vpm_vs_idefics2": max(_relative(v, w) for v, w in zip(valid, vpm_rows)),
            "tokens_vs_multiheadattention": _relative(tokens, want_tokens),
        }
    encoder = VisionEncoder.from_bundle(out, resize="exact")
    for width, height in IMAGES:
        rgb = synthetic_scene(width, height, seed=width + height)
        want = references.tokens(official_pixel_values(Image.fromarray(rgb)), layout)
        figures["image %dx%d" % (width, height)] = {"encoder_tokens_vs_official_chain": _relative(
            encoder.encode(rgb).tokens, want)}
    return figures


def merger_figures(version: str, mode: str, workdir: Path) -> Dict[str, Any]:
    """Tokens of a 4.6/4.7 bundle exported for `mode` vs transformers' vision tower and merger, per case."""
    from dataclasses import replace

    from references.merger import MergerReference

    checkpoint = workdir / ("ckpt-" + version)
    if not checkpoint.exists():
        write_checkpoint(checkpoint, version, "tiny")
    ck = load_vision_checkpoint(checkpoint)
    ck.spec = replace(ck.spec, downsample_mode=mode)
    out = workdir / ("bundle-%s-%s" % (version, mode))
    layout, vpm, resampler = _fp32_graphs(ck, out)
    reference = MergerReference(ck.config, ck.tensors)
    figures: Dict[str, Any] = {}
    for name, sizes in MERGER_CASES[mode].items():
        slices = _random_slices(sizes)
        packed = pack_slices(slices, layout)
        tokens = resampler.infer({"vision_embeds": vpm.infer(packed.vpm)["vision_embeds"]})["image_tokens"]
        counts = slice_token_counts(packed.sizes, layout, 0)
        figures[name] = {"tokens_vs_transformers": max(
            _relative(tokens[i, :n], want) for i, (n, want) in enumerate(zip(counts, reference.tokens(slices, mode))))}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="*", default=["2.5", "2.6", "o-2.6", "4.0", "4.5", "4.6", "4.7"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {}
        for version in args.versions:
            if version in ("4.6", "4.7"):
                for mode in MERGER_CASES:
                    result["%s %s" % (version, mode)] = merger_figures(version, mode, Path(tmp))
            else:
                result[version] = version_figures(version, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for version, cases in result.items():
            worst = max(max(c.values()) for c in cases.values())
            print("%-6s worst relative error %.2e over %d cases" % (version, worst, len(cases)))


if __name__ == "__main__":
    main()
