"""The LLM-side placeholder layout per version, against literal strings built from the rules in docs/minicpmv.md."""
from __future__ import annotations

from dataclasses import replace

import pytest

from edge.bundle.manifest import Bundle
from edge.encoder.prompt import PromptLayout

Q = "<unk><unk>"  # two placeholders per block (query_num 2) keeps the literals readable


def test_v26_overview_then_rows_of_slices():
    layout = PromptLayout("v2.6", 2, use_image_id=True)
    assert layout.text((2, 2), image_index=3) == (
        "<image_id>3</image_id><image>" + Q + "</image>"
        "<slice>" + Q + "</slice><slice>" + Q + "</slice>\n<slice>" + Q + "</slice><slice>" + Q + "</slice>")


def test_v26_without_image_id_and_unsliced():
    layout = PromptLayout("v2.6", 2, use_image_id=False)
    assert layout.text(None) == "<image>" + Q + "</image>"
    assert layout.text((3, 1)) == "<image>" + Q + "</image>" + ("<slice>" + Q + "</slice>") * 3


def test_v25_slices_wrapped_once_with_image_blocks():
    layout = PromptLayout("v2.5", 2, use_image_id=False)
    assert layout.text((2, 2)) == (
        "<image>" + Q + "</image><slice>"
        "<image>" + Q + "</image><image>" + Q + "</image>\n<image>" + Q + "</image><image>" + Q + "</image>"
        "</slice>")
    assert layout.text(None) == "<image>" + Q + "</image>"


@pytest.mark.parametrize("style", ["v2.5", "v2.6"])
@pytest.mark.parametrize("grid", [None, (1, 2), (4, 2), (7, 1), (3, 3)])
def test_segments_name_every_token_block_once_in_model_order(style, grid):
    segments = PromptLayout(style, 64, use_image_id=True).segments(grid)
    blocks = [s for s in segments if isinstance(s, int)]
    assert blocks == list(range(1 + (grid[0] * grid[1] if grid else 0)))
    assert all(isinstance(a, str) != isinstance(b, str) for a, b in zip(segments, segments[1:]))


def test_custom_placeholder_token():
    assert PromptLayout("v2.6", 3, False).text(None, unk="U") == "<image>UUU</image>"


@pytest.mark.parametrize("version,style,query_num,image_id", [("2.5", "v2.5", 96, False), ("2.6", "v2.6", 64, True)])
def test_layout_from_bundle_manifest(make_bundle, version, style, query_num, image_id):
    layout = PromptLayout.from_facts(Bundle.load(make_bundle(version)).model)
    assert layout == (style, query_num, image_id)


def test_unknown_style_refused(make_bundle):
    with pytest.raises(ValueError, match="prompt style"):
        PromptLayout.from_facts(replace(Bundle.load(make_bundle("2.6")).model, prompt_style="v9"))
