"""Where an attached image's tokens come from: the agent's engines, asked over the token stream. The engines have one
owner, the agent, so a Jetson holds them once; the LLM process holds none."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from ..stream.encode_client import EncodeClient, EncodeFailed
from .api import ApiError

Tokens = Tuple[np.ndarray, Optional[Tuple[int, int]]]  # tokens [blocks, query_num, width] and grid (cols, rows)
ImageEncoder = Callable[[np.ndarray], Tokens]
STATUS_OF = {"busy": 429, "bad-image": 400}  # any other failure: 503, the agent cannot serve now


def through_agent(client: EncodeClient, timeout_s: float = 60.0) -> ImageEncoder:
    """Encode with the agent's engines; its refusals become ApiErrors (busy 429, bad image 400, else 503)."""
    def encode(image: np.ndarray) -> Tokens:
        try:
            frame = client.encode(image, timeout_s)
        except EncodeFailed as exc:
            raise ApiError(STATUS_OF.get(exc.code, 503), "the agent did not encode the image: %s" % exc) from None
        return frame.tokens, frame.grid

    return encode

