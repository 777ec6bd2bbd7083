"""The LLM process put together: the GGUF in llama.cpp, the bundle's facts (no engines: attached images are encoded
by the agent), the frame follower and the encode client on the agent's token stream, the HTTP API and, when
configured, the standing question and the alert rules; every input checked before anything is served."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from ..bundle.manifest import Bundle
from ..errors import InputError
from ..stream.address import DEFAULT_LISTEN, Address, is_loopback, listen_address
from ..stream.encode_client import EncodeClient
from .alert_config import AlertsConfig
from .alerts import Alerts
from .api import DEFAULT_LIMITS, Limits
from .embeddings import EmbeddingLlm
from .follower import FrameFollower
from .images import through_agent
from .schedule import ScheduleConfig, StandingQuestion
from .server import LlmServer
from .service import ChatService

log = logging.getLogger("minicpmv-edge.llm")
ANSWER_DRAIN_S = 30.0  # on close, the longest the answer in progress is waited for before the LLM is freed


def read_token(path: Path) -> str:
    """The API token: the file's first line, at least 16 characters."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("--token-file: cannot read %s (%s)" % (path, exc)) from None
    token = lines[0].strip() if lines else ""
    if len(token) < 16:
        raise InputError("--token-file: %s must hold a token of at least 16 characters on its first line (for "
                         "example `head -c 32 /dev/urandom | base64 > %s`)" % (path, path))
    return token


class LlmProcess:
    """Everything the process owns; `close` frees it all. A context manager."""

    def __init__(self, bundle: Path, gguf: Path, stream: Address, stream_secret: Optional[bytes] = None,
                 listen: str = DEFAULT_LISTEN, token: Optional[str] = None, n_ctx: int = 4096,
                 limits: Limits = DEFAULT_LIMITS, max_waiting: int = 2, n_threads: Optional[int] = None,
                 schedule: Optional[ScheduleConfig] = None, alerts: Optional[AlertsConfig] = None) -> None:
        host, port = listen_address(listen)
        if token is None and not is_loopback(host):
            raise InputError("--listen %s is not a loopback address: it needs --token-file, and clients must send "
                             "Authorization: Bearer <token>" % host)
        for flag, path in (("--bundle", bundle), ("--gguf", gguf)):
            if not Path(path).exists():
                raise InputError("%s: %s does not exist" % (flag, path))
        self.llm = self.follower = self.server = self.images = None
        self.schedule: Optional[StandingQuestion] = None
        self.alerts: Optional[Alerts] = None
        try:
            model = Bundle.load(bundle, verify=False).model  # the facts only: the graphs are the agent's
            self.llm = EmbeddingLlm(str(gguf), n_ctx=n_ctx, n_threads=n_threads)
            if model.embed_dim != self.llm.n_embd:
                raise InputError("token width mismatch: the bundle makes %d-wide tokens (MiniCPM-V %s), the GGUF "
                                 "takes %d (n_embd): use the GGUF of the LLM this bundle was made for"
                                 % (model.embed_dim, model.version, self.llm.n_embd))
            self.follower = FrameFollower(stream, model.embed_dim, stream_secret).start()
            self.images = EncodeClient(stream, model.embed_dim, stream_secret)
            service = ChatService(self.llm, model, through_agent(self.images), self.follower, limits.max_tokens,
                                  max_waiting)
            if schedule is not None:
                self.schedule = StandingQuestion(service, schedule)
            if alerts is not None:
                self.alerts = Alerts(service, alerts)
            try:
                self.server = LlmServer((host, port), service, Path(gguf).stem, token, limits, self.schedule,
                                        self.alerts)
            except OSError as exc:
                raise InputError("--listen %s: cannot listen there (%s)" % (listen, exc.strerror or exc)) from None
            if self.schedule is not None:
                self.schedule.start()
            if self.alerts is not None:
                self.alerts.start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return "http://%s:%d" % ("[%s]" % host if ":" in host else host, port)

    def close(self) -> None:
        """Stop listening and free everything; the answer in progress may end first (up to ANSWER_DRAIN_S)."""
        if self.server is not None:
            self.server.server_close()
        if self.schedule is not None:
            self.schedule.close()
        if self.alerts is not None:
            self.alerts.close()
        if self.server is not None and not self.server.service.turn.acquire(timeout=ANSWER_DRAIN_S):
            log.warning("an answer still runs after %g s: the LLM is freed under it", ANSWER_DRAIN_S)
        if self.follower is not None:
            self.follower.close()
        if self.images is not None:
            self.images.close()
        if self.llm is not None:
            self.llm.close()

    def __enter__(self) -> LlmProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
