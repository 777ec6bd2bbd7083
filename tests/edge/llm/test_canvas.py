"""4.7's canvas positions for an image's span against transformers' MiniCPMV4_7Model.get_rope_index (the official
implementation): given the visual tokens' positions it computes, the markers' positions and where the text after
the image starts must be the same."""
from __future__ import annotations

import types
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write the tiny GGUF LLMs")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")
torch = pytest.importorskip("torch")
modeling = pytest.importorskip("transformers.models.minicpmv4_7.modeling_minicpmv4_7")

from edge.encoder.prompt import PromptLayout  # noqa: E402
from edge.llm.canvas import Markers, canvas_span  # noqa: E402
from edge.llm.conversation import IMAGE_MARK, Image, build_prompt, with_system  # noqa: E402
from edge.llm.embeddings import EmbeddingLlm  # noqa: E402
from edge.llm.generate import Generator  # noqa: E402

MERGE = 4  # "16x": 4 x 4 patches per LLM token


def _reference(markers: Markers, mode: str = "16x") -> object:
    """An object with just what get_rope_index reads: the config's marker ids and the model's helper methods."""
    model = modeling.MiniCPMV4_7Model
    namespace = {name: getattr(model, name) for name in ("get_rope_index", "_group_visual_frames",
                                                          "get_vision_position_ids")}
    namespace["_frame_end_idx"] = staticmethod(model._frame_end_idx)
    namespace["config"] = types.SimpleNamespace(
        downsample_mode=mode, image_start_id=markers.image_start, image_end_id=markers.image_end,
        slice_start_id=markers.slice_start, slice_end_id=markers.slice_end, newline_id=markers.newline)
    return type("Reference", (), namespace)()


@pytest.fixture(scope="module")
def llm(make_gguf: Callable[..., Path]):
    with EmbeddingLlm(str(make_gguf("4.7"))) as loaded:
        yield loaded


def _markers(llm: EmbeddingLlm) -> Markers:
    return Markers(*(llm.tokenize(text)[0] for text in ("<image>", "</image>", "<slice>", "</slice>", "\n")))


CASES = [  # grid (cols, rows) or None, each block's LLM grid (h, w): overview first, then the slices row-major
    (None, [(5, 7)]),
    ((2, 1), [(4, 6), (5, 3), (5, 3)]),
    ((2, 2), [(6, 6), (3, 4), (3, 4), (3, 4), (3, 4)]),
    ((3, 2), [(4, 7), (2, 3), (2, 3), (2, 3), (3, 2), (3, 2), (3, 2)]),  # slices of differing sizes
]


def _segments(grid: Optional[Tuple[int, int]]) -> Tuple[str, list]:
    """The image id text, and the 4.7 layout from <image> on."""
    layout = PromptLayout("v4.7", 0, True).segments(grid)
    head, _, rest = layout[0].partition("<image>")
    return head, ["<image>" + rest] + layout[1:]


def _official(llm: EmbeddingLlm, before: List[int], segments: list, sizes: List[Tuple[int, int]],
              after: List[int]) -> Tuple[List[int], np.ndarray, np.ndarray]:
    """Token ids (a placeholder for visual tokens), which are visual, and the reference's positions [n, 3]."""
    placeholder = llm.tokenize("<unk>")[0]
    ids, kinds = list(before), [0] * len(before)
    for segment in segments:
        pieces = llm.tokenize(segment) if isinstance(segment, str) else [placeholder] * (sizes[segment][0] *
                                                                                         sizes[segment][1])
        ids += pieces
        kinds += [0 if isinstance(segment, str) else 1] * len(pieces)
    ids += after
    kinds += [0] * len(after)
    targets = torch.tensor([(h * MERGE, w * MERGE) for h, w in sizes])
    official, _ = _reference(_markers(llm)).get_rope_index(torch.tensor([ids]), torch.tensor([kinds]),
                                                          target_sizes=targets)
    return ids, np.array(kinds), official[:, 0, :].T.numpy()


def _relative(official: np.ndarray, kinds: np.ndarray, sizes: List[Tuple[int, int]], origin: int) -> List[np.ndarray]:
    """Each block's visual positions from the canvas origin, as the agent sends them."""
    visual, out, start = np.flatnonzero(kinds == 1), [], 0
    for h, w in sizes:
        out.append(official[visual[start:start + h * w]] - origin)
        start += h * w
    return out


