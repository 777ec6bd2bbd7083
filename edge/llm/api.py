"""OpenAI chat-completion requests as this process takes them: parsed and checked into a ChatRequest, an attached
image decoded from its data URI within limits; every problem an ApiError with its HTTP status."""
from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .conversation import IMAGE_MARK

ROLES = ("system", "user", "assistant")
IMAGE_TYPES = ("data:image/png;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,")


class ApiError(Exception):
    """A request refused with HTTP `status` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Limits(NamedTuple):
    max_body_bytes: int = 16 << 20
    max_image_bytes: int = 8 << 20  # decoded
    max_image_pixels: int = 4096 * 4096
    max_tokens: int = 256  # the most an answer may take, and the default


DEFAULT_LIMITS = Limits()


class ChatRequest(NamedTuple):
    messages: List[Tuple[str, str]]  # (role, text); the image's message holds IMAGE_MARK where the image goes
    image: Any  # a PIL RGB image from the request, or None: the camera's newest frame
    stream: bool
    max_tokens: Optional[int]  # None: as many as fit, up to Limits.max_tokens
    temperature: float
    seed: Optional[int]


def parse_request(body: bytes, model_id: str, limits: Limits) -> ChatRequest:
    """A ChatRequest from a POST /v1/chat/completions body; ApiError 400 (bad request, unknown model) or 413."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "the body is not JSON: %s" % exc) from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    model = data.get("model", model_id)
    if model != model_id:
        raise ApiError(400, "unknown model %r: this server has %r (GET /v1/models)" % (model, model_id))
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages must be a non-empty list")
    messages, images = [], []
    for index, message in enumerate(raw):
        role, text, image = _message(index, message)
        if image is not None:
            images.append(image)
            text = IMAGE_MARK + "\n" + text
        messages.append((role, text))
    if len(images) > 1:
        raise ApiError(400, "a request takes at most one image_url")
    if not images:
        last_user = max((i for i, (role, _) in enumerate(messages) if role == "user"), default=None)
        if last_user is None:
            raise ApiError(400, "messages need a user message")
        messages[last_user] = ("user", IMAGE_MARK + "\n" + messages[last_user][1])  # the camera's newest frame
    return ChatRequest(messages, decode_image(images[0], limits) if images else None, _flag(data, "stream"),
                       _max_tokens(data, limits), _number(data, "temperature", 0.0, 0.0, 2.0),
                       _seed(data))


def _message(index: int, message: Any) -> Tuple[str, str, Optional[str]]:
    """(role, text, image data URI or None) of one message."""
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise ApiError(400, "messages[%d] must be an object with a role among %s" % (index, ", ".join(ROLES)))
    content = message.get("content")
    if isinstance(content, str):
        return message["role"], content, None
    if not isinstance(content, list):
        raise ApiError(400, "messages[%d].content must be a string or a list of parts" % index)
    texts, image = [], None
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and message["role"] == "user" and image is None:
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise ApiError(400, "messages[%d]: image_url.url must be a string" % index)
            image = url
        else:
            raise ApiError(400, "messages[%d]: unsupported content part (text parts, and one image_url in a user "
                                "message)" % index)
    return message["role"], "\n".join(texts), image


def decode_image(url: str, limits: Limits) -> Any:
    """A PIL RGB image from a PNG or JPEG data URI; 413 over the byte or pixel limit, 400 when it is not one."""
    from PIL import Image

    prefix = next((p for p in IMAGE_TYPES if url.startswith(p)), None)
    if prefix is None:
        raise ApiError(400, "image_url must be a data URI of a PNG or JPEG image (data:image/png;base64,...): "
                            "this server fetches nothing")
    if (len(url) - len(prefix)) * 3 // 4 > limits.max_image_bytes:
        raise ApiError(413, "the image is over %d bytes" % limits.max_image_bytes)
    try:
        data = base64.b64decode(url[len(prefix):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "the image's base64 is broken: %s" % exc) from None
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "JPEG"):
            raise ApiError(400, "the image is %s, not PNG or JPEG" % image.format)
        if image.width * image.height > limits.max_image_pixels:
            raise ApiError(413, "the image is %dx%d, over %d pixels" % (image.width, image.height,
                                                                         limits.max_image_pixels))
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours, met in the header
        raise ApiError(413, "the image is too large: %s" % exc) from None
    except OSError as exc:
        raise ApiError(400, "the image cannot be decoded: %s" % exc) from None


def _flag(data: Dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ApiError(400, "%s must be true or false" % key)
    return value


def _number(data: Dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, "%s must be a number in %g..%g" % (key, low, high))
    return float(value)


def _max_tokens(data: Dict[str, Any], limits: Limits) -> Optional[int]:
    value = data.get("max_completion_tokens", data.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limits.max_tokens:
        raise ApiError(400, "max_tokens must be an integer in 1..%d" % limits.max_tokens)
    return value


def _seed(data: Dict[str, Any]) -> Optional[int]:
    value = data.get("seed")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ApiError(400, "seed must be a non-negative integer")
    return value
