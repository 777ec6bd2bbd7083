"""`VisionEncoder.encode(resize="exact")` tokens equal the official chain on the same image.

The reference: the official processor transcribed with PIL (references/slicing.py), then transformers'
Idefics2VisionTransformer with the official position ids and a Resampler on torch.nn.MultiheadAttention
(references/models.py), with the official batching: 2.6 pads every slice into one masked batch, 2.5 pads
one image's slices into one unmasked batch. The encoder under test batches by the bundle's own rules.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from converter.checkpoint import load_vision_checkpoint
from edge import VisionEncoder
from edge.preprocess.scenes import synthetic_scene
from references.models import ReferenceChain
from references.slicing import official_pixel_values

SIZES = [(1344, 1344), (1920, 1080), (500, 300), (3000, 500), (812, 247), (4000, 50)]
RELATIVE_TOLERANCE = 1e-4  # max abs error as a fraction of the reference tokens' max |value|


@pytest.fixture(scope="module")
def chain(make_bundle, make_checkpoint):
    cache = {}

    def get(version):
        if version not in cache:
            ck = load_vision_checkpoint(make_checkpoint(version))
            encoder = VisionEncoder.from_bundle(make_bundle(version), resize="exact")
            cache[version] = (encoder, ReferenceChain(ck.tensors, ck.spec), encoder.layout)
        return cache[version]

    return get


@pytest.mark.parametrize("version", ["2.5", "2.6"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "%dx%d" % s)
def test_exact_tokens_equal_official_chain(chain, version, size):
    encoder, reference, layout = chain(version)
    rgb = synthetic_scene(size[0], size[1], seed=size[0] + size[1])
    got = encoder.encode(rgb)
    want = reference.tokens(official_pixel_values(Image.fromarray(rgb)), layout)
    assert got.tokens.shape == want.shape
    error, scale = float(np.abs(got.tokens - want).max()), float(np.abs(want).max())
    assert error <= RELATIVE_TOLERANCE * scale, "%s %dx%d: max abs error %.3g, scale %.3g" % (
        version, size[0], size[1], error, scale)


def test_reference_sees_the_image(chain):
    """Guard for the test above: on these checkpoints another image gives clearly different tokens."""
    encoder, _, _ = chain("2.6")
    a, b = (encoder.encode(synthetic_scene(500, 300, seed)).tokens for seed in (0, 1))
    assert float(np.abs(a - b).max()) > 100 * RELATIVE_TOLERANCE * float(np.abs(a).max())
