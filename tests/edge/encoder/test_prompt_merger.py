"""The 4.6 / 4.7 placeholder layout (edge.encoder.prompt, styles v4.6 / v4.7) equals transformers' processors: the
same token ids for prompts with one or two images, both modes, with and without image ids."""
from __future__ import annotations

import numpy as np
import pytest

from edge.encoder.prompt import PromptLayout
from edge.preprocess.slicing import DEFAULT, plan_slices
from tests.edge import minicpmv46_reference as reference

pytest.importorskip("transformers.models.minicpmv4_7")
CASES = [[(1000, 300)], [(320, 240)], [(1920, 1080), (60, 2000)], [(1344, 1344), (3000, 90)], [(7, 5)]]


@pytest.fixture(scope="module")
def tokenizer():
    return reference.tiny_tokenizer()


def _image(width, height):
    from PIL import Image

    return Image.fromarray(np.full((height, width, 3), 128, dtype=np.uint8))


@pytest.mark.parametrize("version", ["4.6", "4.7"])
@pytest.mark.parametrize("mode", ["16x", "4x"])
@pytest.mark.parametrize("use_image_id", [True, False])
@pytest.mark.parametrize("sizes", CASES, ids=["+".join("%dx%d" % s for s in case) for case in CASES])
def test_placeholder_text_equals_the_processors(tokenizer, version, mode, use_image_id, sizes):
    processor = reference.processor(version, tokenizer)
    texts = ["Look <unk> here"] if len(sizes) == 1 else ["<unk>\nfirst, then <unk> second?"]
    inputs = processor(images=[_image(*s) for s in sizes], text=texts, downsample_mode=mode,
                       use_image_id=use_image_id, return_tensors="np")
    layout = PromptLayout("v" + version, 0, use_image_id)
    config = DEFAULT.for_mode(mode)
    pieces = texts[0].split("<unk>")
    ours = pieces[0]
    for index, (size, after) in enumerate(zip(sizes, pieces[1:])):
        plan = plan_slices(size, config)
        ours += layout.text(plan.grid, index, counts=plan.token_counts(config)) + after
    ids = tokenizer(ours)["input_ids"]
    assert ids == inputs["input_ids"][0].tolist()
    if version == "4.7":  # the modality labels the 4.7 positions read: 1 exactly on the placeholders
        kinds = [int(i == tokenizer.image_token_id) for i in ids]
        assert kinds == inputs["mm_token_type_ids"][0].tolist()


def test_merger_layout_needs_every_block_count():
    layout = PromptLayout("v4.6", 0, True)
    assert layout.text((2, 1), counts=[1, 2, 3], unk="U") == (
        "<image_id>0</image_id><image>U</image><slice>UU</slice><slice>UUU</slice>")
    with pytest.raises(ValueError, match="token count"):
        layout.text((2, 1))
    with pytest.raises(ValueError, match="do not fit"):
        layout.text((2, 1), counts=[1, 2])
    with pytest.raises(ValueError, match="do not fit"):
        PromptLayout("v2.6", 64, True).text(None, counts=[16])
