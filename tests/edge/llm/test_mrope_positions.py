"""Explicit (t, h, w) positions for raw rows on the real llama.cpp, with make-gguf's tiny Qwen3.5 (M-RoPE) LLM.

The reference is llama.cpp itself: token ids get the same position in t, h and w, so rows of the GGUF's own token
embedding table fed with positions (p, p, p) must give the logits of the ids; any other position must not.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write the tiny GGUF LLMs")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.errors import InputError  # noqa: E402
from edge.llm.embeddings import EmbeddingLlm, LlmError  # noqa: E402
from edge.llm.token_rows import TokenRows  # noqa: E402

TEXT = "the quick brown fox<|im_end|>"


def _diagonal(start: int, count: int) -> np.ndarray:
    return np.repeat(np.arange(start, start + count, dtype=np.int32)[:, None], 3, axis=1)


def _logits_of_rows(llm: EmbeddingLlm, prefix, rows: np.ndarray, positions, tail=()) -> np.ndarray:
    llm.reset()
    llm.feed_tokens(prefix)
    llm.feed_rows(rows, positions)
    if tail:
        llm.feed_tokens(tail)
    return llm.logits()


@pytest.fixture(scope="module")
def qwen35(make_gguf: Callable[..., Path]):
    path = make_gguf("4.7")
    with EmbeddingLlm(str(path), n_batch=8) as llm:  # small batches: the positions cross batch boundaries
        yield llm, TokenRows(path)


def test_qwen35_takes_four_positions_per_row_and_feeds_prompts_whole(qwen35, make_gguf) -> None:
    llm, _ = qwen35
    assert llm.metadata("general.architecture") == "qwen35"
    assert llm.n_pos_per_embd == 4 and not llm.keeps_prefix
    with EmbeddingLlm(str(make_gguf("2.6"))) as plain:
        assert plain.n_pos_per_embd == 1 and plain.keeps_prefix


def test_rows_at_the_sequential_positions_give_the_logits_of_their_ids(qwen35) -> None:
    llm, table = qwen35
    prefix, ids = llm.tokenize("<|im_start|>user\n<image>"), llm.tokenize(TEXT)
    llm.reset()
    llm.feed_tokens(prefix + ids)
    by_ids = llm.logits()
    rows = table.rows(ids)
    explicit = _logits_of_rows(llm, prefix, rows, _diagonal(len(prefix), len(ids)))
    default = _logits_of_rows(llm, prefix, rows, None)
    np.testing.assert_allclose(explicit, by_ids, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(default, explicit)


@pytest.mark.parametrize("component", [0, 1, 2])
def test_each_position_component_changes_the_logits(qwen35, component: int) -> None:
    """Moving only t, only h or only w of the rows changes what the attention layer sees; the same positions give
    the same logits again."""
    llm, table = qwen35
    prefix, ids = llm.tokenize("<|im_start|>user\n<image>"), llm.tokenize(TEXT)
    rows, base = table.rows(ids), _diagonal(len(prefix), len(ids))
    moved = base.copy()
    moved[:, component] += 2 if component == 0 else 1 + np.arange(len(ids)) % 3  # t must not decrease
    first = _logits_of_rows(llm, prefix, rows, moved)
    again = _logits_of_rows(llm, prefix, rows, moved)
    reference = _logits_of_rows(llm, prefix, rows, base)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - reference).max() > 1e-4


def test_text_after_explicit_positions_goes_on_one_past_the_largest(qwen35) -> None:
    """A canvas-like block (t fixed, h and w on a grid); the text after it at max + 1 by default, or where the
    caller says: checked against the same text fed as its own rows at those positions."""
    llm, table = qwen35
    prefix, tail = llm.tokenize("<|im_start|>user\n<image>"), llm.tokenize("</image> the<|im_end|>")
    origin = len(prefix)
    grid = np.array([(origin, origin + r, origin + c) for r in range(3) for c in range(4)], dtype=np.int32)
    image = np.random.default_rng(0).standard_normal((len(grid), llm.n_embd)).astype(np.float32) * 0.02
    for next_pos in (None, origin + 9):
        llm.reset()
        llm.feed_tokens(prefix)
        llm.feed_rows(image, grid, next_pos)
        start = llm.next_pos
        llm.feed_tokens(tail)
        by_ids = llm.logits()
        assert start == (origin + 4 if next_pos is None else next_pos)
        llm.reset()
        llm.feed_tokens(prefix)
        llm.feed_rows(image, grid, next_pos)
        llm.feed_rows(table.rows(tail), _diagonal(start, len(tail)))
        np.testing.assert_allclose(llm.logits(), by_ids, rtol=0, atol=1e-5)


def test_positions_that_llama_cpp_would_refuse_are_refused_before_decoding(qwen35, make_gguf) -> None:
    llm, table = qwen35
    prefix = llm.tokenize("<|im_start|>user\n<image>")
    rows = table.rows(llm.tokenize(TEXT))
    llm.reset()
    llm.feed_tokens(prefix)
    with pytest.raises(InputError, match="must not go back"):
        llm.feed_rows(rows, _diagonal(0, len(rows)))  # t below the text already fed
    backwards = _diagonal(len(prefix), len(rows))[::-1].copy()
    with pytest.raises(InputError, match="must not go back"):
        llm.feed_rows(rows, backwards)
    with pytest.raises(InputError, match=r"integers \[%d, 3\]" % len(rows)):
        llm.feed_rows(rows, _diagonal(len(prefix), len(rows))[:, :2])
    with pytest.raises(InputError, match="0..2"):
        llm.feed_rows(rows, _diagonal(len(prefix), len(rows)) - 100)
    llm.feed_rows(rows, _diagonal(len(prefix), len(rows)))  # nothing was decoded before: the memory is in step
    assert np.isfinite(llm.logits()).all()
    with EmbeddingLlm(str(make_gguf("2.6"))) as plain, pytest.raises(InputError, match="one position per token"):
        plain.feed_rows(np.zeros((2, plain.n_embd), np.float32), _diagonal(0, 2))


def test_truncate_is_refused_for_a_recurrent_state(qwen35) -> None:
    llm, _ = qwen35
    llm.reset()
    llm.feed_tokens(llm.tokenize("<|im_start|>user\nthe"))
    with pytest.raises(LlmError, match="reset"):
        llm.truncate(1)