@pytest.mark.parametrize("grid, sizes", CASES)
@pytest.mark.parametrize("after_text", ["\nwhat is it?<|im_end|>", " what<|im_end|>"])
def test_markers_and_the_text_after_sit_where_the_reference_puts_them(
        llm: EmbeddingLlm, grid: Optional[Tuple[int, int]], sizes: List[Tuple[int, int]], after_text: str) -> None:
    head, segments = _segments(grid)
    before, after = llm.tokenize("<|im_start|>user\n" + head), llm.tokenize(after_text)
    _, kinds, official = _official(llm, before, segments, sizes, after)
    origin, width = len(before), llm.n_embd
    blocks = [np.full((h * w, width), b, np.float32) for b, (h, w) in enumerate(sizes)]
    span = canvas_span(segments, blocks, _relative(official, kinds, sizes, origin), grid, origin, _markers(llm),
                       llm.tokenize, lambda picked: np.zeros((len(picked), width), np.float32), after)
    end = origin + len(span.positions)
    np.testing.assert_array_equal(span.positions, official[origin:end])
    assert span.absorbed == (1 if after_text.startswith("\n") else 0)
    assert (official[end] == span.next_pos).all()  # the text after: 1-D again, from next_pos on
    assert (official[:origin] == np.arange(origin)[:, None]).all()  # the text before: plain positions
    np.testing.assert_array_equal(span.rows[kinds[origin:end] == 1], np.concatenate(blocks))


def test_a_chat_prompt_with_a_47_image_reaches_llama_cpp_at_the_reference_positions(llm: EmbeddingLlm) -> None:
    """build_prompt and the Generator's feeding against the same prompt fed as rows at the reference's positions
    (text as its token embedding rows, which llama.cpp treats as the ids). Both are cut into the same batches: the
    recurrent layers' results in llama.cpp move by ~1e-4 with the cuts (docs/llamacpp.md)."""
    grid, sizes = (2, 1), [(4, 6), (5, 3), (5, 3)]
    messages = with_system([("user", IMAGE_MARK + "\nwhat is it?")])
    rendered = llm.apply_template(messages, add_assistant=True)
    system = llm.apply_template(messages[:1], add_assistant=False)
    text_before, _, text_after = rendered[len(system):].partition(IMAGE_MARK)
    head, segments = _segments(grid)
    before = llm.tokenize(system, add_special=True) + llm.tokenize(text_before) + llm.tokenize(head)
    after = llm.tokenize(text_after)
    ids, kinds, official = _official(llm, before, segments, sizes, after)
    rows = np.random.default_rng(0).standard_normal((int(kinds.sum()), llm.n_embd)).astype(np.float32) * 0.05
    image = Image(rows, grid, ("digest", "test"),
                  positions=np.concatenate(_relative(official, kinds, sizes, len(before))),
                  block_rows=tuple(h * w for h, w in sizes))
    prompt = build_prompt(llm, PromptLayout("v4.7", 0, True), messages, image)
    assert prompt.n_tokens == len(ids) and sum(part.positions is not None for part in prompt.parts) == 1
    Generator(llm).start(prompt, max_tokens=1)
    ours = llm.logits()
    everything = llm.token_rows([max(token, 0) for token in ids])
    everything[kinds == 1] = rows
    llm.reset()
    start = 0
    for part in prompt.parts:
        end = start + part.n_tokens
        llm.feed_rows(everything[start:end], official[start:end], int(official[end, 0]) if end < len(ids) else None)
        start = end
    np.testing.assert_array_equal(ours, llm.logits())
    llm.reset()
    llm.feed_rows(everything, official)  # one batch: the same up to the recurrent layers' rounding
    np.testing.assert_allclose(ours, llm.logits(), rtol=0, atol=2e-3)


@pytest.mark.parametrize("grid, sizes", CASES)
def test_the_agents_visual_positions_are_the_references_from_the_canvas_origin(
        llm: EmbeddingLlm, grid: Optional[Tuple[int, int]], sizes: List[Tuple[int, int]]) -> None:
    """What the encoder sends with a 4.7 frame (edge.encoder.visual_positions, from the blocks' patch grids) is
    what transformers computes for the visual tokens, less the position of <image>."""
    from edge.encoder.visual_positions import visual_positions

    head, segments = _segments(grid)
    before = llm.tokenize("<|im_start|>user\n" + head)
    _, kinds, official = _official(llm, before, segments, sizes, llm.tokenize(" what"))
    expected = np.concatenate(_relative(official, kinds, sizes, len(before)))
    patch_grids = [(h * MERGE, w * MERGE) for h, w in sizes]
    sent = visual_positions(PromptLayout("v4.7", 0, True), grid, patch_grids, "16x")
    assert sent.dtype == np.int32
    np.testing.assert_array_equal(sent, expected)
