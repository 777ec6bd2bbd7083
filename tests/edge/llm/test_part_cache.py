"""The generator's cache over prompt parts on the real llama.cpp (tiny GGUF, tiny 2.6 bundle): image rows already in
the KV cache are not fed again (another question about the same frame, a frame the agent reused, the same attached
image), new ones are (another frame, another image, another system prompt), and what a kept cache answers equals
what a fresh LLM fed the whole prompt answers."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.encoder.prompt import PromptLayout  # noqa: E402
from edge.llm.api import ChatRequest  # noqa: E402
from edge.llm.conversation import IMAGE_MARK, Image, Prompt, build_prompt, with_system  # noqa: E402
from edge.llm.embeddings import EmbeddingLlm, LlmError  # noqa: E402
from edge.llm.generate import Generator  # noqa: E402
from edge.llm.service import ChatService  # noqa: E402
from edge.stream.protocol import StreamFrame  # noqa: E402

from .conftest import scene  # noqa: E402

LAYOUT = PromptLayout("v2.6", 64, True)
TOKENS = 8
ROWS = 3 * 64  # a 2x1 grid: the overview and two tiles


def _messages(question: str, system: Optional[str] = None) -> List[Tuple[str, str]]:
    messages = [("user", IMAGE_MARK + "\n" + question)]
    return with_system(messages if system is None else [("system", system)] + messages)


def _frame(source: Any, seed: int = 1) -> Image:
    tokens = np.random.default_rng(seed).standard_normal((3, 64, 256)).astype(np.float32)
    return Image(tokens, (2, 1), source)


def _cold(llm: EmbeddingLlm, prompt: Prompt, max_tokens: int = TOKENS) -> Tuple[np.ndarray, str]:
    """The independent reference: the memory cleared, every part fed in order, then greedy tokens until an end of
    turn or `max_tokens`. The first token's logits and the answer's text."""
    llm.reset()
    for part in prompt.parts:
        (llm.feed_rows if part.is_rows else llm.feed_tokens)(part.content)
    first = logits = llm.logits()
    pieces = []
    for _ in range(max_tokens):
        token = int(np.argmax(logits))
        if llm.is_end(token):
            break
        pieces.append(llm.piece(token))
        llm.feed_tokens([token])
        logits = llm.logits()
    return first, b"".join(pieces).decode("utf-8", "replace")


def _started(generator: Generator, prompt: Prompt) -> Tuple[np.ndarray, str]:
    """The first token's logits and the greedy answer of `prompt` through `generator`."""
    answer = generator.start(prompt, TOKENS)
    return generator.llm.logits(), "".join(answer)


@pytest.fixture
def llms(make_gguf: Callable[..., Path]) -> Iterator[Tuple[EmbeddingLlm, EmbeddingLlm]]:
    """Two LLMs of the same GGUF: one behind the generator under test, one for the cold references."""
    path = str(make_gguf("2.6"))
    with EmbeddingLlm(path) as llm, EmbeddingLlm(path) as reference:
        yield llm, reference


def test_another_question_about_the_same_frame_feeds_no_image_rows(llms) -> None:
    llm, reference = llms
    generator = Generator(llm)
    generator.start(build_prompt(llm, LAYOUT, _messages("what is it?"), _frame(("frame", 1, 5))), TOKENS)
    assert generator.fed_image_rows == ROWS and generator.kept_parts == 0
    prompt = build_prompt(llm, LAYOUT, _messages("and what colour?"), _frame(("frame", 1, 5)))
    logits, text = _started(generator, prompt)
    assert generator.fed_image_rows == ROWS and generator.kept_image_rows == ROWS
    assert generator.kept_parts == len(prompt.parts) - 1  # all but the question and the assistant's opening
    assert generator.kept_tokens == prompt.n_tokens - prompt.parts[-1].n_tokens
    cold_logits, cold_text = _cold(reference, prompt)
    np.testing.assert_allclose(logits, cold_logits, rtol=0, atol=1e-4)
    assert text == cold_text


def test_the_same_prompt_again_feeds_its_last_part(llms) -> None:
    """Never the whole prompt kept: the last part is fed again for the first token's logits."""
    llm, reference = llms
    generator = Generator(llm)
    prompt = build_prompt(llm, LAYOUT, _messages("what is it?"), _frame(("frame", 1, 5)))
    first = _started(generator, prompt)
    again = _started(generator, prompt)
    assert generator.kept_tokens == prompt.n_tokens - prompt.parts[-1].n_tokens
    cold_logits, cold_text = _cold(reference, prompt)
    for logits, text in (first, again):
        np.testing.assert_allclose(logits, cold_logits, rtol=0, atol=1e-4)
        assert text == cold_text


def test_a_new_system_prompt_feeds_everything_again(llms) -> None:
    llm, reference = llms
    generator = Generator(llm)
    generator.start(build_prompt(llm, LAYOUT, _messages("what is it?"), _frame(("frame", 1, 5))), TOKENS)
    prompt = build_prompt(llm, LAYOUT, _messages("what is it?", system="Be brief."), _frame(("frame", 1, 5)))
    logits, text = _started(generator, prompt)
    assert generator.kept_parts == generator.kept_tokens == 0 and generator.fed_image_rows == 2 * ROWS
    cold_logits, cold_text = _cold(reference, prompt)
    np.testing.assert_allclose(logits, cold_logits, rtol=0, atol=1e-4)
    assert text == cold_text


