"""The LLM process with a tiny MiniCPM-V 4.7 bundle and its tiny Qwen3.5 GGUF: the agent's encoder gives each
visual token its canvas position, the stream carries it, and the process's answer about the camera frame is the
one those tokens at those positions give, whose logits differ from those of plain positions (as 4.6 has)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Tuple

import numpy as np

from edge.agent.contracts import FrameResult
from edge.encoder.prompt import PromptLayout
from edge.llm.conversation import IMAGE_MARK, Image, build_prompt, with_system
from edge.llm.embeddings import EmbeddingLlm
from edge.llm.generate import Generator

from .conftest import post_chat, scene
from .test_api import _wait_for_frame

TOKENS = 8


def test_an_answer_about_a_47_frame_uses_its_canvas_positions(start_llm, make_gguf: Callable[..., Path]) -> None:
    running = start_llm("4.7")
    encoded = running.agent.encoder.encode(scene(1))
    assert encoded.positions is not None and len(encoded.positions) == len(encoded.tokens) == sum(encoded.token_counts)
    running.publisher.write(FrameResult(4, 1.0, encoded.grid, encoded.tokens, {}, positions=encoded.positions,
                                        block_rows=tuple(encoded.token_counts)))
    _wait_for_frame(running, 4)
    body = json.dumps({"messages": [{"role": "user", "content": "what is it?"}], "max_tokens": TOKENS,
                       "temperature": 0}).encode()
    status, answer = post_chat(running.url, body)
    assert status == 200 and answer["frame"]["frame_id"] == 4
    served = answer["choices"][0]["message"]["content"]
    assert answer["usage"]["completion_tokens"] > 0
    layout = PromptLayout.from_facts(running.agent.encoder.bundle.model)
    messages = with_system([("user", IMAGE_MARK + "\nwhat is it?")])
    tokens = np.asarray(encoded.tokens, np.float16).astype(np.float32)  # as the stream's fp16 delivers them

    def direct(positions) -> Tuple[str, np.ndarray]:
        """The answer, and the logits of its first token."""
        with EmbeddingLlm(str(make_gguf("4.7"))) as llm:
            image = Image(tokens, encoded.grid, ("digest", "x"), positions=positions,
                          block_rows=tuple(encoded.token_counts))
            answer = Generator(llm).start(build_prompt(llm, layout, messages, image), TOKENS)
            first = llm.logits()
            return "".join(answer), first

    text, canvas = direct(encoded.positions)
    _, plain = direct(None)
    assert served == text
    assert np.abs(canvas - plain).max() > 1e-3
