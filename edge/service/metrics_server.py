"""A Prometheus registry served over HTTP at a loopback HOST:PORT, in a thread of its own, until closed."""
from __future__ import annotations

from typing import Tuple

from ..errors import InputError
from ..stream.address import listen_address

NO_CLIENT = ("metrics need prometheus-client (pip install -e '.[edge]'), or turn them off (metrics.enabled: false, "
             "llm --no-metrics): %s")


class MetricsServer:
    """Serves `registry` at http://`listen`/metrics; `key` names the setting in errors (metrics.listen, --metrics)."""

    def __init__(self, registry: object, listen: str, key: str = "metrics.listen") -> None:
        from prometheus_client import start_http_server

        host, port = listen_address(listen, key)
        try:
            self._server, self._thread = start_http_server(port, host, registry=registry)
        except OSError as exc:
            raise InputError("%s %s: cannot listen there (%s): choose another port, or metrics.enabled: false"
                             % (key, listen, exc.strerror or exc)) from None

    @property
    def address(self) -> Tuple[str, int]:
        return self._server.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        return "http://%s:%d/metrics" % ("[%s]" % host if ":" in host else host, port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
