"""A 4.7 frame's positions from the agent's stream to llama.cpp: a real publisher and FrameFollower, the ChatService
on make-gguf's tiny Qwen3.5 LLM. Its answer about the frame is the one its tokens and positions give fed directly,
and not the one the same tokens give without them (which is what a dropped field would give); a 4.6 frame (blocks
of their own sizes, no positions) is answered as its rows at plain positions give."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Tuple

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write the tiny GGUF LLMs")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.agent.contracts import FrameResult  # noqa: E402
from edge.bundle.facts import ModelFacts, SliceFacts  # noqa: E402
from edge.encoder.prompt import PromptLayout  # noqa: E402
from edge.llm.api import ChatRequest  # noqa: E402
from edge.llm.conversation import IMAGE_MARK, Image, build_prompt, with_system  # noqa: E402
from edge.llm.embeddings import EmbeddingLlm  # noqa: E402
from edge.llm.follower import FrameFollower  # noqa: E402
from edge.llm.generate import Generator  # noqa: E402
from edge.llm.service import ChatService  # noqa: E402
from edge.stream.address import Address  # noqa: E402
from edge.stream.publisher import StreamPublisher  # noqa: E402

WIDTH = 256
TOKENS = 6


def _facts(version: str) -> ModelFacts:
    """A 4.6 or 4.7 bundle's model facts as converter.family writes them (no fixed query count)."""
    return ModelFacts(version, 0, WIDTH, 1152, 16, 4304, SliceFacts(448, 9, 14, "merger-16x"), "v" + version, True,
                      None, {})


def _canvas(blocks, cols: int) -> np.ndarray:
    """Positions on a canvas as the agent computes them: the overview stretched over it, slices tiled on it."""
    (thumb_h, thumb_w), slices = blocks[0], blocks[1:]
    height, width = slices[0]
    canvas = (len(slices) // cols * height, cols * width)
    grids = [(np.round(np.linspace(0, canvas[0] - 1, thumb_h)), np.round(np.linspace(0, canvas[1] - 1, thumb_w)))]
    grids += [(np.arange(h) + k // cols * height, np.arange(w) + k % cols * width) for k, (h, w) in enumerate(slices)]
    return np.concatenate([np.stack([np.zeros(len(h) * len(w)), *map(np.ravel, np.meshgrid(h, w, indexing="ij"))],
                                    axis=1) for h, w in grids]).astype(np.int32)


def _answer(service: ChatService) -> str:
    request = ChatRequest([("user", IMAGE_MARK + "\nwhat is it?")], None, False, TOKENS, 0.0, None)
    reply = service.answer(request)
    next(reply)
    return "".join(reply)


@pytest.mark.parametrize("version", ["4.6", "4.7"])
def test_a_frames_positions_reach_llama_cpp(make_gguf: Callable[..., Path], sock_dir: Path, version: str) -> None:
    sizes = [(4, 6), (3, 3), (3, 3)]
    rows = np.random.default_rng(3).standard_normal((sum(h * w for h, w in sizes), WIDTH)).astype(np.float32)
    positions = _canvas(sizes, cols=2) if version == "4.7" else None
    blocks = tuple(h * w for h, w in sizes)
    address = Address(path=sock_dir / "tokens.sock")
    publisher = StreamPublisher(address, version, WIDTH, dtype="fp32").start()
    follower = FrameFollower(address, WIDTH).start()
    try:
        with EmbeddingLlm(str(make_gguf(version))) as llm:
            service = ChatService(llm, _facts(version), lambda image: None, follower, TOKENS)
            deadline = time.monotonic() + 60
            while not publisher.stats()["subscribers"]:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            publisher.write(FrameResult(7, 1.0, (2, 1), rows, {}, positions=positions, block_rows=blocks))
            while follower.latest is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            served = _answer(service)
            assert follower.latest.block_rows == blocks
            if positions is None:
                assert follower.latest.positions is None
            else:
                np.testing.assert_array_equal(follower.latest.positions, positions)

            def direct(image_positions) -> Tuple[str, np.ndarray]:
                """The answer fed directly, and the logits of its first token."""
                messages = with_system([("user", IMAGE_MARK + "\nwhat is it?")])
                image = Image(rows, (2, 1), ("digest", "x"), positions=image_positions,
                              block_rows=blocks)
                answer = Generator(llm).start(build_prompt(llm, PromptLayout.from_facts(_facts(version)), messages,
                                                           image), TOKENS)
                first = llm.logits()
                return "".join(answer), first

            text, logits = direct(positions)
            assert served == text and len(served) > 0
            if positions is not None:
                assert np.abs(logits - direct(None)[1]).max() > 1e-3
    finally:
        follower.close()
        publisher.close()
