"""Where an attached image's tokens come from: the agent's engines, asked over the token stream. The engines have one
owner, the agent, so a Jetson holds them once; the LLM process holds none."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..stream.encode_client import EncodeClient, EncodeFailed
from ..stream.protocol import StreamFrame
from .api import ApiError

ImageEncoder = Callable[[np.ndarray], StreamFrame]  # the encoded image: tokens, grid, and positions and blocks
STATUS_OF = {"busy": 429, "bad-image": 400}  # any other failure: 503, the agent cannot serve now


def through_agent(client: EncodeClient, timeout_s: float = 60.0) -> ImageEncoder:
    """Encode with the agent's engines; its refusals become ApiErrors (busy 429, bad image 400, else 503)."""
    def encode(image: np.ndarray) -> StreamFrame:
        try:
            return client.encode(image, timeout_s)
        except EncodeFailed as exc:
            raise ApiError(STATUS_OF.get(exc.code, 503), "the agent did not encode the image: %s" % exc) from None

    return encode

