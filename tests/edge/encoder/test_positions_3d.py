"""edge.encoder.positions_3d (numpy) equals transformers' MiniCPM-V 4.7 get_rope_index on the processor's prompts."""
from __future__ import annotations

import numpy as np
import pytest

from edge.encoder.positions_3d import (
    Block,
    Markers,
    canvas_coords,
    next_position,
    piece_positions,
    rope_positions,
    visual_groups,
)
from tests.edge import minicpmv46_reference as reference

pytest.importorskip("transformers.models.minicpmv4_7")


@pytest.fixture(scope="module")
def tokenizer():
    return reference.tiny_tokenizer()


def _image(width, height, seed=0):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _markers(tokenizer) -> Markers:
    ids = reference.marker_ids(tokenizer)
    return Markers(ids["image_start_id"], ids["image_end_id"], ids["slice_start_id"], ids["slice_end_id"],
                   ids["newline_id"])


LAYOUTS = [
    ("one sliced image, text around", "Look: <unk> what is it?", [(1000, 300)]),
    ("a 3x3 grid", "<unk>\nDescribe.", [(1344, 1344)]),
    ("unsliced image only", "<unk>", [(320, 240)]),
    ("two images", "first <unk> second <unk> compare", [(1920, 1080), (500, 300)]),
    ("two images back to back", "<unk><unk> same?", [(800, 600), (640, 480)]),
    ("extreme aspect", "tall <unk> wide <unk>", [(60, 2000), (3000, 90)]),
    ("no image ids, back to back: one group", "<unk><unk>\n<unk> x", [(800, 600), (320, 240), (1000, 300)]),
    ("no image ids, text between", "a <unk> b <unk>", [(1920, 1080), (640, 480)]),
]


@pytest.mark.parametrize("mode", ["16x", "4x"])
@pytest.mark.parametrize("name,text,sizes", LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_positions_equal_transformers(tokenizer, mode, name, text, sizes):
    processor = reference.processor("4.7", tokenizer)
    inputs = processor(images=[_image(w, h, i) for i, (w, h) in enumerate(sizes)], text=[text],
                       downsample_mode=mode, use_image_id=not name.startswith("no image ids"), return_tensors="np")
    ids, kinds, grids = inputs["input_ids"][0], inputs["mm_token_type_ids"][0], inputs["target_sizes"]
    expected = reference.rope_index(tokenizer, ids, kinds, grids, mode)
    ours = rope_positions(ids.tolist(), kinds.tolist(), [tuple(g) for g in grids.tolist()], mode, _markers(tokenizer))
    assert ours.dtype == np.int32 and ours.shape == (3, len(ids))
    np.testing.assert_array_equal(ours, expected)
    assert (ours[1:] != ours[0]).any()  # the layout really is 3-D, not a 1-D count
    assert next_position(ours) == expected.max() + 1


@pytest.mark.parametrize("mode", ["16x", "4x"])
def test_pieces_give_the_same_positions(tokenizer, mode):
    """The prompt as an LLM runtime holds it (text ids and blocks of rows) gives transformers' positions."""
    processor = reference.processor("4.7", tokenizer)
    inputs = processor(images=[_image(1000, 300), _image(320, 240, 1)], text=["a <unk>\nb <unk> c"],
                       downsample_mode=mode, return_tensors="np")
    ids, kinds, grids = inputs["input_ids"][0], inputs["mm_token_type_ids"][0], inputs["target_sizes"].tolist()
    pieces, start, blocks = [], 0, iter(grids)
    for kind, end in zip(kinds, range(1, len(ids) + 1)):
        if end == len(ids) or kinds[end] != kind:
            pieces.append(Block(tuple(next(blocks))) if kind else ids[start:end].tolist())
            start = end
    split = piece_positions(pieces, mode, _markers(tokenizer))
    factor = 4 if mode == "16x" else 2
    assert [part.shape[1] for part in split] == [
        (p.grid[0] // factor) * (p.grid[1] // factor) if isinstance(p, Block) else len(p) for p in pieces]
    np.testing.assert_array_equal(np.concatenate(split, axis=1),
                                  reference.rope_index(tokenizer, ids, kinds, inputs["target_sizes"], mode))


def test_frames_separated_only_by_markers_share_a_group(tokenizer):
    processor = reference.processor("4.7", tokenizer)
    inputs = processor(images=[_image(320, 240), _image(800, 600)], text=["<unk><unk>"], use_image_id=False,
                       return_tensors="np")
    groups = visual_groups(inputs["input_ids"][0].tolist(), inputs["mm_token_type_ids"][0].tolist(),
                           _markers(tokenizer))
    assert [len(group.frames) for group in groups] == [2]
    assert [len(frame.slices) for frame in groups[0].frames] == [0, 4]


def test_text_only_prompt_counts_up(tokenizer):
    positions = rope_positions([5, 6, 7], [0, 0, 0], [], "16x", _markers(tokenizer))
    np.testing.assert_array_equal(positions, np.tile(np.arange(3), (3, 1)))


def test_canvas_coords_equal_torch_linspace():
    torch = pytest.importorskip("torch")
    for canvas in range(1, 320):
        for count in range(1, 72):
            expected = torch.linspace(0, canvas - 1, count).round().long().numpy()
            np.testing.assert_array_equal(canvas_coords(canvas, count), expected, err_msg="%d %d" % (canvas, count))


def test_mismatched_grids_refused(tokenizer):
    markers = _markers(tokenizer)
    ids = [markers.image_start, 1, 1, 1, 1, markers.image_end]
    kinds = [0, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="grids"):
        rope_positions(ids, kinds, [], "16x", markers)
    with pytest.raises(ValueError, match="does not match"):
        rope_positions(ids, kinds, [(4, 8)], "16x", markers)
    with pytest.raises(ValueError, match="downsample_mode"):
        rope_positions(ids, kinds, [(8, 8)], "8x", markers)
