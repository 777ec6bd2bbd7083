"""The prompt builder and generator on the real llama.cpp with a tiny GGUF and a tiny bundle's tokens: image rows
go where the layout says and matter, parts carry keys, the system prompt's KV cache is kept, the context is
bounded. The part cache over image rows: test_part_cache.py."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.encoder.prompt import PromptLayout  # noqa: E402
from edge.llm.conversation import IMAGE_MARK, Image, build_prompt, digest_source, with_system  # noqa: E402
from edge.llm.embeddings import EmbeddingLlm  # noqa: E402
from edge.llm.generate import Generator, PromptTooLong  # noqa: E402

from .conftest import scene  # noqa: E402

LAYOUT = PromptLayout("v2.6", 64, True)


def _image(seed: int, grid=(2, 1)) -> Image:
    blocks = 1 + grid[0] * grid[1]
    tokens = np.random.default_rng(seed).standard_normal((blocks, 64, 256)).astype(np.float32)
    return Image(tokens, grid, digest_source(tokens))


def _messages(question: str = "what is it?"):
    return with_system([("user", IMAGE_MARK + "\n" + question)])


def test_image_rows_stand_where_the_layout_puts_them(make_gguf: Callable[..., Path]) -> None:
    with EmbeddingLlm(str(make_gguf("2.6"))) as llm:
        image = _image(1)
        prompt = build_prompt(llm, LAYOUT, _messages(), image)
        text = llm.apply_template(_messages(), add_assistant=True)
        assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
        system = prompt.parts[0]
        assert system.content == llm.tokenize(llm.apply_template(_messages()[:1], add_assistant=False))
        assert system.key == ("text", tuple(system.content))
        rows = [p for p in prompt.parts if p.is_rows]
        assert [p.key for p in rows] == [("rows", image.source, block) for block in range(3)]
        assert all(np.array_equal(r.content, b) for r, b in zip(rows, image.tokens))
        ids = [t for p in prompt.parts if not p.is_rows for t in p.content]
        for tag in ("<image_id>", "<image>", "</image>", "<slice>", "</slice>", "<|im_end|>"):
            assert llm.tokenize(tag)[0] in ids
        assert prompt.n_tokens == len(llm.tokenize(text.replace(IMAGE_MARK, LAYOUT.text((2, 1)))))


def test_image_rows_change_the_first_token_logits(make_bundle: Callable[..., Path],
                                                  make_gguf: Callable[..., Path]) -> None:
    import edge

    with edge.VisionEncoder.from_bundle(make_bundle("2.6")) as encoder, EmbeddingLlm(str(make_gguf("2.6"))) as llm:
        generator = Generator(llm)
        logits = []
        for seed in (1, 2, 1):
            encoded = encoder.encode(scene(seed))
            image = Image(encoded.tokens, encoded.grid, ("frame", 1, seed))
            generator.start(build_prompt(llm, encoder.prompt, _messages(), image), 4)
            logits.append(llm.logits())
    assert np.abs(logits[0] - logits[1]).max() > 1e-3
    np.testing.assert_allclose(logits[0], logits[2], rtol=0, atol=1e-4)  # the kept system prompt changes nothing


def test_the_system_prompt_is_kept_between_requests(make_gguf: Callable[..., Path]) -> None:
    """Requests about different images keep the text before the image (the system prompt, the user's turn opening,
    the image's first tag) and feed the rest."""
    with EmbeddingLlm(str(make_gguf("2.6"))) as llm:
        generator = Generator(llm)
        answers, before_rows = [], 0
        for seed, question in ((3, "one?"), (4, "two?"), (3, "one?")):
            prompt = build_prompt(llm, LAYOUT, _messages(question), _image(seed))
            first_rows = next(i for i, part in enumerate(prompt.parts) if part.is_rows)
            before_rows = sum(part.n_tokens for part in prompt.parts[:first_rows])
            answer = generator.start(prompt, 6)
            answers.append(("".join(answer), answer.finish_reason, answer.completion_tokens))
        assert generator.kept_tokens == 2 * before_rows and generator.kept_parts == 2 * first_rows
        assert generator.kept_image_rows == 0 and generator.fed_image_rows == 3 * 3 * 64
        assert answers[0] == answers[2]  # greedy, and the same prompt after the cache was reused
        assert all(reason in ("stop", "length") and count <= 6 for _, reason, count in answers)
        other = with_system([("system", "Be brief."), ("user", IMAGE_MARK + "\none?")])
        generator.start(build_prompt(llm, LAYOUT, other, _image(3)), 2)
        assert generator.kept_tokens == 2 * before_rows  # another system prompt: fed anew


def test_a_prompt_that_cannot_fit_is_refused_before_decoding(make_gguf: Callable[..., Path]) -> None:
    with EmbeddingLlm(str(make_gguf("2.6")), n_ctx=256) as llm:
        prompt = build_prompt(llm, LAYOUT, _messages(), _image(4, grid=(3, 2)))  # 7 blocks of 64 rows
        with pytest.raises(PromptTooLong, match="context of 256 tokens") as error:
            Generator(llm).start(prompt, 16)
        assert "\n" not in str(error.value) and llm.n_past == 0


def test_every_version_renders_and_answers(make_gguf: Callable[..., Path]) -> None:
    for version, layout in (("2.5", PromptLayout("v2.5", 64, False)), ("4.0", LAYOUT), ("4.5", LAYOUT)):
        with EmbeddingLlm(str(make_gguf(version))) as llm:
            answer = Generator(llm).start(build_prompt(llm, layout, _messages(), _image(5)), 3, temperature=0.8,
                                          seed=1)
            assert isinstance("".join(answer), str) and answer.finish_reason in ("stop", "length")
