"""EmbeddingLlm on the real llama.cpp: image rows reach the model, mismatches and failed decodes raise."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write the "
                                          "tiny GGUF LLMs")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]'): cannot run "
                                        "llama.cpp")

from edge.errors import InputError  # noqa: E402
from edge.llm.embeddings import EmbeddingLlm, LlmError  # noqa: E402

from ...conftest import VERSIONS  # noqa: E402


def _rows(seed: int, count: int = 16, width: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, width)).astype(np.float32)


def _image_logits(llm: EmbeddingLlm, rows: np.ndarray) -> np.ndarray:
    llm.reset()
    llm.feed_tokens(llm.tokenize("<|im_start|>user\nlook <image>"))
    llm.feed_rows(rows)
    llm.feed_tokens(llm.tokenize("</image> the<|im_end|>"))
    return llm.logits()


@pytest.mark.parametrize("version", VERSIONS)
def test_image_rows_change_the_logits_and_reproduce(make_gguf: Callable[..., Path], version: str) -> None:
    with EmbeddingLlm(str(make_gguf(version))) as llm:
        first = _image_logits(llm, _rows(1))
        again = _image_logits(llm, _rows(1))
        other = _image_logits(llm, _rows(2))
    assert np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


@pytest.mark.parametrize("version", VERSIONS)
def test_token_embedding_rows_give_the_logits_of_their_ids(make_gguf: Callable[..., Path], version: str) -> None:
    """The independent reference: rows of the GGUF's own token embedding table, scaled as the official model scales
    text embeddings (MiniCPM's scale_emb), fed as image rows, must act as the ids themselves."""
    path = make_gguf(version)
    table = next(t for t in gguf.GGUFReader(str(path)).tensors if t.name == "token_embd.weight")
    embeddings = np.asarray(table.data, dtype=np.float32)
    with EmbeddingLlm(str(path)) as llm:
        prefix, ids = llm.tokenize("<image>"), llm.tokenize("the quick brown fox</image>")
        llm.feed_tokens(prefix + ids)
        by_ids = llm.logits()
        llm.reset()
        llm.feed_tokens(prefix)
        llm.feed_rows(embeddings[ids] * np.float32(llm.input_scale))
        by_rows = llm.logits()
    assert embeddings.shape == (llm.n_vocab, llm.n_embd)
    np.testing.assert_allclose(by_rows, by_ids, rtol=0, atol=1e-5)


def test_row_width_mismatch_is_refused(make_gguf: Callable[..., Path]) -> None:
    with EmbeddingLlm(str(make_gguf("2.6"))) as llm:
        with pytest.raises(InputError, match="width 256") as error:
            llm.feed_rows(_rows(1, width=255))
        assert "\n" not in str(error.value)
        with pytest.raises(InputError):
            llm.feed_rows(np.zeros(256, dtype=np.float32))  # one row must still be [1, 256]


def test_failed_decode_raises_instead_of_stale_logits(make_gguf: Callable[..., Path]) -> None:
    with EmbeddingLlm(str(make_gguf("2.6")), n_ctx=256, n_batch=64) as llm:
        llm.feed_tokens(llm.tokenize("<image>"))
        assert np.isfinite(llm.logits()).all()
        with pytest.raises(LlmError) as error:
            llm.feed_rows(_rows(3, count=llm.n_ctx + 8))  # more rows than the context holds (in n_batch chunks)
        assert error.value.code is not None and error.value.code != 0
        with pytest.raises(LlmError, match="no logits"):
            llm.logits()
        with pytest.raises(LlmError, match="reset"):
            llm.feed_tokens(llm.tokenize("<image>"))
        llm.reset()
        llm.feed_tokens(llm.tokenize("<image>"))
        assert np.isfinite(llm.logits()).all()


def test_unknown_token_id_raises_with_the_code(make_gguf: Callable[..., Path]) -> None:
    with EmbeddingLlm(str(make_gguf("4.0"))) as llm:
        with pytest.raises(LlmError, match="code -1") as error:
            llm.feed_tokens([llm.n_vocab + 5])
        assert error.value.code == -1


def test_unloadable_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "not.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(InputError, match="cannot load") as error:
        EmbeddingLlm(str(bad))
    assert "\n" not in str(error.value)


def test_a_tiny_bundles_tokens_go_where_the_prompt_layout_says(make_bundle: Callable[..., Path],
                                                               make_gguf: Callable[..., Path]) -> None:
    """End to end: a tiny 2.6 bundle's tokens of a sliced frame, fed block by block between the layout's text."""
    import edge

    def answer_logits(llm: EmbeddingLlm, seed: int) -> np.ndarray:
        frame = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        encoded = encoder.encode(frame)
        llm.reset()
        llm.feed_tokens(llm.tokenize("<|im_start|>user\n"))
        for segment in encoder.prompt.segments(encoded.grid):
            if isinstance(segment, int):
                llm.feed_rows(encoded.tokens[segment])
            else:
                llm.feed_tokens(llm.tokenize(segment))
        llm.feed_tokens(llm.tokenize("what is it?<|im_end|>\n<|im_start|>assistant\n"))
        return llm.logits()

    with edge.VisionEncoder.from_bundle(make_bundle("2.6")) as encoder, EmbeddingLlm(str(make_gguf("2.6"))) as llm:
        first, other = answer_logits(llm, 1), answer_logits(llm, 2)
        assert llm.n_past > 3 * encoder.bundle.model.query_num  # 640x480: the overview and a 2x1 grid of tiles
    assert np.isfinite(first).all() and np.abs(first - other).max() > 1e-3
