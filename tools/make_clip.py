"""Write a short synthetic video for the demo's file camera: `python tools/make_clip.py --out clip.avi`.

A synthetic scene (edge.preprocess.scenes) with a red square crossing it, as an MJPG .avi (OpenCV's own encoder,
present in every OpenCV build, headless wheels included)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from edge.preprocess.scenes import synthetic_scene


def write_clip(path: Path, frames: int, width: int, height: int, fps: float) -> None:
    background = synthetic_scene(width, height, seed=1)[:, :, ::-1].copy()  # RGB -> BGR
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        sys.exit("OpenCV cannot write MJPG .avi to %s" % path)
    side = height // 6
    for index in range(frames):
        frame = background.copy()
        x = index * (width - side) // max(1, frames - 1)
        frame[height // 3:height // 3 + side, x:x + side] = (0, 0, 255)
        writer.write(frame)
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", default="640x360", help="WxH (default 640x360)")
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_clip(args.out, args.frames, width, height, args.fps)
    print("clip written to %s: %d frames of %dx%d at %g fps" % (args.out, args.frames, width, height, args.fps))


if __name__ == "__main__":
    main()
