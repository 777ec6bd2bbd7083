"""The chat service: one LLM answering one request at a time, about the camera's newest frame or an attached image
(encoded by the agent's engines, edge.llm.images); a bounded number of requests may wait for their turn."""
from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, NamedTuple, Optional, Tuple

import numpy as np

from ..bundle.facts import ModelFacts
from ..encoder.prompt import PromptLayout
from ..errors import InputError
from .api import ApiError, ChatRequest
from .conversation import Image, build_prompt, digest_source, frame_source, with_system
from .embeddings import EmbeddingLlm
from .follower import FrameFollower
from .generate import Answer, Generator
from .images import ImageEncoder


class Reply(NamedTuple):
    answer: Answer  # iterate it while holding the turn (Reply.pieces does)
    frame: Optional[Dict[str, Any]]  # the camera frame answered about (frame_id, timestamp_s, reused_from), or None
    image: Image  # what the prompt held: its `source` names the frame (and stream connection) or the picture


class ChatService:
    """For the bundle's `model`: `encode_image` makes an attached image's tokens; `follower` supplies the camera's
    newest frame."""

    def __init__(self, llm: EmbeddingLlm, model: ModelFacts, encode_image: ImageEncoder,
                 follower: Optional[FrameFollower], max_tokens: int, max_waiting: int = 2) -> None:
        self.llm, self.model, self.encode_image, self.follower = llm, model, encode_image, follower
        self.max_tokens = max_tokens
        self.layout = PromptLayout.from_facts(model)
        self.generator = Generator(llm)
        self.turn = threading.Lock()  # the model answers one request at a time
        self.slots = threading.BoundedSemaphore(1 + max_waiting)  # the one answering and those waiting

    def admit(self) -> None:
        """Take a slot for a request, or ApiError 429 when the answering one and the waiting ones fill them."""
        if not self.slots.acquire(blocking=False):
            raise ApiError(429, "busy: the model answers one request at a time and the queue is full; retry later")

    def release(self) -> None:
        self.slots.release()

    def answer(self, request: ChatRequest) -> Iterator[Any]:
        """Within an admitted request: first the Reply (prompt fed), then the answer's text pieces. Holds the
        turn until exhausted or closed."""
        with self.turn:
            try:
                image, frame = self._image(request)
                prompt = build_prompt(self.llm, self.layout, with_system(request.messages), image)
                room = self.llm.n_ctx - prompt.n_tokens
                max_tokens = request.max_tokens or max(1, min(self.max_tokens, room))
                answer = self.generator.start(prompt, max_tokens, request.temperature, request.seed)
            except InputError as exc:
                raise ApiError(400, str(exc)) from None
            yield Reply(answer, frame, image)
            yield from answer

    def _image(self, request: ChatRequest) -> Tuple[Image, Optional[Dict[str, Any]]]:
        """(Image, frame facts): the attached image encoded, or the camera's newest frame (503 when none). A
        frame's source is the frame its tokens were encoded for (`reused_from` when the agent reused them)."""
        if request.image is not None:
            encoded = self.encode_image(np.asarray(request.image))
            return Image(encoded.tokens, encoded.grid, digest_source(encoded.tokens),
                         positions=encoded.positions, block_rows=encoded.block_rows), None
        newest = None if self.follower is None else self.follower.newest()
        if newest is None:
            why = "no token stream configured (--stream)" if self.follower is None else (
                self.follower.error or "the agent has not published a frame yet")
            raise ApiError(503, "no camera frame to answer about: %s; attach an image_url instead" % why)
        latest, connection = newest
        version = self.model.version
        blocks = len(latest.block_rows) if latest.block_rows is not None else latest.rows // max(
            self.layout.query_num, 1)
        expected = 1 + (0 if latest.grid is None else latest.grid[0] * latest.grid[1])
        if latest.model_version != version or blocks != expected:
            raise ApiError(503, "the newest camera frame does not fit this process: MiniCPM-V %s tokens in %d blocks "
                                "for grid %s (this bundle is %s, and needs %d blocks)"
                           % (latest.model_version, blocks, latest.grid, version, expected))
        facts = {"frame_id": latest.frame_id, "timestamp_s": latest.timestamp_s, "reused_from": latest.reused_from}
        if latest.frames > 1:
            facts["frames"] = latest.frames  # a 4.5 video group ending at frame_id
        return Image(latest.tokens, latest.grid, frame_source(latest, connection), latest.frames, latest.positions,
                     latest.block_rows), facts
