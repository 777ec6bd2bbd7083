"""One reading of the box: the type every monitor fills (jtop on a Jetson, the psutil/procfs/NVML fallback
elsewhere) and the governor and the metrics read. A field the source cannot tell is None (or empty)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional


@dataclass(frozen=True)
class Snapshot:
    time_s: float  # time.monotonic() when it was read
    source: str  # "jtop" or "fallback"
    degraded: Optional[str] = None  # why monitoring is degraded (jtop unreachable, no access ...), None when healthy
    ram_total_kb: Optional[int] = None
    ram_used_kb: Optional[int] = None
    ram_free_kb: Optional[int] = None
    ram_shared_kb: Optional[int] = None  # on a Jetson: NvMap memory, what the GPU holds
    gpu_load_pct: Optional[float] = None
    power_total_mw: Optional[float] = None
    power_rails_mw: Mapping[str, float] = field(default_factory=dict)
    temperatures_c: Mapping[str, float] = field(default_factory=dict)  # online sensors only (jtop's -256 left out)
    nvpmodel: Optional[str] = None  # the power mode's name
    fan_pct: Optional[float] = None

    @property
    def ram_used_fraction(self) -> Optional[float]:
        """Used RAM over total (a Jetson's RAM is the GPU's too), or None when unknown."""
        if not self.ram_total_kb or self.ram_used_kb is None:
            return None
        return self.ram_used_kb / self.ram_total_kb

    @property
    def hottest_c(self) -> Optional[float]:
        return max(self.temperatures_c.values()) if self.temperatures_c else None
