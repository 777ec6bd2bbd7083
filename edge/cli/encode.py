"""`minicpmv-edge encode`: one image (or a synthetic scene) -> tokens, timings and the prompt layout."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

from ..encoder.prompt import PromptLayout
from ..encoder.vision_encoder import EncodedImage, VisionEncoder
from ..errors import InputError
from ..fsutil import atomic_write_npy
from ..preprocess.device.selection import MODES
from ..preprocess.image_input import MAX_PIXELS, read_image
from ..preprocess.scenes import synthetic_scene
from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    parser = sub.add_parser("encode", help="encode one image (or a synthetic scene) and report tokens and timings")
    common.add_bundle(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="an image file (PNG, JPEG, ... read with Pillow)")
    source.add_argument("--scene", type=common.size, default=(1920, 1080),
                        help="a synthetic WxH scene (default 1920x1080)")
    parser.add_argument("--resize", choices=MODES, default="exact",
                        help="exact: Pillow's bicubic, the official pixels (default); fast: OpenCV; torchvision: "
                             "torch's bicubic, as transformers' default 4.6/4.7 processor (needs torch); device: "
                             "exact's pixels computed on the CUDA device (pycuda); auto: device if it can run, "
                             "else exact")
    common.add_precision(parser, help="graph precision (default: the bundle target's)")
    parser.add_argument("--max-slice-nums", type=int, help="slice budget, up to the target's max_slices")
    parser.add_argument("--out", type=Path, help="write the tokens [n_images, Q, D] float32 here (.npy)")
    common.add_json(parser)
    return {"encode": encode}


def encode(args: argparse.Namespace) -> int:
    if not args.image and args.scene[0] * args.scene[1] > MAX_PIXELS:
        raise InputError("a %dx%d scene has %d pixels, more than the %d an image may have here: pass a smaller "
                         "--scene" % (args.scene[0], args.scene[1], args.scene[0] * args.scene[1], MAX_PIXELS))
    image = read_image(args.image) if args.image else None  # refuse a bad file before the engines open
    with VisionEncoder.from_bundle(args.bundle, precision=args.precision, resize=args.resize) as encoder:
        if args.max_slice_nums is not None:
            try:
                encoder.max_slice_nums = args.max_slice_nums
            except ValueError as exc:
                raise InputError("--max-slice-nums: %s" % exc) from exc
        result = encoder.encode(image if image is not None else synthetic_scene(*args.scene))
        prompt = _layout(encoder.prompt, result)
        query_num = encoder.prompt.query_num
        preprocess = {"path": encoder.preprocess_path, "why": encoder.preprocess_reason or "resize: %s" % args.resize}
    if args.out:
        atomic_write_npy(args.out, result.tokens)
    summary = {"tokens_shape": list(result.tokens.shape), "grid": result.grid, "patch_grids": result.patch_grids,
               "timings_ms": {k: round(v, 2) for k, v in result.timings.items()}, "preprocess": preprocess,
               "prompt": prompt,
               "out": str(args.out) if args.out else None}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("tokens %s, grid %s, %s" % ("x".join(map(str, result.tokens.shape)), result.grid,
                                      ", ".join("%s %.1f ms" % kv for kv in summary["timings_ms"].items())))
    print("preprocessing: %(path)s (%(why)s)" % preprocess)
    if result.token_counts is None:
        print("prompt layout ({Q} = %d <unk> placeholders): %s" % (query_num, prompt))
    else:
        print("prompt layout ({N} = N <unk> placeholders, each slice its own N): %s" % prompt)
    if args.out:
        print("tokens written to %s" % args.out)
    return 0


def _layout(prompt: PromptLayout, result: EncodedImage) -> str:
    """The image's prompt layout with a {Q} per token block, or {N} (its own token count) for the merger versions."""
    counts = None if result.token_counts is None else prompt.block_tokens(result.grid, result.token_counts)
    return "".join(s if not isinstance(s, int) else "{Q}" if counts is None else "{%d}" % counts[s]
                   for s in prompt.segments(result.grid))
