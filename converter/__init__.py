"""minicpmv-edge host converter: MiniCPM-V checkpoint -> ONNX bundle (needs torch)."""
