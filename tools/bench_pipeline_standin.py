"""`minicpmv-edge bench pipeline` on the TensorRT runner with the stand-in TensorRT of tests/standins (with
MINICPMV_REAL_PYCUDA=1: real pycuda device memory, pinned buffers, async copies and one stream; the stand-in engine
runs the ONNX graph with ONNX Runtime on the bytes behind the device pointers). Frames come from memory: a synthetic
scene with a block moving across it, a new frame whenever the loop asks. Prints the bench's JSON.

    MINICPMV_REAL_PYCUDA=1 python3 tools/bench_pipeline_standin.py --bundle BUNDLE --frames 10 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.agent.config import parse_agent_config  # noqa: E402
from edge.bundle.manifest import Bundle  # noqa: E402
from edge.camera.source import Frame  # noqa: E402
from edge.diagnostics.bench_pipeline import run_bench  # noqa: E402
from edge.encoder.vision_encoder import VisionEncoder  # noqa: E402
from edge.engines.factory import open_engines  # noqa: E402
from edge.engines.tensorrt.build import BuildSettings  # noqa: E402
from edge.preprocess.scenes import synthetic_scene  # noqa: E402
from tests.standins.fake_pycuda import device_memory, real_pycuda  # noqa: E402
from tests.standins.fake_tensorrt import make_tensorrt  # noqa: E402


class MovingScene:
    """A camera by the Source protocol: a fresh BGR frame at every call, a red block moving across a scene."""

    finished = False

    def __init__(self, width: int, height: int) -> None:
        self.base = np.ascontiguousarray(synthetic_scene(width, height, seed=1)[:, :, ::-1])
        self.taken = 0

    def start(self) -> MovingScene:
        return self

    def stop(self) -> None:
        """Nothing runs."""

    def latest(self, timeout: Optional[float] = None) -> Frame:
        image = self.base.copy()
        side = image.shape[0] // 6
        x = (40 * self.taken) % (image.shape[1] - side)
        image[side:2 * side, x:x + side] = (0, 0, 255)
        self.taken += 1
        return Frame(image, time.monotonic(), self.taken - 1, 0, 1)

    def stats(self) -> Dict[str, Any]:
        return {"taken": self.taken, "dropped": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--release", default="10.3", help="the stand-in TensorRT release (default 10.3)")
    parser.add_argument("--size", default="1280x720", help="the frames, WxH (default 1280x720)")
    parser.add_argument("--resize", default="fast", help="exact or fast (default fast)")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    config = parse_agent_config({"bundle": str(args.bundle), "camera": {"kind": "file", "path": "unused.avi"},
                                 "resize": args.resize}, Path("."))
    bundle = Bundle.load(args.bundle)
    memory, adapter = device_memory()
    with tempfile.TemporaryDirectory() as cache:
        settings = BuildSettings(timing_cache=Path(cache) / "timing.cache", workspace_bytes=1 << 28, check=False)
        engines = open_engines(bundle, "tensorrt", "fp32", Path(cache) / "engines", settings,
                               runtime=(make_tensorrt(args.release, adapter), memory))
        with VisionEncoder(bundle, engines, args.resize) as encoder:
            report = run_bench(config, args.frames, args.rounds, args.warmup, encoder=encoder,
                               make_source=lambda: MovingScene(width, height))
    report.update(real_pycuda=real_pycuda(), memory=type(memory).__name__, release=args.release, size=args.size,
                  resize=args.resize, bundle=str(args.bundle), slices=encoder.max_slice_nums)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
