"""The monitor without jtop: RAM from /proc/meminfo, temperatures from the thermal zones, GPU load and power from
NVML where pynvml imports and finds a GPU. Readings are taken on demand, each call a fresh Snapshot."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional

from .snapshot import Snapshot

log = logging.getLogger(__name__)

MEMINFO = Path("/proc/meminfo")
THERMAL = Path("/sys/class/thermal")


def read_meminfo(path: Path = MEMINFO) -> Dict[str, int]:
    """/proc/meminfo as {key: value}; values are kB (the few unitless counters are kept as they are)."""
    values: Dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])
    return values


def ram_fields(meminfo: Dict[str, int]) -> Dict[str, Optional[int]]:
    """The Snapshot's RAM fields in kB, with jtop's meaning of used: total - free - buffers - page cache.
    shared is NvMap memory (the GPU's), only on a Jetson."""
    total = meminfo.get("MemTotal")
    free = meminfo.get("MemFree")
    used = None
    if total is not None and free is not None:
        used = total - free - meminfo.get("Buffers", 0) - meminfo.get("Cached", 0)
    return {"ram_total_kb": total, "ram_used_kb": used, "ram_free_kb": free,
            "ram_shared_kb": meminfo.get("NvMapMemUsed")}


def zone_name(zone_type: str) -> str:
    """A thermal zone's type as jtop names it: 'cpu-thermal' -> 'cpu', 'CPU_therm' -> 'CPU'."""
    return zone_type.split("-")[0] if "-" in zone_type else zone_type.split("_")[0]


def read_thermal_zones(root: Path = THERMAL) -> Dict[str, float]:
    """deg C of every readable thermal_zone*/temp (millidegrees); unreadable or offline (-256 C) zones left out."""
    temperatures: Dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            name = zone_name((zone / "type").read_text().strip())
            celsius = int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        if celsius <= -256.0:
            continue
        if name in temperatures:
            name = "%s%s" % (name, zone.name[len("thermal_zone"):])
        temperatures[name] = celsius
    return temperatures


class Nvml:
    """GPU load and power of NVML's first GPU; open() returns None where pynvml is absent or finds no GPU."""

    def __init__(self, pynvml: Any, handle: Any) -> None:
        self._pynvml = pynvml
        self._handle = handle

    @classmethod
    def open(cls) -> Optional[Nvml]:
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except Exception as error:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no NVIDIA GPU here
            log.debug("NVML unavailable: %s", error)
            return None
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception as error:
            log.debug("NVML has no GPU: %s", error)
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handle)

    def gpu_load_pct(self) -> Optional[float]:
        try:
            return float(self._pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        except Exception:  # NVML_ERROR_NOT_SUPPORTED on some boards
            return None

    def power_mw(self) -> Optional[float]:
        try:
            return float(self._pynvml.nvmlDeviceGetPowerUsage(self._handle))
        except Exception:
            return None

    def close(self) -> None:
        self._pynvml.nvmlShutdown()


class FallbackReader:
    """A Monitor that reads procfs, sysfs and NVML when asked (source="fallback")."""

    def __init__(self, meminfo: Path = MEMINFO, thermal: Path = THERMAL, nvml: Optional[Nvml] = None) -> None:
        self._meminfo = meminfo
        self._thermal = thermal
        self._nvml = nvml

    @classmethod
    def open(cls) -> FallbackReader:
        """The box's own files, and NVML where it works."""
        return cls(nvml=Nvml.open())

    def read(self) -> Snapshot:
        """A reading now; a file that cannot be read leaves its fields None."""
        now = time.monotonic()
        try:
            ram = ram_fields(read_meminfo(self._meminfo))
        except OSError as error:
            log.debug("no %s: %s", self._meminfo, error)
            ram = {}
        gpu_load = power = None
        if self._nvml is not None:
            gpu_load, power = self._nvml.gpu_load_pct(), self._nvml.power_mw()
        return Snapshot(time_s=now, source="fallback", gpu_load_pct=gpu_load,
                        power_rails_mw={"GPU": power} if power is not None else {},
                        temperatures_c=read_thermal_zones(self._thermal), **ram)

    def latest(self) -> Optional[Snapshot]:
        return self.read()

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None
