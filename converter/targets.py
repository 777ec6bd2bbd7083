"""What a target's bundle carries: the precisions to export and the bundle's default precision."""
from __future__ import annotations

from typing import List

from edge.device.profiles import DeviceProfile


def precisions_for(profile: DeviceProfile) -> List[str]:
    """The float precisions to export: int8 is added by calibration where the target runs int8."""
    return ["fp32", "fp16"] if profile.tensorrt is not None else ["fp32"]


def default_precision(profile: DeviceProfile, precisions: List[str]) -> str:
    """The profile's default where the bundle has it, else the lowest exported precision (fp16 before fp32)."""
    if profile.default_precision in precisions:
        return profile.default_precision
    return "fp16" if "fp16" in precisions else precisions[0]
