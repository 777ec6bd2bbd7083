"""The governor's policies: the agent config's `governor:` section, checked key by key (docs/governor.md).

Each policy is a ladder of levels, 0 = normal. Memory and temperature climb on thresholds (one per level, ascending);
power climbs one step each time the budget is still exceeded. A level is left only below its threshold less the
margin (hysteresis), and no policy changes level sooner than `min_dwell_s` after its last change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

from ..errors import InputError

KEYS = ("enabled", "interval_s", "min_dwell_s", "memory", "power", "temperature")
MEMORY_KEYS = ("enter_used_fraction", "margin", "reduced_slices")
POWER_KEYS = ("budget_mw", "margin_mw", "frame_interval_s")
TEMPERATURE_KEYS = ("enter_c", "margin_c", "frame_interval_s", "max_slice_nums")
MEMORY_LEVELS = 3  # fewer slices, overview only, capture paused


@dataclass(frozen=True)
class MemoryPolicy:
    """RAM used over total: level 1 caps the slices at `reduced_slices`, 2 keeps the overview only (one slice),
    3 pauses capture; `enter_used_fraction` holds each level's threshold (fewer entries: fewer levels)."""

    enter_used_fraction: Tuple[float, ...] = (0.85, 0.90, 0.95)
    margin: float = 0.05
    reduced_slices: int = 4


@dataclass(frozen=True)
class PowerPolicy:
    """Total board power against `budget_mw` (None: off): each level stretches the least time between frames to
    `frame_interval_s[level - 1]`."""

    budget_mw: Optional[float] = None
    margin_mw: float = 1000.0
    frame_interval_s: Tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class TemperaturePolicy:
    """The hottest sensor: level k enters at `enter_c[k - 1]` and sets `frame_interval_s[k - 1]` and
    `max_slice_nums[k - 1]` (None: the slices are left alone)."""

    enter_c: Tuple[float, ...] = (80.0, 90.0)
    margin_c: float = 5.0
    frame_interval_s: Tuple[float, ...] = (1.0, 2.0)
    max_slice_nums: Tuple[Optional[int], ...] = (None, 1)


@dataclass(frozen=True)
class GovernorConfig:
    """The `governor:` section: off unless enabled; `interval_s` between monitor readings."""

    enabled: bool = False
    interval_s: float = 1.0
    min_dwell_s: float = 10.0
    memory: MemoryPolicy = MemoryPolicy()
    power: PowerPolicy = PowerPolicy()
    temperature: TemperaturePolicy = TemperaturePolicy()


