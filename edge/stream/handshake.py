"""Who may subscribe: the publisher says what it sends (HELLO), the subscriber says what its LLM takes
(SUBSCRIBE), the publisher answers ACCEPT or REFUSE with one line. In TCP mode the subscriber proves it knows the
shared secret with an HMAC of the publisher's nonce, so the secret never travels."""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Dict, Optional, Tuple

from ..errors import InputError
from .protocol import ACCEPT, HELLO, REFUSE, SUBSCRIBE, FrameError, Message, pack


class HandshakeRefused(InputError):
    """The publisher refused this subscriber (token width, secret): retrying will not help."""


def hello(model_version: str, token_width: int, dtype: str, secret: Optional[bytes]) -> Tuple[Dict[str, Any], bytes]:
    """The publisher's HELLO header and message; `nonce` is set when a secret is required."""
    offer = {"model_version": model_version, "token_width": token_width, "dtype": dtype,
             "nonce": os.urandom(16).hex() if secret else None}
    return offer, pack(HELLO, offer)


def proof(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, nonce.encode("ascii"), hashlib.sha256).hexdigest()


def subscribe(offer: Message, token_width: int, secret: Optional[bytes], frames: bool = True) -> bytes:
    """The SUBSCRIBE message answering the publisher's HELLO `offer`; `frames` False: a connection for encode
    requests alone, to which the publisher sends no camera frames."""
    if offer.kind != HELLO:
        raise FrameError("kind", "expected the publisher's hello, got message kind %d" % offer.kind)
    nonce = offer.header.get("nonce")
    if nonce is not None and not secret:
        raise HandshakeRefused("the publisher requires a shared secret: pass the stream's secret file")
    auth = proof(secret, str(nonce)) if nonce is not None and secret else None
    return pack(SUBSCRIBE, {"token_width": token_width, "auth": auth, "frames": frames})


def answer(offer: Dict[str, Any], request: Message, secret: Optional[bytes]) -> Optional[str]:
    """None when the subscriber is accepted, else the one-line reason to refuse it."""
    if request.kind != SUBSCRIBE:
        return "expected a subscribe message, got message kind %d" % request.kind
    if secret is not None:
        auth = request.header.get("auth")
        if not isinstance(auth, str) or not hmac.compare_digest(auth, proof(secret, offer["nonce"])):
            return "wrong shared secret: give the subscriber the publisher's stream.secret_file"
    if not isinstance(request.header.get("frames"), bool):
        return "the subscribe message must say whether it takes frames (true or false)"
    width = request.header.get("token_width")
    if width != offer["token_width"]:
        return ("token width mismatch: the publisher sends %d-wide tokens (MiniCPM-V %s), the LLM takes %r: use "
                "the bundle made for this LLM, or the LLM this bundle was made for"
                % (offer["token_width"], offer["model_version"], width))
    return None


def reply(reason: Optional[str]) -> bytes:
    """ACCEPT when `reason` is None, else REFUSE with it."""
    return pack(ACCEPT, {}) if reason is None else pack(REFUSE, {"reason": reason})


def verdict(reply: Message) -> None:
    """Raise HandshakeRefused unless the publisher's `reply` is ACCEPT."""
    if reply.kind == REFUSE:
        raise HandshakeRefused("the token stream refused this subscriber: %s" % reply.header.get("reason"))
    if reply.kind != ACCEPT:
        raise FrameError("kind", "expected accept or refuse, got message kind %d" % reply.kind)
