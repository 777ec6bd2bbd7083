"""Export-friendly PyTorch modules of MiniCPM-V's vision half (no data-dependent Python in forward)."""
from .merger import MergerHead, MergerVisionTower
from .resampler import Resampler
from .siglip import NavitSiglipEncoder

__all__ = ["MergerHead", "MergerVisionTower", "NavitSiglipEncoder", "Resampler"]