def test_a_failed_feed_forgets_the_cache(make_gguf: Callable[..., Path]) -> None:
    with EmbeddingLlm(str(make_gguf("2.6")), n_ctx=512, n_batch=64) as llm:
        generator = Generator(llm)
        generator.start(build_prompt(llm, LAYOUT, _messages("what is it?"), _frame(("frame", 1, 5))), 4)
        rows = np.zeros((llm.n_ctx, 256), dtype=np.float32)
        with pytest.raises(LlmError, match="llama_decode failed"):
            generator.feed(lambda: llm.feed_rows(rows))  # as an answer's decode failing at a full context
        assert generator.cached_parts == [] and llm.n_past == 0
        generator.start(build_prompt(llm, LAYOUT, _messages("what is it?"), _frame(("frame", 1, 5))), 4)
        assert generator.kept_parts == 0 and generator.fed_image_rows == 2 * ROWS


class _Follower:
    """Stands in for the FrameFollower: `frame` on connection `connection` is the newest."""

    error = None

    def __init__(self) -> None:
        self.frame: Optional[StreamFrame] = None
        self.connection = 1

    def newest(self) -> Optional[Tuple[StreamFrame, int]]:
        return None if self.frame is None else (self.frame, self.connection)


@pytest.fixture
def served(make_bundle: Callable[..., Path], llms) -> Iterator[Tuple[ChatService, _Follower, EmbeddingLlm, Any]]:
    """A ChatService on a tiny 2.6 bundle (its encoder standing in for the agent's) and a stand-in follower, the
    reference LLM, and the encoder."""
    import edge

    llm, reference = llms
    follower = _Follower()
    with edge.VisionEncoder.from_bundle(make_bundle("2.6")) as encoder:
        def encode(image: np.ndarray) -> StreamFrame:  # as the agent's answer to an encode request
            encoded = encoder.encode(image)
            return StreamFrame(0, 0.0, "2.6", encoded.grid, "fp32", encoded.tokens)

        yield ChatService(llm, encoder.bundle.model, encode, follower, TOKENS), follower, reference, encoder


def _ask(service: ChatService, question: str, image: Any = None) -> Tuple[np.ndarray, str, Any]:
    """The first token's logits, the greedy answer and the frame facts of one request through the service."""
    request = ChatRequest([("user", IMAGE_MARK + "\n" + question)], image, False, TOKENS, 0.0, None)
    replies = service.answer(request)
    reply = next(replies)
    logits = service.llm.logits()
    return logits, "".join(replies), reply.frame


def _reference(service: ChatService, reference: EmbeddingLlm, question: str, tokens: np.ndarray,
               grid: Any) -> Tuple[np.ndarray, str]:
    image = Image(tokens, grid, ("unused",))
    return _cold(reference, build_prompt(reference, service.layout, _messages(question), image))


def _publish(follower: _Follower, encoder: Any, frame_id: int, seed: int,
             reused_from: Optional[int] = None) -> StreamFrame:
    encoded = encoder.encode(scene(seed))
    follower.frame = StreamFrame(frame_id, 100.0 + frame_id, "2.6", encoded.grid, "fp32", encoded.tokens, reused_from)
    return follower.frame


def test_a_frame_reused_by_the_agent_is_not_fed_again(served) -> None:
    service, follower, reference, encoder = served
    generator = service.generator
    _publish(follower, encoder, 1, seed=1)
    _ask(service, "what is it?")
    rows = generator.fed_image_rows
    assert rows > 0
    frame = _publish(follower, encoder, 2, seed=1, reused_from=1)  # the same tokens, re-published as frame 2
    logits, text, facts = _ask(service, "what is it?")
    assert facts["frame_id"] == 2 and facts["reused_from"] == 1
    assert generator.fed_image_rows == rows and generator.kept_image_rows == rows
    cold_logits, cold_text = _reference(service, reference, "what is it?", frame.tokens, frame.grid)
    np.testing.assert_allclose(logits, cold_logits, rtol=0, atol=1e-4)
    assert text == cold_text


def test_another_frame_is_fed_even_with_equal_tokens(served) -> None:
    """Frames are told apart by id, not by content: a frame encoded anew is fed, and so is frame 1 of another
    connection (an agent that restarted numbers its frames from the start again)."""
    service, follower, reference, encoder = served
    generator = service.generator
    _publish(follower, encoder, 1, seed=1)
    _ask(service, "what is it?")
    rows = generator.fed_image_rows
    _publish(follower, encoder, 3, seed=1)  # not reused: fed
    _ask(service, "what is it?")
    assert generator.fed_image_rows == 2 * rows and generator.kept_image_rows == 0
    follower.connection = 2
    frame = _publish(follower, encoder, 3, seed=2)
    logits, text, _ = _ask(service, "what is it?")
    assert generator.fed_image_rows == 3 * rows and generator.kept_image_rows == 0
    cold_logits, cold_text = _reference(service, reference, "what is it?", frame.tokens, frame.grid)
    np.testing.assert_allclose(logits, cold_logits, rtol=0, atol=1e-4)
    assert text == cold_text


def test_the_same_attached_image_is_kept_and_another_is_fed(served) -> None:
    from PIL import Image as PilImage

    service, follower, reference, encoder = served
    generator = service.generator
    same = [PilImage.fromarray(scene(4, (96, 128))) for _ in range(2)]  # two objects, the same pixels
    _ask(service, "what is it?", same[0])
    rows = generator.fed_image_rows
    logits, text, facts = _ask(service, "and now?", same[1])
    assert facts is None and generator.fed_image_rows == rows and generator.kept_image_rows == rows
    encoded = encoder.encode(np.asarray(same[1]))
    cold_logits, cold_text = _reference(service, reference, "and now?", encoded.tokens, encoded.grid)
    np.testing.assert_allclose(logits, cold_logits, rtol=0, atol=1e-4)
    assert text == cold_text
    _ask(service, "and now?", PilImage.fromarray(scene(5, (96, 128))))
    assert generator.fed_image_rows == 2 * rows and generator.kept_image_rows == rows
