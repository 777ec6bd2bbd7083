"""`minicpmv-edge inspect`: check every file of a bundle and summarise its manifest."""
from __future__ import annotations

import argparse
import json
from typing import Dict

from ..bundle.manifest import MODULES, Bundle
from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    parser = sub.add_parser("inspect", help="verify a bundle's files (sha256) and summarise its manifest")
    common.add_bundle(parser)
    common.add_json(parser)
    return {"inspect": inspect}


def inspect(args: argparse.Namespace) -> int:
    bundle = Bundle.load(args.bundle)
    model, target = bundle.model, bundle.target
    graphs = {m: {p: {"files": list(g.files), "bytes": g.bytes, "opset": g.opset}
                  for p, g in ((p, bundle.graph(m, p)) for p in bundle.precisions(m))} for m in MODULES}
    if args.json:
        print(json.dumps({"bundle": str(bundle.path), "version": model.version, "target": bundle.manifest["target"],
                          "graphs": graphs, "files_verified": len(bundle.files)}, indent=2))
        return 0
    print("bundle %s: MiniCPM-V %s, Q=%s D=%d, slice layout %s, target %s (TensorRT %s, opset %d)"
          % (bundle.path, model.version, model.query_num or "per slice", model.embed_dim, model.slice.layout,
             target.profile, target.tensorrt, target.opset))
    for module, per_precision in graphs.items():
        for precision, graph in per_precision.items():
            print("  %-9s %-4s %8.1f MB  %s" % (module, precision, graph["bytes"] / 1e6, ", ".join(graph["files"])))
    print("  %d files verified by sha256" % len(bundle.files))
    return 0
