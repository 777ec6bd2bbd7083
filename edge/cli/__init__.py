"""``minicpmv-edge``: the device-side command line (thin commands over the rooms of ``edge``)."""
from .main import main

__all__ = ["main"]