def _known(section: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(str(key) for key in section if key not in known)
    if unknown:
        raise InputError("%s: unknown key %r (a typo?): the keys are %s" % (where, unknown[0], ", ".join(known)))


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError("%s must be a mapping of settings (see docs/governor.md), got %r" % (key, value))
    return value


def _number(value: Any, key: str, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InputError("%s must be a number in %g..%g (%s), got %r" % (key, low, high, what, value))
    return float(value)


def _numbers(value: Any, key: str, low: float, high: float, what: str, ascending: bool = True) -> Tuple[float, ...]:
    """A list of numbers in low..high, strictly ascending when `ascending`."""
    if not isinstance(value, (list, tuple)):
        raise InputError("%s must be a list of numbers in %g..%g (%s), got %r" % (key, low, high, what, value))
    numbers = tuple(_number(v, key, low, high, what) for v in value)
    if ascending and any(b <= a for a, b in zip(numbers, numbers[1:])):
        raise InputError("%s must rise from one level to the next (%s), got %r" % (key, what, list(value)))
    return numbers


def _slices(value: Any, key: str) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError("%s must be an integer >= 1 (1: the overview only), or null to leave the slices alone; "
                         "got %r" % (key, value))
    return value


def _memory(section: Mapping[str, Any]) -> MemoryPolicy:
    _known(section, MEMORY_KEYS, "governor.memory")
    default = MemoryPolicy()
    enter = _numbers(section.get("enter_used_fraction", list(default.enter_used_fraction)),
                     "governor.memory.enter_used_fraction", 0.0, 1.0, "fractions of RAM, one per level")
    if len(enter) > MEMORY_LEVELS:
        raise InputError("governor.memory.enter_used_fraction has %d thresholds: give at most %d (fewer slices, "
                         "overview only, pause capture)" % (len(enter), MEMORY_LEVELS))
    margin = _number(section.get("margin", default.margin), "governor.memory.margin", 0.0, 0.5,
                     "the fraction of RAM below a threshold at which its level is left")
    reduced = _slices(section.get("reduced_slices", default.reduced_slices), "governor.memory.reduced_slices")
    if reduced is None:
        raise InputError("governor.memory.reduced_slices must be an integer >= 1 (the slice cap at level 1), "
                         "got null")
    return MemoryPolicy(enter, margin, reduced)


def _power(section: Mapping[str, Any]) -> PowerPolicy:
    _known(section, POWER_KEYS, "governor.power")
    default = PowerPolicy()
    budget = section.get("budget_mw", default.budget_mw)
    budget = None if budget is None else _number(budget, "governor.power.budget_mw", 1.0, 1e6,
                                                  "the board's total power budget in mW, or null for off")
    intervals = _numbers(section.get("frame_interval_s", list(default.frame_interval_s)),
                         "governor.power.frame_interval_s", 0.0, 3600.0, "seconds between frames, one per level")
    if budget is not None and not intervals:
        raise InputError("governor.power.frame_interval_s is empty: give at least one level, or set "
                         "governor.power.budget_mw to null")
    return PowerPolicy(budget, _number(section.get("margin_mw", default.margin_mw), "governor.power.margin_mw", 0.0,
                                       1e6, "mW below the budget at which a level is left"), intervals)


def _temperature(section: Mapping[str, Any]) -> TemperaturePolicy:
    _known(section, TEMPERATURE_KEYS, "governor.temperature")
    default = TemperaturePolicy()
    enter = _numbers(section.get("enter_c", list(default.enter_c)), "governor.temperature.enter_c", 0.0, 150.0,
                     "deg C, one per level")
    intervals = _numbers(section.get("frame_interval_s", list(default.frame_interval_s)),
                         "governor.temperature.frame_interval_s", 0.0, 3600.0, "seconds between frames, one per level",
                         ascending=False)
    slices = section.get("max_slice_nums", list(default.max_slice_nums))
    if not isinstance(slices, (list, tuple)):
        raise InputError("governor.temperature.max_slice_nums must be a list, one per level (null: leave the slices "
                         "alone), got %r" % (slices,))
    slices = tuple(_slices(v, "governor.temperature.max_slice_nums") for v in slices)
    if not len(enter) == len(intervals) == len(slices):
        raise InputError("governor.temperature: enter_c, frame_interval_s and max_slice_nums must have one entry per "
                         "level each, got %d, %d and %d" % (len(enter), len(intervals), len(slices)))
    return TemperaturePolicy(enter, _number(section.get("margin_c", default.margin_c), "governor.temperature.margin_c",
                                            0.0, 50.0, "deg C below a threshold at which its level is left"),
                             intervals, slices)


def parse_governor(value: Any) -> GovernorConfig:
    """The `governor:` section (absent or empty: the defaults, off); one InputError line per mistake."""
    section = _mapping(value, "governor")
    _known(section, KEYS, "governor")
    enabled = section.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InputError("governor.enabled must be true or false, got %r" % (enabled,))
    return GovernorConfig(
        enabled,
        _number(section.get("interval_s", 1.0), "governor.interval_s", 0.1, 60.0, "seconds between monitor readings"),
        _number(section.get("min_dwell_s", 10.0), "governor.min_dwell_s", 0.0, 3600.0,
                "seconds a policy stays at a level before it changes again"),
        _memory(_mapping(section.get("memory"), "governor.memory")),
        _power(_mapping(section.get("power"), "governor.power")),
        _temperature(_mapping(section.get("temperature"), "governor.temperature")))
