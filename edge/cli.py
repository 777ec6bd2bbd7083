"""``minicpmv-edge``: device-side commands."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .bundle import MODULES, Bundle
from .command import new_parser, run

PROG = "minicpmv-edge"


def _parser() -> argparse.ArgumentParser:
    parser, sub = new_parser(PROG, "Run MiniCPM-V's vision half on a Jetson.")
    inspect = sub.add_parser("inspect", help="verify a bundle's files (sha256) and summarise its manifest")
    inspect.add_argument("--bundle", required=True, type=Path)
    inspect.add_argument("--json", action="store_true")
    return parser


def _inspect(args: argparse.Namespace) -> int:
    bundle = Bundle.load(args.bundle)
    model, target = bundle.model, bundle.manifest["target"]
    graphs = {m: {p: {"files": g["files"], "bytes": g["bytes"], "opset": g["opset"]}
                  for p, g in bundle.manifest["modules"][m]["graphs"].items()} for m in MODULES}
    if args.json:
        print(json.dumps({"bundle": str(bundle.path), "version": model["version"], "target": target,
                          "graphs": graphs, "files_verified": len(bundle.manifest["files"])}, indent=2))
        return 0
    print("bundle %s: MiniCPM-V %s, Q=%d D=%d, slice layout %s, target %s (TensorRT %s, opset %d)"
          % (bundle.path, model["version"], model["query_num"], model["embed_dim"], model["slice"]["layout"],
             target["profile"], target["tensorrt"], target["opset"]))
    for module, per_precision in graphs.items():
        for precision, graph in per_precision.items():
            print("  %-9s %-4s %8.1f MB  %s" % (module, precision, graph["bytes"] / 1e6, ", ".join(graph["files"])))
    print("  %d files verified by sha256" % len(bundle.manifest["files"]))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: one clear line and exit code 2 for bad input."""
    return run(_parser(), {"inspect": _inspect}, argv)


if __name__ == "__main__":
    sys.exit(main())
