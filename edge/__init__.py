"""minicpmv-edge device side: bundles, preprocessing and engines for MiniCPM-V's vision half.

Imports neither torch nor tensorrt nor pycuda, so it loads on a Jetson's system Python (3.8-3.12)
and on a host without an accelerator.
"""
from .encoder.vision_encoder import EncodedImage, VisionEncoder
from .version import __version__

__all__ = ["EncodedImage", "VisionEncoder", "__version__"]
