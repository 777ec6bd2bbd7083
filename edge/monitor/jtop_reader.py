"""The jtop client in a background thread: each reading of jtop.service becomes a Snapshot(source="jtop"). When the
service cannot be reached (not running, no access, version or Python mismatch, lost connection) the reader keeps
serving a Snapshot marked degraded, logs the reason once per change, and reconnects with backoff. Never fatal."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any, Dict, Optional

from .fallback_reader import FallbackReader
from .snapshot import Snapshot

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
TEMPERATURE_OFFLINE_C = -256.0  # what jtop reports for a sensor that is offline


def one_line(text: object) -> str:
    """jtop's messages span lines ("... Please run:\\nsudo jtop --install-service"): one line, spaces collapsed."""
    return " ".join(str(text).split())


class Unreachable(Exception):
    """jtop said why it cannot serve (its JtopException), in one line."""


def describe(error: Exception) -> str:
    """Why a connection ended: jtop's own words, or the type and message of what a dying connection raised
    (EOFError, BrokenPipeError, ...)."""
    if isinstance(error, Unreachable):
        return str(error)
    message = one_line(error)
    return "%s: %s" % (type(error).__name__, message) if message else type(error).__name__


def _rails_mw(power: Dict[str, Any]) -> Dict[str, float]:
    return {name: float(rail["power"]) for name, rail in power.get("rail", {}).items() if "power" in rail}


def _temperatures_c(sensors: Dict[str, Any]) -> Dict[str, float]:
    return {name: float(sensor["temp"]) for name, sensor in sensors.items()
            if sensor.get("online", True) and sensor.get("temp", TEMPERATURE_OFFLINE_C) > TEMPERATURE_OFFLINE_C}


def _gpu_load_pct(gpus: Any) -> Optional[float]:
    for gpu in gpus.values():
        load = gpu.get("status", {}).get("load")
        if load is not None:
            return float(load)
    return None


def snapshot_from_jtop(jetson: Any, time_s: float) -> Snapshot:
    """A Snapshot of a connected jtop client: RAM kB as jtop gives it, power mW, deg C (offline sensors left out),
    GPU load %, the power mode's name, the first fan's speed %."""
    ram = jetson.memory["RAM"]
    power = jetson.power or {}
    total = power.get("tot", {}).get("power")
    nvpmodel = jetson.nvpmodel
    fan = jetson.fan.speed
    return Snapshot(
        time_s=time_s, source="jtop",
        ram_total_kb=int(ram["tot"]), ram_used_kb=int(ram["used"]), ram_free_kb=int(ram["free"]),
        ram_shared_kb=int(ram["shared"]) if ram.get("shared") is not None else None,
        gpu_load_pct=_gpu_load_pct(jetson.gpu),
        power_total_mw=float(total) if total is not None else None,
        power_rails_mw=_rails_mw(power),
        temperatures_c=_temperatures_c(jetson.temperature or {}),
        nvpmodel=nvpmodel.name if nvpmodel is not None else None,
        fan_pct=float(fan) if fan is not None else None)


class JtopReader:
    """A Monitor over jtop. While degraded, latest() is the fallback's reading (when one is given) or the last good
    one, with `degraded` saying why; None until the first reading of either."""

    def __init__(self, interval_s: float = 1.0, fallback: Optional[FallbackReader] = None) -> None:
        self._interval_s = interval_s
        self._fallback = fallback
        self._lock = threading.Lock()
        self._latest: Optional[Snapshot] = None
        self._last_good: Optional[Snapshot] = None
        self._reason: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jtop-reader", daemon=True)
        self._thread.start()

    def latest(self) -> Optional[Snapshot]:
        with self._lock:
            return self._latest

    def close(self) -> None:
        """Stops the thread (it notices within jtop's own timeout, 3 intervals) and closes the fallback."""
        self._stop.set()
        self._thread.join(timeout=3 * self._interval_s + 10.0)
        if self._fallback is not None:
            self._fallback.close()

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                if self._connect_once():
                    backoff = BACKOFF_FIRST_S
                reason = "jtop.service stopped sending readings"
            except ImportError:
                reason = "jetson-stats is not installed (pip install jetson-stats at the jtop.service's version)"
            except Exception as error:
                reason = describe(error)
            if self._stop.is_set():
                return
            self._degrade(reason)
            self._wait_degraded(backoff)
            backoff = min(2 * backoff, BACKOFF_MAX_S)

    def _connect_once(self) -> bool:
        """One connection, read in a thread of its own: multiprocessing proxies (what jtop talks through) keep their
        connection per thread and address, so a thread that saw the service die would reuse its dead connection
        (Broken pipe) after the service is back."""
        outcome: Dict[str, Any] = {}

        def connection() -> None:
            try:
                outcome["served"] = self._serve()
            except BaseException as error:
                outcome["error"] = error

        worker = threading.Thread(target=connection, name="jtop-connection", daemon=True)
        worker.start()
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return bool(outcome.get("served"))

    def _serve(self) -> bool:
        """Reads until jtop stops or close(); True when at least one reading came."""
        from jtop import JtopException, jtop

        served = False
        try:
            with jtop(interval=self._interval_s) as jetson:
                while not self._stop.is_set() and jetson.ok():
                    self._publish_good(snapshot_from_jtop(jetson, time.monotonic()))
                    served = True
        except JtopException as error:
            raise Unreachable(one_line(error)) from error
        return served

    def _publish_good(self, snapshot: Snapshot) -> None:
        if self._reason is not None:
            log.info("jtop readings are back (was degraded: %s)", self._reason)
            self._reason = None
        with self._lock:
            self._latest = self._last_good = snapshot

    def _degrade(self, reason: str) -> None:
        if reason != self._reason:
            log.warning("monitoring degraded: %s", reason)
            self._reason = reason
        self._publish_degraded()

    def _publish_degraded(self) -> None:
        base = self._fallback.read() if self._fallback is not None else self._last_good
        if base is None:
            return
        with self._lock:
            self._latest = replace(base, degraded=self._reason)

    def _wait_degraded(self, seconds: float) -> None:
        """Waits before reconnecting, refreshing the fallback's reading every interval meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, self._interval_s))
            if self._fallback is not None:
                self._publish_degraded()
