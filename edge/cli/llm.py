"""`minicpmv-edge llm`: the LLM process (frame follower + local OpenAI-style API) until SIGINT or SIGTERM."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict

from ..errors import InputError
from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    from ..llm.process import DEFAULT_LISTEN
    from ..stream.address import DEFAULT_SOCKET

    llm = sub.add_parser("llm", help="answer questions about the camera's newest frame (or an attached image) with "
                                     "a GGUF LLM in llama.cpp, over a local OpenAI-style API (docs/llm.md)")
    common.add_bundle(llm)
    llm.add_argument("--gguf", required=True, type=Path, help="the LLM as a GGUF file (its n_embd must be the "
                                                               "bundle's token width)")
    llm.add_argument("--stream", default=str(DEFAULT_SOCKET), help="the agent's token stream: a Unix socket path or "
                     "a loopback HOST:PORT (default %s)" % DEFAULT_SOCKET)
    llm.add_argument("--stream-secret-file", type=Path, help="the shared secret of a TCP stream")
    llm.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT of the API (default %s); anything but "
                     "loopback needs --token-file" % DEFAULT_LISTEN)
    llm.add_argument("--token-file", type=Path, help="a file whose first line is the bearer token clients must send")
    llm.add_argument("--ctx", type=common.positive_int, default=4096, help="context tokens (default 4096)")
    llm.add_argument("--max-tokens", type=common.positive_int, default=256,
                     help="the most tokens an answer may take, and the default (256)")
    return {"llm": run_llm}


def stream_address(text: str) -> Any:
    from ..stream.address import Address, tcp_address

    return Address(path=Path(text)) if "/" in text or ":" not in text else tcp_address(text, "--stream")


def run_llm(args: argparse.Namespace) -> int:
    from ..llm.api import Limits
    from ..llm.process import LlmProcess, read_token
    from ..stream.address import read_secret

    address = stream_address(args.stream)
    secret = read_secret(args.stream_secret_file) if args.stream_secret_file else None
    if address.is_tcp and secret is None:
        raise InputError("--stream %s is TCP: it needs --stream-secret-file" % args.stream)
    token = read_token(args.token_file) if args.token_file else None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with LlmProcess(args.bundle, args.gguf, address, secret, args.listen, token, args.ctx,
                    Limits(max_tokens=args.max_tokens)) as process:
        print("serving %s at %s/v1 (frames from %s)" % (process.server.model_id, process.url, address), flush=True)
        process.server.serve_forever()
    return 0
