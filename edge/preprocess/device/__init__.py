"""Preprocessing on a CUDA device through pycuda: Pillow's resize, tiling and normalisation as kernels that write
the VPM's strips straight into device memory (docs/preprocessing.md)."""
