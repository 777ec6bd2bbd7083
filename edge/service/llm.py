"""The LLM process as a service (`minicpmv-edge llm`): READY once the API listens and the frame follower runs,
SIGTERM/SIGINT stop the API after the requests in progress (STOPPING, exit 0), Prometheus metrics on loopback."""
from __future__ import annotations

import signal
import threading
from typing import Any, Optional

from ..errors import InputError
from .notify import Notifier


def serve_llm(process: Any, metrics_listen: Optional[str] = None) -> None:
    """Serve `process` (an edge.llm.process.LlmProcess whose API listens) until SIGTERM or SIGINT; its metrics at
    `metrics_listen` (HOST:PORT, checked to be loopback), None for none."""
    notifier, server = Notifier(), None
    if metrics_listen is not None:
        from .metrics_server import NO_CLIENT, MetricsServer

        try:
            from .llm_metrics import LlmMetrics
        except ImportError as exc:
            raise InputError(NO_CLIENT % exc) from None
        server = MetricsServer(LlmMetrics(process).registry, metrics_listen, "--metrics")
        print("metrics at %s" % server.url, flush=True)

    def stop(signum: int, frame: Any) -> None:  # shutdown() waits for serve_forever, which this thread runs
        threading.Thread(target=process.server.shutdown, name="llm-stop", daemon=True).start()

    in_main = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    try:
        notifier.ready("serving at %s" % process.url)
        process.server.serve_forever()
        notifier.stopping("stopping: finishing the answer in progress")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.close()
        notifier.close()
