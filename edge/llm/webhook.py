"""The webhook sink: each alert POSTed as a JSON body from a worker thread, through a bounded queue (a full queue
drops the new alert, counted), retried on connection errors and 5xx with a backoff of 1 s doubling."""
from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

from .alert_config import WebhookConfig

log = logging.getLogger("minicpmv-edge.llm.alerts")
QUEUE_LENGTH = 100
FIRST_BACKOFF_S = 1.0


class WebhookSink:
    """POSTs alerts to `config.url`; `counts`: sent, retries, failed (given up or refused), dropped (queue full)."""

    def __init__(self, config: WebhookConfig, first_backoff_s: float = FIRST_BACKOFF_S) -> None:
        self.config, self.first_backoff_s = config, first_backoff_s
        self.counts = dict.fromkeys(("sent", "retries", "failed", "dropped"), 0)
        self._queue: queue.Queue[Optional[Dict[str, Any]]] = queue.Queue(QUEUE_LENGTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def send(self, alert: Dict[str, Any]) -> None:
        """Queue `alert`; never blocks."""
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.counts["dropped"] += 1
            log.error("webhook queue full (%d alerts waiting): alert of rule %s dropped", QUEUE_LENGTH, alert["rule"])

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop: a backoff wait ends at once; alerts still queued are not sent."""
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            alert = self._queue.get()
            if alert is not None:
                self._deliver(alert)

    def _deliver(self, alert: Dict[str, Any]) -> None:
        body = json.dumps(alert, ensure_ascii=False).encode("utf-8")
        backoff = self.first_backoff_s
        for attempt in range(self.config.retries + 1):
            if attempt:
                if self._stop.wait(backoff):
                    return
                backoff *= 2
                self.counts["retries"] += 1
            error = self._post(body)
            if error is None:
                self.counts["sent"] += 1
                return
            if not error.startswith("retry"):
                break
            log.warning("webhook POST of rule %s's alert: %s (try %d of %d)", alert["rule"], error, attempt + 1,
                        self.config.retries + 1)
        self.counts["failed"] += 1
        log.error("webhook POST of rule %s's alert to %s failed: %s", alert["rule"], self.config.url, error)

    def _post(self, body: bytes) -> Optional[str]:
        """None when accepted (2xx); else why, starting with "retry" when it is worth another try."""
        request = urllib.request.Request(self.config.url, body, {"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            return ("retry: HTTP %d" if exc.code >= 500 else "refused: HTTP %d") % exc.code
        except (urllib.error.URLError, OSError) as exc:
            return "retry: %s" % getattr(exc, "reason", exc)
