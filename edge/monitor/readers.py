"""The one way to open a monitor: jtop where its service is there, the procfs/sysfs/NVML fallback elsewhere."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol

from ..errors import InputError
from .fallback_reader import FallbackReader
from .jtop_reader import JtopReader
from .snapshot import Snapshot

JTOP_SOCKET = Path("/run/jtop.sock")
PREFERENCES = ("auto", "jtop", "fallback")


class Monitor(Protocol):
    def latest(self) -> Optional[Snapshot]:
        """The newest reading (None before the first one)."""

    def close(self) -> None:
        """Stops reading; latest() must not be called after."""


def jtop_importable() -> bool:
    try:
        import jtop  # noqa: F401
    except ImportError:
        return False
    return True


def open_monitor(interval_s: float = 1.0, prefer: str = "auto") -> Monitor:
    """prefer "auto": jtop when the jtop package imports and its socket exists, else the fallback; "jtop" forces the
    jtop reader (degraded, with the fallback's values, until the service answers); "fallback" never uses jtop."""
    if prefer not in PREFERENCES:
        raise InputError("monitor prefer=%r is not one of %s" % (prefer, ", ".join(PREFERENCES)))
    if not interval_s > 0:
        raise InputError("monitor interval_s must be > 0 seconds, not %r" % (interval_s,))
    if prefer == "jtop" or (prefer == "auto" and jtop_importable() and JTOP_SOCKET.exists()):
        return JtopReader(interval_s, fallback=FallbackReader.open())
    return FallbackReader.open()
