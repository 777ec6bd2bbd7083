"""`minicpmv-edge llm`: the LLM process (frame follower + local OpenAI-style API) until SIGINT or SIGTERM (exit 0
once the answer in progress ended), with Prometheus metrics on loopback (docs/service.md).

Its settings come from the flags, or from an agent config (`--config`: bundle, stream, `llm:` and `api:`); a flag
given beside `--config` wins. `--ask` and `--every` (or `llm.schedule`) add a standing question about the newest
frame; the config's `alerts:` rules are asked as well (docs/alerts.md)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from ..errors import InputError
from . import args as common
from .shell import Handler

if TYPE_CHECKING:
    from ..agent.config import AgentConfig
    from ..llm.schedule import ScheduleConfig

DEFAULT_CTX = 4096
DEFAULT_MAX_TOKENS = 256


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    from ..stream.address import DEFAULT_LISTEN, DEFAULT_SOCKET

    llm = sub.add_parser("llm", help="answer questions about the camera's newest frame (or an attached image) with "
                                     "a GGUF LLM in llama.cpp, over a local OpenAI-style API (docs/llm.md)")
    llm.add_argument("--config", type=Path, help="an agent config: bundle, stream, llm: and api: from it (flags "
                                                 "given as well win)")
    common.add_bundle(llm, required=False)
    llm.add_argument("--gguf", type=Path, help="the LLM as a GGUF file (its n_embd must be the bundle's token width); "
                                               "required without --config")
    llm.add_argument("--stream", help="the agent's token stream: a Unix socket path or a loopback HOST:PORT "
                                      "(default: the config's, else %s)" % DEFAULT_SOCKET)
    llm.add_argument("--stream-secret-file", type=Path, help="the shared secret of a TCP stream")
    llm.add_argument("--listen", help="HOST:PORT of the API (default %s); anything but loopback needs --token-file"
                     % DEFAULT_LISTEN)
    llm.add_argument("--token-file", type=Path, help="a file whose first line is the bearer token clients must send")
    llm.add_argument("--ctx", type=common.positive_int, help="context tokens (default %d)" % DEFAULT_CTX)
    llm.add_argument("--max-tokens", type=common.positive_int,
                     help="the most tokens an answer may take, and the default (%d)" % DEFAULT_MAX_TOKENS)
    llm.add_argument("--threads", type=common.positive_int, help="CPU threads for llama.cpp (default: its own)")
    llm.add_argument("--ask", metavar="QUESTION", help="a standing question, asked about the newest frame every "
                                                       "--every seconds when the scene has changed (docs/llm.md)")
    llm.add_argument("--every", metavar="S", type=common.positive_float, help="seconds between standing questions")
    llm.add_argument("--answers-file", type=Path, help="append each standing answer to this file as a JSON line")
    llm.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics there, loopback only (default: "
                                                            "the config's metrics.llm_listen, else 127.0.0.1:9109)")
    llm.add_argument("--no-metrics", action="store_true", help="serve no metrics (or metrics.enabled: false)")
    return {"llm": run_llm}


def stream_address(text: str) -> Any:
    from ..stream.address import Address, tcp_address

    return Address(path=Path(text)) if "/" in text or ":" not in text else tcp_address(text, "--stream")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def schedule_of(args: argparse.Namespace, configured: Optional[ScheduleConfig]) -> Optional[ScheduleConfig]:
    """The standing question (a ScheduleConfig, or None): the flags over the config's `llm.schedule`."""
    from ..llm.schedule import MAX_EVERY_S, ScheduleConfig

    question = _first(args.ask, configured.question if configured else None)
    every_s = _first(args.every, configured.every_s if configured else None)
    answers_file = _first(args.answers_file, configured.answers_file if configured else None)
    if question is None and every_s is None and answers_file is None:
        return None
    missing = [flag for flag, value in (('--ask "QUESTION"', question), ("--every SECONDS", every_s)) if value is None]
    if missing:
        raise InputError("a standing question needs %s as well (or llm.schedule in the config: docs/llm.md)"
                         % " and ".join(missing))
    if not question.strip():
        raise InputError('--ask: the question is empty: ask something, such as --ask "What is on the table?"')
    if every_s > MAX_EVERY_S:
        raise InputError("--every %g: at most %d seconds (a day)" % (every_s, MAX_EVERY_S))
    return ScheduleConfig(question, every_s, answers_file)


def metrics_listen(args: argparse.Namespace, config: Optional[AgentConfig]) -> Optional[str]:
    """Where the metrics go (HOST:PORT on loopback), or None for no metrics: the flags over the config's."""
    from ..agent.config import MetricsConfig
    from ..stream.address import is_loopback, listen_address

    metrics = config.metrics if config is not None else MetricsConfig()
    if args.no_metrics or (args.metrics is None and not metrics.enabled):
        return None
    if args.metrics is None:
        return metrics.llm_listen
    host, _ = listen_address(args.metrics, "--metrics")
    if not is_loopback(host):
        raise InputError("--metrics %s: not a loopback address: metrics are served on loopback only (127.0.0.1 or "
                         "::1)" % args.metrics)
    return args.metrics


def run_llm(args: argparse.Namespace) -> int:
    from ..agent.config import ApiConfig, load_agent_config
    from ..llm.api import Limits
    from ..llm.process import LlmProcess, read_token
    from ..service.llm import serve_llm
    from ..stream.address import DEFAULT_SOCKET, read_secret

    config: Optional[AgentConfig] = load_agent_config(args.config) if args.config else None
    section, api = (config.llm if config else None), (config.api if config else ApiConfig())
    bundle = _first(args.bundle, config.bundle if config else None)
    gguf = _first(args.gguf, section.gguf if section else None)
    if bundle is None or gguf is None:
        raise InputError("--%s is required, or --config with an agent config that has %s"
                         % (("bundle", "bundle:") if bundle is None else ("gguf", "an llm: section with gguf:")))
    if args.stream is not None:
        address, secret_file = stream_address(args.stream), args.stream_secret_file
    elif config is not None:
        address, secret_file = config.stream.address, _first(args.stream_secret_file, config.stream.secret_file)
    else:
        address, secret_file = stream_address(str(DEFAULT_SOCKET)), args.stream_secret_file
    secret = read_secret(secret_file) if secret_file else None
    if address.is_tcp and secret is None:
        raise InputError("--stream %s is TCP: it needs --stream-secret-file" % address)
    token_file = _first(args.token_file, api.token_file)
    token = read_token(token_file) if token_file else None
    ctx = _first(args.ctx, section.ctx if section else None, DEFAULT_CTX)
    max_tokens = _first(args.max_tokens, section.max_tokens if section else None, DEFAULT_MAX_TOKENS)
    threads = _first(args.threads, section.threads if section else None)
    schedule = schedule_of(args, section.schedule if section else None)
    metrics = metrics_listen(args, config)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("minicpmv-edge.llm.schedule").setLevel(logging.INFO)  # each standing answer: one line
    logging.getLogger("minicpmv-edge.llm.alerts").setLevel(logging.INFO)  # each alert, each MQTT (re)connect
    with LlmProcess(bundle, gguf, address, secret, _first(args.listen, api.listen), token, ctx,
                    Limits(max_tokens=max_tokens), n_threads=threads, schedule=schedule,
                    alerts=config.alerts if config else None) as process:
        print("serving %s at %s/v1 (frames from %s)" % (process.server.model_id, process.url, address), flush=True)
        serve_llm(process, metrics)
    return 0
